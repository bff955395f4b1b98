"""Datasets as immutable values, and the pure functions that prepare them.

Every array field is row-aligned (leading dimension N), so selecting rows is one
`jax.tree.map` over the value. `x` is either an in-memory `np.ndarray` or an
out-of-core `mtjax.arrays.DiskArray`; every function here works on both, and reaches
`x` only through `mtjax.arrays`, so an out-of-core dataset is never loaded whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from flax import struct

from mtjax.data import arrays
from mtjax.data.arrays import DiskArray
from mtjax.tasks import Task, task_slices

Preparation = tuple[dict[str, Any], ...]
"""What was applied to a dataset's `x` since it was read, in order, as JSON values.

One record per step, each a dict with "step" and its fitted values:
  {"step": "frame", "length": frames, "start": "begin" | "center"}
  {"step": "windows", "length": frames, "hop": frames}
  {"step": "standardize", "per": "feature" | "cell", "mean": [[...]], "std": [[...]]}
    (float32 values as lists shaped [1, F] or [T, F]); with separate statistics per
    dataset, "by_dataset": {dataset name: {"mean", "std"}} in place of "mean" and "std"
  {"step": "per_dataset", "datasets": {dataset name: [records]}}: datasets prepared apart
    before `concat` combined them.
Steps that only choose training rows (`limit`) leave no record. `mtjax.data.prepare.replay`
applies a record to new rows.
"""


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
      preparation: what was applied to `x` since it was read, in order, as JSON values
        (static): one record per frame, windows or scaling (see `Preparation`).
    """

    x: np.ndarray | DiskArray
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
    preparation: Preparation = struct.field(pytree_node=False, default=())

    if TYPE_CHECKING:  # `struct.dataclass` adds it at run time

        def replace(self, **changes: Any) -> TaskDataset:
            """A copy with the given fields changed."""
            ...

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
          name: the dataset's name, as errors and `concat` show it.
          extraction: key of the extraction that made `x`; `concat` requires equal keys.

        Raises:
          ValueError: NaN or inf in `x` or `y`, or targets that are not labels
            (see `_check_targets`), naming the rows; shapes that do not fit.
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
        bad = arrays.nonfinite_rows(x)
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

        has_task = column(has_task, np.ones([n, len(tasks)], bool), bool)
        if has_task.shape != (n, len(tasks)):
            raise ValueError(
                f"dataset {name!r}: has_task must be [{n}, {len(tasks)}], got {has_task.shape}"
            )
        _check_targets(y, has_task, tasks, name)
        return cls(
            x=x,
            lengths=column(lengths, np.full(n, x.shape[1]), np.int32),
            y=y,
            has_task=has_task,
            groups=column(groups, rows, np.int32),
            folds=column(folds, np.full(n, -1), np.int32),
            clip=rows,
            ids=column(ids, rows.astype(str), str),
            tasks=tasks,
            name=name,
            extraction=extraction,
        )


def _check_targets(
    y: np.ndarray, has_task: np.ndarray, tasks: Sequence[Task], name: str = "dataset"
) -> None:
    """Refuses targets that are not labels, naming the first rows and how many there are.

    Args:
      y: float [N, C], target columns in `tasks` order.
      has_task: bool [N, K], the rows each task labels.
      tasks: the K tasks.
      name: the dataset, for the message.

    Raises:
      ValueError: a NaN or inf anywhere in `y` (a masked loss of NaN is NaN); in a row a
        task labels, a value of its columns other than 0 and 1, or a multiclass row
        without exactly one 1.
    """

    def refuse(rows: np.ndarray, what: str) -> None:
        (found,) = np.nonzero(rows)
        if found.size:
            shown = ", ".join(map(str, found[:10].tolist())) + (", ..." if found.size > 10 else "")
            raise ValueError(f"dataset {name!r}: {what} in {found.size} row(s): [{shown}]")

    refuse(~np.isfinite(y).all(axis=1), "y has NaN or inf values")
    for k, (task, columns) in enumerate(zip(tasks, task_slices(tasks).values())):
        part, labelled = y[:, columns], has_task[:, k]
        refuse(
            labelled & ~((part == 0) | (part == 1)).all(axis=1),
            f"task {task.name!r}: y has values other than 0 and 1",
        )
        if task.kind == "multiclass":
            refuse(
                labelled & (part.sum(axis=1) != 1),
                f"task {task.name!r} (multiclass): y has no single 1 (one-hot)",
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
      preparation: what was applied to `x`, in order (static; see `Preparation`).
    """

    x: np.ndarray | DiskArray
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
    preparation: Preparation = struct.field(pytree_node=False, default=())

    if TYPE_CHECKING:  # `struct.dataclass` adds it at run time

        def replace(self, **changes: Any) -> MultiTaskData:
            """A copy with the given fields changed."""
            ...

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

    if TYPE_CHECKING:  # `struct.dataclass` adds it at run time

        def replace(self, **changes: Any) -> Split:
            """A copy with the given fields changed."""
            ...

    @property
    def tasks(self) -> tuple[Task, ...]:
        """The train side's tasks."""
        return self.train.tasks

    def __iter__(self) -> Iterator[TaskDataset | MultiTaskData | None]:
        """`train, test = split`, as in `for train, test in mt.splits(...)`."""
        return iter((self.train, self.test))

    def map(self, fn: Callable[[Any], Any]) -> Split:
        """Apply `fn` to every part that is present."""
        return Split(
            train=fn(self.train),
            test=None if self.test is None else fn(self.test),
            validation=None if self.validation is None else fn(self.validation),
        )


Data = TaskDataset | MultiTaskData


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
    parts = [as_multi(ds, "each dataset given to concat") for ds in datasets]
    if not parts:
        raise ValueError("concat needs at least one dataset")
    first = parts[0]
    names: list[str] = []
    tasks: dict[str, tuple[Task, str]] = {}
    for part in parts:
        if part.x.shape[2] != first.x.shape[2]:
            raise ValueError(
                f"concat: {describe(first)} has {first.x.shape[2]} features per frame but "
                f"{describe(part)} has {part.x.shape[2]}; use the same extraction"
            )
        if part.extraction != first.extraction:
            raise ValueError(
                f"concat: {describe(first)} was extracted with {first.extraction!r} but "
                f"{describe(part)} with {part.extraction!r}"
            )
        for name in part.datasets:
            if name in names:
                raise ValueError(f"concat: two datasets are named {name!r}; rename one")
            names.append(name)
        for t in part.tasks:
            seen, where = tasks.setdefault(t.name, (t, describe(part)))
            if seen != t:
                raise ValueError(
                    f"concat: task {t.name!r} of {where} has labels {list(seen.labels)} "
                    f"({seen.kind}) but in {describe(part)} {list(t.labels)} ({t.kind})"
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
        preparation=_joint_preparation(parts),
    )


def _joint_preparation(parts: Sequence[MultiTaskData]) -> Preparation:
    """The parts' common preparation; when they differ, one "per_dataset" record of each's."""
    if all(p.preparation == parts[0].preparation for p in parts):
        return parts[0].preparation
    each: dict[str, list] = {}
    for part in parts:
        inner = part.preparation
        if len(inner) == 1 and inner[0].get("step") == "per_dataset":
            each.update({name: list(steps) for name, steps in inner[0]["datasets"].items()})
        else:
            each.update({name: list(inner) for name in part.datasets})
    return ({"step": "per_dataset", "datasets": each},)


def _dense(values: np.ndarray) -> np.ndarray:
    """Dense ranks, int [N]: each value's rank among the distinct values (0, 1, ...)."""
    return np.unique(np.asarray(values), return_inverse=True)[1].reshape(-1)


def as_multi(ds: Data, what: str = "concat") -> MultiTaskData:
    """A TaskDataset as a one-dataset MultiTaskData (ids prefixed "name/").

    A MultiTaskData is returned as it is; `what` names the argument in the TypeError raised
    for anything else.
    """
    if isinstance(ds, MultiTaskData):
        return ds
    if not isinstance(ds, TaskDataset):
        raise TypeError(f"{what} must be a TaskDataset or MultiTaskData, got {type(ds).__name__}")
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
        preparation=ds.preparation,
    )


def describe(ds: Data) -> str:
    """How errors name a dataset: "dataset 'x'" or "datasets 'x+y'"."""
    if isinstance(ds, TaskDataset):
        return f"dataset {ds.name!r}"
    if len(ds.datasets) == 1:
        return f"dataset {ds.datasets[0]!r}"
    return f"datasets {'+'.join(ds.datasets)!r}" if ds.datasets else "multi-task data"
