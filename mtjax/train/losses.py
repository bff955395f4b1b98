"""Per-task masked losses, and loss combiners that turn them into one scalar.

A batch carries every task's target columns in one matrix `y` [B, C] and says which row
is labelled for which task with `has_task` bool [B, K]; padding rows have `weight` 0.
`task_losses` gives each task's mean loss over its rows ([K]) and whether the task has
any row at all (`present` [K]), with static shapes and no boolean indexing.

The loss combiners live in `mtjax.train.combiners` and are re-exported here, so
`mt.losses.pcgrad()` is a combiner: loss-level `sum`, `mean`, `weighted`,
`uncertainty_weighting`, `dwa`, `rlw`, `gls`, `imtl_l`, `famo`, `stch`; on per-task
gradients `gradnorm`, `pcgrad`, `cagrad`, `mgda`, `excess_mtl`, `db_mtl`, `imtl_g`,
`gradvac`, `config`, `aligned_mtl`, `krum`, `upgrad`, `dualproj`, `nash_mtl`, `fairgrad`,
`sdmgrad`, `modo`, `moco`, `graddrop`, `trimmed_mean`; and `ema(combiner)`, which smooths any
combiner's task weights over steps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from mtjax.tasks import Task, task_slices

LossFn = Callable[[jax.Array, jax.Array], jax.Array]

# ----------------------------------------------------------------------------------------
# Per-row losses: (logits [B, C_k], targets [B, C_k]) -> [B]


def binary_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Sigmoid cross-entropy of a binary task's single column.

    Args:
      logits: float [B, 1].
      targets: float [B, 1], 1.0 for the positive label.

    Returns:
      float [B], `-t log sigmoid(x) - (1 - t) log(1 - sigmoid(x))`.
    """
    return optax.sigmoid_binary_cross_entropy(logits[:, 0], targets[:, 0])


def softmax_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Softmax cross-entropy of a multiclass task.

    Args:
      logits: float [B, C_k].
      targets: float [B, C_k], one-hot (or any distribution over the classes).

    Returns:
      float [B], `-sum_c t_c log softmax(x)_c`.
    """
    return optax.softmax_cross_entropy(logits, targets)


def multilabel_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Sigmoid cross-entropy of each label of a multilabel task, averaged over labels.

    Args:
      logits: float [B, C_k].
      targets: float [B, C_k], 1.0 for every label the row has.

    Returns:
      float [B].
    """
    return optax.sigmoid_binary_cross_entropy(logits, targets).mean(-1)


_DEFAULT_LOSSES: dict[str, LossFn] = {
    "binary": binary_cross_entropy,
    "multiclass": softmax_cross_entropy,
    "multilabel": multilabel_cross_entropy,
}


def default_loss(task: Task) -> LossFn:
    """The per-row loss for `task.kind`: binary, softmax or multilabel cross-entropy."""
    return _DEFAULT_LOSSES[task.kind]


def loss_functions(
    tasks: Sequence[Task], overrides: Mapping[str, LossFn] | None = None
) -> tuple[LossFn, ...]:
    """One per-row loss function per task, in task order.

    Args:
      tasks: the tasks.
      overrides: {task name: fn} replacing the default loss of those tasks; each fn maps
        (logits [B, C_k], targets [B, C_k]) to [B].

    Returns:
      tuple of K functions.
    """
    overrides = dict(overrides or {})
    names = [t.name for t in tasks]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"loss overrides for unknown tasks {unknown}; tasks: {names}")
    return tuple(overrides.get(t.name, default_loss(t)) for t in tasks)


# ----------------------------------------------------------------------------------------
# Masked per-task means


def masked_task_means(losses: jax.Array, mask: jax.Array, weight: jax.Array) -> jax.Array:
    """Mean loss of each task over the batch rows that carry it.

    Args:
      losses: float32 [B, K], per-row loss of each task.
      mask: bool [B, K], the batch's `has_task` rows.
      weight: float32 [B], 0 on padding rows.

    Returns:
      float32 [K]; exactly 0 for a task with no row in the batch.
    """
    w_BxK = mask * weight[:, None]
    # where, not a product alone: a NaN in a row that does not count must not leak
    losses_BxK = jnp.where(w_BxK > 0, losses, 0.0)
    return (losses_BxK * w_BxK).sum(0) / jnp.maximum(w_BxK.sum(0), 1.0)


def check_outputs(logits: Mapping[str, Any], tasks: Sequence[Task]) -> None:
    """Checks that a model's output dict has exactly the tasks' names and column counts.

    Only shapes are read, so this works on arrays and on traced values alike.

    Args:
      logits: {task name: float [B, C_k]}, the model's output.
      tasks: the tasks the model was built for.

    Raises:
      ValueError naming the task, the expected and the received names or shapes.
    """
    names = [t.name for t in tasks]
    if not isinstance(logits, Mapping):
        raise ValueError(
            f"the model must return a dict {{task name: logits}} for tasks {names},"
            f" got {type(logits).__name__}"
        )
    missing = [n for n in names if n not in logits]
    extra = sorted(set(logits) - set(names))
    if missing or extra:
        raise ValueError(
            f"model outputs {sorted(logits)} do not match the tasks {names}:"
            f" missing {missing}, unexpected {extra}"
        )
    for t in tasks:
        shape = tuple(jnp.shape(logits[t.name]))
        if len(shape) != 2 or shape[1] != t.n_columns:
            raise ValueError(
                f"task {t.name!r} ({t.kind}, {len(t.labels)} labels): expected logits of"
                f" shape [B, {t.n_columns}], got {list(shape)}"
            )


def task_losses(
    logits: Mapping[str, jax.Array],
    y: jax.Array,
    has_task: jax.Array,
    weight: jax.Array,
    tasks: Sequence[Task],
    fns: Sequence[LossFn] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Each task's mean loss over the batch rows labelled for it.

    Args:
      logits: {task name: float [B, C_k]}, the model's output.
      y: float32 [B, C], every task's target columns (`task_slices(tasks)`).
      has_task: bool [B, K], whether row b is labelled for task k.
      weight: float32 [B], 1 on real rows, 0 on padding rows.
      tasks: the K tasks, in column order.
      fns: K per-row loss functions (`loss_functions`); default by task kind.

    Returns:
      losses: float32 [K], exactly 0 for a task with no weighted row.
      present: bool [K], whether task k has at least one row with weight > 0.
    """
    check_outputs(logits, tasks)
    fns = loss_functions(tasks) if fns is None else tuple(fns)
    if len(fns) != len(tasks):
        raise ValueError(f"{len(fns)} loss functions for {len(tasks)} tasks")
    slices = task_slices(tasks)
    counts_BxK = has_task & (weight > 0)[:, None]
    columns = []
    for k, (task, fn) in enumerate(zip(tasks, fns)):
        rows_B = counts_BxK[:, k]
        # targets of rows that do not count are zeroed, so neither the loss nor its
        # gradient can see a NaN there
        y_BxC = jnp.where(rows_B[:, None], y[:, slices[task.name]], 0.0)
        columns.append(fn(logits[task.name], y_BxC))
    losses_BxK = jnp.stack(columns, axis=1)
    means_K = masked_task_means(losses_BxK, has_task, weight)
    present_K = counts_BxK.any(0)
    return jnp.where(present_K, means_K, 0.0), present_K


# ----------------------------------------------------------------------------------------
# The combiners, re-exported: `mt.losses.pcgrad()` and friends are the names of the contract
# (DESIGN.md); their home is `mtjax.train.combiners`.

from mtjax.train import combiners  # noqa: E402
from mtjax.train.combiners import *  # noqa: E402, F403

__all__ = [
    "binary_cross_entropy",
    "check_outputs",
    "default_loss",
    "loss_functions",
    "masked_task_means",
    "multilabel_cross_entropy",
    "softmax_cross_entropy",
    "task_losses",
    *combiners.__all__,
]
