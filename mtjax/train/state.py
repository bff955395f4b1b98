"""The train state at the start of training, the default optimizer and its learning rate."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mtjax.tasks import Task
from mtjax.train import losses
from mtjax.train import step as steps
from mtjax.train.step import TrainState


def create_train_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    combiner: losses.Combiner,
    x_example: np.ndarray,
    key: jax.Array,
    *,
    tasks: Sequence[Task] | None = None,
    shared: steps.Shared = steps.not_a_head,
) -> TrainState:
    """The state before the first step: the model initialised, optimizer and combiner states.

    Args:
      model: a Flax module mapping x [B, T, F] to {task name: logits [B, C_k]}.
      tx: the Optax transformation; it optimizes the model's and the combiner's parameters.
      combiner: a `Combiner` (`losses.as_combiner` makes one of a plain function).
      x_example: float32 [B, T, F], a few rows of the training data.
      key: the PRNG key of the initialisation (its "params" and "dropout" streams).
      tasks: the tasks the model was built for: its outputs are checked against them.
        Without them, the combiner gets one entry per output of the model.
      shared: the trainer's `shared=` ("all" or a predicate on a top-level parameter
        name), for a combiner whose state is shaped like the shared parameters.

    Returns:
      A `TrainState` at step 0 (int32), params {"model": ..., "combiner": ...}.

    Raises:
      ValueError when the model's outputs do not match `tasks`.
    """
    variables = model.init({"params": key, "dropout": key}, x_example)
    logits: Any = model.apply(variables, x_example)
    if tasks is not None:
        losses.check_outputs(logits, tasks)
    n_tasks = len(tasks) if tasks is not None else len(logits)
    comb_params = combiner.init_params(n_tasks) if combiner.init_params else {}
    return TrainState.create(
        apply_fn=model.apply,
        params={"model": variables["params"], "combiner": comb_params},
        tx=tx,
        batch_stats=variables.get("batch_stats", {}),
        comb_state=combiner_state(combiner, n_tasks, variables["params"], shared),
    ).replace(step=jnp.int32(0))


def combiner_state(combiner: losses.Combiner, n_tasks: int, params: Any, shared: Any) -> Any:
    """The combiner's first state: `combiner.init(n_tasks)`.

    A combiner whose state is shaped like the shared parameters (its `init` takes
    `shared=`, as moco's does) gets them, picked from `params` by the trainer's `shared=`.
    """
    init: Any = combiner.init  # typed n_tasks -> state; moco's also takes shared=
    if "shared" not in inspect.signature(init).parameters:
        return init(n_tasks)
    return init(n_tasks, shared=steps.split_shared(params, shared)[0])


PEAK_LEARNING_RATE = 1e-3
END_LEARNING_RATE = 1e-5
WEIGHT_DECAY = 1e-4


def _schedule_steps(epochs: int, steps_per_epoch: int) -> tuple[int, int]:
    """(warm-up steps, total steps): one epoch of warm-up, at most a tenth of training."""
    total = max(epochs * steps_per_epoch, 2)
    return max(1, min(steps_per_epoch, total // 10)), total


def default_learning_rate(epochs: int, steps_per_epoch: int) -> optax.Schedule:
    """The default optimizer's learning rate at each step.

    A linear warm-up from 0 to `PEAK_LEARNING_RATE` over one epoch (at most a tenth of
    training), then cosine decay to `END_LEARNING_RATE` at the end of `epochs`.
    """
    warmup, total = _schedule_steps(epochs, steps_per_epoch)
    return optax.warmup_cosine_decay_schedule(
        0.0, PEAK_LEARNING_RATE, warmup, total, end_value=END_LEARNING_RATE
    )


def default_optimizer(epochs: int, steps_per_epoch: int) -> optax.GradientTransformation:
    """AdamW (weight decay `WEIGHT_DECAY`) at `default_learning_rate(...)`."""
    return optax.adamw(default_learning_rate(epochs, steps_per_epoch), weight_decay=WEIGHT_DECAY)


def default_optimizer_config(epochs: int, steps_per_epoch: int) -> dict[str, Any]:
    """What `default_optimizer(epochs, steps_per_epoch)` is, as JSON values for config.json."""
    warmup, total = _schedule_steps(epochs, steps_per_epoch)
    return {
        "name": "adamw",
        "weight_decay": WEIGHT_DECAY,
        "learning_rate": {
            "schedule": "warmup_cosine_decay",
            "init": 0.0,
            "peak": PEAK_LEARNING_RATE,
            "warmup_steps": warmup,
            "decay_steps": total,
            "end": END_LEARNING_RATE,
        },
    }


def learning_rate(state: TrainState, schedule: optax.Schedule | None) -> float | None:
    """The learning rate at the state's step, read on the host.

    Args:
      state: the train state.
      schedule: the optimizer's learning-rate schedule where it is known (the default
        optimizer's); None reads an `optax.inject_hyperparams` "learning_rate" instead.

    Returns:
      The learning rate, or None when neither says it.
    """
    if schedule is not None:
        step = int(jax.device_get(state.step))
        return float(jax.device_get(schedule(step)))
    for leaf in jax.tree.leaves(state.opt_state, is_leaf=lambda x: hasattr(x, "hyperparams")):
        if hasattr(leaf, "hyperparams") and "learning_rate" in leaf.hyperparams:
            return float(jax.device_get(leaf.hyperparams["learning_rate"]))
    return None
