"""Peak memory of per-task gradients: the Jacobian mode against the Gram mode, K = 2, 5, 10.

One JSON line per task count and setting, on the default `HardSharingCNN` with a batch of
32 rows of [101, 40] features (every task in every batch): the compiled train step's
memory from XLA (`compile().memory_analysis()`: temporaries, arguments, outputs, and
peak = temporaries + arguments + outputs - aliased), the step's median time over `--steps`
calls after one that warms up, and for the Gram mode its ratios to the Jacobian mode.
Settings: `sum` (no per-task gradients), a combiner (`--combiner`, default mgda) with
`per_task_grads="jacobian"` (one vmapped VJP: K gradients and K backward passes' buffers at
once) and with `per_task_grads="gramian"` (K sequential VJP + JVP pairs, one gradient alive
at a time, then one VJP with the weights).

Usage: python benchmarks/grad_memory.py [--tasks 2,5,10] [--steps 5] [--combiner mgda]
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

SHAPE = (101, 40)
ROWS = 32


def tasks_of(n_tasks: int) -> tuple[Task, ...]:
    """K tasks alternating 5-class and binary ones."""
    return tuple(
        Task(f"t{k}", tuple(f"c{i}" for i in range(5)))
        if k % 2 == 0
        else Task(f"t{k}", ("no", "yes"), "binary")
        for k in range(n_tasks)
    )


def batch(tasks: tuple[Task, ...]) -> steps.Batch:
    rng = np.random.default_rng(0)
    columns = [
        np.eye(5)[rng.integers(0, 5, ROWS)] if t.kind != "binary" else rng.integers(0, 2, (ROWS, 1))
        for t in tasks
    ]
    y = np.concatenate(columns, axis=1).astype(np.float32)
    has_task = np.zeros((ROWS, len(tasks)), bool)
    has_task[np.arange(ROWS), np.arange(ROWS) % len(tasks)] = True  # every task in the batch
    x = rng.standard_normal((ROWS, *SHAPE)).astype(np.float32)
    return steps.Batch(jnp.asarray(x), jnp.asarray(y), jnp.asarray(has_task), jnp.ones(ROWS))


def measure(n_tasks: int, name: str, mode: str, n_steps: int) -> dict:
    tasks = tasks_of(n_tasks)
    model = mt.models.HardSharingCNN(tasks)
    combiner = losses.as_combiner(losses.COMBINERS[name]())
    data = batch(tasks)
    state = states.create_train_state(
        model, optax.adam(1e-3), combiner, np.asarray(data.x[:2]), jax.random.key(0), tasks=tasks
    )
    fns = losses.loss_functions(tasks)
    step = steps.make_train_step(model, tasks, fns, combiner, per_task_grads=mode)
    key, epoch = jax.random.key(1), jnp.int32(0)
    compiled = jax.jit(step, donate_argnums=0).lower(state, data, key, epoch).compile()
    memory = compiled.memory_analysis()
    state, _ = compiled(state, data, key, epoch)
    jax.block_until_ready(state)
    times = []
    for _ in range(n_steps):
        started = time.perf_counter()
        state, metrics = compiled(state, data, key, epoch)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - started)
    shared, _ = steps.split_shared(state.params["model"], steps.not_a_head)
    sizes = dict(
        temp=memory.temp_size_in_bytes,
        arguments=memory.argument_size_in_bytes,
        outputs=memory.output_size_in_bytes,
        aliased=memory.alias_size_in_bytes,
    )
    peak = sizes["temp"] + sizes["arguments"] + sizes["outputs"] - sizes["aliased"]
    return dict(
        name="grad_memory",
        tasks=n_tasks,
        combiner=name,
        per_task_grads=mode if combiner.uses_grads else None,
        shared_params=sum(int(np.size(a)) for a in jax.tree.leaves(shared)),
        **{f"{k}_mib": round(v / 2**20, 2) for k, v in sizes.items()},
        peak_mib=round(peak / 2**20, 2),
        step_ms=round(1e3 * float(np.median(times)), 1),
        backend=jax.default_backend(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="2,5,10")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--combiner", default="mgda")
    args = parser.parse_args()
    for n_tasks in (int(k) for k in args.tasks.split(",")):
        print(json.dumps(measure(n_tasks, "sum", "jacobian", args.steps)), flush=True)
        jac = measure(n_tasks, args.combiner, "jacobian", args.steps)
        print(json.dumps(jac), flush=True)
        gram = measure(n_tasks, args.combiner, "gramian", args.steps)
        gram["peak_ratio_to_jacobian"] = round(gram["peak_mib"] / jac["peak_mib"], 3)
        gram["temp_ratio_to_jacobian"] = round(gram["temp_mib"] / jac["temp_mib"], 3)
        gram["time_ratio_to_jacobian"] = round(gram["step_ms"] / jac["step_ms"], 2)
        print(json.dumps(gram), flush=True)


if __name__ == "__main__":
    main()
