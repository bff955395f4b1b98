"""Cross-validation folds and validation carves as index arrays, as scikit-learn gives them.

`kfold` is stratified on one task's labels; `holdout` carves each dataset's validation rows,
stratified on all its tasks jointly. Both are grouped when a `groups` value repeats, so a
group never lands on both sides, and use iterative stratification where labels overlap.
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
        labels = np.concatenate([member, ~has[:, None]], 1)
        unit_fold = _iterative_folds(labels, group, np.full(k, 1 / k), np.random.default_rng(seed))
        fold = unit_fold[group]
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
    labels: np.ndarray, group: np.ndarray, share: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Fold of each unit (group), int [U], by iterative stratification over groups.

    Sechidis et al. (2011), Algorithm 1, with groups as the units and fold f wanting the
    share `share[f]` of every label's rows: repeatedly take the label with the fewest
    unassigned units (ties at random) and give each unit carrying it (in a seeded random
    order) to the fold that most wants that label, ties broken by the fold that most wants
    rows, then at random. Units with no label at all go last, to the folds most short of
    rows.

    Args:
      labels: bool [N, L], the labels of each row (callers add a column for rows lacking a
        task, so those spread too).
      group: int [N], dense unit ids 0 .. U - 1.
      share: float [k], each fold's share of the rows, summing to 1.
      rng: the seeded generator that breaks ties and orders the units.
    """
    n_units = int(group.max()) + 1
    counts = np.zeros([n_units, labels.shape[1]], np.int64)
    np.add.at(counts, group, labels.astype(np.int64))
    sizes = np.bincount(group, minlength=n_units)
    want_label = share[:, None] * counts.sum(0)[None, :]  # [k, L] rows each fold still wants
    want_rows = share * len(group)
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
    return fold


def holdout(
    ds: Data, fraction: float = 0.1, *, seed: int = 0, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) row indices: each dataset's validation rows, carved from `rows`.

    Each dataset in `ds` (the one of a TaskDataset, every `dataset_id` of MultiTaskData) is
    carved on its own from its rows among `rows`. Its groups are split `1 - fraction` :
    `fraction` by iterative stratification (Sechidis et al., 2011) over the label matrix of
    all its tasks together: one column per class of a binary or multiclass task, one per
    label of a multilabel task, and one for the rows lacking each task. So the validation
    side gets its share of every task and label of the dataset, not of the first task only,
    and a group never lands on both sides. Then every task of the dataset, and every label
    held by two or more of its groups, is put on both sides: where a side lacks one, a group
    carrying it moves there (the smallest whose move leaves no label of its old side empty).
    A label held by one group stays in train.

    Args:
      ds: a TaskDataset or MultiTaskData with N rows.
      fraction: each dataset's share of rows (in whole groups) for validation, in (0, 1).
      seed: the carve of a dataset is a function of (its rows, fraction, seed).
      rows: int [M] row indices to carve from (a fold's train side); default all N rows.

    Returns:
      (train int64 [M - V], validation int64 [V]): sorted indices into `ds` that partition
      `rows`.

    Raises:
      ValueError naming the dataset when it has fewer than two groups among `rows`, or a
      task of it is labelled in fewer than two of them: no validation part can be carved
      from it (give it its own, e.g. `Split(train, test, validation)`).
    """
    if isinstance(fraction, bool) or not 0 < fraction < 1:
        raise ValueError(f"holdout: fraction must be in (0, 1), got {fraction!r}")
    every = np.arange(len(ds)) if rows is None else np.unique(np.asarray(rows, np.int64))
    if isinstance(ds, values.MultiTaskData):
        dataset_id, names = np.asarray(ds.dataset_id), ds.datasets
    else:
        dataset_id, names = np.zeros(len(ds), np.int64), (ds.name,)
    picked = [np.zeros([0], np.int64)]
    for d in np.unique(dataset_id[every]):
        mine = every[dataset_id[every] == d]
        picked.append(mine[_carve(ds, mine, fraction, np.random.default_rng(seed), names[d])])
    validation = np.sort(np.concatenate(picked)).astype(np.int64)
    return np.setdiff1d(every, validation).astype(np.int64), validation


def _carve(
    ds: Data, rows: np.ndarray, fraction: float, rng: np.random.Generator, name: str
) -> np.ndarray:
    """Validation mask, bool [M], of one dataset's rows `rows` (see `holdout`)."""
    has = np.asarray(ds.has_task, bool)[rows]
    group = np.unique(np.asarray(ds.groups)[rows], return_inverse=True)[1].reshape(-1)
    n_units = int(group.max()) + 1
    needs = "a validation carve needs at least 2; give the dataset its own validation part"
    if n_units < 2:
        raise ValueError(f"dataset {name!r}: {len(rows)} row(s) in {n_units} group(s); {needs}")
    spread, cover, must, task_of = [], [], [], []
    for k, t in enumerate(ds.tasks):
        if not has[:, k].any():
            continue
        held = len(np.unique(group[has[:, k]]))
        if held < 2:
            raise ValueError(
                f"dataset {name!r}: task {t.name!r} is labelled in {held} group(s); {needs}"
            )
        member = ops.label_matrix(ds, k, t)[rows]
        spread += [member, ~has[:, k : k + 1]]
        cover += [has[:, k : k + 1], member]
        must += [True] + [False] * member.shape[1]
        task_of += [t.name] * (1 + member.shape[1])
    if not cover:  # no labels at all: rows alone
        spread = cover = [np.ones([len(rows), 1], bool)]
        must, task_of = [False], [""]
    fold = _iterative_folds(
        np.concatenate(spread, 1), group, np.array([1 - fraction, fraction]), rng
    )
    carried = np.zeros([n_units, len(must)], np.int64)
    np.add.at(carried, group, np.concatenate(cover, 1).astype(np.int64))
    sizes = np.bincount(group, minlength=n_units)
    fold = _cover_both_sides(fold, carried > 0, sizes, np.array(must), rng.permutation(n_units))
    for c in np.flatnonzero(must):
        if len(np.unique(fold[carried[:, c] > 0])) < 2:
            raise ValueError(
                f"holdout: task {task_of[c]!r} of dataset {name!r} could not be put in both "
                "train and validation; give the dataset its own validation"
            )
    return fold[group] == 1


def _cover_both_sides(
    fold: np.ndarray, carried: np.ndarray, sizes: np.ndarray, must: np.ndarray, order: np.ndarray
) -> np.ndarray:
    """`fold` (int [U], 0 train, 1 validation) with each column held on both sides.

    Columns of `carried` (bool [U, L], unit u holds column l) held by two or more units go in
    turn, `must` ones first, then the rarest. Where a side lacks a column, a unit holding it
    moves there from the other side: the one whose move leaves the fewest columns of the
    side it leaves empty, then the smallest (`sizes`, rows), then the first in `order`. A
    `must` column always gets its move; another only when the move empties nothing.
    """
    fold = fold.copy()
    held = carried.sum(0)
    for c in np.lexsort((held, ~must)):
        if held[c] < 2:
            continue
        for side in (1, 0):
            source = 1 - side
            if np.any(carried[:, c] & (fold == side)):
                continue
            left = (carried & (fold == source)[:, None]).sum(0)
            candidates = order[carried[order, c] & (fold[order] == source)]
            emptied = (carried[candidates] & (left == 1)[None, :]).sum(1)
            best = np.lexsort((sizes[candidates], emptied))[0]
            if must[c] or emptied[best] == 0:
                fold[candidates[best]] = side
    return fold


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
