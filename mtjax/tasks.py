"""Tasks: what a dataset's labels mean and how they become target columns.

A binary task has one column (1.0 for its positive label), a multiclass task one
column per label (one-hot), a multilabel task one column per label (any number set).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

from mtjax.files import file_part

KINDS = ("binary", "multiclass", "multilabel")


class LabelError(ValueError):
    """A label that is not one of its task's labels."""


@dataclasses.dataclass(frozen=True)
class Task:
    """A labelled task.

    Attributes:
      name: unique name; two datasets with a task of the same name and labels share it.
      labels: the task's labels, in column order. A binary task has two, negative first.
      kind: "binary", "multiclass" or "multilabel".
    """

    name: str
    labels: tuple[str, ...]
    kind: str = "multiclass"

    def __post_init__(self):
        object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))
        if not self.name:
            raise ValueError("a task needs a non-empty name")
        file_part(self.name, "task name")  # it names report files and plots
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"task {self.name!r}: labels repeat: {self.labels}")
        if self.kind == "binary" and len(self.labels) != 2:
            raise ValueError(
                f"task {self.name!r}: a binary task has exactly two labels (negative, positive),"
                f" got {self.labels}"
            )
        if self.kind == "multiclass" and len(self.labels) < 2:
            raise ValueError(f"task {self.name!r}: a multiclass task needs at least two labels")
        if self.kind == "multilabel" and not self.labels:
            raise ValueError(f"task {self.name!r}: a multilabel task needs labels")

    @property
    def n_columns(self) -> int:
        """Number of target columns: 1 for binary, one per label otherwise."""
        return 1 if self.kind == "binary" else len(self.labels)

    def index(self, label: str) -> int:
        """Position of `label` in `labels`; raises LabelError naming the known labels."""
        try:
            return self.labels.index(str(label))
        except ValueError:
            raise LabelError(
                f"label {label!r} is not in task {self.name!r}; known labels: {list(self.labels)}"
            ) from None

    def encode(self, labels: str | Sequence[str]) -> np.ndarray:
        """Target columns for one sample.

        Args:
          labels: one label (binary, multiclass) or a sequence of labels (any kind;
            single-label kinds need exactly one).

        Returns:
          float32 [n_columns].
        """
        chosen = (labels,) if isinstance(labels, str) else tuple(labels)
        row = np.zeros([self.n_columns], np.float32)
        if self.kind != "multilabel" and len(chosen) != 1:
            raise LabelError(
                f"task {self.name!r} is {self.kind}: one label per sample, got {list(chosen)}"
            )
        for label in chosen:
            i = self.index(label)
            if self.kind == "binary":
                row[0] = float(i == 1)
            else:
                row[i] = 1.0
        return row

    def encode_many(self, samples: Iterable[str | Sequence[str]]) -> np.ndarray:
        """float32 [N, n_columns] for N samples' labels."""
        rows = [self.encode(s) for s in samples]
        return np.stack(rows) if rows else np.zeros([0, self.n_columns], np.float32)

    def class_ids(self, y: np.ndarray) -> np.ndarray:
        """Class index, int [N], from this task's columns (binary, multiclass only)."""
        if self.kind == "multilabel":
            raise ValueError(f"task {self.name!r} is multilabel: it has no single class per sample")
        y = np.asarray(y)
        return (y[:, 0] > 0.5).astype(np.int64) if self.kind == "binary" else y.argmax(-1)

    def to_json(self) -> dict:
        """`{"name", "labels", "kind"}` as JSON values; `from_json` turns it back."""
        return {"name": self.name, "labels": list(self.labels), "kind": self.kind}

    @classmethod
    def from_json(cls, d: dict) -> Task:
        """The task a `to_json` dict describes."""
        return cls(name=d["name"], labels=tuple(d["labels"]), kind=d["kind"])


def task_slices(tasks: Sequence[Task]) -> dict[str, slice]:
    """Column slice of each task in the concatenated target matrix `y` [N, sum of columns]."""
    out, start = {}, 0
    for t in tasks:
        out[t.name] = slice(start, start + t.n_columns)
        start += t.n_columns
    return out
