"""Row and frame operations on datasets: pure functions, values in and values out.

Every function works on an in-memory `x` and on an out-of-core `DiskArray` alike, and
reaches `x` only through `mtjax.data.arrays`, so an out-of-core dataset is never loaded whole.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from mtjax.data import arrays, values
from mtjax.data.arrays import DiskArray
from mtjax.data.values import Data
from mtjax.tasks import LabelError, Task

FRAME_LENGTHS = ("median", "min", "max")
_LENGTH_STATISTICS: dict[str, Callable[[np.ndarray], Any]] = {
    "median": np.median,
    "min": np.min,
    "max": np.max,
}


# Naming things in errors


def find_task(ds: Data, task: str | None) -> tuple[int, Task]:
    """(position, Task) of `task` in `ds.tasks`; the first task when None."""
    names = [t.name for t in ds.tasks]
    if not names:
        raise ValueError(f"{values.describe(ds)} has no tasks")
    if task is None:
        return 0, ds.tasks[0]
    if task not in names:
        raise ValueError(f"task {task!r} is not in {values.describe(ds)}; its tasks: {names}")
    return names.index(task), ds.tasks[names.index(task)]


def label_matrix(ds: Data, k: int, task: Task) -> np.ndarray:
    """Label indicators, bool [N, L]: row n carries label l of `task` (all False without it)."""
    y = ds.y[:, ds.task_slices[task.name]]
    if task.kind == "multilabel":
        member = y > 0.5
    else:
        member = task.class_ids(y)[:, None] == np.arange(len(task.labels))[None, :]
    return member & np.asarray(ds.has_task[:, k], bool)[:, None]


def raise_nonfinite(ds: Data, rows: np.ndarray) -> None:
    """Raises ValueError naming `ds` and the ids of the first rows in `rows`."""
    raise ValueError(
        f"{values.describe(ds)}: NaN or inf features in {len(rows)} row(s), first ids "
        f"{[str(i) for i in ds.ids[rows[:5]]]}"
    )


def assert_finite(ds: Data) -> Data:
    """`ds` unchanged if every feature value is finite (streamed chunk by chunk).

    Raises:
      ValueError naming the dataset and the ids of the first rows with a NaN or inf.
    """
    bad = arrays.nonfinite_rows(ds.x)
    if bad.size:
        raise_nonfinite(ds, bad)
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


def select_tasks(ds: Data, names: Sequence[str] | str) -> Data:
    """The rows labelled for any of `names`, with only those tasks' columns.

    The single-task side of an MTL-vs-STL comparison: `select_tasks(split.train, "word")`.
    Frames past the longest remaining row are cut (a 1 s task combined with 3 s clips
    trains on 1 s of frames again).

    Args:
      ds: a TaskDataset or MultiTaskData.
      names: task names of `ds`, in the order wanted.

    Returns:
      the same kind of value: rows with at least one of the tasks, `tasks` = those tasks,
      `y` and `has_task` their columns, `x` cut to the longest row's frames (lazy for a
      DiskArray; recorded in `preparation` as a frame step).

    Raises:
      ValueError naming a task `ds` does not have, or a repeated one.
    """
    names = [names] if isinstance(names, str) else list(names)
    known = [t.name for t in ds.tasks]
    missing = [n for n in names if n not in known]
    if missing or not names or len(set(names)) != len(names):
        raise ValueError(f"select_tasks: {missing or names} must be distinct task names of {known}")
    ks = [known.index(n) for n in names]
    picked = subset(ds, np.nonzero(np.asarray(ds.has_task)[:, ks].any(axis=1))[0])
    columns = np.concatenate([np.arange(ds.y.shape[1])[ds.task_slices[n]] for n in names])
    frames = max(int(np.asarray(picked.lengths).max(initial=0)), 1)
    if frames < picked.x.shape[1]:  # no row is longer: the same as framing from the begin
        picked = frame(picked, frames)
    return picked.replace(
        y=np.asarray(picked.y)[:, columns],
        has_task=np.asarray(picked.has_task)[:, ks],
        tasks=tuple(ds.tasks[k] for k in ks),
    )


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
    k, t = find_task(ds, task)
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
    member = label_matrix(ds, k, t)
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


def check_frame_length(length: int | str) -> int | str:
    """`length` as given if it is an int >= 1 or one of FRAME_LENGTHS, else ValueError."""
    named = ", ".join(FRAME_LENGTHS)
    if isinstance(length, str):
        if length not in FRAME_LENGTHS:
            raise ValueError(f"frame length {length!r} is not an int >= 1 or one of: {named}")
        return length
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise ValueError(f"frame length {length!r} is not an int >= 1 or one of: {named}")
    return int(length)


def frame_length(ds: Data, how: int | str) -> int:
    """A frame count: `how` itself if an int, else the median (rounded), min or max length.

    A statistic of 0 (rows without frames) gives 1.
    """
    how = check_frame_length(how)
    if isinstance(how, int):
        return how
    if not len(ds):
        raise ValueError(f"{values.describe(ds)} has no rows to take a {how} length from")
    stat = _LENGTH_STATISTICS[how](ds.lengths)
    return max(int(np.rint(stat)), 1)


def _int_length(length: int, caller: str) -> int:
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise ValueError(
            f"{caller}: length must be an int >= 1, got {length!r}; resolve 'median', 'min' or"
            f" 'max' with frame_length, or use the prepare step mtjax.data.prepare.{caller}"
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
    step = {"step": "frame", "length": length, "start": start}
    return ds.replace(
        x=arrays.crop(ds.x, starts, length), lengths=lengths, preparation=(*ds.preparation, step)
    )


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
    step = max(len(rows), 1) if isinstance(ds.x, DiskArray) else arrays.chunk_rows(ds.x)
    pieces = [slice(i, i + step) for i in range(0, max(len(rows), 1), step)]
    parts = [arrays.crop(arrays.take(ds.x, rows[p]), starts[p], length) for p in pieces]
    x = parts[0] if len(parts) == 1 else arrays.concat_rows(parts, [new_lengths[p] for p in pieces])
    picked = jax.tree.map(lambda a: a[rows], ds.replace(x=None))
    record = {"step": "windows", "length": length, "hop": hop}
    return picked.replace(x=x, lengths=new_lengths, preparation=(*ds.preparation, record))
