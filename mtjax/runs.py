"""Runs on disk: one folder per run, and the comparison of runs.

`Run(root, name)` owns `root/name/`:

  config.json                         what rebuilds the run (`write_config`)
  history.json                        the trainer's records, one per epoch (`write_history`)
  events/                             TensorBoard event files (`open_events`, `log_epoch`)
  reports/epoch_003/test/{task}.json  an `evaluate` report per epoch, split and task
  plots/*.png                         learning curves, scores, weights, confusion matrices
  checkpoints/                        Orbax checkpoints (written by the trainer)

Everything is JSON or PNG; nothing is ever pickled (a NaN is written as Python's json writes
it, `NaN`, and read back as a float). Files are written to a temporary file in
their folder and moved into place with `os.replace`, so a reader sees the old file or the new
one, never half of one. Folders are made by the functions that write into them; one that
cannot be made or written raises an OSError that names it.

History records are `fit`'s: {"epoch", "seconds", "train": {"loss", "tasks": {name: loss},
"weights": {name: weight}}, "validation"/"test": {"loss", "score", name: {"loss",
"accuracy" or "micro_f1", "macro_f1"}}}.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import math
import operator
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from tensorboardX import SummaryWriter

from mtjax import plots
from mtjax.report import table
from mtjax.tasks import Task

CONFIG = "config.json"
HISTORY = "history.json"
_EPOCH_FOLDER = re.compile(r"epoch_(\d+)")


@dataclasses.dataclass(frozen=True)
class Run:
    """The folder `root/name` of one run; a value, nothing is made on disk until written.

    Attributes:
      root: the folder holding runs.
      name: the run's folder under `root` (relative, may have several parts, no "..").
    """

    root: Path
    name: str

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))
        name = Path(self.name)
        if not str(self.name) or name.is_absolute() or ".." in name.parts or name == Path("."):
            raise ValueError(
                f"run name {self.name!r} must be a relative folder under {self.root},"
                " not empty, '.', absolute or with '..'"
            )
        object.__setattr__(self, "name", str(self.name))

    @classmethod
    def at(cls, path: str | os.PathLike) -> Run:
        """The run whose folder is `path`."""
        path = Path(path)
        if path.name in ("", ".", ".."):
            path = Path(os.path.abspath(path))
        return cls(path.parent, path.name)

    @property
    def path(self) -> Path:
        return self.root / self.name

    @property
    def events(self) -> Path:
        return self.path / "events"

    @property
    def reports(self) -> Path:
        return self.path / "reports"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"


# Files.


def _named_error(err: OSError, message: str) -> OSError:
    """An OSError of the same kind (errno) as `err` with `message`."""
    detail = err.strerror or str(err)
    return (
        OSError(err.errno, f"{message}: {detail}") if err.errno else OSError(f"{message}: {detail}")
    )


def _folder(path: Path) -> Path:
    """`path` as a folder that exists and can be written, made with its parents if needed."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    except OSError as err:
        existing = next((p for p in (path, *path.parents) if p.exists()), None)
        blocked = "" if existing in (None, path) else f" (nearest existing: {existing})"
        raise _named_error(err, f"cannot write into folder {path}{blocked}") from err
    return path


def _write_atomic(path: Path, data: bytes) -> Path:
    """Writes `data` at `path` through a temporary file in the same folder and `os.replace`."""
    folder = _folder(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise _named_error(err, f"cannot write into folder {folder}") from err
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise _named_error(err, f"cannot write {path}") from err
        raise
    return path


def _write_json(path: Path, value: Any) -> Path:
    try:
        text = json.dumps(value, indent=2)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{path}: only JSON values (dict, list, str, number, bool, None) can be written: {err}"
        ) from None
    return _write_atomic(path, (text + "\n").encode())


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"no {what}: {path} does not exist") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({what}): {err}") from None


def _file_part(value: str, what: str) -> str:
    """`value` checked as one file name part."""
    if value in ("", ".", "..") or "/" in value or "\\" in value or "\0" in value:
        raise ValueError(f"{what} {value!r} cannot name a file: no '/', '\\', NUL, '.' or '..'")
    return value


def write_config(run: Run, config: Mapping[str, Any]) -> Path:
    """Writes `config.json` (JSON values only; tuples come back as lists); returns its path."""
    if not isinstance(config, Mapping):
        raise TypeError(f"a run's config is a dict, got {type(config).__name__}")
    return _write_json(run.path / CONFIG, dict(config))


def read_config(run: Run) -> dict:
    """The run's `config.json`."""
    return _read_json(run.path / CONFIG, "run config")


def write_history(run: Run, history: Sequence[Mapping]) -> Path:
    """Writes `history.json`, the list of per-epoch records; returns its path."""
    return _write_json(run.path / HISTORY, [dict(r) for r in history])


def read_history(run: Run) -> list[dict]:
    """The run's `history.json`."""
    return _read_json(run.path / HISTORY, "run history")


# Reports.


def report_folder(run: Run, epoch: int, split: str) -> Path:
    """`reports/epoch_{epoch:03d}/{split}` of the run."""
    epoch = operator.index(epoch)
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    return run.reports / f"epoch_{epoch:03d}" / _file_part(split, "split")


def write_reports(run: Run, epoch: int, split: str, reports: Mapping[str, Mapping]) -> Path:
    """Writes one JSON file per task, `{task}.json`, under `report_folder`; returns the folder.

    Args:
      run: the run.
      epoch: the epoch the reports are of (0-based, as in the history).
      split: "validation", "test" or any split name.
      reports: task name -> report (`mtjax.metrics.evaluation_report`).
    """
    folder = report_folder(run, epoch, split)
    names = [_file_part(name, "task name") for name in reports]
    _folder(folder)
    for name in names:
        _write_json(folder / f"{name}.json", reports[name])
    return folder


def report_epochs(run: Run) -> list[int]:
    """The epochs that have reports, ascending."""
    if not run.reports.is_dir():
        return []
    found = (_EPOCH_FOLDER.fullmatch(p.name) for p in run.reports.iterdir() if p.is_dir())
    return sorted(int(m.group(1)) for m in found if m)


def report_splits(run: Run, epoch: int) -> list[str]:
    """The splits that have reports at `epoch`, sorted."""
    folder = run.reports / f"epoch_{operator.index(epoch):03d}"
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def read_reports(run: Run, epoch: int, split: str) -> dict[str, dict]:
    """Task name -> report, as written by `write_reports` (tasks in name order)."""
    folder = report_folder(run, epoch, split)
    if not folder.is_dir():
        raise FileNotFoundError(
            errno.ENOENT,
            f"no reports of split {split!r} at epoch {epoch}: {folder} does not exist; epochs"
            f" with reports: {report_epochs(run)}",
        )
    return {p.stem: _read_json(p, "report") for p in sorted(folder.glob("*.json"))}


# TensorBoard.


class EventWriter(NamedTuple):
    summary: SummaryWriter  # tensorboardX writer of the run's events folder
    folder: Path


def open_events(run: Run, *, purge_step: int | None = None) -> EventWriter:
    """A TensorBoard writer of the run's `events/`; each call adds a new event file.

    Args:
      run: the run.
      purge_step: a resumed run's first epoch: TensorBoard then hides what an interrupted
        writer logged at this epoch and later, so redone epochs are not shown twice.
    """
    folder = _folder(run.events)
    # A unique, time-ordered suffix: two writers opened within one second (tensorboardX names
    # files by the second) must not overwrite each other's file.
    suffix = f".{time.time_ns():020d}.{os.getpid()}"
    summary = SummaryWriter(logdir=str(folder), purge_step=purge_step, filename_suffix=suffix)
    return EventWriter(summary, folder)


def close_events(writer: EventWriter) -> None:
    """Flushes and closes the writer."""
    writer.summary.close()


_SPLIT_METRICS = ("loss", "accuracy", "micro_f1", "macro_f1")
_NOT_IN_TAGS = re.compile(r"[^-/\w.]")  # TensorBoard turns these into "_"


def scalars(
    record: Mapping,
    tasks: Sequence[Task],
    *,
    lr: float | None = None,
    conflicts: Mapping[tuple[str, str], float] | None = None,
) -> dict[str, float]:
    """The TensorBoard scalars of one history record: tag -> value.

    Tags: `train/loss` (the combined loss), `train/{task}/loss`, `train/weights/{task}`,
    `train/learning_rate`, `train/conflict/{a}/{b}`; for every other split in the record
    `{split}/loss` (mean over tasks), `{split}/score` (mean headline score), and
    `{split}/{task}/loss`, `.../accuracy` (binary, multiclass), `.../micro_f1` (multilabel),
    `.../macro_f1`. What the record lacks is left out. Characters TensorBoard does not allow
    in a tag (anything but letters, digits, "_", "-", "." and "/") become "_", as TensorBoard
    itself would write them.

    Args:
      record: one history record.
      tasks: the run's tasks, in order.
      lr: the learning rate at the end of the epoch.
      conflicts: (task a, task b) -> cosine similarity between the two tasks' gradients.
    """
    out: dict[str, float] = {}
    train = record.get("train")
    if isinstance(train, Mapping):
        if "loss" in train:
            out["train/loss"] = float(train["loss"])
        for task in tasks:
            if task.name in train.get("tasks", {}):
                out[f"train/{task.name}/loss"] = float(train["tasks"][task.name])
            if task.name in train.get("weights", {}):
                out[f"train/weights/{task.name}"] = float(train["weights"][task.name])
    if lr is not None:
        out["train/learning_rate"] = float(lr)
    for (a, b), similarity in (conflicts or {}).items():
        out[f"train/conflict/{a}/{b}"] = float(similarity)
    for split, summary in record.items():
        if split == "train" or not isinstance(summary, Mapping):
            continue
        for key in ("loss", "score"):
            if key in summary:
                out[f"{split}/{key}"] = float(summary[key])
        for task in tasks:
            entry = summary.get(task.name)
            for metric in _SPLIT_METRICS if isinstance(entry, Mapping) else ():
                if metric in entry:
                    out[f"{split}/{task.name}/{metric}"] = float(entry[metric])
    return {_NOT_IN_TAGS.sub("_", tag): number for tag, number in out.items()}


def log_epoch(
    writer: EventWriter,
    record: Mapping,
    tasks: Sequence[Task],
    reports_by_split: Mapping[str, Mapping[str, Mapping]] | None = None,
    *,
    lr: float | None = None,
    conflicts: Mapping[tuple[str, str], float] | None = None,
) -> None:
    """Logs one epoch at step `record["epoch"]`, then flushes.

    Scalars are `scalars(record, tasks, lr=lr, conflicts=conflicts)`; each task's report in
    `reports_by_split` (split -> task name -> report) adds its confusion matrix as an RGB
    image `{split}/{task}/confusion`.
    """
    step = int(record["epoch"])
    for tag, number in scalars(record, tasks, lr=lr, conflicts=conflicts).items():
        writer.summary.add_scalar(tag, number, step)
    for split, reports in (reports_by_split or {}).items():
        for task in tasks:
            if task.name in reports:
                fig = plots.confusion(reports[task.name], task, title=f"{split} {task.name}")
                writer.summary.add_image(
                    _NOT_IN_TAGS.sub("_", f"{split}/{task.name}/confusion"),
                    plots.to_rgb(fig),
                    step,
                    dataformats="HWC",
                )
    writer.summary.flush()


# Plots.


def write_plots(
    run: Run,
    history: Sequence[Mapping],
    tasks: Sequence[Task],
    reports_by_split: Mapping[str, Mapping[str, Mapping]] | None = None,
) -> list[Path]:
    """Writes the run's PNGs under `plots/`; returns their paths.

    `learning_curves.png`, `scores.png`, `weights.png`, and `confusion_{split}_{task}.png` for
    each report in `reports_by_split` (split -> task name -> report, usually the last epoch's).
    """

    def figures():
        yield "learning_curves.png", lambda: plots.learning_curves(history, tasks)
        yield "scores.png", lambda: plots.scores(history, tasks)
        yield "weights.png", lambda: plots.weights(history, tasks)
        for split, reports in (reports_by_split or {}).items():
            for task in tasks:
                if task.name in reports:
                    name = f"confusion_{_file_part(split, 'split')}_{task.name}.png"
                    yield (
                        name,
                        lambda t=task, r=reports[task.name], s=split: plots.confusion(
                            r, t, title=f"{s} {t.name}"
                        ),
                    )

    return [_write_atomic(run.plots / name, plots.png_bytes(make())) for name, make in figures()]


# Comparison.


class Comparison(NamedTuple):
    """Runs side by side (`compare`).

    rows: one per (group, task, metric): {"group", "runs" (paths), "folds", "tasks",
      "multi_task", "task", "metric", "n", "best", "best_std", "best_epochs", "last",
      "last_std"}; values are means over the group's runs, stds over them (ddof 0).
    text: both tables for the terminal.
    versus: one per (task, metric, multi-task group, single-task group of that task):
      {"task", "metric", "multi", "single", "multi_best", "single_best", "best_difference",
      "multi_last", "single_last", "last_difference", "multi_best_std", "single_best_std",
      "multi_last_std", "single_last_std", "multi_n", "single_n"}; difference = multi-task minus single-task.
    """

    rows: list[dict]
    text: str
    versus: list[dict]


def _lower_is_better(metric: str) -> bool:
    return metric == "loss"


def best_and_last(
    history: Sequence[Mapping], split: str, task: str, metric: str
) -> tuple[float, int | None, float]:
    """A metric of one task at its best epoch and at the last one.

    The best epoch is the one with the best validation value of the same task and metric
    (lowest loss, highest score; the first on ties); when no record has a validation value,
    the best of `split` itself.

    Returns:
      (value of `split` at the best epoch, that epoch or None, value at the last record);
      NaN where missing.
    """
    values = plots.series(history, split, task, metric)
    guide = plots.series(history, "validation", task, metric)
    if not np.isfinite(guide).any():
        guide = values
    last = float(values[-1]) if len(values) else math.nan
    if not np.isfinite(guide).any():
        return math.nan, None, last
    lower = _lower_is_better(metric)
    i = int(
        np.argmin(np.where(np.isfinite(guide), guide, np.inf))
        if lower
        else np.argmax(np.where(np.isfinite(guide), guide, -np.inf))
    )
    return float(values[i]), int(history[i]["epoch"]), last


def _task_names(config: Mapping, run: Run) -> list[str]:
    names = config.get("tasks")
    if not names:
        raise ValueError(f"{run.path / CONFIG} has no 'tasks': compare needs the task names")
    return [n if isinstance(n, str) else n["name"] for n in names]


def _metrics(history: Sequence[Mapping], task: str) -> tuple[str, ...]:
    """("loss", headline, "macro_f1"); the headline is micro_f1 when the history has it."""
    micro = any(
        isinstance(r.get(s), Mapping) and "micro_f1" in (r[s].get(task) or {})
        for r in history
        for s in r
    )
    return ("loss", "micro_f1" if micro else "accuracy", "macro_f1")


class _Member(NamedTuple):
    run: Run
    fold: int | None
    tasks: tuple[str, ...]
    history: list[dict]


def _groups(runs: Sequence[Run]) -> dict[str, list[_Member]]:
    """Label -> the runs of one experiment: those sharing config "group", else one run each.

    A lone run's label is its name, or its path when the name is taken.
    """
    keyed: dict[tuple[str, str], list[_Member]] = {}
    for run in runs:
        config = read_config(run)
        member = _Member(
            run, config.get("fold"), tuple(_task_names(config, run)), read_history(run)
        )
        group = config.get("group")
        key = ("group", str(group)) if group else ("run", str(run.path))
        members = keyed.setdefault(key, [])
        if any(m.run.path == run.path for m in members):
            raise ValueError(f"run {run.path} is given twice")
        if members and members[0].tasks != member.tasks:
            raise ValueError(
                f"runs {members[0].run.path} and {run.path} share group {group!r} but not their"
                f" tasks: {list(members[0].tasks)} vs {list(member.tasks)}"
            )
        if member.fold is not None and any(m.fold == member.fold for m in members):
            raise ValueError(f"group {group!r} has fold {member.fold} twice (run {run.path})")
        members.append(member)
    labels = {
        key: key[1] if key[0] == "group" else members[0].run.name for key, members in keyed.items()
    }
    taken = list(labels.values())
    return {
        (key[1] if taken.count(label) > 1 else label): members
        for (key, members), label in zip(keyed.items(), labels.values())
    }


def _group_rows(label: str, members: list[_Member], split: str) -> list[dict]:
    rows = []
    for task in members[0].tasks:
        for metric in _metrics(members[0].history, task):
            found = [best_and_last(m.history, split, task, metric) for m in members]
            best = np.array([f[0] for f in found])
            last = np.array([f[2] for f in found])
            rows.append(
                {
                    "group": label,
                    "runs": [str(m.run.path) for m in members],
                    "folds": [m.fold for m in members],
                    "tasks": list(members[0].tasks),
                    "multi_task": len(members[0].tasks) > 1,
                    "task": task,
                    "metric": metric,
                    "n": len(members),
                    "best": float(best.mean()),
                    "best_std": float(best.std()),
                    "best_epochs": [f[1] for f in found],
                    "last": float(last.mean()),
                    "last_std": float(last.std()),
                }
            )
    return rows


def _versus(rows: list[dict]) -> list[dict]:
    single = {(r["task"], r["metric"]): [] for r in rows if not r["multi_task"]}
    for r in rows:
        if not r["multi_task"]:
            single[r["task"], r["metric"]].append(r)
    out = []
    for m in (r for r in rows if r["multi_task"]):
        for s in single.get((m["task"], m["metric"]), []):
            out.append(
                {
                    "task": m["task"],
                    "metric": m["metric"],
                    "multi": m["group"],
                    "single": s["group"],
                    "multi_best": m["best"],
                    "single_best": s["best"],
                    "best_difference": m["best"] - s["best"],
                    "multi_last": m["last"],
                    "single_last": s["last"],
                    "last_difference": m["last"] - s["last"],
                    "multi_best_std": m["best_std"],
                    "single_best_std": s["best_std"],
                    "multi_last_std": m["last_std"],
                    "single_last_std": s["last_std"],
                    "multi_n": m["n"],
                    "single_n": s["n"],
                }
            )
    return sorted(out, key=lambda v: v["task"])


def _mean_std(mean: float, std: float, n: int) -> str:
    if not math.isfinite(mean):
        return "-"
    return f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f}"


def _signed(value: float) -> str:
    return f"{value:+.4f}" if math.isfinite(value) else "-"


def _text(rows: list[dict], versus: list[dict], split: str) -> str:
    runs = table(
        ["run / group", "runs", "tasks", "task", "metric", "best", "last"],
        [
            [
                r["group"],
                r["n"],
                "+".join(r["tasks"]),
                r["task"],
                r["metric"],
                _mean_std(r["best"], r["best_std"], r["n"]),
                _mean_std(r["last"], r["last_std"], r["n"]),
            ]
            for r in rows
        ],
    )
    heading = (
        f"{split} split: best epoch (chosen on validation where there is one) and last epoch;"
        " mean ± std over a group's folds"
    )
    lines = [heading, runs, ""]
    if versus:
        lines.append(f"multi-task vs single-task ({split}; difference = multi - single)")
        lines.append(
            table(
                [
                    "task",
                    "metric",
                    "multi-task",
                    "single-task",
                    "best multi",
                    "best single",
                    "best diff",
                    "last multi",
                    "last single",
                    "last diff",
                ],
                [
                    [
                        v["task"],
                        v["metric"],
                        v["multi"],
                        v["single"],
                        _mean_std(v["multi_best"], v["multi_best_std"], v["multi_n"]),
                        _mean_std(v["single_best"], v["single_best_std"], v["single_n"]),
                        _signed(v["best_difference"]),
                        _mean_std(v["multi_last"], v["multi_last_std"], v["multi_n"]),
                        _mean_std(v["single_last"], v["single_last_std"], v["single_n"]),
                        _signed(v["last_difference"]),
                    ]
                    for v in versus
                ],
            )
        )
    else:
        lines.append(
            "multi-task vs single-task: no task has both a multi-task and a single-task"
            " run among these"
        )
    return "\n".join(lines)


def compare(runs: Sequence[Run], *, split: str = "test") -> Comparison:
    """Runs side by side, and each task's multi-task runs against its single-task ones.

    Reads each run's `config.json` ("tasks": task names; optional "group": the experiment,
    "fold": the fold) and `history.json`. Runs sharing a "group" are folds of one experiment
    and are reported as mean ± std (population std, ddof 0); a run without one stands alone.
    For every task and metric (loss, accuracy or micro F1, macro F1): the value on `split` at
    the best epoch (see `best_and_last`) and at the last one. A run is multi-task when its
    config lists more than one task; `versus` pairs each with every single-task run of the
    same task.

    Args:
      runs: the runs to compare.
      split: the split whose values are reported ("test" or "validation").
    """
    if not runs:
        raise ValueError("compare needs at least one run")
    rows = [
        row
        for label, members in _groups(runs).items()
        for row in _group_rows(label, members, split)
    ]
    versus = _versus(rows)
    return Comparison(rows=rows, text=_text(rows, versus, split), versus=versus)


_PANELS = {
    "loss": "loss",
    "accuracy": "accuracy / micro F1",
    "micro_f1": "accuracy / micro F1",
    "macro_f1": "macro F1",
}


def compare_plot(comparison: Comparison, path: str | os.PathLike) -> Path:
    """Writes a bar chart of the comparison as a PNG: per metric, per task, one bar per run or
    group at its best epoch, error bars the std over folds. Returns the path."""
    tasks = list(dict.fromkeys(r["task"] for r in comparison.rows))
    groups = list(dict.fromkeys(r["group"] for r in comparison.rows))
    panels: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for title in dict.fromkeys(_PANELS[r["metric"]] for r in comparison.rows):
        panels[title] = {g: ([math.nan] * len(tasks), [0.0] * len(tasks)) for g in groups}
    for r in comparison.rows:
        heights, errors = panels[_PANELS[r["metric"]]][r["group"]]
        heights[tasks.index(r["task"])] = r["best"]
        errors[tasks.index(r["task"])] = r["best_std"]
    fig = plots.grouped_bars(tasks, panels, title="best epoch per task")
    return _write_atomic(Path(path), plots.png_bytes(fig))
