"""What the thesis examples share: their command line, reading datasets, one fold's training.

Not a public module: each example imports it from its own folder (`import _common`).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

import mtjax as mt


def parser(doc: str, *, epochs: int, folds: int) -> argparse.ArgumentParser:
    """The options every example takes; each adds its dataset paths.

    --demo runs offline on `mt.demo.make_demo(out / "data", scale=...)`, --epochs and
    --folds default to the paper's settings (the demo's to tiny ones).
    """
    p = argparse.ArgumentParser(
        description=doc.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--demo", action="store_true", help="run offline on generated demo audio")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("mtjax-examples"),
        help="output folder: cache/, runs/ (and data/ with --demo)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"training epochs (default {epochs}; 3 with --demo)",
    )
    p.add_argument(
        "--folds",
        type=int,
        default=None,
        help=f"train only the first N folds (default all {folds}; 1 with --demo)",
    )
    p.add_argument("--scale", type=float, default=0.3, help="demo dataset size factor")
    p.add_argument("--jobs", type=int, default=None, help="extraction processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(paper_epochs=epochs, paper_folds=folds)
    return p


def finish(args: argparse.Namespace) -> argparse.Namespace:
    """Fills in --epochs and --folds: the paper's values, or tiny ones with --demo."""
    if args.epochs is None:
        args.epochs = 3 if args.demo else args.paper_epochs
    if args.folds is None:
        args.folds = 1 if args.demo else args.paper_folds
    return args


def demo_readers(args: argparse.Namespace) -> dict[str, mt.readers.Reader]:
    """The demo datasets, made under `out/data`, as {"commands", "sounds", "tagged"} readers."""
    paths = mt.demo.make_demo(args.out / "data", seed=args.seed, scale=args.scale)
    return {r.name: r for r in mt.demo.demo_readers(paths)}


def read_all(
    readers: Mapping[str, Any], extraction: Any, args: argparse.Namespace, *, folds: int
) -> dict[str, mt.TaskDataset | mt.Split]:
    """Each reader through the feature cache `out/cache`, its predefined folds kept only when
    there are exactly `folds` of them (else `mt.splits` splits it `folds`-fold, grouped)."""
    out = {}
    for name, reader in readers.items():
        value = mt.read(
            reader, extraction, cache=args.out / "cache", n_jobs=args.jobs, progress=not args.quiet
        )
        out[name] = value if isinstance(value, mt.Split) else keep_folds(value, folds)
    return out


def keep_folds(ds: mt.TaskDataset, folds: int) -> mt.TaskDataset:
    """`ds` with its predefined folds when it has exactly `folds` of them, else none."""
    found = np.unique(ds.folds[ds.folds >= 0])
    if len(found) in (0, folds):
        return ds
    print(f"{ds.name}: {len(found)} predefined folds, not {folds}: split {folds}-fold instead")
    return ds.replace(folds=np.full(len(ds), -1, np.int32))


def fit_fold(
    model: Any,
    split: mt.Split,
    args: argparse.Namespace,
    *,
    run: mt.Run | None = None,
    **settings: Any,
) -> tuple[Any, dict]:
    """`mt.fit` on one prepared fold, then its test reports.

    The fold's validation part (every dataset's own, or carved from its train part by
    `mt.splits`) drives early stopping and the choice of epoch.
    """
    if split.test is None:
        raise ValueError("fit_fold: the fold has no test side to report")
    trained = mt.fit(
        model,
        split.train,
        split.test,
        validation=split.validation,
        epochs=args.epochs,
        seed=args.seed,
        run=run,
        progress=not args.quiet,
        **settings,
    )
    return trained, mt.evaluate(trained, split.test)


def task_view(value: Any, task: str, *, name: str) -> Any:
    """One task of a dataset (or of each part of a Split) as a dataset of its own.

    Rows, features, groups and folds are shared, so views of one dataset read once (and
    given one set of folds) can be combined like separate datasets.
    """
    if isinstance(value, mt.Split):
        return value.map(lambda ds: task_view(ds, task, name=name))
    names = [t.name for t in value.tasks]
    if task not in names:
        raise ValueError(f"dataset {value.name!r} has no task {task!r}; tasks: {names}")
    k = names.index(task)
    return value.replace(
        y=np.asarray(value.y)[:, value.task_slices[task]],
        has_task=np.asarray(value.has_task)[:, k : k + 1],
        tasks=(value.tasks[k],),
        name=name,
    )


def record_fold(run: mt.Run, group: str, fold: int) -> None:
    """Adds "group" and "fold" to a run's config.json, so `mt.runs.compare` reports the folds
    of one group as mean ± std (what `mtjax run` does)."""
    config = mt.runs.read_config(run)
    config.update(group=group, fold=fold)
    mt.runs.write_config(run, config)
