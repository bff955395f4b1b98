"""Plain-text summary tables of datasets and folds, for the terminal."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mtjax.data import values
from mtjax.data.values import Split, TaskDataset
from mtjax.tables import table


def parts(value: TaskDataset | Split) -> dict[str, TaskDataset]:
    """The parts of one read dataset by name: "all", or its Split's train, validation, test."""
    if not isinstance(value, Split):
        return {"all": value}
    sides = {"train": value.train, "validation": value.validation, "test": value.test}
    parts = {}
    for side, part in sides.items():
        if part is None:
            continue
        if not isinstance(part, TaskDataset):
            raise TypeError(
                f"datasets_table: the {side} side of a Split must be a TaskDataset (as `read` "
                f"returns it), got {type(part).__name__}"
            )
        parts[side] = part
    return parts


def datasets_table(datasets: Sequence[TaskDataset | Split]) -> str:
    """One row per dataset: tasks and kinds, clips per predefined part, how it is split."""
    rows = []
    for value in datasets:
        sides = parts(value)
        first = next(iter(sides.values()))
        tasks = ", ".join(f"{t.name} ({t.kind}, {len(t.labels)})" for t in first.tasks)
        clips = " / ".join(f"{name} {len(part)}" for name, part in sides.items())
        if isinstance(value, Split):
            how = "predefined split"
        elif np.any(first.folds >= 0):
            how = f"{len(np.unique(first.folds[first.folds >= 0]))} predefined folds"
        else:
            how = "k-fold"
        frames = max(part.x.shape[1] for part in sides.values())
        rows.append([first.name, tasks, clips, how, f"[<={frames}, {first.x.shape[2]}]"])
    return table(["dataset", "tasks (kind, labels)", "clips", "split", "features [T, F]"], rows)


def splits_table(splits: Sequence[Split]) -> str:
    """One row per fold and dataset: its rows on each side, and x's shape.

    The counts are the rows `fit` uses: train rows (less any validation carved from them),
    validation rows (the dataset's own, or those `splits` carved), test rows; "-" where the
    fold has no such side. Nothing else is dropped on the way to `fit`.
    """
    rows = []
    for fold, split in enumerate(splits):
        train = values.as_multi(split.train, "splits_table: a split's train side")
        sides = [
            None if part is None else values.as_multi(part, "splits_table: a split's side")
            for part in (split.train, split.validation, split.test)
        ]
        for d, name in enumerate(train.datasets):
            counts = []
            for part in sides:
                counts.append("-" if part is None else str(int(np.sum(part.dataset_id == d))))
            rows.append([fold, name, *counts, "x".join(str(s) for s in train.x.shape[1:])])
    return table(["fold", "dataset", "train", "validation", "test", "features T x F"], rows)
