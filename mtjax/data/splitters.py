"""Cross-validation folds as index arrays, as scikit-learn's splitters give them.

Stratified on one task's labels; grouped when a `groups` value repeats, so a group never
lands on both sides; iterative stratification for multilabel tasks.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from mtjax.data import ops, values
from mtjax.data.values import Data


def kfold(
    ds: Data, k: int, *, seed: int = 0, task: str | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold (train, test) row indices, as scikit-learn's splitters give.

    Stratified on one task's labels. Binary and multiclass: scikit-learn's
    `StratifiedKFold(shuffle=True, random_state=seed)` on the class of each row, or
    `StratifiedGroupKFold` when a `groups` value repeats. Multilabel: iterative
    stratification (Sechidis, Tsoumakas & Vlahavas, 2011), with each group a unit whose
    label counts are its rows' summed, seeded. Rows lacking the task are stratified as
    a class of their own. A group never lands on both sides.

    Args:
      ds: a TaskDataset or MultiTaskData with N rows.
      k: number of folds, >= 2.
      seed: shuffling seed; the folds are a function of (ds, k, seed, task).
      task: the task to stratify on; default the first.

    Returns:
      k pairs (train int64 [N - M_i], test int64 [M_i]), sorted; the tests partition N.

    Raises:
      ValueError if k < 2, if there are fewer rows (or groups) than k, or if a label
      present in the task has fewer rows (or groups) than k, naming the label.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"kfold: k must be an int >= 2, got {k!r}")
    ti, t = ops.find_task(ds, task)
    member = ops.label_matrix(ds, ti, t)
    has = np.asarray(ds.has_task[:, ti], bool)
    _, group = np.unique(np.asarray(ds.groups), return_inverse=True)
    n_groups = int(group.max()) + 1 if len(group) else 0
    grouped = n_groups < len(ds)
    unit = "groups" if grouped else "clips"
    if n_groups < k:
        raise ValueError(
            f"kfold: {values.describe(ds)} has {n_groups} {unit}, fewer than {k} folds"
        )
    for j, label in enumerate(t.labels):
        count = len(np.unique(group[member[:, j]]))
        if 0 < count < k:
            raise ValueError(
                f"kfold: label {label!r} of task {t.name!r} has {count} {unit}, "
                f"fewer than {k} folds"
            )
    if t.kind == "multilabel":
        fold = _iterative_folds(member, has, group, k, np.random.default_rng(seed))
        tests = [np.nonzero(fold == f)[0] for f in range(k)]
    else:
        strata = np.where(has, member.argmax(1), len(t.labels))
        if grouped:
            splitter = StratifiedGroupKFold(k, shuffle=True, random_state=seed)
        else:
            splitter = StratifiedKFold(k, shuffle=True, random_state=seed)
        with warnings.catch_warnings():  # the no-task stratum may be smaller than k
            warnings.filterwarnings("ignore", message="The least populated class")
            split = splitter.split(np.zeros(len(ds)), strata, group if grouped else None)
            tests = [np.sort(test) for _, test in split]
    every = np.arange(len(ds))
    if any(len(test) == 0 for test in tests):
        raise ValueError(
            f"kfold: {values.describe(ds)} cannot fill {k} test folds; use fewer folds"
        )
    return [(np.setdiff1d(every, test), test.astype(np.int64)) for test in tests]


def _iterative_folds(
    member: np.ndarray, has: np.ndarray, group: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """Fold of each row, int [N], by iterative stratification over groups.

    Sechidis et al. (2011), Algorithm 1, with groups as the units: repeatedly take the
    label with the fewest unassigned units (ties at random) and give each unit carrying
    it (in a seeded random order) to the fold that most wants that label, ties broken by
    the fold that most wants rows, then at random. Rows lacking the task count as one
    more label; units with no label at all go last, to the folds most short of rows.
    """
    labels = np.concatenate([member, ~has[:, None]], 1).astype(np.int64)  # [N, L + 1]
    n_units = int(group.max()) + 1
    counts = np.zeros([n_units, labels.shape[1]], np.int64)
    np.add.at(counts, group, labels)
    sizes = np.bincount(group, minlength=n_units)
    want_label = np.tile(counts.sum(0) / k, (k, 1))  # [k, L + 1] rows each fold still wants
    want_rows = np.full(k, len(group) / k)
    fold = np.full(n_units, -1)
    order = rng.permutation(n_units)
    remaining = (counts > 0).sum(0)  # unassigned units carrying each label

    def assign(u: int, f: int) -> None:
        fold[u] = f
        want_label[f] -= counts[u]
        want_rows[f] -= sizes[u]
        remaining[:] -= counts[u] > 0

    def best(first: np.ndarray, second: np.ndarray) -> int:
        folds = np.flatnonzero(first == first.max())
        folds = folds[second[folds] == second[folds].max()]
        return int(folds[0] if len(folds) == 1 else rng.choice(folds))

    while remaining.any():
        left = np.where(remaining > 0, remaining, np.iinfo(np.int64).max)
        label = rng.choice(np.flatnonzero(left == left.min()))
        for u in order[(fold[order] < 0) & (counts[order, label] > 0)]:
            assign(u, best(want_label[:, label], want_rows))
    for u in order[fold[order] < 0]:
        assign(u, best(want_rows, want_rows))
    return fold[group]


def predefined_folds(ds: Data) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) row indices from the dataset's own `folds`, one per fold in order.

    The test side of fold f is every row with `folds == f`; the train side is every
    other row, including rows with no predefined fold (-1), which are never tested.

    Raises:
      ValueError if no row has a fold.
    """
    folds = np.asarray(ds.folds)
    names = np.unique(folds[folds >= 0])
    if not names.size:
        raise ValueError(
            f"{values.describe(ds)} has no predefined folds (every `folds` value is -1)"
        )
    return [(np.nonzero(folds != f)[0], np.nonzero(folds == f)[0]) for f in names]


def keep_predefined_folds(ds: Data, k: int, keep: bool | str = True) -> Data:
    """`ds` with its predefined folds kept for a k-fold run, or dropped (all -1).

    The rule of `splits` and of experiment files: predefined folds are used as they are, so
    their count must be k.

    Args:
      ds: a dataset; one without predefined folds comes back unchanged.
      k: the number of folds of the run.
      keep: True keeps them (ValueError when there are not k of them), False drops them,
        "auto" keeps them when there are k and drops them otherwise.

    Raises:
      ValueError naming the dataset and both counts, when `keep` is True and they differ.
    """
    folds = np.asarray(ds.folds)
    found = len(np.unique(folds[folds >= 0]))
    if not found:
        return ds
    if keep not in (True, False, "auto"):
        raise ValueError(f'keep must be True, False or "auto", got {keep!r}')
    if keep is True and found != k:
        raise ValueError(
            f"{values.describe(ds)} has {found} predefined folds but the run has {k} folds; "
            f"use {found} folds, or drop its folds to split it {k}-fold"
        )
    if keep is False or (keep == "auto" and found != k):
        return ds.replace(folds=np.full(len(ds), -1, np.int32))
    return ds
