"""What each combiner costs: its jitted train step's time relative to `sum`'s, in one run.

One JSON line per combiner and model: the median time of `--steps` calls of the jitted
`make_train_step` (after one that compiles), on a batch of 32 rows from 4 tasks (every task
in every batch, 10-class, binary, 6-label, 3-class), for the 3x512 DNN on [7, 24] rows and
the default CNN on [101, 40] rows, and the ratio to `sum` on the same model; and the
compiled step's peak memory (XLA's temporaries plus its arguments, `memory_analysis`). Gradient
combiners pay one backward pass per task (a vmap over the tasks of one VJP) plus their
solver; loss-level ones cost what `sum` does.

Usage: python benchmarks/combiner_cost.py [--steps 20] [--models dnn,cnn] [--only name,...]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import mtjax as mt
from mtjax.tasks import Task
from mtjax.train import losses
from mtjax.train import state as states
from mtjax.train import step as steps

TASKS = (
    Task("word", tuple(f"w{i}" for i in range(10))),
    Task("loud", ("no", "yes"), "binary"),
    Task("tags", tuple(f"t{i}" for i in range(6)), "multilabel"),
    Task("rate", ("slow", "normal", "fast")),
)
SHAPES = {"dnn": (7, 24), "cnn": (101, 40)}
OPTIONS = {"weighted": {"weights": [1.0, 0.5, 2.0, 1.0]}, "ema": {"combiner": "dwa"}}


def batch(shape: tuple[int, int], rows: int = 32) -> steps.Batch:
    rng = np.random.default_rng(0)
    y = np.concatenate(
        [
            np.eye(10)[rng.integers(0, 10, rows)],
            rng.integers(0, 2, (rows, 1)),
            rng.random((rows, 6)) < 0.3,
            np.eye(3)[rng.integers(0, 3, rows)],
        ],
        axis=1,
    ).astype(np.float32)
    has_task = np.zeros((rows, len(TASKS)), bool)
    has_task[np.arange(rows), np.arange(rows) % len(TASKS)] = True  # every task in the batch
    x = rng.standard_normal((rows, *shape)).astype(np.float32)
    return steps.Batch(jnp.asarray(x), jnp.asarray(y), jnp.asarray(has_task), jnp.ones(rows))


def model_of(kind: str):
    if kind == "dnn":
        return mt.models.HardSharingDNN(TASKS, hidden=(512, 512, 512))
    return mt.models.HardSharingCNN(TASKS)


def step_cost(kind: str, name: str, n_steps: int) -> tuple[float, float]:
    """(median seconds of a step, the compiled step's peak memory in MiB)."""
    model = model_of(kind)
    combiner = losses.as_combiner(losses.COMBINERS[name](**OPTIONS.get(name, {})))
    data = batch(SHAPES[kind])
    state = states.create_train_state(
        model, optax.adam(1e-3), combiner, np.asarray(data.x[:2]), jax.random.key(0), tasks=TASKS
    )
    fns = losses.loss_functions(TASKS)
    step = jax.jit(steps.make_train_step(model, TASKS, fns, combiner), donate_argnums=0)
    key, epoch = jax.random.key(1), jnp.int32(0)
    compiled = step.lower(state, data, key, epoch).compile()
    memory = compiled.memory_analysis()
    peak_mib = (memory.temp_size_in_bytes + memory.argument_size_in_bytes) / 2**20
    step = compiled
    state, _ = step(state, data, key, epoch)
    jax.block_until_ready(state)
    times = []
    for _ in range(n_steps):
        started = time.perf_counter()
        state, metrics = step(state, data, key, epoch)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - started)
    return float(np.median(times)), peak_mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--models", default="dnn,cnn")
    parser.add_argument("--only", default=None, help="combiner names (default: all)")
    args = parser.parse_args()
    names = sorted(losses.COMBINERS) if args.only is None else args.only.split(",")
    for kind in args.models.split(","):
        reference, reference_mib = step_cost(kind, "sum", args.steps)
        for name in names:
            if name == "sum":
                seconds, mib = reference, reference_mib
            else:
                seconds, mib = step_cost(kind, name, args.steps)
            line = dict(name="combiner_cost", combiner=name, model=kind, tasks=len(TASKS))
            line |= dict(step_ms=round(1e3 * seconds, 2))
            line |= dict(ratio_to_sum=round(seconds / reference, 2))
            line |= dict(peak_mib=round(mib, 1), memory_to_sum=round(mib / reference_mib, 2))
            print(json.dumps(line | {"backend": jax.default_backend()}), flush=True)


if __name__ == "__main__":
    main()
