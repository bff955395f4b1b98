"""Resuming under faults: other settings, kill -9, the best epoch, bit flips, two processes.

The killed processes run `resume_child.py`, which pauses once a chosen epoch is fully
recorded, so every SIGKILL lands at a known point.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import optax
import pytest
import resume_child
from tiny_training import three_datasets

import mtjax as mt
from mtjax import experiments as ex
from mtjax import runs
from mtjax.runs import checkpoints, recorder
from mtjax.train import settings

CHILD = Path(resume_child.__file__)


@pytest.fixture(autouse=True)
def no_figures(monkeypatch):
    resume_child.without_figures(monkeypatch.setattr)


def spawn(spec: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(CHILD), json.dumps(spec)])


def wait_paused(spec: dict, proc: subprocess.Popen) -> None:
    """Waits until the child has recorded epoch `pause_after` and sleeps."""
    marker = resume_child.paused_marker(spec)
    deadline = time.time() + 120
    while not marker.exists():
        assert proc.poll() is None, f"the child exited with {proc.returncode}"
        assert time.time() < deadline, "the child did not reach its pause"
        time.sleep(0.05)


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def killed_after(spec: dict) -> None:
    """Trains `spec` in a child and kills it with SIGKILL once epoch `pause_after` is saved."""
    proc = spawn(spec)
    try:
        wait_paused(spec, proc)
    finally:
        kill(proc)


def same_value(got: mt.Trained, want: mt.Trained) -> None:
    """Equal `Trained` values, leaf by leaf (history without the wall-clock seconds)."""
    for field in ("params", "batch_stats", "opt_state", "comb_state", "comb_params"):
        a, b = getattr(got, field), getattr(want, field)
        assert jax.tree.structure(a) == jax.tree.structure(b), field
        for i, (x, y) in enumerate(zip(jax.tree.leaves(a), jax.tree.leaves(b))):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=f"{field}[{i}]")
    untimed = [
        [{k: v for k, v in r.items() if k != "seconds"} for r in t.history] for t in (got, want)
    ]
    assert untimed[0] == untimed[1]
    assert got.best_epoch == want.best_epoch


def straight(spec: dict) -> mt.Trained:
    model, train, kwargs = resume_child.fit_arguments(spec)
    return mt.fit(model, train, **kwargs)


def resumed(spec: dict) -> mt.Trained:
    model, train, kwargs = resume_child.fit_arguments(spec)
    return mt.fit(model, train, run=runs.Run(spec["root"], spec["name"]), **kwargs)


# 10: every setting that changes the result is checked on resume, and named.


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished two-epoch run of the Python API, and what it was fitted with."""
    spec = {"root": str(tmp_path_factory.mktemp("finished")), "name": "r", "epochs": 2}
    spec["combine"], spec["combine_options"] = "dwa", {"temperature": 2.0}
    model, train, kwargs = resume_child.fit_arguments(spec)
    run = runs.Run(spec["root"], "r")
    trained = mt.fit(model, train, run=run, **kwargs)
    return run, model, train, kwargs, trained


def flipped_label(data):
    y = np.array(data.y)
    y[3, :3] = y[3, [1, 2, 0]]  # row 3's word, another one
    return data.replace(y=y)


@pytest.mark.parametrize(
    "change, named",
    [
        (dict(combine=mt.losses.mean()), r"combine\.factory"),
        (dict(combine=mt.losses.dwa(temperature=3.0)), r"combine\.temperature"),
        (dict(optimizer=optax.adam(0.05)), r"optimizer\.update_fns\[1\]\.tx\.step_size differ"),
        (dict(optimizer=optax.adam(0.1, b1=0.8)), r"optimizer\..*b1"),
        (dict(optimizer=optax.sgd(0.1)), r"optimizer\."),
        (
            dict(optimizer=optax.adam(optax.exponential_decay(0.1, 10, 0.5))),
            r"optimizer\..*step_size_fn",
        ),
        (dict(early_stop=mt.early_stopping.patience("validation/loss", 3)), r"early_stop\."),
        (dict(data=flipped_label), r"data\.train\.y differ"),
        (dict(data=lambda d: d.replace(x=np.asarray(d.x) * 2.0)), r"data\.train\.x differ"),
        (dict(validation=flipped_label), r"data\.validation\.y differ"),
    ],
    ids=lambda v: "" if isinstance(v, str) else "-".join(v),
)
def test_a_resume_with_other_settings_is_refused_naming_what_differs(finished, change, named):
    run, model, train, kwargs, _ = finished
    kwargs = dict(kwargs)
    if "data" in change:
        train = change.pop("data")(train)
    if "validation" in change:
        kwargs["validation"] = change.pop("validation")(kwargs["validation"])
    kwargs.update(change)
    with pytest.raises(ValueError, match=named):
        mt.fit(model, train, run=run, **kwargs)


def test_the_same_settings_rebuilt_resume_the_finished_run(finished):
    run, model, train, _, trained = finished
    _, train_again, kwargs_again = resume_child.fit_arguments({"epochs": 2, "combine": "dwa"})
    again = mt.fit(model, train_again, run=run, **kwargs_again)
    same_value(again, trained)
    config = runs.read_config(run)
    assert config["combine"]["factory"] == "mtjax.train.combiners.weighting.dwa"
    assert config["combine"]["temperature"] == 2.0
    adam = json.dumps(config["optimizer"])
    assert '"b1": 0.9' in adam and '"step_size": -0.1' in adam  # adam(0.1) scales by -0.1
    digest = config["data"]["train"]
    assert digest["rows"] == len(train) and digest["x_digest"] == "full"
    assert config["resume_key"]["data"] == config["data"]


def test_the_data_digest_hashes_big_features_by_a_sample_of_rows(monkeypatch):
    data = three_datasets(n=40)
    monkeypatch.setattr(settings, "FULL_HASH_BYTES", 1000)  # x is 120 x 5 x 8 float32
    monkeypatch.setattr(settings, "SAMPLE_ROWS", 16)
    digest = settings.data_digest(data)
    assert digest["x_digest"] == "16 of 120 rows, evenly spaced"
    sampled = settings.sample_rows(120)
    assert sampled[:3].tolist() == [0, 8, 16] and sampled[-1] == 119
    x = np.array(data.x)
    x[8, 0, 0] += 1.0
    assert settings.data_digest(data.replace(x=x))["x"] != digest["x"]
    x[8, 0, 0] -= 1.0
    x[9, 0, 0] += 1.0  # a row outside the sample: what the sample cannot see
    assert settings.data_digest(data.replace(x=x))["x"] == digest["x"]
    labels = np.array(data.y)
    labels[117] = 1.0 - labels[117]  # labels are always hashed in full
    assert settings.data_digest(data.replace(y=labels))["y"] != digest["y"]


def test_an_optimizer_is_described_by_its_settings_not_its_identity():
    def schedule(lr):
        return optax.warmup_cosine_decay_schedule(0.0, lr, 5, 100)

    first = settings.describe(
        optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule(1e-3)))
    )
    again = settings.describe(
        optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule(1e-3)))
    )
    other = settings.describe(
        optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule(2e-3)))
    )
    assert first == again and json.loads(json.dumps(first)) == first
    assert first != other and "0x" not in json.dumps(first)
    injected = [settings.describe(optax.inject_hyperparams(optax.adam)(lr)) for lr in (3e-4, 1e-3)]
    assert injected[0] != injected[1] and "0.0003" in json.dumps(injected[0])


# 11, 12: a resumed run that restores its best epoch is the uninterrupted run's value, and
# max_to_keep never loses the best epoch.


def test_a_resumed_run_keeps_and_restores_its_best_epoch_as_an_uninterrupted_one(tmp_path):
    spec = {"root": str(tmp_path), "name": "kept", "combine": "dwa", "max_to_keep": 2}
    killed_after({**spec, "pause_after": 3})
    run = runs.Run(tmp_path, "kept")
    assert len(runs.read_history(run)) == 4
    kept = sorted(int(p.name) for p in run.checkpoints.iterdir() if p.name.isdigit())
    assert kept == [1, 2, 3]  # the best (1), and the newest two
    got, want = resumed(spec), straight(spec)
    assert want.best_epoch == 1 < len(want.history) - 1  # the best is restored from disk
    same_value(got, want)
    kept = sorted(int(p.name) for p in run.checkpoints.iterdir() if p.name.isdigit())
    assert kept == [1, 3, 4]
    assert all((run.checkpoints / str(e) / "sha256.json").is_file() for e in kept)


# 13: a checksum per checkpoint, verified at restore.


def flip_a_bit(step_folder: Path) -> Path:
    """Flips one bit in the middle of the largest array file of the state item."""
    target = max(
        (p for p in (step_folder / "state").rglob("*") if p.is_file()), key=os.path.getsize
    )
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x10
    target.write_bytes(bytes(data))
    return target


def test_a_flipped_bit_in_the_newest_checkpoint_falls_back_with_a_warning(tmp_path, caplog):
    spec = {"root": str(tmp_path), "name": "flip", "epochs": 3}
    first = resumed(spec)
    run = runs.Run(tmp_path, "flip")
    checksum = json.loads((run.checkpoints / "2" / "sha256.json").read_text())
    assert checksum["epoch"] == 2 and any(k.startswith("state/") for k in checksum["files"])
    flip_a_bit(run.checkpoints / "2")
    with caplog.at_level(logging.WARNING, logger="mtjax"):
        again = resumed(spec)
    warned = [r.getMessage() for r in caplog.records if "epoch 2" in r.getMessage()]
    assert warned and "checksum" in warned[0]
    same_value(again, first)  # epoch 2 trained again from epoch 1's checkpoint


def test_restoring_a_damaged_epoch_names_the_file(tmp_path):
    spec = {"root": str(tmp_path), "name": "named", "epochs": 2, "max_to_keep": 2}
    resumed(spec)
    run = runs.Run(tmp_path, "named")
    damaged = flip_a_bit(run.checkpoints / "0").relative_to(run.checkpoints / "0")
    manager = checkpoints.open_manager(run.checkpoints)
    with pytest.raises(ValueError, match=rf"epoch 0.*{damaged}.*checksum"):
        checkpoints.restore_arrays(manager, 0)
    checkpoints.close(manager)


# 14: the experiment-file path checks every resume, killed runs included.


def test_an_experiment_run_killed_part_way_is_not_resumed_with_other_settings(tmp_path):
    spec = {"root": str(tmp_path), "name": "exp/fold0", "experiment": "sum", "pause_after": 0}
    killed_after(spec)
    split = resume_child.fold_split()
    with pytest.raises(ex.ExperimentError, match=r"train\.combine"):
        ex.train_fold(resume_child.experiment(tmp_path, "mean"), 0, split, progress=False)
    run = ex.train_fold(resume_child.experiment(tmp_path, "sum"), 0, split, progress=False)
    assert len(runs.read_history(run)) == 2
    assert runs.read_config(run)["experiment"]["train"]["combine"] == {"name": "sum"}


# 15: one process at a time in a run folder.


def test_a_second_process_is_refused_at_once_and_a_killed_holder_leaves_no_lock(tmp_path):
    spec = {"root": str(tmp_path), "name": "held", "epochs": 3, "pause_after": 0}
    proc = spawn(spec)
    try:
        wait_paused(spec, proc)
        started = time.perf_counter()
        with pytest.raises(RuntimeError, match=rf"{tmp_path / 'held'}.* process {proc.pid}"):
            resumed(spec)
        assert time.perf_counter() - started < 10
    finally:
        kill(proc)
    assert len(resumed(spec).history) == 3  # the killed holder's lock is gone
    lock = tmp_path / "held" / runs.folder.LOCK
    probe = (
        "import fcntl, os, sys;"
        " fcntl.flock(os.open(sys.argv[1], os.O_RDWR), fcntl.LOCK_EX | fcntl.LOCK_NB)"
    )
    assert subprocess.run([sys.executable, "-c", probe, str(lock)]).returncode == 0  # released


def test_the_epoch_kept_is_the_rules_choice_or_else_the_first_best_by_its_metric(tmp_path):
    losses = [1.0, 0.9, 0.5, 0.45, 0.45]
    history = [{"epoch": e, "validation/loss": v} for e, v in enumerate(losses)]
    run = runs.Run(tmp_path, "r")
    by_metric = recorder.Recorder(run, (), None, None, stopping_metric="validation/loss")
    assert by_metric.best_epoch(history) == 3  # ties go to the first
    rule = mt.early_stopping.patience("validation/loss", 10, min_delta=0.2)
    assert recorder.Recorder(run, (), None, None, rule=rule).best_epoch(history) == 2
    score = [{"epoch": e, "validation/score": v} for e, v in enumerate([0.2, float("nan"), 0.7])]
    assert (
        recorder.Recorder(run, (), None, None, stopping_metric="validation/score").best_epoch(score)
        == 2
    )
    assert recorder.Recorder(run, (), None, None).best_epoch(history) == 4  # no metric: the last
