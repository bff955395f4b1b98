"""fit over two processes (jax.distributed on 127.0.0.1) equals fit in one, run folder included.

Two child processes of one CPU device each train over their two-device global mesh, and a
third, alone, over two forced devices (`multiprocess_child.py`): the same parameters for
`sum` and `pcgrad`; one run folder written by process 0 alone, with the files of the
one-process run's; a resume by both processes from its epoch-0 checkpoint.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "multiprocess_child.py")
DEADLINE_S = 180  # children still running then are killed


def _gloo_missing() -> bool:
    try:
        from jax._src.lib import _jax
    except ImportError:
        return True
    return not hasattr(_jax, "make_gloo_tcp_collectives")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(folder, process_id: int, processes: int, local: int, port: int) -> subprocess.Popen:
    folder.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    args = [sys.executable, CHILD, str(process_id), str(processes), str(port), str(local)]
    with open(folder / f"log_{process_id}.txt", "w") as log:
        return subprocess.Popen([*args, str(folder)], stdout=log, stderr=subprocess.STDOUT, env=env)


def _wait(children: list[subprocess.Popen], logs: list) -> None:
    """Waits for every child; kills them all past the deadline; fails naming a failed one."""
    end = time.monotonic() + DEADLINE_S
    for child in children:
        try:
            child.wait(timeout=max(end - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            for other in children:
                other.kill()
            for other in children:
                other.wait()
    for child, log in zip(children, logs):
        if child.returncode:
            tail = log.read_text()[-3000:]
            pytest.fail(f"child {child.args[2:4]} exited with {child.returncode}:\n{tail}")


def _files(run) -> set[str]:
    """The run's files outside checkpoints/ and events/, relative."""
    found = (p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file())
    return {p for p in found if not p.startswith(("checkpoints/", "events/"))}


@pytest.mark.skipif(_gloo_missing(), reason="this jaxlib has no gloo CPU collectives")
def test_two_processes_train_as_one_and_write_one_run_folder(tmp_path):
    one, two, port = tmp_path / "one", tmp_path / "two", _free_port()
    children = [_start(one, 0, 1, 2, port)]
    children += [_start(two, i, 2, 1, port) for i in range(2)]
    _wait(children, [one / "log_0.txt", two / "log_0.txt", two / "log_1.txt"])

    ref, first, second = (
        np.load(f) for f in (one / "out_0.npz", two / "out_0.npz", two / "out_1.npz")
    )
    assert int(ref["devices"]) == int(first["devices"]) == int(second["devices"]) == 2
    for name in ("sum", "pcgrad", "resumed", "predicted"):
        np.testing.assert_array_equal(first[name], second[name])  # replicated: one value
    for name in ("sum", "pcgrad", "predicted"):
        np.testing.assert_allclose(first[name], ref[name], rtol=1e-5, atol=1e-5)
    assert not np.allclose(first["sum"], first["pcgrad"], atol=1e-4)  # pcgrad acted
    np.testing.assert_allclose(first["resumed"], ref["sum"], rtol=1e-5, atol=1e-5)
    # the resumed fit read epoch 0 back from the checkpoint and trained epoch 1 again
    assert first["seconds_resumed"][0] == first["seconds_sum"][0]
    assert first["seconds_resumed"][1] != first["seconds_sum"][1]

    run = two / "run"
    assert _files(run) == _files(one / "run")  # no file of a second writer
    first_pid = str(children[1].pid)
    assert (run / ".lock").read_text().split()[0] == first_pid  # held by process 0
    event_files = [p.name for p in (run / "events").iterdir()]
    assert len(event_files) == 2 and all(n.endswith(f".{first_pid}") for n in event_files)
    history = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in history] == [0, 1]
    for task in ("word", "loud"):  # evaluated over the two processes' mesh
        mine, alone = (
            json.loads((r / "run/reports/epoch_001/test" / f"{task}.json").read_text())
            for r in (two, one)
        )
        assert mine["loss"] == pytest.approx(alone["loss"], rel=1e-5)
