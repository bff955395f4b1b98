"""Running experiments: datasets read, folds prepared, every point and fold trained.

`run_experiment` trains every sweep point, seed and fold into
`Run(output, f"{name}/[sweep parts/][seed{s}/]fold{i}")`,
reading each (dataset, extraction) once per process and preparing each fold once for all the
points that share its data; `run_file` does it for a file (`mtjax run`). `evaluate_run`
rebuilds a run's fold and evaluates its saved epochs on it (`mtjax evaluate`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from mtjax import demo, runs
from mtjax.audio import cache
from mtjax.data import describe, prepare, splitters, values
from mtjax.experiments import config, parts, reporting, sweeps
from mtjax.runs import folder as run_folder
from mtjax.tasks import Task
from mtjax.train import compiled, evaluation, loop, metrics

log = logging.getLogger("mtjax")


# Reading


def build_readers(experiment: config.Experiment) -> list:
    """The experiment's readers; demo data are made under `output/data` first.

    Raises:
      ExperimentError: `source: datasets[i] (name): ...` for a reader that cannot be built.
    """
    out = []
    for i, spec in enumerate(experiment.datasets):
        try:
            if spec["reader"] == "demo":
                paths = demo.make_demo(
                    experiment.output / "data", seed=spec["seed"], scale=spec["scale"]
                )
                out.append({r.name: r for r in demo.demo_readers(paths)}[spec["name"]])
            else:
                out.append(parts.build_reader(spec))
        except (TypeError, ValueError, OSError) as err:
            raise config.ExperimentError(
                f"{experiment.source}: datasets[{i}] ({spec['name']}): {err}"
            ) from err
    return out


_READ: dict[str, Any] = {}  # (reader, extraction, read options) -> what mt.read gave


def read_datasets(experiment: config.Experiment, *, progress: bool = True) -> list:
    """Each dataset read through the feature cache, once per process (memoised).

    A dataset's predefined folds are kept or dropped as its `predefined_folds` says.

    Returns:
      One `TaskDataset` per dataset, or a `Split` for a dataset with a predefined split.
    """
    extraction = parts.build_extraction(experiment.features)
    out = []
    for spec, reader in zip(experiment.datasets, build_readers(experiment)):
        memo = config.key(
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
        if memo not in _READ:
            _READ[memo] = cache.read(
                reader,
                extraction,
                cache=experiment.cache,
                n_jobs=experiment.jobs,
                in_memory=experiment.in_memory,
                max_frames=experiment.max_frames,
                on_error=experiment.on_error,
                progress=progress,
            )
        out.append(_with_folds(experiment, spec, _READ[memo]))
    return out


def _with_folds(experiment: config.Experiment, spec: Mapping, value):
    if isinstance(value, values.Split):
        return value
    try:
        kept = splitters.keep_predefined_folds(value, experiment.folds, spec["predefined_folds"])
    except ValueError as err:
        raise config.ExperimentError(
            f'{experiment.source}: folds: {err} (predefined_folds = false, or "auto", in its'
            " [[datasets]] entry drops them)"
        ) from None
    if kept is not value and spec["predefined_folds"] == "auto":
        log.info("%s: predefined folds dropped: split %d-fold", spec["name"], experiment.folds)
    return kept


def fold_splits(experiment: config.Experiment, datasets: Sequence) -> Iterator[tuple[int, Any]]:
    """(fold, prepared Split) for the folds to run (`run_folds` of them, else all).

    Every dataset's validation part is its own, else `train.validation_fraction` of its
    train part, carved per dataset (`mtjax.data.splits`).
    """
    steps = parts.build_prepare(experiment.prepare)
    splits = prepare.splits(
        datasets,
        folds=experiment.folds,
        prepare=steps,
        seed=experiment.seed,
        validation=experiment.train["validation_fraction"],
    )
    limit = experiment.run_folds or experiment.folds
    return ((i, split) for i, split in zip(range(limit), splits))


# Training


def _check_resumable(run: runs.Run, experiment: config.Experiment) -> None:
    """Refuses a fold's run folder that holds this experiment run with other settings."""
    try:
        runs.check_resumable(
            run, experiment.to_dict(), entry="experiment", ignore=config.NOT_RESUMED
        )
    except ValueError as err:
        raise config.ExperimentError(
            f"{err} Or rename the experiment (name = ..., or mtjax run --name)."
        ) from None


def train_fold(
    experiment: config.Experiment, fold: int, split, *, progress: bool = True
) -> runs.Run:
    """Fits one fold into `Run(output, f"{name}/fold{fold}")`, resuming what is there.

    Adds "group", "fold", "seed", "experiment" and the resolved training choices to the
    run's config.json before training, so that every resume, of a finished run or of a
    killed one, is checked against them. The run is locked throughout (`runs.folder.lock`).

    Raises:
      ExperimentError naming the settings that differ from the run folder's.
      RuntimeError naming the process that has the run open.
    """
    run = runs.Run(experiment.output, f"{experiment.name}/fold{fold}")
    run_folder.lock(run)
    try:
        _check_resumable(run, experiment)
        record = runs.read_config(run) if (run.path / runs.CONFIG).exists() else {}
        record.update(
            group=experiment.group,
            fold=fold,
            seed=experiment.seed,
            experiment=experiment.to_dict(),
            resolved=parts.resolved_train(experiment.train),
        )
        runs.write_config(run, record)
        _fit(experiment, run, split, progress=progress)
    finally:
        run_folder.unlock(run)
    return run


def _fit(experiment: config.Experiment, run: runs.Run, split, *, progress: bool) -> None:
    train = dict(experiment.train)
    tasks = split.train.tasks
    names = {t.name for t in tasks}
    loss = {task: parts.LOSSES[fn] for task, fn in train["loss"].items() if task in names}
    loop.fit(
        parts.build_model(experiment.model, tasks, source=experiment.source),
        split.train,
        split.test,
        validation=split.validation,
        epochs=train["epochs"],
        batch_size=train["batch_size"],
        optimizer=parts.build_optimizer(train["optimizer"]),
        combine=parts.build_combiner(train["combine"]),
        batches=parts.build_schedule(train["batches"]),
        early_stop=parts.build_early_stop(train["early_stop"]),
        loss=loss or None,
        seed=experiment.seed,
        validation_fraction=train["validation_fraction"],
        augment=parts.build_augment(train.get("augment")),
        precision=train.get("precision", "float32"),
        per_task_grads=train.get("per_task_grads", "jacobian"),
        run=run,
        max_to_keep=train["max_to_keep"],
        progress=progress,
    )


def _check_loss_tasks(experiment: config.Experiment, readers: Sequence) -> None:
    known = [t.name for r in readers for t in r.tasks]
    for task in experiment.train["loss"]:
        if task not in known:
            raise config.ExperimentError(
                f"{experiment.source}: train.loss.{task}: no dataset has a "
                f"task {task!r}; tasks: {', '.join(known)}"
            )


def run_experiment(experiment: config.Experiment, *, progress: bool = True) -> list[runs.Run]:
    """Trains every sweep point and fold; prints a summary table; returns the runs.

    Points are grouped by their data (`Experiment.data_key`): each group's datasets are
    read once (memoised per process, and through the on-disk feature cache), and each of
    its folds is prepared once and trained on by every point of the group in turn. A run
    that already has checkpoints resumes.

    Returns:
      The runs in sweep order, each point's folds in order.
    """
    points = sweeps.expand(experiment)
    if experiment.cache is not None:
        compiled.use_compilation_cache(experiment.cache / ".jax")
    _check_loss_tasks(experiment, build_readers(experiment))
    groups: dict[str, list[config.Experiment]] = {}
    for point in points:
        groups.setdefault(point.data_key, []).append(point)
    done: dict[tuple[str, int], runs.Run] = {}
    shown: set[tuple[str, str]] = set()
    count = 0
    for group in groups.values():
        datasets = read_datasets(group[0], progress=progress)
        here = [(spec["name"], config.key(group[0].features)) for spec in group[0].datasets]
        if any(h not in shown for h in here):
            print(describe.datasets_table([d for d, h in zip(datasets, here) if h not in shown]))
        shown |= set(here)
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
    print()
    print(reporting.summary(reporting.compare_runs(ordered)))
    where = experiment.output / experiment.name
    print(f"\n{len(ordered)} runs under {where}\nTensorBoard: tensorboard --logdir {where}")
    return ordered


def run_file(
    path: str | os.PathLike,
    *,
    folds: int | None = None,
    epochs: int | None = None,
    name: str | None = None,
    progress: bool = True,
) -> list[runs.Run]:
    """`run_experiment` of an experiment file (`mtjax run`).

    `folds`, `epochs` and `name`, when given, replace `run_folds`, `train.epochs` and `name`
    (`mtjax run EXPERIMENT.toml --folds N --epochs N --name NAME`).
    """
    experiment = config.load(path)
    changes: dict[str, Any] = {}
    if folds is not None:
        changes["run_folds"] = folds
    if epochs is not None:
        changes["train.epochs"] = epochs
    if name is not None:
        changes["name"] = name
    if changes:
        experiment = sweeps.override(experiment, changes)
    return run_experiment(experiment, progress=progress)


# Evaluating a finished run again


def evaluate_run(
    run: str | os.PathLike,
    data: str | os.PathLike,
    *,
    fold: int | None = None,
    epoch: int | None = None,
    split: str = "test",
    name: str = "evaluation",
    progress: bool = True,
) -> dict:
    """A run's saved epochs evaluated on one fold of an experiment file's data.

    Prints a table per epoch and writes the reports under the run (`mtjax evaluate`).

    Args:
      run: the run folder.
      data: the experiment file giving the data; of a sweep, the run's point is taken.
      fold: the fold to rebuild; default the run's own.
      epoch: one epoch; default every saved one.
      split: "test", "validation" or "train", the part of the fold evaluated.
      name: the report folder name inside the run.
      progress: progress bars while reading.

    Returns:
      `mt.evaluate`'s reports: {task: report} for one epoch, else {epoch: {task: report}}.

    Raises:
      ExperimentError: a sweep without the run's point, or a fold without that part.
    """
    folder = runs.Run.at(run)
    record = runs.read_config(folder)
    experiment = config.load(data)
    points = {p.name: p for p in sweeps.expand(experiment)}
    point = (record.get("experiment") or {}).get("name", record.get("group"))
    if point in points:
        experiment = points[point]
    elif len(points) == 1:
        experiment = next(iter(points.values()))
    else:
        raise config.ExperimentError(
            f"{data} is a sweep without the point {record.get('group')!r} of {folder.path};"
            f" points: {', '.join(points)}"
        )
    experiment = dataclasses.replace(experiment, run_folds=None)
    fold = fold if fold is not None else int(record.get("fold") or 0)
    datasets = read_datasets(experiment, progress=progress)
    chosen = next((s for i, s in fold_splits(experiment, datasets) if i == fold), None)
    part = None if chosen is None else getattr(chosen, split)
    if part is None:
        raise config.ExperimentError(f"fold {fold} of {data} has no {split} data")
    reports = evaluation.evaluate(folder, part, epoch=epoch, split=name)
    tasks = [Task.from_json(t) for t in record["tasks"]]
    by_epoch = {epoch: reports} if epoch is not None else reports
    for shown, epoch_reports in by_epoch.items():
        print(f"\n{folder.path} epoch {shown}, fold {fold} {split} of {experiment.name}:")
        print(metrics.summary_table(epoch_reports, tasks))
    print(f"\nreports written under {folder.reports}/epoch_*/{name}")
    return reports
