"""Reporting runs: the summary table of an experiment, finding run folders, `mtjax report`.

Every number is a run's value at its chosen epoch (`runs.compare`); multi-task groups are set
against the single-task groups of the same experiment choices (`sweeps.reference_key`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mtjax import runs
from mtjax.experiments import sweeps
from mtjax.runs import comparison as comparisons


def summary(comparison: runs.Comparison, *, settings: Mapping[str, Any] | None = None) -> str:
    """The summary table of an experiment's runs.

    Per group and task: the test headline metric at each run's chosen epoch (named, with
    what chose it), mean ± sample std over folds × seeds; then multi-task vs single-task on
    it, if any: both, Δ, the paired test with its n and p-value, and ΔM %.

    Args:
      comparison: `runs.compare` of the runs (`compare_runs` pairs groups by their
        settings already).
      settings: group -> its choices besides the datasets; when given, a multi-task group is
        set against the single-task groups with the same choices only.
    """
    rows = [r for r in comparison.rows if r["headline"]]
    lines = [
        "test headline metric at each run's chosen epoch, mean ± sample std over folds × seeds",
        comparisons.rows_table(rows),
    ]
    versus = [
        v
        for v in comparison.versus
        if v["headline"]
        and (settings is None or settings.get(v["multi"]) == settings.get(v["single"]))
    ]
    if versus:
        entries = [e for e in comparisons.delta_m(versus) if e["metric"] == "headline"]
        lines += ["", comparisons.versus_text(versus, "test", entries)]
    return "\n".join(lines)


def settings_of(found: Sequence[runs.Run]) -> dict[str, str]:
    """Group -> `sweeps.reference_key` of its experiment, for the runs an experiment wrote.

    A run whose config.json has no "experiment" (a run of `fit` alone) is left out, and is
    set against the other runs left out.
    """
    out = {}
    for run in found:
        config = runs.read_config(run)
        if config.get("group") and isinstance(config.get("experiment"), Mapping):
            out[str(config["group"])] = sweeps.reference_key(config["experiment"])
    return out


def compare_runs(found: Sequence[runs.Run], *, split: str = "test") -> runs.Comparison:
    """`runs.compare` of the runs, multi-task groups set against single-task ones alike.

    Alike: of the same experiment choices besides the datasets (`settings_of`).
    """
    return runs.compare(found, split=split, settings=settings_of(found))


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
        next to the first run. Where multi-task groups meet single-task ones, the per-task
        chart of both (`versus_plot`) goes next to it, `{stem}_versus.png`.

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
    comparison = compare_runs(complete, split=split)
    print(comparison.text)
    first = Path(paths[0])
    where = Path(plot) if plot else (first.parent if (first / runs.CONFIG).is_file() else first)
    if not plot:
        where = where / "comparison.png"
    runs.compare_plot(comparison, where)
    print(f"\nwrote {where}")
    versus = comparisons.versus_plot(comparison, where.with_name(f"{where.stem}_versus.png"))
    if versus is not None:
        print(f"wrote {versus}")
    return comparison
