"""From datasets to (train, test) pairs: `splits` and the prepare steps it applies.

A prepare step is made by a factory (`frame`, `windows`, `standardize`, `limit`) and is
a function `Split -> Split`. It fits whatever it needs (a frame length, scaling
statistics, a label sample) on `split.train` alone and applies the same thing to test
and validation, so nothing learned from held-out rows reaches training. What it applied
travels with the data (`preparation`, with the fitted values), so that `replay` can
prepare new rows the same way (and a run folder predicts on its own).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

from mtjax.data import arrays, ops, scaling, splitters, values
from mtjax.data.arrays import Affine
from mtjax.data.scaling import Scaler
from mtjax.data.values import Data, MultiTaskData, Split, TaskDataset

Step = Callable[[Split], Split]


def frame(length: int | str = "median", *, start: str = "begin") -> Step:
    """Prepare step: every row cut or zero-padded to one length (see `ops.frame`).

    Args:
      length: frames, or "median", "min" or "max" of the train rows' lengths.
      start: "begin" keeps each row's first frames, "center" its middle ones.
    """
    ops.check_frame_length(length)
    if start not in ("begin", "center"):
        raise ValueError(f"frame: start must be 'begin' or 'center', got {start!r}")

    def step(split: Split) -> Split:
        n_frames = ops.frame_length(split.train, length)
        return split.map(lambda ds: ops.frame(ds, n_frames, start=start))

    return step


def windows(length: int | str, hop: int | None = None) -> Step:
    """Prepare step: every row cut into windows (see `ops.windows`); `clip` maps them back.

    Args:
      length: frames per window, or "median", "min" or "max" of the train rows' lengths.
      hop: frames between window starts; default half the window (at least 1).
    """
    ops.check_frame_length(length)
    if hop is not None and hop < 1:
        raise ValueError(f"windows: hop must be >= 1, got {hop}")

    def step(split: Split) -> Split:
        n_frames = ops.frame_length(split.train, length)
        n_hop = max(n_frames // 2, 1) if hop is None else hop
        return split.map(lambda ds: ops.windows(ds, n_frames, n_hop))

    return step


def standardize(per: str = "feature", *, by_dataset: bool = False) -> Step:
    """Prepare step: `(x - mean) / std` with statistics of the train rows alone.

    Args:
      per: "feature" or "cell" (see `scaling.fit_scaler`). Per cell needs one T on every
        side: put it after `frame` or `windows`.
      by_dataset: for MultiTaskData, separate statistics for each dataset, each fitted
        on that dataset's train rows and applied to its rows on every side.
    """
    if per not in ("feature", "cell"):
        raise ValueError(f"standardize: per must be 'feature' or 'cell', got {per!r}")

    def step(split: Split) -> Split:
        train = split.train
        if not by_dataset or isinstance(train, TaskDataset):
            scaler = scaling.fit_scaler(train, per=per)
            return split.map(lambda ds: scaling.scale(ds, scaler))
        scalers = {
            name: scaling.fit_scaler(ops.subset(train, train.dataset_id == d), per=per)
            for d, name in enumerate(train.datasets)
            if np.any(train.dataset_id == d)
        }
        record = {"step": "standardize", "per": per, "by_dataset": _statistics(scalers)}
        return split.map(
            lambda ds: _scale_by_dataset(ds, scalers).replace(preparation=(*ds.preparation, record))
        )

    return step


def _statistics(scalers: Mapping[str, Scaler]) -> dict[str, dict]:
    """{dataset: {"mean", "std"}} as lists, for a "by_dataset" record."""
    records = {name: scaling.scaler_record(s) for name, s in scalers.items()}
    return {name: {"mean": r["mean"], "std": r["std"]} for name, r in records.items()}


def _scale_by_dataset(ds: MultiTaskData, scalers: Mapping[str, Scaler]) -> MultiTaskData:
    """Each dataset's rows scaled with its own scaler, looked up by dataset name.

    Raises:
      ValueError if a dataset with rows has no scaler (it had no train rows).
    """
    groups = [(name, np.nonzero(ds.dataset_id == d)[0]) for d, name in enumerate(ds.datasets)]
    groups = [(name, rows) for name, rows in groups if rows.size]
    missing = [name for name, _ in groups if name not in scalers]
    if missing:
        raise ValueError(f"standardize: datasets {missing} have no train rows to fit a scaler on")
    parts = [scaling.scale(ops.subset(ds, rows), scalers[name]) for name, rows in groups]
    if not parts:
        return ds
    x = arrays.concat_rows([p.x for p in parts], [p.lengths for p in parts])
    order = np.concatenate([rows for _, rows in groups])
    return ds.replace(x=arrays.take(x, np.argsort(order)))


def replay(ds: Data, preparation: Sequence[Mapping], *, dataset: str | None = None) -> Data:
    """New rows prepared as recorded ones were: the records of `preparation`, in order.

    The fitted values are the recorded ones (frame length, windows, scaling statistics);
    nothing is fitted on `ds`. `replay(raw_test, split.train.preparation)` gives the rows of
    `split.test` as `splits` prepared them.

    Args:
      ds: rows as read (a TaskDataset or MultiTaskData), x float32 [N, T, F].
      preparation: records (`values.Preparation`), e.g. a prepared dataset's `preparation`
        or a run's config.json "preparation".
      dataset: for records kept per dataset ("by_dataset" statistics, "per_dataset"
        steps), the dataset whose values every row gets; default: each row's own dataset
        (by its name, when recorded), else the only recorded one.

    Raises:
      ValueError naming the record (`preparation[k]`): an unknown step, missing or bad
      values, or per-dataset values without a `dataset` to choose.
    """
    for k, record in enumerate(preparation):
        what = f"preparation[{k}]"
        step = record.get("step") if isinstance(record, Mapping) else None
        try:
            if step == "frame":
                ds = ops.frame(ds, record["length"], start=record.get("start", "begin"))
            elif step == "windows":
                ds = ops.windows(ds, record["length"], record["hop"])
            elif step == "standardize" and "by_dataset" in record:
                scalers = {
                    name: scaling.record_scaler(stats, f"{what} ({name})")
                    for name, stats in dict(record["by_dataset"]).items()
                }
                ds = _replay_by_dataset(ds, scalers, dataset, what).replace(
                    preparation=(*ds.preparation, dict(record))
                )
            elif step == "standardize":
                ds = scaling.scale(ds, scaling.record_scaler(record, what))
            elif step == "per_dataset":
                each = dict(record["datasets"])
                name = _dataset_choice(ds, list(each), dataset, what)
                ds = replay(ds, each[name], dataset=name)
            else:
                raise ValueError(
                    f"{what}: unknown step {step!r}; known: frame, windows, standardize,"
                    " per_dataset"
                )
        except (KeyError, TypeError) as err:
            raise ValueError(f"{what}: a {step} record without its values ({err!r})") from None
    return ds


def folded_scaling(
    preparation: Sequence[Mapping], *, dataset: str | None = None
) -> tuple[list[dict], Affine | None]:
    """The recorded steps as (the steps that shape rows, one affine map for all scaling).

    Framing and windows then `x * mult + add` on the valid frames is what `replay` does,
    when every scaling is per feature (it commutes with framing: padding stays zero) or
    per cell after the last frame or windows step.

    Args:
      preparation: records, as for `replay`.
      dataset: as for `replay` (per-dataset records need one, or only one recorded).

    Returns:
      (the frame and windows records, in order; the Affine, float32 [1, F] or [T, F], or
      None without scaling).

    Raises:
      ValueError naming the record when scaling cannot be folded (a per-cell scaling
      followed by framing or windows) or a record is not one `replay` takes.
    """
    shaping: list[dict] = []
    folded: Affine | None = None
    per_cell = None
    for k, record in enumerate(_flat(preparation, dataset)):
        what = f"preparation[{k}]"
        step = record.get("step")
        if step in ("frame", "windows"):
            if per_cell is not None:
                raise ValueError(
                    f"{what}: {step} after the per-cell scaling of {per_cell} cannot be folded"
                    " into one scaling"
                )
            shaping.append(dict(record))
        elif step == "standardize":
            stats = record
            if "by_dataset" in record:
                each = dict(record["by_dataset"])
                stats = each[_dataset_choice(None, list(each), dataset, what)]
            affine = scaling.scaler_affine(scaling.record_scaler(stats, what))
            folded = affine if folded is None else folded.then(affine)
            per_cell = what if affine.mult.shape[0] > 1 else per_cell
        else:
            raise ValueError(f"{what}: unknown step {step!r}; known: frame, windows, standardize")
    return shaping, folded


def _flat(preparation: Sequence[Mapping], dataset: str | None) -> list[Mapping]:
    """The records with "per_dataset" ones replaced by the chosen dataset's steps."""
    out: list[Mapping] = []
    for k, record in enumerate(preparation):
        if not isinstance(record, Mapping):
            raise ValueError(f"preparation[{k}]: a record is a dict, got {record!r}")
        if record.get("step") == "per_dataset":
            each = dict(record["datasets"])
            name = _dataset_choice(None, list(each), dataset, f"preparation[{k}]")
            out += _flat(each[name], name)
        else:
            out.append(record)
    return out


def _dataset_choice(ds: Data | None, names: Sequence[str], dataset: str | None, what: str) -> str:
    """The dataset whose recorded values all rows of `ds` get (see `replay`)."""
    if dataset is not None:
        if dataset not in names:
            raise ValueError(f"{what}: dataset {dataset!r} has no recorded values; known: {names}")
        return dataset
    present = [ds.name] if isinstance(ds, TaskDataset) else []
    present = list(ds.datasets) if isinstance(ds, MultiTaskData) else present
    if len(names) == 1:
        return names[0]
    if len(present) == 1 and present[0] in names:
        return present[0]
    raise ValueError(
        f"{what}: the rows were prepared with values per dataset ({', '.join(names)}); pass"
        " dataset=... (one of them)"
    )


def _replay_by_dataset(
    ds: Data, scalers: Mapping[str, Scaler], dataset: str | None, what: str
) -> Data:
    """`ds` scaled by its rows' own datasets' scalers, else all by the chosen one."""
    if dataset is None and isinstance(ds, MultiTaskData) and set(ds.datasets) <= set(scalers):
        return _scale_by_dataset(ds, scalers)
    scaler = scalers[_dataset_choice(ds, list(scalers), dataset, what)]
    return ds.replace(x=scaling.scale(ds, scaler).x)


def limit(caps: int | Mapping[str, int], *, task: str | None = None, seed: int = 0) -> Step:
    """Prepare step: at most `caps` train rows per label (see `ops.limit_labels`).

    Test and validation are left whole.
    """

    def step(split: Split) -> Split:
        return split.replace(train=ops.limit_labels(split.train, caps, task=task, seed=seed))

    return step


def splits(
    datasets: Sequence[TaskDataset | MultiTaskData | Split],
    *,
    folds: int = 5,
    prepare: Sequence[Step] = (),
    seed: int = 0,
    validation: float | None = 0.1,
) -> Iterator[Split]:
    """One combined, prepared `Split` of MultiTaskData per fold, with validation for every task.

    Each element of `datasets` is either
      - a dataset: split k-fold. Its own predefined folds when any `folds` value is >= 0
        (then it must have exactly `folds` of them), else `splitters.kfold(ds, folds,
        seed=seed)`, stratified on its first task;
      - a `Split`: a predefined split, the same in every fold.
    Each dataset gets a validation part: a Split's own `validation` where it has one, else
    `validation` of its train part (of the fold's train part for a k-fold dataset), carved by
    `splitters.holdout`: grouped, and stratified on all the dataset's tasks jointly, so every
    task (and every label held by two or more groups) has validation rows. Those rows are
    then not trained on; the test side is never touched.
    For fold i, the train parts of all datasets are `concat`enated, and so are the test
    parts and the validation parts, then `prepare` steps run in order on the result.
    Every side lists every dataset (a dataset without a test or validation part adds
    zero rows), so train, test and validation share tasks, columns and `dataset_id`;
    test (validation) is None when no dataset has one.

    Args:
      datasets: the datasets, in the order their tasks and rows are combined.
      folds: k, for the datasets that are split.
      prepare: steps `Split -> Split`, e.g. `[frame("median"), standardize()]`.
      seed: k-fold and validation-carve seed.
      validation: the share of each dataset's train rows (in whole groups) carved out as its
        validation part where it has none of its own, in (0, 1); None or 0 carves none, and
        then only predefined validation parts make up the validation side.

    Returns:
      a lazy iterator of `folds` Splits, or of one when every element is a Split. Fold
      assignments and validation carves are checked (and computed) when `splits` is
      called, the data are combined and prepared one fold at a time.

    Raises:
      ValueError naming the dataset when its validation part cannot be carved (fewer than
      two groups, or a task labelled in fewer than two groups, among its train rows): give
      it its own validation part, or carve none (`validation=None`).
    """
    if isinstance(datasets, (TaskDataset, MultiTaskData, Split)):
        datasets = [datasets]
    datasets = list(datasets)
    if not datasets:
        raise ValueError("splits needs at least one dataset")
    steps = tuple(prepare)
    for s in steps:
        if not callable(s):
            raise TypeError(f"a prepare step is a function Split -> Split, got {s!r}")
    fraction = _validation_fraction(validation)
    plans: list[Split | tuple[TaskDataset | MultiTaskData, list]] = []
    for ds in datasets:
        if isinstance(ds, Split):
            plans.append(_carved_split(ds, fraction, seed))
        elif isinstance(ds, (TaskDataset, MultiTaskData)):
            pairs = _fold_pairs(ds, folds, seed)
            plans.append((ds, [_carved_fold(ds, pair, fraction, seed) for pair in pairs]))
        else:
            raise TypeError(
                f"splits takes TaskDataset, MultiTaskData or Split values, got {type(ds).__name__}"
            )
    n_splits = folds if any(isinstance(p, tuple) for p in plans) else 1
    return _generate(plans, n_splits, steps)


def _validation_fraction(validation: float | None) -> float | None:
    if validation is None or (not isinstance(validation, bool) and validation == 0):
        return None
    if isinstance(validation, bool) or not 0 < validation < 1:
        raise ValueError(f"splits: validation must be in (0, 1), 0 or None, got {validation!r}")
    return float(validation)


def _carve_error(err: ValueError, fraction: float) -> ValueError:
    return ValueError(f"splits(..., validation={fraction}): {err}, or carve none (validation=None)")


def _carved_split(split: Split, fraction: float | None, seed: int) -> Split:
    """`split`, its validation part carved from its train part where it has none."""
    if split.validation is not None or fraction is None:
        return split
    try:
        train, validation = splitters.holdout(split.train, fraction, seed=seed)
    except ValueError as err:
        raise _carve_error(err, fraction) from None
    return split.replace(
        train=ops.subset(split.train, train), validation=ops.subset(split.train, validation)
    )


def _carved_fold(
    ds: TaskDataset | MultiTaskData, pair: tuple, fraction: float | None, seed: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(train, validation or None, test) rows of one fold, validation carved from train."""
    train, test = pair
    if fraction is None:
        return train, None, test
    try:
        kept, validation = splitters.holdout(ds, fraction, seed=seed, rows=train)
    except ValueError as err:
        raise _carve_error(err, fraction) from None
    return kept, validation, test


def _fold_pairs(ds: TaskDataset | MultiTaskData, folds: int, seed: int) -> list:
    if not np.any(np.asarray(ds.folds) >= 0):
        return splitters.kfold(ds, folds, seed=seed)
    try:
        splitters.keep_predefined_folds(ds, folds, keep=True)
    except ValueError as err:
        raise ValueError(
            f"splits(..., folds={folds}): {err} (ds.replace(folds=np.full(len(ds), -1)))"
        ) from None
    return splitters.predefined_folds(ds)


def _generate(plans: list, n_splits: int, steps: tuple[Step, ...]) -> Iterator[Split]:
    for i in range(n_splits):
        parts = [p if isinstance(p, Split) else _fold_part(p[0], p[1], i) for p in plans]
        split = Split(
            train=values.concat([p.train for p in parts]),
            test=_side(parts, "test"),
            validation=_side(parts, "validation"),
        )
        for step in steps:
            split = step(split)
        yield split


def _fold_part(ds: TaskDataset | MultiTaskData, rows: list, i: int) -> Split:
    train, validation, test = rows[i]
    return Split(
        train=ops.subset(ds, train),
        test=ops.subset(ds, test),
        validation=None if validation is None else ops.subset(ds, validation),
    )


def _side(parts: list[Split], side: str) -> MultiTaskData | None:
    """`concat` of every part's `side`, an empty slice of its train where it has none."""
    if all(getattr(p, side) is None for p in parts):
        return None
    empty = np.zeros([0], np.int64)
    sides = [getattr(p, side) for p in parts]
    return values.concat(
        [ops.subset(p.train, empty) if s is None else s for p, s in zip(parts, sides)]
    )
