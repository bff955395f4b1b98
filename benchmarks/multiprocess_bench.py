"""Many processes: `mt.fit` over 2 processes (jax.distributed on 127.0.0.1) vs 1, same devices.

One JSON line per setting, then the ratio. Each setting is a fresh set of processes on
this machine: "one" is 1 process of `--devices` forced CPU devices, "two" is 2 processes
of `--devices / 2` devices each, joined by `jax.distributed.initialize` over the loopback
address (gloo CPU collectives), both training `fit(devices=jax.devices())` on the same
global mesh. The epoch time is the median over the epochs after the first (which
compiles). On one machine the processes share its cores, so the ratio is the cost of the
cross-process collectives and of each process placing its own rows, not a speed-up; on
several hosts each brings its own devices.

Usage: python benchmarks/multiprocess_bench.py [--rows 2048] [--epochs 4] [--devices 2]
  [--model dnn|cnn]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile

TIMEOUT_S = 600


def child(process_id: int, processes: int, port: int, local: int, args, out: str) -> None:
    """One process of a setting: trains, and process 0 writes the epoch times to `out`."""
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={local}"
    os.environ["JAX_PLATFORMS"] = "cpu"
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import jax

    if processes > 1:
        jax.distributed.initialize(f"127.0.0.1:{port}", processes, process_id)
    import numpy as np
    import optax

    import mtjax as mt
    from mtjax.tasks import Task

    tasks = (Task("word", tuple(f"w{i}" for i in range(10))), Task("loud", ("no", "yes"), "binary"))
    rng = np.random.default_rng(0)
    frames = 101 if args.model == "cnn" else 4
    x = rng.standard_normal((args.rows, frames, 40)).astype(np.float32)
    word = tasks[0].encode_many([tasks[0].labels[i] for i in rng.integers(0, 10, args.rows)])
    loud = rng.integers(0, 2, (args.rows, 1)).astype(np.float32)
    data = mt.concat([mt.TaskDataset.from_arrays(x, np.concatenate([word, loud], 1), tasks)])
    model = mt.models.HardSharingCNN(tasks) if args.model == "cnn" else None
    trained = mt.fit(
        model,
        data,
        epochs=args.epochs,
        batch_size=32,
        optimizer=optax.adam(1e-3),
        early_stop=None,
        devices=jax.devices(),
        progress=False,
    )
    if jax.process_index() == 0:
        seconds = [r["seconds"] for r in trained.history[1:]]
        with open(out, "w") as f:
            json.dump({"epoch_s": float(np.median(seconds)), "devices": jax.device_count()}, f)


def setting(processes: int, args) -> dict:
    """Runs one setting in fresh processes; their process 0's JSON."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    local = args.devices // processes
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "out.json")
        own = [sys.executable, os.path.abspath(__file__), *sys.argv[1:]]
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
        children = [
            subprocess.Popen([*own, "--child", f"{i},{processes},{port},{local},{out}"], env=env)
            for i in range(processes)
        ]
        try:
            codes = [c.wait(timeout=TIMEOUT_S) for c in children]
        finally:
            for c in children:
                c.kill()
        if any(codes):
            raise SystemExit(f"{processes} process(es): exit codes {codes}")
        with open(out) as f:
            return json.load(f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--model", choices=("dnn", "cnn"), default="dnn")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        pid, processes, port, local, out = args.child.split(",")
        child(int(pid), int(processes), int(port), int(local), args, out)
        return
    if args.devices % 2:
        raise SystemExit(f"--devices {args.devices} does not split over 2 processes")
    times = {}
    for processes in (1, 2):
        found = setting(processes, args)
        times[processes] = found["epoch_s"]
        line = dict(name="multiprocess", processes=processes, devices=found["devices"])
        line |= dict(model=args.model, rows=args.rows, epoch_s=round(found["epoch_s"], 4))
        print(json.dumps(line), flush=True)
    ratio = dict(name="multiprocess_ratio", model=args.model, rows=args.rows)
    print(json.dumps(ratio | {"two_over_one": round(times[2] / times[1], 3)}), flush=True)


if __name__ == "__main__":
    main()
