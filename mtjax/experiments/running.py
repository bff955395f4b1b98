"""Running experiments: sweeps expanded, parts built by name, folds trained, commands.

`expand` gives one `Experiment` (see `mtjax.configs`, which parses the TOML files) per
sweep point, named e.g. `speech+sounds/commands+sounds/combine=pcgrad`. `run_experiment`
trains every point and fold into `Run(output, f"{name}/fold{i}")`, reading each (dataset,
extraction) once per process and preparing each fold once for all the points that share
its data. `run_command`, `report_command` and `evaluate_command` are the `mtjax run`,
`mtjax report` and `mtjax evaluate` commands.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import os
import re
import sys
import types
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtjax import tables
from mtjax.audio import cache, features
from mtjax.data import prepare
from mtjax.data.values import Split
from mtjax import runs
from mtjax.data import describe, values
from mtjax.tasks import Task
from mtjax.train import evaluation, loop, metrics

from mtjax.experiments.config import (  # noqa: F401  (public here too)
    Experiment,
    ExperimentError,
    load,
    parse,
    READERS,
    DEMO_DATASETS,
    LOSSES,
    TOP_KEYS,
    PREPARE_KEYS,
    TRAIN_KEYS,
    SWEEPABLE,
    DEFAULT_FEATURES,
    build_model,
    build_combiner,
    build_schedule,
    build_optimizer,
    build_early_stop,
    build_prepare,
    build_readers,
)
from mtjax.experiments.config import _NOT_RESUMED, _freeze, _key, _thaw  # noqa: F401

log = logging.getLogger("mtjax")


# Sweeps


def _set(config: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = config
    for part in parents:
        child = node.get(part)
        if isinstance(child, str):  # a "name" shorthand (combine = "sum"), or "default"
            child = {} if child == "default" else {"name": child}
        node[part] = child = dict(child) if isinstance(child, Mapping) else {}
        node = child
    node[last] = value


def _label(value: Any) -> str:
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, Mapping):
        rest = [f"{k}={_label(v)}" for k, v in value.items() if k != "name"]
        text = ",".join(([str(value["name"])] if "name" in value else []) + rest)
    elif isinstance(value, (list, tuple)):
        text = "-".join(_label(v) for v in value)
    else:
        text = str(value)
    return re.sub(r"[^\w.+,=-]", "_", text) or "_"


def expand(experiment: Experiment) -> list[Experiment]:
    """One experiment per point of the sweep's cross product, without a sweep.

    Names: `{name}/{datasets joined by "+"}/{key}={value}/...`, key the last part of the
    dotted path (the whole path when two sweep keys end alike). No sweep: `[experiment]`.
    """
    sweep = dict(experiment.sweep)
    base = experiment.to_dict()
    base.pop("sweep")
    if not sweep:
        return [dataclasses.replace(experiment, sweep=types.MappingProxyType({}))]
    names = [d["name"] for d in base["datasets"]]
    subsets: list[list[str] | None] = [None]
    chosen = sweep.pop("datasets", None)
    if chosen == "combinations":
        subsets = [
            list(c) for r in range(1, len(names) + 1) for c in itertools.combinations(names, r)
        ]
    elif chosen is not None:
        for i, subset in enumerate(chosen):
            for n in subset:
                if n not in names:
                    raise ExperimentError(
                        f"{experiment.source}: sweep.datasets[{i}]: no dataset"
                        f" {n!r}; datasets: {', '.join(names)}"
                    )
        subsets = [list(s) for s in chosen]
    ends = [k.split(".")[-1] for k in sweep]
    labels = [end if ends.count(end) == 1 else k for k, end in zip(sweep, ends)]
    out = []
    for subset in subsets:
        for point in itertools.product(*sweep.values()):
            config = json.loads(json.dumps(base))
            parts = [experiment.name]
            if subset is not None:
                config["datasets"] = [d for d in config["datasets"] if d["name"] in subset]
                parts.append("+".join(subset))
            for key, label, value in zip(sweep, labels, point):
                _set(config, key, value)
                parts.append(f"{label}={_label(value)}")
            config["name"] = "/".join(parts)
            try:
                out.append(parse(config, base=experiment.base, source=experiment.source))
            except ExperimentError as err:
                raise ExperimentError(f"{err} (in sweep point {config['name']})") from None
    return out


def override(experiment: Experiment, changes: Mapping[str, Any]) -> Experiment:
    """The experiment with dotted-path choices replaced, e.g. {"train.epochs": 2}."""
    config = experiment.to_dict()
    for key, value in changes.items():
        _set(config, key, value)
    return parse(config, base=experiment.base, source=experiment.source)


# Running


_READ: dict[str, Any] = {}  # (reader, extraction, read options) -> what mt.read gave


def read_datasets(experiment: Experiment, *, progress: bool = True) -> list:
    """Each dataset read through the feature cache once per process (memoised), its
    predefined folds kept or dropped as `predefined_folds` says."""
    extraction = features.from_config(_thaw(experiment.features))
    out = []
    for spec, reader in zip(experiment.datasets, build_readers(experiment)):
        key = _key(
            {
                "dataset": {k: v for k, v in spec.items() if k != "predefined_folds"},
                "root": str(reader.root),
                "extraction": extraction.to_config(),
                "cache": str(experiment.cache),
                "in_memory": experiment.in_memory,
                "max_frames": experiment.max_frames,
                "on_error": experiment.on_error,
            }
        )
        if key not in _READ:
            _READ[key] = cache.read(
                reader,
                extraction,
                cache=experiment.cache,
                n_jobs=experiment.jobs,
                in_memory=experiment.in_memory,
                max_frames=experiment.max_frames,
                on_error=experiment.on_error,
                progress=progress,
            )
        out.append(_with_folds(experiment, spec, _READ[key]))
    return out


def _with_folds(experiment: Experiment, spec: Mapping, value):
    if isinstance(value, Split):
        return value
    found = np.unique(np.asarray(value.folds)[np.asarray(value.folds) >= 0])
    if not len(found):
        return value
    keep = spec["predefined_folds"]
    if keep == "auto":
        keep = len(found) == experiment.folds
        if not keep:
            log.info(
                "%s: %d predefined folds, not %d: split %d-fold instead",
                spec["name"],
                len(found),
                experiment.folds,
                experiment.folds,
            )
    if keep is True and len(found) != experiment.folds:
        raise ExperimentError(
            f"{experiment.source}: folds: dataset {spec['name']!r} has {len(found)} predefined"
            f" folds but folds = {experiment.folds}; set folds = {len(found)}, or"
            f' predefined_folds = false (or "auto") in its [[datasets]] entry to split it'
            f" {experiment.folds}-fold"
        )
    return value if keep else value.replace(folds=np.full(len(value), -1, np.int32))


def fold_splits(experiment: Experiment, datasets: Sequence) -> Iterator[tuple[int, Any]]:
    """(fold, prepared Split) for the folds to run (`run_folds` of them, else all)."""
    steps = build_prepare(experiment.prepare)
    splits = prepare.splits(datasets, folds=experiment.folds, prepare=steps, seed=experiment.seed)
    limit = experiment.run_folds or experiment.folds
    return ((i, split) for i, split in zip(range(limit), splits))



def _differences(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            d
            for k in sorted(set(old) | set(new))
            for d in _differences(old.get(k), new.get(k), f"{path}.{k}" if path else k)
        ]
    return [] if old == new else [path or "(all)"]


def _check_resumable(run: runs.Run, experiment: Experiment) -> None:
    if not (run.path / runs.CONFIG).exists():
        return
    previous = runs.read_config(run).get("experiment")
    if previous is None:
        return
    current = experiment.to_dict()
    differ = _differences(
        {k: v for k, v in previous.items() if k not in _NOT_RESUMED},
        {k: v for k, v in current.items() if k not in _NOT_RESUMED},
    )
    if differ:
        raise ExperimentError(
            f"{run.path} holds a run of this experiment with other settings ({', '.join(differ)}"
            " differ); it cannot be resumed with these. Rename the experiment (name = ..., or"
            " mtjax run --name), or delete the folder."
        )


def train_fold(experiment: Experiment, fold: int, split, *, progress: bool = True) -> runs.Run:
    """Fits one fold into `Run(output, f"{name}/fold{fold}")` (resuming what is there) and
    adds "group", "fold" and "experiment" to its config.json."""
    run = runs.Run(experiment.output, f"{experiment.name}/fold{fold}")
    _check_resumable(run, experiment)
    train = dict(experiment.train)
    tasks = split.train.tasks
    names = {t.name for t in tasks}
    loss = {task: LOSSES[fn] for task, fn in train["loss"].items() if task in names}
    loop.fit(
        build_model(experiment.model, tasks),
        split.train,
        split.test,
        validation=split.validation if values.covers_every_task(split.validation) else None,
        epochs=train["epochs"],
        batch_size=train["batch_size"],
        optimizer=build_optimizer(train["optimizer"]),
        combine=build_combiner(train["combine"]),
        batches=build_schedule(train["batches"]),
        early_stop=build_early_stop(train["early_stop"]),
        loss=loss or None,
        seed=experiment.seed,
        validation_fraction=train["validation_fraction"],
        run=run,
        max_to_keep=train["max_to_keep"],
        progress=progress,
    )
    config = runs.read_config(run)
    config.update(group=experiment.name, fold=fold, experiment=experiment.to_dict())
    runs.write_config(run, config)
    return run


def _check_loss_tasks(experiment: Experiment, readers: Sequence) -> None:
    known = [t.name for r in readers for t in r.tasks]
    for task in experiment.train["loss"]:
        if task not in known:
            raise ExperimentError(
                f"{experiment.source}: train.loss.{task}: no dataset has a "
                f"task {task!r}; tasks: {', '.join(known)}"
            )


def run_experiment(experiment: Experiment, *, progress: bool = True) -> list[runs.Run]:
    """Trains every sweep point and fold; prints a summary table; returns the runs.

    Points are grouped by their data (`Experiment.data_key`): each group's datasets are
    read once (memoised per process, and through the on-disk feature cache), and each of
    its folds is prepared once and trained on by every point of the group in turn. A run
    that already has checkpoints resumes.

    Returns:
      The runs in sweep order, each point's folds in order.
    """
    points = expand(experiment)
    _check_loss_tasks(experiment, build_readers(experiment))
    groups: dict[str, list[Experiment]] = {}
    for point in points:
        groups.setdefault(point.data_key, []).append(point)
    done: dict[tuple[str, int], runs.Run] = {}
    shown: set[tuple[str, str]] = set()
    count = 0
    for group in groups.values():
        datasets = read_datasets(group[0], progress=progress)
        new = [(spec["name"], _key(group[0].features)) not in shown for spec in group[0].datasets]
        if any(new):
            print(describe.datasets_table([d for d, n in zip(datasets, new) if n]))
        shown |= {(spec["name"], _key(group[0].features)) for spec in group[0].datasets}
        for fold, split in fold_splits(group[0], datasets):
            for point in group:
                count += 1
                test = 0 if split.test is None else len(split.test)
                print(
                    f"\n[{count}] {point.name}/fold{fold}: {len(split.train)} train, {test} "
                    f"test clips; tasks {', '.join(t.name for t in split.train.tasks)}"
                )
                done[point.name, fold] = train_fold(point, fold, split, progress=progress)
    ordered = [done[key] for point in points for key in sorted(done) if key[0] == point.name]
    settings = {p.name: _settings(p, experiment) for p in points}
    print()
    print(summary(runs.compare(ordered), settings=settings))
    where = experiment.output / experiment.name
    print(f"\n{len(ordered)} runs under {where}\nTensorBoard: tensorboard --logdir {where}")
    return ordered


def _settings(point: Experiment, experiment: Experiment) -> str:
    """A sweep point's name without its datasets part: the choices besides the data."""
    if experiment.sweep.get("datasets") is None:
        return point.name
    names = "+".join(d["name"] for d in point.datasets)
    return point.name.replace(f"/{names}", "", 1)


def summary(comparison: runs.Comparison, *, settings: Mapping[str, str] | None = None) -> str:
    """Per group and task: the test headline metric (accuracy or micro F1), mean ± std over
    folds, at the best epoch and the last; then multi-task vs single-task, if any.

    Args:
      comparison: `runs.compare` of the runs.
      settings: group -> its choices besides the datasets; when given, a multi-task group is
        set against the single-task groups with the same choices only.
    """
    headline = ("accuracy", "micro_f1")
    rows = [
        [
            r["group"],
            r["task"],
            r["metric"],
            r["n"],
            _mean_std(r["best"], r["best_std"]),
            _mean_std(r["last"], r["last_std"]),
        ]
        for r in comparison.rows
        if r["metric"] in headline
    ]
    lines = [
        "test headline metric, mean ± std over folds (best epoch chosen on validation)",
        tables.table(["group", "task", "metric", "folds", "best epoch", "last epoch"], rows),
    ]
    versus = [
        [
            v["task"],
            v["metric"],
            v["multi"],
            v["single"],
            _mean_std(v["multi_best"], v["multi_best_std"]),
            _mean_std(v["single_best"], v["single_best_std"]),
            f"{v['best_difference']:+.4f}",
        ]
        for v in comparison.versus
        if v["metric"] in headline
        and (settings is None or settings.get(v["multi"]) == settings.get(v["single"]))
    ]
    if versus:
        lines += [
            "",
            "multi-task vs single-task (best epoch; difference = multi - single)",
            tables.table(
                ["task", "metric", "multi-task", "single-task", "multi", "single", "difference"],
                versus,
            ),
        ]
    return "\n".join(lines)


def _mean_std(mean: float, std: float) -> str:
    return "-" if not np.isfinite(mean) else f"{mean:.4f} ± {std:.4f}"


# The commands


def find_runs(paths: Sequence[str | os.PathLike]) -> list[runs.Run]:
    """Run folders (those holding config.json): each path itself, or the runs under it."""
    found = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is not a folder")
        if (path / runs.CONFIG).is_file():
            found.append(runs.Run.at(path))
            continue
        for folder, subfolders, files in os.walk(path):
            subfolders.sort()
            if runs.CONFIG in files:
                found.append(runs.Run.at(folder))
                subfolders.clear()
    return found


def run_command(args: argparse.Namespace) -> int:
    """`mtjax run EXPERIMENT.toml [--folds N] [--epochs N] [--name NAME]`."""
    experiment = load(args.experiment)
    changes = {}
    if args.folds is not None:
        changes["run_folds"] = args.folds
    if args.epochs is not None:
        changes["train.epochs"] = args.epochs
    if args.name is not None:
        changes["name"] = args.name
    if changes:
        experiment = override(experiment, changes)
    run_experiment(experiment, progress=not args.quiet)
    return 0


def report_command(args: argparse.Namespace) -> int:
    """`mtjax report RUN_OR_FOLDER...`: the comparison table and comparison.png."""
    found = find_runs(args.runs)
    complete = [r for r in found if (r.path / runs.HISTORY).is_file()]
    for run in found:
        if run not in complete:
            print(f"skipped {run.path}: no history.json yet", file=sys.stderr)
    if not complete:
        raise SystemExit(f"mtjax report: no run folders with a history under {args.runs}")
    comparison = runs.compare(complete, split=args.split)
    print(comparison.text)
    first = Path(args.runs[0])
    plot = (
        args.plot or (first.parent if (first / runs.CONFIG).is_file() else first) / "comparison.png"
    )
    runs.compare_plot(comparison, plot)
    print(f"\nwrote {plot}")
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    """`mtjax evaluate RUN --data EXPERIMENT.toml`: the run's saved epochs on a fold's data."""
    run = runs.Run.at(args.run)
    config = runs.read_config(run)
    experiment = load(args.data)
    points = {p.name: p for p in expand(experiment)}
    if config.get("group") in points:
        experiment = points[config["group"]]
    elif len(points) == 1:
        experiment = next(iter(points.values()))
    else:
        raise SystemExit(
            f"mtjax evaluate: {args.data} is a sweep without the point "
            f"{config.get('group')!r} of {run.path}; points: {', '.join(points)}"
        )
    experiment = dataclasses.replace(experiment, run_folds=None)
    fold = args.fold if args.fold is not None else int(config.get("fold") or 0)
    datasets = read_datasets(experiment, progress=not args.quiet)
    split = next((s for i, s in fold_splits(experiment, datasets) if i == fold), None)
    part = None if split is None else getattr(split, args.split)
    if part is None:
        raise SystemExit(f"mtjax evaluate: fold {fold} of {args.data} has no {args.split} data")
    reports = evaluation.evaluate(run, part, epoch=args.epoch, split=args.name)
    tasks = [Task.from_json(t) for t in config["tasks"]]
    by_epoch = {args.epoch: reports} if args.epoch is not None else reports
    for epoch, epoch_reports in by_epoch.items():
        print(f"\n{run.path} epoch {epoch}, fold {fold} {args.split} of {experiment.name}:")
        print(metrics.summary_table(epoch_reports, tasks))
    print(f"\nreports written under {run.reports}/epoch_*/{args.name}")
    return 0


def add_subcommands(subparsers) -> None:
    """Adds `run`, `report` and `evaluate` to the `mtjax` command's subparsers; each sets
    `handler`, the function to call with the parsed arguments."""
    run = subparsers.add_parser("run", help="run an experiment file (TOML), every sweep point")
    run.add_argument("experiment", type=Path, help="the experiment file")
    run.add_argument("--folds", type=int, default=None, help="run only the first N folds")
    run.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    run.add_argument("--name", default=None, help="override name (where the runs go)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(handler=run_command)
    rep = subparsers.add_parser("report", help="compare runs: a table and comparison.png")
    rep.add_argument("runs", nargs="+", help="run folders, or folders holding runs")
    rep.add_argument("--split", default="test", help="the split to report (test, validation)")
    rep.add_argument("--plot", type=Path, default=None, help="where to write the plot")
    rep.set_defaults(handler=report_command)
    ev = subparsers.add_parser("evaluate", help="evaluate a run's saved epochs on a fold")
    ev.add_argument("run", type=Path, help="the run folder")
    ev.add_argument("--data", type=Path, required=True, help="experiment file giving the data")
    ev.add_argument("--fold", type=int, default=None, help="fold (default: the run's)")
    ev.add_argument("--epoch", type=int, default=None, help="one epoch (default: every saved)")
    ev.add_argument("--split", default="test", choices=("test", "validation", "train"))
    ev.add_argument("--name", default="evaluation", help="report folder name in the run")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(handler=evaluate_command)
