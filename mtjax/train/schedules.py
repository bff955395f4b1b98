"""Batch schedules: which rows of the training data each step sees, one epoch at a time.

A schedule is any function `(key, data, batch_size) -> Batches`: `key` is a JAX PRNG key
(typed, as from `jax.random.key`, or raw uint32, as from `jax.random.PRNGKey`), `data` a
`MultiTaskData` (or a `TaskDataset`), and the answer gives the row indices and weights of
every step of one epoch, each batch of the same shape [B]. The trainer draws epoch `e` with
`jax.random.fold_in(key, e)`, moves the arrays to the device and checks a user's schedule
with `check_batches`. Schedules run on the host in numpy: a few vectorized calls per epoch,
no Python per sample. A schedule of your own needs no base class; `generator` and `cut` are
the pieces the built-in ones use, e.g. every row once, in order:

    def in_order(key, data, batch_size):
        return mt.batching.cut(np.arange(len(data)), batch_size)

Built in, each a factory returning a schedule, as optax's optimizers are (`SCHEDULES`, or
by name with `schedule_from_config`):
  mixed()                       every row once per epoch, datasets mixed in each batch.
  per_dataset()                 every row once per epoch, each batch from one dataset only.
  balanced(per=, steps=)        each batch shared equally by the datasets (or tasks), small
                                ones cycled.
  proportional(T, steps=)       each row's dataset drawn with probability ∝ size^(1/T),
                                small ones cycled.
A factory given bare where a schedule is expected (`fit(batches=mixed)`) means its default
schedule (`mixed()`); `as_schedule` does this in one place.
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
    """A numpy Generator seeded by the bits of one JAX PRNG key.

    Args:
      key: a typed key (`jax.random.key`) or a raw uint32 one (`jax.random.PRNGKey`); both
        with the same bits give the same Generator.

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


def _dataset_ids(data: Data) -> tuple[np.ndarray, tuple[str, ...]]:
    """The dataset of each row, int [N], and the names (one name for a TaskDataset)."""
    if isinstance(data, TaskDataset):
        return np.zeros(len(data), np.int64), (data.name,)
    return np.asarray(data.dataset_id, np.int64), tuple(data.datasets)


def _members(group_of: np.ndarray) -> list[np.ndarray]:
    """Rows of each group, from a bool [N, G] membership matrix."""
    return [np.flatnonzero(group_of[:, g]) for g in range(group_of.shape[1])]


def cut(rows: np.ndarray, batch_size: int) -> Batches:
    """Rows in order cut into batches: every row once, the last batch padded.

    Args:
      rows: int [n], n >= 1, rows of the data in the order the steps see them.
      batch_size: B.

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
        dataset_id, names = _dataset_ids(data)
        members = _members(dataset_id[:, None] == np.arange(len(names))[None, :])
        parts = [cut(rng.permutation(rows), batch_size) for rows in members if rows.size]
        order = rng.permutation(sum(len(p.index) for p in parts))
        return Batches(*(np.concatenate(field)[order] for field in zip(*parts)))

    return _named(schedule, per_dataset)


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
            dataset_id, names = _dataset_ids(data)
            group_of = dataset_id[:, None] == np.arange(len(names))[None, :]
        else:
            group_of, names = np.asarray(data.has_task, bool), tuple(t.name for t in data.tasks)
        members = _members(group_of)
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
    length is stated by `steps`, not implied by the largest or smallest dataset.

    Args:
      temperature: T > 0; 1 samples by size, large T approaches uniform over datasets.
      steps: S, batches per epoch; default ceil(N / B).

    Returns:
      A schedule `(key, data, batch_size) -> Batches` with index, weight [S, B], all
      weights 1.
    """
    dataset_probabilities([1], temperature)  # fail here, not at the first epoch
    _steps(steps, 1, 1, "proportional")

    def schedule(key: jax.Array, data: Data, batch_size: int) -> Batches:
        n_rows = _check_size(data, batch_size, "proportional")
        n_steps = _steps(steps, n_rows, batch_size, "proportional")
        dataset_id, names = _dataset_ids(data)
        members = _members(dataset_id[:, None] == np.arange(len(names))[None, :])
        p_D = dataset_probabilities([rows.size for rows in members], temperature)
        rng = generator(key)
        group_SxB = rng.choice(len(members), size=(n_steps, batch_size), p=p_D)
        return _fill(rng, group_SxB, members)

    return _named(schedule, proportional, temperature=temperature, steps=steps)


# Picking by name


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "mixed": mixed,
    "per_dataset": per_dataset,
    "balanced": balanced,
    "proportional": proportional,
}


def schedule_from_config(name: str, **kwargs: Any) -> Schedule:
    """The schedule `SCHEDULES[name](**kwargs)`.

    Args:
      name: a key of `SCHEDULES`.
      **kwargs: options, e.g. `per="task", steps=100` for "balanced" or
        `temperature=2.0` for "proportional".

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
    """Checks a schedule's answer before training on it.

    Args:
      batches: what a schedule returned for data of `n_rows` rows.
      n_rows: N.
      batch_size: B.

    Returns:
      `batches`, unchanged.

    Raises:
      ValueError naming the problem: not a `Batches`, a dtype other than int32 / float32,
      a shape other than one [S, B] for both with S >= 1, an index outside [0, N), or a
      weight outside [0, 1].
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
