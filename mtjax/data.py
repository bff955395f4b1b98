"""Datasets as immutable values, and the pure functions that prepare them.

Every array field is row-aligned (leading dimension N), so selecting rows is one
`jax.tree.map` over the value. `x` is either an in-memory `np.ndarray` or an
out-of-core `mtjax.store.DiskArray`; every function here works on both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from flax import struct

from mtjax.tasks import Task, task_slices


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
          x: float [N, T, F] (or [N, F], taken as T=1).
          y: float [N, C] target columns in `tasks` order (see `Task.encode`).
          tasks: the tasks the columns belong to.
          lengths: int [N]; default T for every row.
          has_task: bool [N, K]; default all True.
          groups: int [N]; default each row its own group.
          folds: int [N] predefined folds; default none (-1).
          ids: N strings; default "0", "1", ...
        """
        x = np.asarray(x, np.float32)
        if x.ndim == 2:
            x = x[:, None, :]
        if x.ndim != 3:
            raise ValueError(f"x must be [N, T, F] or [N, F], got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            bad = np.unique(np.nonzero(~np.isfinite(x))[0])
            raise ValueError(f"x has NaN or inf values in rows {bad[:10].tolist()}")
        n = x.shape[0]
        tasks = tuple(tasks)
        y = np.asarray(y, np.float32).reshape(n, -1)
        n_columns = sum(t.n_columns for t in tasks)
        if y.shape[1] != n_columns:
            raise ValueError(
                f"y has {y.shape[1]} columns but tasks {[t.name for t in tasks]} need {n_columns}"
            )
        rows = np.arange(n, dtype=np.int32)

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

    def map(self, fn) -> Split:
        """Apply `fn` to every part that is present."""
        return Split(
            train=fn(self.train),
            test=None if self.test is None else fn(self.test),
            validation=None if self.validation is None else fn(self.validation),
        )
