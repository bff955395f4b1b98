"""Comparing runs: best and last epoch per task, mean +- std over folds, multi- vs single-task."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mtjax import files, tables
from mtjax.runs import folder, plots
from mtjax.runs.folder import Run
from mtjax.train import history as records
from mtjax.train import metrics


class Comparison(NamedTuple):
    """Runs side by side (`compare`).

    rows: one per (group, task, metric): {"group", "runs" (paths), "folds", "tasks",
      "multi_task", "task", "metric", "headline" (whether it is the task's headline metric),
      "n", "best", "best_std", "best_epochs", "last", "last_std"}; values are means over the
      group's runs, stds over them (ddof 0).
    text: both tables for the terminal.
    versus: one per (task, metric, multi-task group, single-task group of that task):
      {"task", "metric", "headline", "multi", "single", "multi_best", "single_best",
      "best_difference", "multi_last", "single_last", "last_difference", "multi_best_std",
      "single_best_std", "multi_last_std", "single_last_std", "multi_n", "single_n"};
      difference = multi-task minus single-task.
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
    values = records.series(history, records.key(split, task, metric))
    guide = records.series(history, records.key("validation", task, metric))
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


def _tasks(config: Mapping, run: Run) -> dict[str, str | None]:
    """Task name -> kind (None where config.json gives names only), in config order."""
    tasks = config.get("tasks")
    if not tasks:
        raise ValueError(f"{run.path / folder.CONFIG} has no 'tasks': compare needs the task names")
    out: dict[str, str | None] = {}
    for t in tasks:
        if isinstance(t, str):
            out[t] = None
        else:
            out[t["name"]] = t.get("kind")
    return out


def _metrics(history: Sequence[Mapping], task: str, kind: str | None) -> tuple[str, ...]:
    """("loss", the task's headline metric, "macro_f1").

    The headline is `metrics.headline_metric(kind)`; for a task of unknown kind, the one
    the history holds.
    """
    if kind is None:  # config.json names the tasks only: the history says which
        multilabel = records.key(task, metrics.headline_metric("multilabel"))
        held = any(records.key(s, multilabel) in r for r in history for s in records.SPLITS)
        kind = "multilabel" if held else "multiclass"
    return ("loss", metrics.headline_metric(kind), "macro_f1")


class _Member(NamedTuple):
    run: Run
    fold: int | None
    tasks: tuple[str, ...]
    kinds: tuple[str | None, ...]  # of each task; None where config.json does not say
    history: list[dict]


def _groups(runs: Sequence[Run]) -> dict[str, list[_Member]]:
    """Label -> the runs of one experiment: those sharing config "group", else one run each.

    A lone run's label is its name, or its path when the name is taken.
    """
    keyed: dict[tuple[str, str], list[_Member]] = {}
    for run in runs:
        config = folder.read_config(run)
        tasks = _tasks(config, run)
        member = _Member(
            run, config.get("fold"), tuple(tasks), tuple(tasks.values()), folder.read_history(run)
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
    for task, kind in zip(members[0].tasks, members[0].kinds):
        names = _metrics(members[0].history, task, kind)
        for metric in names:
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
                    "headline": metric == names[1],
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
    single: dict[tuple[str, str], list[dict]] = {
        (r["task"], r["metric"]): [] for r in rows if not r["multi_task"]
    }
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
                    "headline": m["headline"],
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


def mean_std(mean: float, std: float, n: int) -> str:
    """A mean over n runs as text: "0.7500 ± 0.2500" (n > 1), "0.7500" (n = 1), "-" (NaN).

    Args:
      mean: the mean over the runs.
      std: their standard deviation.
      n: how many runs.
    """
    if not math.isfinite(mean):
        return "-"
    return f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f}"


def _signed(value: float) -> str:
    return f"{value:+.4f}" if math.isfinite(value) else "-"


def _text(rows: list[dict], versus: list[dict], split: str) -> str:
    runs = tables.table(
        ["run / group", "runs", "tasks", "task", "metric", "best", "last"],
        [
            [
                r["group"],
                r["n"],
                "+".join(r["tasks"]),
                r["task"],
                r["metric"],
                mean_std(r["best"], r["best_std"], r["n"]),
                mean_std(r["last"], r["last_std"], r["n"]),
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
            tables.table(
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
                        mean_std(v["multi_best"], v["multi_best_std"], v["multi_n"]),
                        mean_std(v["single_best"], v["single_best_std"], v["single_n"]),
                        _signed(v["best_difference"]),
                        mean_std(v["multi_last"], v["multi_last_std"], v["multi_n"]),
                        mean_std(v["single_last"], v["single_last_std"], v["single_n"]),
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
    """Writes a bar chart of the comparison as a PNG; returns its path.

    Per metric, per task, one bar per run or group at its best epoch, error bars the std
    over folds.
    """
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
    return files.write_bytes(Path(path), plots.png_bytes(fig))
