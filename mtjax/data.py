"""Datasets as immutable values, and the pure functions that prepare them.

Every array field is row-aligned (leading dimension N), so selecting rows is one
`jax.tree.map` over the value. `x` is either an in-memory `np.ndarray` or an
out-of-core `mtjax.arrays.DiskArray`; every function here works on both, and reaches
`x` only through `mtjax.arrays`, so an out-of-core dataset is never loaded whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import numpy as np
from flax import struct

from mtjax import arrays
from mtjax.arrays import Affine, DiskArray
from mtjax.tasks import LabelError, Task, task_slices


@struct.dataclass
class TaskDataset:
    """One dataset's features and targets.

    Attributes:
      x: float32 [N, T, F], zero-padded past `lengths` (np.ndarray or DiskArray).
      lengths: int32 [N], valid frames of each row.
      y: float32 [N, C], this dataset's task columns, in `tasks` order.
      has_task: bool [N, K], whether row n is labelled for task k.
      groups: int32 [N], source id; rows of one group never land on both sides of a split.
      folds: int32 [N], predefined cross-validation fold, -1 where there is none.
      clip: int32 [N], the original clip each row came from (rows differ after `windows`).
      ids: str [N], each row's item id (path relative to the dataset root).
      tasks: the dataset's tasks (static).
      name: the dataset's name (static).
      extraction: the extraction's key (static).
    """

    x: np.ndarray
    lengths: np.ndarray
    y: np.ndarray
    has_task: np.ndarray
    groups: np.ndarray
    folds: np.ndarray
    clip: np.ndarray
    ids: np.ndarray
    tasks: tuple[Task, ...] = struct.field(pytree_node=False, default=())
    name: str = struct.field(pytree_node=False, default="dataset")
    extraction: str = struct.field(pytree_node=False, default="")

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def task_slices(self) -> dict[str, slice]:
        """Column slice of each task in `y`."""
        return task_slices(self.tasks)

    @classmethod
    def from_arrays(
        cls,
        x: np.ndarray,
        y: np.ndarray,
        tasks: Sequence[Task],
        *,
        lengths: np.ndarray | None = None,
        has_task: np.ndarray | None = None,
        groups: np.ndarray | None = None,
        folds: np.ndarray | None = None,
        ids: Sequence[str] | None = None,
        name: str = "arrays",
        extraction: str = "",
    ) -> TaskDataset:
        """A dataset from features computed elsewhere.

        Args:
          x: float [N, T, F] (or [N, F], taken as T=1), or a DiskArray (kept lazy).
          y: float [N, C] target columns in `tasks` order (see `Task.encode`).
          tasks: the tasks the columns belong to.
          lengths: int [N] in [0, T]; default T for every row (a DiskArray: its valid
            frames). In-memory frames past a row's length are set to zero.
          has_task: bool [N, K]; default all True.
          groups: int [N]; default each row its own group.
          folds: int [N] predefined folds; default none (-1).
          ids: N strings; default "0", "1", ...
        """
        if isinstance(x, DiskArray):
            if lengths is None:
                lengths = x.valid_lengths()
        else:
            x = np.asarray(x, np.float32)
            if x.ndim == 2:
                x = x[:, None, :]
            if x.ndim != 3:
                raise ValueError(f"x must be [N, T, F] or [N, F], got shape {x.shape}")
        bad = _nonfinite_rows(x)
        if bad.size:
            raise ValueError(
                f"dataset {name!r}: x has NaN or inf values in rows {bad[:10].tolist()}"
            )
        n = x.shape[0]
        tasks = tuple(tasks)
        y = np.asarray(y, np.float32).reshape(n, -1)
        n_columns = sum(t.n_columns for t in tasks)
        if y.shape[1] != n_columns:
            raise ValueError(
                f"y has {y.shape[1]} columns but tasks {[t.name for t in tasks]} need {n_columns}"
            )
        rows = np.arange(n, dtype=np.int32)
        if lengths is not None:
            lengths = np.asarray(lengths, np.int64)
            low, high = lengths.min(initial=0), lengths.max(initial=0)
            if lengths.shape != (n,) or low < 0 or high > x.shape[1]:
                raise ValueError(
                    f"dataset {name!r}: lengths must be {n} values in [0, {x.shape[1]}], got "
                    f"shape {lengths.shape}, range [{low}, {high}]"
                )
            if isinstance(x, np.ndarray):
                x = np.where(np.arange(x.shape[1])[None, :, None] < lengths[:, None, None], x, 0)
                x = x.astype(np.float32)

        def column(value, default, dtype):
            out = np.asarray(default if value is None else value, dtype)
            if out.shape[0] != n:
                raise ValueError(f"expected {n} rows, got an array of shape {out.shape}")
            return out

        return cls(
            x=x,
            lengths=column(lengths, np.full(n, x.shape[1]), np.int32),
            y=y,
            has_task=column(has_task, np.ones([n, len(tasks)], bool), bool),
            groups=column(groups, rows, np.int32),
            folds=column(folds, np.full(n, -1), np.int32),
            clip=rows,
            ids=column(ids, rows.astype(str), str),
            tasks=tasks,
            name=name,
            extraction=extraction,
        )


@struct.dataclass
class MultiTaskData:
    """Several datasets combined over the union of their task columns (see `concat`).

    Attributes:
      x: float32 [N, T, F], zero-padded past `lengths` (np.ndarray or DiskArray).
      lengths: int32 [N].
      y: float32 [N, C], columns of every task; zero where a row lacks the task.
      has_task: bool [N, K], whether row n is labelled for task k.
      dataset_id: int32 [N], index into `datasets`.
      groups: int32 [N], source id, unique across datasets.
      folds: int32 [N], predefined folds, -1 where none.
      clip: int32 [N], original clip id, unique across datasets.
      ids: str [N], "dataset/item id".
      tasks: all tasks, in column order (static).
      datasets: the combined datasets' names, indexed by `dataset_id` (static).
      extraction: the common extraction key (static).
    """

    x: np.ndarray
    lengths: np.ndarray
    y: np.ndarray
    has_task: np.ndarray
    dataset_id: np.ndarray
    groups: np.ndarray
    folds: np.ndarray
    clip: np.ndarray
    ids: np.ndarray
    tasks: tuple[Task, ...] = struct.field(pytree_node=False, default=())
    datasets: tuple[str, ...] = struct.field(pytree_node=False, default=())
    extraction: str = struct.field(pytree_node=False, default="")

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def task_slices(self) -> dict[str, slice]:
        """Column slice of each task in `y`."""
        return task_slices(self.tasks)


@struct.dataclass
class Split:
    """A train/test pair (and an optional validation set) of one kind of dataset value."""

    train: TaskDataset | MultiTaskData
    test: TaskDataset | MultiTaskData | None = None
    validation: TaskDataset | MultiTaskData | None = None

    @property
    def tasks(self) -> tuple[Task, ...]:
        return self.train.tasks

    def __iter__(self):
        """`train, test = split`, as in `for train, test in mt.splits(...)`."""
        return iter((self.train, self.test))

    def map(self, fn) -> Split:
        """Apply `fn` to every part that is present."""
        return Split(
            train=fn(self.train),
            test=None if self.test is None else fn(self.test),
            validation=None if self.validation is None else fn(self.validation),
        )


Data = TaskDataset | MultiTaskData
CHUNK_VALUES = 1 << 22  # floats per streamed chunk (16 MiB as float32)
STD_FLOOR = 1e-8  # a standard deviation below this scales by 1 (a constant feature stays put)
FRAME_LENGTHS = ("median", "min", "max")


# Naming things in errors


def _name(ds: Data) -> str:
    if isinstance(ds, TaskDataset):
        return f"dataset {ds.name!r}"
    if len(ds.datasets) == 1:
        return f"dataset {ds.datasets[0]!r}"
    return f"datasets {'+'.join(ds.datasets)!r}" if ds.datasets else "multi-task data"


def _task(ds: Data, task: str | None) -> tuple[int, Task]:
    """(position, Task) of `task` in `ds.tasks`; the first task when None."""
    names = [t.name for t in ds.tasks]
    if not names:
        raise ValueError(f"{_name(ds)} has no tasks")
    if task is None:
        return 0, ds.tasks[0]
    if task not in names:
        raise ValueError(f"task {task!r} is not in {_name(ds)}; its tasks: {names}")
    return names.index(task), ds.tasks[names.index(task)]


def _label_matrix(ds: Data, k: int, task: Task) -> np.ndarray:
    """bool [N, L]: row n carries label l of `task` (all False where it lacks the task)."""
    y = ds.y[:, ds.task_slices[task.name]]
    if task.kind == "multilabel":
        member = y > 0.5
    else:
        member = task.class_ids(y)[:, None] == np.arange(len(task.labels))[None, :]
    return member & np.asarray(ds.has_task[:, k], bool)[:, None]


def _chunk_rows(x: np.ndarray | DiskArray) -> int:
    return max(1, CHUNK_VALUES // max(1, x.shape[1] * x.shape[2]))


def _nonfinite_rows(x: np.ndarray | DiskArray) -> np.ndarray:
    """int [M] rows of `x` holding a NaN or inf, found chunk by chunk."""
    bad = [
        begin + np.nonzero(~np.isfinite(chunk).all(axis=(1, 2)))[0]
        for begin, chunk in arrays.chunks(x, _chunk_rows(x))
    ]
    return np.concatenate(bad) if bad else np.zeros([0], np.int64)


def _raise_nonfinite(ds: Data, rows: np.ndarray) -> None:
    raise ValueError(
        f"{_name(ds)}: NaN or inf features in {len(rows)} row(s), first ids "
        f"{[str(i) for i in ds.ids[rows[:5]]]}"
    )


def assert_finite(ds: Data) -> Data:
    """`ds` unchanged if every feature value is finite (streamed chunk by chunk).

    Raises:
      ValueError naming the dataset and the ids of the first rows with a NaN or inf.
    """
    bad = _nonfinite_rows(ds.x)
    if bad.size:
        _raise_nonfinite(ds, bad)
    return ds


# Selecting rows


def subset(ds: Data, rows: np.ndarray) -> Data:
    """The rows `rows` of every row-aligned field.

    Args:
      ds: a TaskDataset or MultiTaskData with N rows.
      rows: int [M] row indices (any order, repeats allowed) or a bool mask [N].

    Returns:
      the same kind of value with M rows; a DiskArray `x` stays lazy.
    """
    rows = arrays.row_index(rows, len(ds))
    picked = jax.tree.map(lambda a: a[rows], ds.replace(x=None))
    return picked.replace(x=arrays.take(ds.x, rows))


def limit_labels(
    ds: Data, caps: int | Mapping[str, int], *, task: str | None = None, seed: int = 0
) -> Data:
    """At most `caps` rows per label of one task, chosen at random.

    Rows are visited in a random order drawn from `seed`; a row is kept when every
    label it carries is still under its cap, and then counts toward each of them. For
    binary and multiclass tasks this keeps `min(count, cap)` random rows of each class;
    for a multilabel task it is a greedy choice (a row with a full label is dropped even
    if its other labels have room). Rows that lack the task, and multilabel rows with
    no label, are all kept. Original row order is preserved.

    Args:
      ds: a TaskDataset or MultiTaskData.
      caps: the most rows per label: one int for every label, or `{label: max}` (labels
        left out are not capped).
      task: the task's name; default the first task.
      seed: the order's random seed.

    Raises:
      LabelError if `caps` names a label the task does not have.
    """
    k, t = _task(ds, task)
    if isinstance(caps, Mapping):
        cap = np.full(len(t.labels), np.iinfo(np.int64).max, np.int64)
        for label, most in caps.items():
            if str(label) not in t.labels:
                raise LabelError(
                    f"limit_labels: label {label!r} is not in task {t.name!r}; "
                    f"its labels: {list(t.labels)}"
                )
            cap[t.labels.index(str(label))] = most
    else:
        cap = np.full(len(t.labels), caps, np.int64)
    if (cap < 0).any():
        raise ValueError(f"limit_labels: caps must be >= 0, got {caps!r}")
    member = _label_matrix(ds, k, t)
    has = np.asarray(ds.has_task[:, k], bool)
    keep = ~has
    counts = np.zeros(len(t.labels), np.int64)
    for n in np.random.default_rng(seed).permutation(np.nonzero(has)[0]):
        labels = np.nonzero(member[n])[0]
        if np.all(counts[labels] < cap[labels]):
            counts[labels] += 1
            keep[n] = True
    return subset(ds, keep)


# Frames


def frame_length(ds: Data, how: int | str) -> int:
    """A frame count: `how` itself if an int, else the median (rounded), min or max length.

    A statistic of 0 (rows without frames) gives 1.
    """
    if isinstance(how, (int, np.integer)) and not isinstance(how, bool):
        if how < 1:
            raise ValueError(f"a frame length must be >= 1, got {how}")
        return int(how)
    if how not in FRAME_LENGTHS:
        raise ValueError(f"frame length {how!r}: give an int or one of {FRAME_LENGTHS}")
    if not len(ds):
        raise ValueError(f"{_name(ds)} has no rows to take a {how} length from")
    stat = {"median": np.median, "min": np.min, "max": np.max}[how](ds.lengths)
    return max(int(np.rint(stat)), 1)


def _int_length(length: int, caller: str) -> int:
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise ValueError(
            f"{caller}: length must be an int >= 1, got {length!r}; resolve 'median', 'min' or"
            f" 'max' with frame_length, or use the prepare step mtjax.pipeline.{caller}"
        )
    return int(length)


def frame(ds: Data, length: int, *, start: str = "begin") -> Data:
    """Every row cut or zero-padded to `length` frames.

    Args:
      ds: x float32 [N, T, F].
      length: frames per row afterwards.
      start: "begin" keeps each row's first frames; "center" keeps the middle ones
        (start `max((lengths - length) // 2, 0)`).

    Returns:
      x float32 [N, length, F]; lengths `min(lengths - start, length)`.
    """
    length = _int_length(length, "frame")
    if start == "begin":
        starts = np.zeros(len(ds), np.int64)
    elif start == "center":
        starts = np.maximum((ds.lengths.astype(np.int64) - length) // 2, 0)
    else:
        raise ValueError(f"frame: start must be 'begin' or 'center', got {start!r}")
    lengths = np.clip(ds.lengths - starts, 0, length).astype(np.int32)
    return ds.replace(x=arrays.crop(ds.x, starts, length), lengths=lengths)


def windows(ds: Data, length: int, hop: int) -> Data:
    """Each row cut into windows of `length` frames, one every `hop` frames.

    Row n gives windows starting at 0, hop, 2 hop, ... while a whole window fits in its
    `lengths[n]` frames; the frames after the last whole window are dropped, except
    that a row shorter than `length` gives one zero-padded window (so no row vanishes).
    Every other field is repeated per window; `clip` keeps naming the original clip.

    Args:
      ds: x float32 [N, T, F].
      length: frames per window.
      hop: frames between window starts.

    Returns:
      W rows: x float32 [W, length, F], lengths int32 [W], clip int32 [W].
    """
    length, hop = _int_length(length, "windows"), int(hop)
    if hop < 1:
        raise ValueError(f"windows: hop must be >= 1, got {hop}")
    lengths = ds.lengths.astype(np.int64)
    count = np.maximum((lengths - length) // hop + 1, 1)  # int [N] windows per row
    rows = np.repeat(np.arange(len(ds)), count)
    starts = (np.arange(len(rows)) - np.repeat(np.cumsum(count) - count, count)) * hop
    new_lengths = np.clip(lengths[rows] - starts, 0, length).astype(np.int32)
    # In memory, gather a bounded number of rows at a time; a DiskArray stays one lazy view.
    step = max(len(rows), 1) if isinstance(ds.x, DiskArray) else _chunk_rows(ds.x)
    pieces = [slice(i, i + step) for i in range(0, max(len(rows), 1), step)]
    parts = [arrays.crop(arrays.take(ds.x, rows[p]), starts[p], length) for p in pieces]
    x = parts[0] if len(parts) == 1 else arrays.concat_rows(parts, [new_lengths[p] for p in pieces])
    picked = jax.tree.map(lambda a: a[rows], ds.replace(x=None))
    return picked.replace(x=x, lengths=new_lengths)


# Scaling


class Scaler(NamedTuple):
    """Standardization statistics over the valid frames of a dataset (see `fit_scaler`).

    Attributes:
      mean: float32 [1, F] (per feature) or [T, F] (per cell).
      std: float32, shaped as `mean`; population std, 1 where below `STD_FLOOR`.
      count: int64 [1] or [T], valid frames behind each row of statistics.
    """

    mean: np.ndarray
    std: np.ndarray
    count: np.ndarray


def fit_scaler(ds: Data, *, per: str = "feature") -> Scaler:
    """Mean and standard deviation of the valid frames, streamed chunk by chunk.

    Padding (frames at or past `lengths`) is left out. Chunks are merged in float64
    with the parallel-variance update of Chan, Golub & LeVeque (1979), so a DiskArray
    is read once and never held whole.

    Args:
      ds: x float32 [N, T, F], lengths int [N].
      per: "feature" (one statistic per feature, over all valid frames) or "cell" (one
        per (t, f), over the rows with t < length; a cell no row reaches gets mean 0,
        std 1).

    Raises:
      ValueError on NaN or inf features (naming the dataset and row ids), or when
      there is no valid frame.
    """
    if per not in ("feature", "cell"):
        raise ValueError(f"fit_scaler: per must be 'feature' or 'cell', got {per!r}")
    _, n_frames, n_features = ds.x.shape
    axes = (0, 1) if per == "feature" else (0,)
    cells = 1 if per == "feature" else n_frames
    count = np.zeros([cells, 1])
    mean = np.zeros([cells, n_features])
    m2 = np.zeros([cells, n_features])
    lengths = np.asarray(ds.lengths)
    for begin, chunk in arrays.chunks(ds.x, _chunk_rows(ds.x)):
        bad = np.nonzero(~np.isfinite(chunk).all(axis=(1, 2)))[0]
        if bad.size:
            _raise_nonfinite(ds, begin + bad)
        valid = np.arange(n_frames)[None, :, None] < lengths[begin : begin + len(chunk), None, None]
        values = np.where(valid, chunk, 0.0).astype(np.float64)  # [B, T, F]
        count_b = valid.sum(axes).reshape(cells, 1)
        mean_b = values.sum(axes).reshape(cells, n_features) / np.maximum(count_b, 1)
        m2_b = (np.where(valid, values - mean_b[None], 0.0) ** 2).sum(axes)
        total = count + count_b
        delta = mean_b - mean
        mean = mean + delta * count_b / np.maximum(total, 1)
        m2_b = m2_b.reshape(cells, n_features)
        m2 = m2 + m2_b + delta**2 * count * count_b / np.maximum(total, 1)
        count = total
    if not count.sum():
        raise ValueError(f"fit_scaler: {_name(ds)} has no valid frames")
    std = np.sqrt(m2 / np.maximum(count, 1))
    std = np.where(std < STD_FLOOR, 1.0, std)
    return Scaler(mean.astype(np.float32), std.astype(np.float32), count[:, 0].astype(np.int64))


def scale(ds: Data, scaler: Scaler) -> Data:
    """`(x - mean) / std` on the valid frames; padding stays zero.

    A per-cell scaler needs T to match; on a DiskArray, frame or window before scaling.
    """
    mean = np.asarray(scaler.mean, np.float32)
    std = np.asarray(scaler.std, np.float32)
    _, n_frames, n_features = ds.x.shape
    if mean.shape[1] != n_features or mean.shape[0] not in (1, n_frames):
        raise ValueError(
            f"scale: a scaler of shape {mean.shape} does not fit {_name(ds)} with "
            f"{n_frames} frames of {n_features} features"
        )
    return ds.replace(x=arrays.affine(ds.x, ds.lengths, Affine(mult=1 / std, add=-mean / std)))


# Combining


def concat(datasets: Sequence[Data] | Data) -> MultiTaskData:
    """Datasets combined row after row over the union of their task columns.

    Tasks are taken in first-seen order; a task name seen again must have the same
    labels and kind and then shares its columns. `y` is zero and `has_task` False
    where a row's dataset lacks a task. `groups` and `clip` are renumbered per dataset
    (0, 1, ... in sorted order) and offset so no two datasets share a value; `ids` get
    a "name/" prefix; `folds` are kept as they are; x is padded to the longest T.
    A MultiTaskData input keeps its own dataset names and ids.

    Args:
      datasets: TaskDatasets and/or MultiTaskData (or one of them) with the same
        feature count F and extraction key, and distinct names.

    Returns:
      MultiTaskData with N = the sum of the rows; `dataset_id` indexes `datasets`.
    """
    if isinstance(datasets, (TaskDataset, MultiTaskData)):
        datasets = [datasets]
    parts = [_as_multi(ds) for ds in datasets]
    if not parts:
        raise ValueError("concat needs at least one dataset")
    first = parts[0]
    names: list[str] = []
    tasks: dict[str, tuple[Task, str]] = {}
    for part in parts:
        if part.x.shape[2] != first.x.shape[2]:
            raise ValueError(
                f"concat: {_name(first)} has {first.x.shape[2]} features per frame but "
                f"{_name(part)} has {part.x.shape[2]}; use the same extraction"
            )
        if part.extraction != first.extraction:
            raise ValueError(
                f"concat: {_name(first)} was extracted with {first.extraction!r} but "
                f"{_name(part)} with {part.extraction!r}"
            )
        for name in part.datasets:
            if name in names:
                raise ValueError(f"concat: two datasets are named {name!r}; rename one")
            names.append(name)
        for t in part.tasks:
            seen, where = tasks.setdefault(t.name, (t, _name(part)))
            if seen != t:
                raise ValueError(
                    f"concat: task {t.name!r} of {where} has labels {list(seen.labels)} "
                    f"({seen.kind}) but in {_name(part)} {list(t.labels)} ({t.kind})"
                )
    all_tasks = tuple(t for t, _ in tasks.values())
    slices = task_slices(all_tasks)
    position = {t.name: k for k, t in enumerate(all_tasks)}
    n_columns = sum(t.n_columns for t in all_tasks)
    ys, has, dataset_id, groups, clips = [], [], [], [], []
    n_names = group_offset = clip_offset = 0
    for part in parts:
        y = np.zeros([len(part), n_columns], np.float32)
        has_task = np.zeros([len(part), len(all_tasks)], bool)
        for k, t in enumerate(part.tasks):
            y[:, slices[t.name]] = part.y[:, part.task_slices[t.name]]
            has_task[:, position[t.name]] = part.has_task[:, k]
        ys.append(y)
        has.append(has_task)
        dataset_id.append(part.dataset_id + n_names)
        n_names += len(part.datasets)
        groups.append(_dense(part.groups) + group_offset)
        clips.append(_dense(part.clip) + clip_offset)
        group_offset += len(np.unique(part.groups))
        clip_offset += len(np.unique(part.clip))
    return MultiTaskData(
        x=arrays.concat_rows([p.x for p in parts], [p.lengths for p in parts]),
        lengths=np.concatenate([p.lengths for p in parts]).astype(np.int32),
        y=np.concatenate(ys),
        has_task=np.concatenate(has),
        dataset_id=np.concatenate(dataset_id).astype(np.int32),
        groups=np.concatenate(groups).astype(np.int32),
        folds=np.concatenate([p.folds for p in parts]).astype(np.int32),
        clip=np.concatenate(clips).astype(np.int32),
        ids=np.concatenate([p.ids.astype(str) for p in parts]),
        tasks=all_tasks,
        datasets=tuple(names),
        extraction=first.extraction,
    )


def _dense(values: np.ndarray) -> np.ndarray:
    """int [N]: each value's rank among the distinct values (0, 1, ...)."""
    return np.unique(np.asarray(values), return_inverse=True)[1].reshape(-1)


def _as_multi(ds: Data) -> MultiTaskData:
    """A TaskDataset as a one-dataset MultiTaskData (ids prefixed "name/")."""
    if isinstance(ds, MultiTaskData):
        return ds
    if not isinstance(ds, TaskDataset):
        raise TypeError(f"concat takes TaskDataset or MultiTaskData, got {type(ds).__name__}")
    return MultiTaskData(
        x=ds.x,
        lengths=ds.lengths,
        y=ds.y,
        has_task=ds.has_task,
        dataset_id=np.zeros(len(ds), np.int32),
        groups=ds.groups,
        folds=ds.folds,
        clip=ds.clip,
        ids=np.char.add(f"{ds.name}/", np.asarray(ds.ids).astype(str)),
        tasks=ds.tasks,
        datasets=(ds.name,),
        extraction=ds.extraction,
    )


# Folds live in their own module; these names are part of `mtjax.data`'s API.
from mtjax.folds import kfold, predefined_folds  # noqa: E402, F401
