"""Reporting runs: the summary table of an experiment, finding run folders, `mtjax report`."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from mtjax import runs, tables


def summary(comparison: runs.Comparison, *, settings: Mapping[str, str] | None = None) -> str:
    """The summary table of an experiment's runs.

    Per group and task: the test headline metric (accuracy or micro F1), mean ± std over
    folds, at the best epoch and the last; then multi-task vs single-task, if any.

    Args:
      comparison: `runs.compare` of the runs.
      settings: group -> its choices besides the datasets; when given, a multi-task group is
        set against the single-task groups with the same choices only.
    """
    rows = [
        [
            r["group"],
            r["task"],
            r["metric"],
            r["n"],
            runs.mean_std(r["best"], r["best_std"], r["n"]),
            runs.mean_std(r["last"], r["last_std"], r["n"]),
        ]
        for r in comparison.rows
        if r["headline"]
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
            runs.mean_std(v["multi_best"], v["multi_best_std"], v["multi_n"]),
            runs.mean_std(v["single_best"], v["single_best_std"], v["single_n"]),
            f"{v['best_difference']:+.4f}",
        ]
        for v in comparison.versus
        if v["headline"]
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


def find_runs(paths: Sequence[str | os.PathLike]) -> list[runs.Run]:
    """Run folders (those holding config.json): each path itself, or the runs under it.

    Raises:
      FileNotFoundError: a path that is not a folder.
    """
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


def report(
    paths: Sequence[str | os.PathLike],
    *,
    split: str = "test",
    plot: str | os.PathLike | None = None,
) -> runs.Comparison:
    """Prints the comparison of the runs at `paths` and writes its plot (`mtjax report`).

    Runs without a history yet are skipped, each named on stderr.

    Args:
      paths: run folders, or folders holding runs.
      split: the split compared ("test", "validation").
      plot: where the PNG goes; default `comparison.png` inside the first folder of runs, or
        next to the first run.

    Returns:
      The comparison.

    Raises:
      FileNotFoundError: no run folder with a history under `paths`.
    """
    found = find_runs(paths)
    complete = [r for r in found if (r.path / runs.HISTORY).is_file()]
    for run in found:
        if run not in complete:
            print(f"skipped {run.path}: no history.json yet", file=sys.stderr)
    if not complete:
        raise FileNotFoundError(f"no run folders with a history under {[str(p) for p in paths]}")
    comparison = runs.compare(complete, split=split)
    print(comparison.text)
    first = Path(paths[0])
    where = Path(plot) if plot else (first.parent if (first / runs.CONFIG).is_file() else first)
    if not plot:
        where = where / "comparison.png"
    runs.compare_plot(comparison, where)
    print(f"\nwrote {where}")
    return comparison
