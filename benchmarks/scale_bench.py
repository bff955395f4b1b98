"""Scale: one device vs several, and bfloat16 vs float32, as ratios of `mt.fit` epoch times.

One JSON line per measurement; each epoch time is the median over the epochs after the
first (which compiles):

- "devices": the default CNN (4 tasks' worth of heads: one 10-class, one binary) on
  `--rows` rows of [101, 40], batch 32, `fit(devices=jax.devices()[:n])` for n = 1 and
  `--devices`. On a CPU the devices are forced (`--xla_force_host_platform_device_count`)
  and share the same cores, so the ratio shows the cost of splitting a step, not a
  speed-up; on a machine with several accelerators it is the data-parallel speed-up.
- "precision": the same fit with `precision="bfloat16"` vs float32 on the default
  device. CPUs without bfloat16 units emulate it (slower); accelerators gain.

Usage: python benchmarks/scale_bench.py [--rows 2048] [--epochs 3] [--devices 4]
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _force_devices(argv: list[str]) -> None:
    """Ask XLA for `--devices` CPU devices before JAX starts (it reads the flag once)."""
    count = 4
    if "--devices" in argv:
        count = int(argv[argv.index("--devices") + 1])
    flag = f"--xla_force_host_platform_device_count={count}"
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()


_force_devices(sys.argv)

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import mtjax as mt  # noqa: E402
from mtjax.tasks import Task  # noqa: E402

TASKS = (Task("word", tuple(f"w{i}" for i in range(10))), Task("loud", ("no", "yes"), "binary"))


def make_data(rows: int) -> mt.MultiTaskData:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, 101, 40)).astype(np.float32)
    word = TASKS[0].encode_many([TASKS[0].labels[i] for i in rng.integers(0, 10, rows)])
    loud = rng.integers(0, 2, (rows, 1)).astype(np.float32)
    return mt.concat([mt.TaskDataset.from_arrays(x, np.concatenate([word, loud], 1), TASKS)])


def epoch_seconds(data, epochs: int, **options) -> float:
    trained = mt.fit(
        mt.models.HardSharingCNN(TASKS),
        data,
        epochs=epochs,
        batch_size=32,
        optimizer=optax.adam(1e-3),
        early_stop=None,
        progress=False,
        **options,
    )
    return float(np.median([r["seconds"] for r in trained.history[1:]]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--devices", type=int, default=4)
    args = parser.parse_args()
    data = make_data(args.rows)
    backend = jax.default_backend()
    devices = jax.devices()
    if len(devices) < args.devices:
        raise SystemExit(f"asked for {args.devices} devices, {backend} has {len(devices)}")
    one = epoch_seconds(data, args.epochs, devices=devices[:1])
    many = epoch_seconds(data, args.epochs, devices=devices[: args.devices])
    line = dict(name="devices", backend=backend, device=devices[0].device_kind, rows=args.rows)
    line |= dict(one_s=round(one, 3), many_s=round(many, 3), n=args.devices)
    print(json.dumps(line | {"speedup": round(one / many, 3)}), flush=True)
    f32 = epoch_seconds(data, args.epochs)
    bf16 = epoch_seconds(data, args.epochs, precision="bfloat16")
    line = dict(name="precision", backend=backend, device=devices[0].device_kind)
    line |= dict(float32_s=round(f32, 3), bfloat16_s=round(bf16, 3))
    print(json.dumps(line | {"speedup": round(f32 / bf16, 3)}), flush=True)


if __name__ == "__main__":
    main()
