"""Batch schedules: which rows of the training data each step sees, one epoch at a time.

A schedule is any function `(key, data, batch_size) -> Batches`: `key` a JAX PRNG key (typed
or raw uint32), `data` a `MultiTaskData` (or a `TaskDataset`); the answer gives the row
indices and weights of every step of one epoch, each batch of shape [B]. The trainer draws
epoch `e` with `jax.random.fold_in(key, e)` and checks a user's schedule with
`check_batches`. Schedules run on the host in numpy, a few vectorized calls per epoch. Your
own needs no base class; `generator` and `cut` are the built-in ones' pieces, e.g.:

    def in_order(key, data, batch_size):
        return mt.batching.cut(np.arange(len(data)), batch_size)

Built in, each a factory returning a schedule, as optax's optimizers are (`SCHEDULES`, or
by name with `schedule_from_config`):
  mixed()                       every row once per epoch, datasets mixed in each batch.
  per_dataset()                 every row once per epoch, each batch from one dataset only.
  every_task()                  every dataset (so every task) in every step, small ones
                                cycled; what gradient-level combiners need.
  balanced(per=, steps=)        each batch shared equally by the datasets (or tasks), small
                                ones cycled.
  proportional(T, steps=)       each row's dataset drawn with probability ∝ size^(1/T),
                                small ones cycled.
A factory given bare (`fit(batches=mixed)`) means its default schedule (`as_schedule`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from mtjax.data.values import MultiTaskData, TaskDataset

Data = MultiTaskData | TaskDataset


class Batches(NamedTuple):
    """One epoch of batches: S steps of B rows each.

    Attributes:
      index: int32 [S, B], rows of the data for each step; padding rows point at a valid row.
      weight: float32 [S, B], 1 for real rows, 0 for padding.
    """

    index: np.ndarray  # type: ignore[assignment]  # the field, not tuple.index
    weight: np.ndarray


Schedule = Callable[[jax.Array, Data, int], Batches]


# Helpers


def generator(key: jax.Array) -> np.random.Generator:
    """A numpy Generator seeded by the bits of one JAX PRNG key, typed or raw uint32.

    Raises:
      ValueError for anything but one key (a batch of keys, say).
    """
    if isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    bits = np.asarray(jax.device_get(key))
    if bits.dtype != np.uint32 or bits.ndim != 1:
        raise ValueError(
            "a schedule takes one PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)), "
            f"got an array of dtype {bits.dtype} and shape {bits.shape}"
        )
    return np.random.default_rng(bits.tolist())


def _is_count(value: Any) -> bool:
    """Whether `value` is an integer >= 1 (bools excluded)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and bool(value >= 1)


def _check_size(data: Data, batch_size: int, name: str) -> int:
    """The row count N of `data`, after checking that N >= 1 and `batch_size` >= 1."""
    if not _is_count(batch_size):
        raise ValueError(f"{name}: batch_size must be an integer >= 1, got {batch_size!r}")
    if len(data) == 0:
        raise ValueError(f"{name}: the data have no rows")
    return len(data)


def _steps(steps: int | None, n_rows: int, batch_size: int, name: str) -> int:
    """`steps`, or ceil(N / B) when None, checked to be an integer >= 1."""
    if steps is None:
        return -(-n_rows // batch_size)
    if not _is_count(steps):
        raise ValueError(f"{name}: steps must be an integer >= 1 or None, got {steps!r}")
    return int(steps)


def _datasets(data: Data) -> tuple[list[np.ndarray], tuple[str, ...]]:
    """The rows of each dataset and the datasets' names (a TaskDataset is one dataset)."""
    if isinstance(data, TaskDataset):
        return [np.arange(len(data))], (data.name,)
    dataset_id = np.asarray(data.dataset_id, np.int64)
    return [np.flatnonzero(dataset_id == d) for d in range(len(data.datasets))], data.datasets


def _members(group_of: np.ndarray) -> list[np.ndarray]:
    """Rows of each group, from a bool [N, G] membership matrix."""
    return [np.flatnonzero(group_of[:, g]) for g in range(group_of.shape[1])]


def cut(rows: np.ndarray, batch_size: int) -> Batches:
    """Rows in order (int [n], n >= 1) cut into batches of B: every row once.

    Returns:
      index, weight [ceil(n / B), B]; the padding slots of the last batch repeat its last
      row with weight 0.
    """
    n_steps = -(-rows.size // batch_size)
    pad = n_steps * batch_size - rows.size
    index = np.concatenate([rows, np.full(pad, rows[-1])]).astype(np.int32)
    weight = (np.arange(n_steps * batch_size) < rows.size).astype(np.float32)
    return Batches(index.reshape(n_steps, batch_size), weight.reshape(n_steps, batch_size))


def _cycle(rng: np.random.Generator, rows: np.ndarray, count: int) -> np.ndarray:
    """`count` draws from `rows` by fresh permutations end to end.

    No row repeats until every row has been drawn, so after any prefix the draws of two
    rows differ by <= 1.
    """
    reps = -(-count // rows.size)
    return rng.permuted(np.tile(rows, (reps, 1)), axis=1).reshape(-1)[:count]


def _fill(rng: np.random.Generator, group_SxB: np.ndarray, members: list[np.ndarray]) -> Batches:
    """Batches whose slot (s, b) holds a row of group `group_SxB[s, b]`; every weight 1.

    Each group's rows are cycled (see `_cycle`) in step order.
    """
    flat = group_SxB.reshape(-1)
    counts = np.bincount(flat, minlength=len(members))
    draws = [_cycle(rng, rows, int(c)) for rows, c in zip(members, counts) if c]
    index = np.empty(flat.size, np.int32)
    index[np.argsort(flat, kind="stable")] = np.concatenate(draws)
    return Batches(index.reshape(group_SxB.shape), np.ones(group_SxB.shape, np.float32))


def _equal_shares(
    rng: np.random.Generator, n_groups: int, n_steps: int, batch_size: int
) -> np.ndarray:
    """The group of each slot, int [S, B]: an equal share for every group in every step.

    B // G slots go to every group in every step, and the B % G remaining slots
    round-robin (in a seeded order) to distinct groups, so a group's slots differ by at
    most 1 between groups in a step and in total.
    """
    base = np.repeat(np.arange(n_groups), batch_size // n_groups)
    extra = batch_size % n_groups
    turn = np.arange(n_steps)[:, None] * extra + np.arange(extra)[None, :]  # [S, r]
    extras = rng.permutation(n_groups)[turn % n_groups]
    return np.concatenate([np.broadcast_to(base, (n_steps, base.size)), extras], axis=1)


# Schedules


def _named(schedule: Schedule, factory: Callable[..., Schedule], **options: Any) -> Schedule:
    """`schedule` named after the call that made it, e.g. "balanced(per='task')".

    Options at their defaults are left out, so `mixed()` is "mixed" as the bare factory
    is, and a run's config.json says which schedule it trained with.
    """
    defaults = inspect.signature(factory).parameters
    shown = ", ".join(f"{k}={v!r}" for k, v in options.items() if v != defaults[k].default)
    name = f"{factory.__name__}({shown})" if shown else factory.__name__
    schedule.__name__ = schedule.__qualname__ = name
    return schedule


def mixed() -> Schedule:
    """A schedule of a random permutation of all rows, cut: every row once per epoch.

    Returns:
      A schedule `(key, data, batch_size) -> Batches` with index, weight
      [ceil(N / B), B]; the last batch is padded with weight-0 rows.
    """

    def schedule(key: jax.Array, data: Data, batch_size: int) -> Batches:
        n_rows = _check_size(data, batch_size, "mixed")
        return cut(generator(key).permutation(n_rows), batch_size)

    return _named(schedule, mixed)


def per_dataset() -> Schedule:
    """A schedule of batches of one dataset each, in shuffled order: every row once per epoch.

    Each dataset's rows are permuted and cut into batches (its last batch padded with
    weight-0 rows of the same dataset), then the order of all batches is shuffled. This is
    the thesis's sampler: a step sees one dataset, so its tasks' heads alone get gradients.

    Returns:
      A schedule `(key, data, batch_size) -> Batches` with index, weight [sum over
      datasets d of ceil(N_d / B), B]; `data.dataset_id` int [N] says each row's dataset
      (a TaskDataset is one dataset).
    """

    def schedule(key: jax.Array, data: Data, batch_size: int) -> Batches:
        _check_size(data, batch_size, "per_dataset")
        rng = generator(key)
        parts = [cut(rng.permutation(rows), batch_size) for rows in _datasets(data)[0] if rows.size]
        order = rng.permutation(sum(len(p.index) for p in parts))
        return Batches(*(np.concatenate(field)[order] for field in zip(*parts)))

    return _named(schedule, per_dataset)


def every_task() -> Schedule:
    """A schedule in which every step holds every dataset, and so every task of the data.

    The rule, for D non-empty datasets of N_d rows and batch size B >= D (else ValueError):
    each dataset gets share_d = B // D slots of every step, the B % D left over one each to
    the largest datasets (ties to the first); an epoch is S = max_d ceil(N_d / share_d)
    steps, the fewest that fit every row. A dataset that needs all S steps has its rows
    permuted and seen once each, its last share padded with weight-0 repeats of its last
    row; a smaller one is cycled through fresh permutations (weight 1: every row seen, none
    repeated before all have been). The slots of each step are then shuffled. Gradient-level
    combiners (PCGrad, CAGrad, MGDA, GradNorm) need several tasks per step to act.

    Returns:
      A schedule `(key, data, batch_size) -> Batches` with index, weight [S, B].
    """

    def schedule(key: jax.Array, data: Data, batch_size: int) -> Batches:
        _check_size(data, batch_size, "every_task")
        members = [rows for rows in _datasets(data)[0] if rows.size]
        if batch_size < len(members):
            raise ValueError(f"every_task: batch_size must be >= {len(members)}, the datasets")
        sizes = np.array([rows.size for rows in members])
        share = np.full(len(members), batch_size // len(members))
        share[np.argsort(-sizes, kind="stable")[: batch_size % len(members)]] += 1
        n_steps = int(np.max(-(-sizes // share)))
        rng = generator(key)
        parts = []
        for rows, b in zip(members, share.tolist()):
            if -(-rows.size // b) == n_steps:
                parts.append(cut(rng.permutation(rows), b))
            else:
                drawn = _cycle(rng, rows, n_steps * b).astype(np.int32).reshape(n_steps, b)
                parts.append(Batches(drawn, np.ones_like(drawn, np.float32)))
        index, weight = (np.concatenate(field, axis=1) for field in zip(*parts))
        order = rng.permuted(np.tile(np.arange(batch_size), (n_steps, 1)), axis=1)
        return Batches(np.take_along_axis(index, order, 1), np.take_along_axis(weight, order, 1))

    return _named(schedule, every_task)


def tasks_per_step(batches: Batches, data: Data) -> np.ndarray:
    """The number of tasks with a real (weight > 0) row in each step, int [S].

    Where it is <= 1 a gradient-level combiner sees one task alone and does what `sum` does.

    Args:
      batches: a schedule's answer for `data`, index and weight [S, B].
      data: the data, `has_task` bool [N, K].
    """
    has_task = np.asarray(data.has_task, bool)[batches.index]  # [S, B, K]
    real_SxBxK = has_task & (np.asarray(batches.weight) > 0)[:, :, None]
    return real_SxBxK.any(axis=1).sum(axis=1)


def balanced(per: str = "dataset", *, steps: int | None = None) -> Schedule:
    """A schedule of batches shared equally by the datasets (or tasks), small ones cycled.

    Each batch gives B // G slots to each of the G groups, and its B % G remaining slots to
    distinct groups, round-robin in a seeded order. A group's rows are drawn by cycling
    through fresh permutations: no row repeats in its group until all have been used.
    With per="task" a row belongs to every task it has (`has_task`), and a task's slots are
    filled from the rows carrying it, so a row with two tasks may fill a slot of each.

    Args:
      per: "dataset" (groups by `dataset_id` int [N]) or "task" (by `has_task` bool
        [N, K]), the groups that share each batch.
      steps: S, batches per epoch; default ceil(N / B).

    Returns:
      A schedule `(key, data, batch_size) -> Batches` with index, weight [S, B], every
      weight 1. It raises ValueError when a dataset (or task) of the data has no rows.
    """
    if per not in ("dataset", "task"):
        raise ValueError(f"balanced: per must be 'dataset' or 'task', got {per!r}")
    _steps(steps, 1, 1, "balanced")  # fail here, not at the first epoch

    def schedule(key: jax.Array, data: Data, batch_size: int) -> Batches:
        n_rows = _check_size(data, batch_size, "balanced")
        n_steps = _steps(steps, n_rows, batch_size, "balanced")
        if per == "dataset":
            members, names = _datasets(data)
        else:
            members = _members(np.asarray(data.has_task, bool))
            names = tuple(t.name for t in data.tasks)
        empty = [name for name, rows in zip(names, members) if not rows.size]
        if empty:
            raise ValueError(
                f"balanced: {per} {', '.join(map(repr, empty))} has no rows to give its share "
                "of each batch; drop it from the data, or use per_dataset, mixed or proportional"
            )
        rng = generator(key)
        group_SxB = _equal_shares(rng, len(members), n_steps, batch_size)
        batches = _fill(rng, group_SxB, members)
        return batches._replace(index=rng.permuted(batches.index, axis=1))

    return _named(schedule, balanced, per=per, steps=steps)


def dataset_probabilities(sizes: Sequence[int] | np.ndarray, temperature: float) -> np.ndarray:
    """Sampling probability of each dataset, p_d = size_d^(1/T) / sum_e size_e^(1/T).

    T = 1 samples in proportion to size, T -> inf approaches uniform over the non-empty
    datasets, T < 1 favours the large ones (temperature sampling, as in multilingual
    training: Arivazhagan et al. 2019, "Massively Multilingual Neural Machine Translation").

    Args:
      sizes: int [D], rows of each dataset, >= 0 and not all 0.
      temperature: T > 0 (inf allowed).

    Returns:
      float64 [D], summing to 1; exactly 0 for an empty dataset.
    """
    sizes = np.asarray(sizes, np.float64)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if sizes.ndim != 1 or np.any(sizes < 0) or not np.any(sizes > 0):
        raise ValueError(f"sizes must be [D] counts >= 0, not all 0; got {sizes.tolist()}")
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0); -inf / inf
        logits = np.where(sizes > 0, np.log(sizes) / temperature, -np.inf)
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


def proportional(temperature: float = 1.0, *, steps: int | None = None) -> Schedule:
    """A schedule drawing each row's dataset with probability ∝ size^(1/T).

    Every slot of every batch picks a dataset independently (`dataset_probabilities`);
    a dataset's rows are then drawn by cycling through fresh permutations. The epoch
    length is stated by `steps` (S; default ceil(N / B)), not implied by the datasets.

    Returns:
      A schedule `(key, data, batch_size) -> Batches`, index, weight [S, B], weights 1.
    """
    dataset_probabilities([1], temperature)  # fail here, not at the first epoch
    _steps(steps, 1, 1, "proportional")

    def schedule(key: jax.Array, data: Data, batch_size: int) -> Batches:
        n_rows = _check_size(data, batch_size, "proportional")
        n_steps = _steps(steps, n_rows, batch_size, "proportional")
        members = _datasets(data)[0]
        p_D = dataset_probabilities([rows.size for rows in members], temperature)
        rng = generator(key)
        group_SxB = rng.choice(len(members), size=(n_steps, batch_size), p=p_D)
        return _fill(rng, group_SxB, members)

    return _named(schedule, proportional, temperature=temperature, steps=steps)


# Picking by name


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "mixed": mixed,
    "per_dataset": per_dataset,
    "every_task": every_task,
    "balanced": balanced,
    "proportional": proportional,
}


def schedule_from_config(name: str, **kwargs: Any) -> Schedule:
    """The schedule `SCHEDULES[name](**kwargs)`, e.g. ("balanced", per="task", steps=100).

    Raises:
      ValueError for an unknown name (listing the known ones) or option (listing the
      schedule's options).
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; known: {', '.join(sorted(SCHEDULES))}")
    factory = SCHEDULES[name]
    options = list(inspect.signature(factory).parameters)
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise ValueError(
            f"schedule {name!r} has no option {', '.join(unknown)}; "
            f"its options: {', '.join(options) or 'none'}"
        )
    return factory(**kwargs)


def as_schedule(batches: Any) -> Schedule:
    """A schedule from a schedule, or from a built-in factory given bare.

    `fit(batches=mixed)` has always meant the default mixed schedule; a factory of
    `SCHEDULES` given where a schedule is expected is called with its defaults.

    Raises:
      TypeError for something that is not callable.
    """
    if any(batches is factory for factory in SCHEDULES.values()):
        return batches()
    if not callable(batches):
        raise TypeError(
            f"batches must be a schedule (key, data, batch_size) -> Batches, such as "
            f"mtjax.batching.mixed(); got {type(batches).__name__}"
        )
    return batches


# Checking


def check_batches(batches: Any, n_rows: int, batch_size: int) -> Batches:
    """`batches`, what a schedule returned for data of N = `n_rows` rows, checked.

    Raises:
      ValueError naming the problem: not a `Batches`, a dtype other than int32 / float32,
      a shape other than one [S, B = batch_size] for both with S >= 1, an index outside
      [0, N), or a weight outside [0, 1].
    """
    if not isinstance(batches, Batches):
        raise ValueError(
            f"a schedule must return mtjax.batching.Batches(index, weight), got "
            f"{type(batches).__name__}"
        )
    index, weight = batches
    for field, value, dtype in (("index", index, np.int32), ("weight", weight, np.float32)):
        if not isinstance(value, np.ndarray) or value.dtype != dtype:
            got = getattr(value, "dtype", type(value).__name__)
            raise ValueError(
                f"Batches.{field} must be a numpy {np.dtype(dtype)} array, got {got}; "
                f"use np.asarray(..., np.{np.dtype(dtype)})"
            )
        if value.ndim != 2 or value.shape[0] < 1 or value.shape[1] != batch_size:
            raise ValueError(
                f"Batches.{field} must have shape [S, {batch_size}] with S >= 1 steps, "
                f"got {value.shape}"
            )
    if index.shape != weight.shape:
        raise ValueError(f"Batches index {index.shape} and weight {weight.shape} differ in shape")
    bad = np.argwhere((index < 0) | (index >= n_rows))
    if bad.size:
        s, b = bad[0]
        raise ValueError(
            f"Batches.index[{s}, {b}] = {index[s, b]} is not a row of data with {n_rows} rows "
            f"(valid: 0 to {n_rows - 1}; point padding at any valid row, with weight 0)"
        )
    bad = np.argwhere(~((weight >= 0) & (weight <= 1)))
    if bad.size:
        s, b = bad[0]
        raise ValueError(f"Batches.weight[{s}, {b}] = {weight[s, b]} is not in [0, 1]")
    return batches
