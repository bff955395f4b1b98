"""Comparing runs, each at its chosen epoch: groups of folds x seeds, multi- vs single-task.

One run is one model. Every number of a run is its value at the epoch its stopping rule
chose (the one `fit` restored, recorded in config.json: `folder.chosen_epoch`), the same
epoch for every task and metric; a run folder that records none is read at its last epoch,
and the table says so. Nothing is ever chosen on the split being reported.

A group (runs sharing config "group") is one experiment over folds x seeds: mean ± sample
std (ddof 1). A multi-task group is set against each single-task group of each of its tasks:
the difference of the means, a paired test over the runs matched by (fold, seed), and ΔM %
over its tasks (Maninis et al. 2019, "Attentive Single-Tasking of Multiple Tasks").
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mtjax import files, tables
from mtjax.runs import charts, folder, plots
from mtjax.runs.folder import Run
from mtjax.train import history as records
from mtjax.train import metrics

# Below 6 pairs the exact two-sided Wilcoxon test cannot reach p < 0.05 (its least p-value
# is 2 / 2^n): fewer pairs get the paired t-test.
WILCOXON_MIN_PAIRS = 6


class Comparison(NamedTuple):
    """Runs side by side (`compare`).

    rows: one per (group, task, metric): {"group", "runs" (paths), "folds", "seeds",
      "tasks", "multi_task", "task", "metric", "headline" (whether it is the task's
      headline metric), "epochs" (each run's chosen epoch), "chosen_by" (what chose it,
      `folder.Chosen.by`), "values" (each run's value at that epoch), "n" (finite values),
      "mean", "std" (sample std, ddof 1; NaN for n < 2)}.
    text: the tables for the terminal.
    versus: one per (task, metric, multi-task group, single-task group of that task):
      {"task", "metric", "headline", "multi", "single", "multi_tasks", "multi_mean",
      "multi_std", "multi_n", "single_mean", "single_std", "single_n", "difference"
      (multi mean - single mean), "pairs" ([fold, seed] matched), "n_pairs", "test"
      ("wilcoxon", "paired t", or None under 2 pairs), "statistic", "p_value"}.
    delta_m: one per (multi-task group, metric slot "headline", "loss" or "macro_f1"):
      {"multi", "metric", "tasks" (those with one single-task reference), "single" (task
      -> its group), "missing" (tasks without one), "ambiguous" (tasks with several),
      "per_task" (task -> signed relative change, %), "delta_m" (their mean, %; NaN when
      a task is ambiguous or none has a reference)}.
    split: the split every value is of.
    """

    rows: list[dict]
    text: str
    versus: list[dict]
    delta_m: list[dict]
    split: str = "test"


def lower_is_better(metric: str) -> bool:
    """Whether a lower value of `metric` is better (losses, the EER)."""
    return metrics.lower_is_better(metric)


def value_at(history: Sequence[Mapping], epoch: int | None, key: str) -> float:
    """`key` in the record of `epoch`; NaN where there is none."""
    for record in history:
        if epoch is not None and record.get("epoch") == epoch:
            return float(records.value(record, key, default=math.nan))
    return math.nan


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
    seed: int
    tasks: tuple[str, ...]
    kinds: tuple[str | None, ...]  # of each task; None where config.json does not say
    history: list[dict]
    chosen: folder.Chosen


def _groups(runs: Sequence[Run]) -> dict[str, list[_Member]]:
    """Label -> the runs of one experiment: those sharing config "group", else one run each.

    A lone run's label is its name, or its path when the name is taken.
    """
    keyed: dict[tuple[str, str], list[_Member]] = {}
    for run in runs:
        config = folder.read_config(run)
        tasks = _tasks(config, run)
        history = folder.read_history(run)
        member = _Member(
            run,
            config.get("fold"),
            int(config.get("seed") or 0),
            tuple(tasks),
            tuple(tasks.values()),
            history,
            folder.chosen_epoch(run, config, history),
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
        if any((m.fold, m.seed) == (member.fold, member.seed) for m in members):
            raise ValueError(
                f"group {group!r} has fold {member.fold} twice (seed {member.seed}; run {run.path})"
            )
        members.append(member)
    labels = {
        key: key[1] if key[0] == "group" else members[0].run.name for key, members in keyed.items()
    }
    taken = list(labels.values())
    return {
        (key[1] if taken.count(label) > 1 else label): members
        for (key, members), label in zip(keyed.items(), labels.values())
    }


def mean_and_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample std with ddof 1, n) of the finite values; NaN std for n < 2."""
    found = np.asarray(values, np.float64)
    found = found[np.isfinite(found)]
    n = int(found.size)
    mean = float(found.mean()) if n else math.nan
    return mean, float(found.std(ddof=1)) if n > 1 else math.nan, n


def _group_rows(label: str, members: list[_Member], split: str) -> list[dict]:
    first = members[0]
    group = {
        "group": label,
        "runs": [str(m.run.path) for m in members],
        "folds": [m.fold for m in members],
        "seeds": [m.seed for m in members],
        "tasks": list(first.tasks),
        "multi_task": len(first.tasks) > 1,
        "epochs": [m.chosen.epoch for m in members],
        "chosen_by": [m.chosen.by for m in members],
    }
    rows = []
    for task, kind in zip(first.tasks, first.kinds):
        names = _metrics(first.history, task, kind)
        for metric in names:
            key = records.key(split, task, metric)
            values = [value_at(m.history, m.chosen.epoch, key) for m in members]
            mean, std, n = mean_and_std(values)
            row = {"task": task, "metric": metric, "headline": metric == names[1], "values": values}
            rows.append({**group, **row, "n": n, "mean": mean, "std": std})
    return rows


def paired_test(multi: Sequence[float], single: Sequence[float]) -> tuple[str | None, float, float]:
    """(test, statistic, two-sided p-value) of paired values, multi-task against single-task.

    The Wilcoxon signed-rank test (`scipy.stats.wilcoxon`, its defaults: zero differences
    dropped) for n >= `WILCOXON_MIN_PAIRS` pairs, the paired t-test (`scipy.stats.ttest_rel`)
    for 2 <= n < that; (None, NaN, NaN) for fewer. Where the answer is undefined it is NaN:
    every difference 0 for Wilcoxon, and for the t-test differences that are all equal (no
    spread: rounding alone would otherwise give t = 1e16 and p = 0).
    """
    n = len(multi)
    if n != len(single):
        raise ValueError(f"paired_test: {n} multi-task values but {len(single)} single-task")
    if n < 2:
        return None, math.nan, math.nan
    from scipy import stats  # slow to import: reading runs without a test needs none

    test = "wilcoxon" if n >= WILCOXON_MIN_PAIRS else "paired t"
    differences = np.asarray(multi, np.float64) - np.asarray(single, np.float64)
    spread = float(np.ptp(differences)) if differences.size else 0.0
    if test == "paired t" and spread <= 1e-9 * max(1.0, float(np.abs(differences).max())):
        return test, math.nan, math.nan
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            if test == "wilcoxon":
                result: Any = stats.wilcoxon(multi, single)
            else:
                result = stats.ttest_rel(multi, single)
        except ValueError:  # every difference 0, in some scipy versions
            return test, math.nan, math.nan
    return test, float(result.statistic), float(result.pvalue)


def _pairs(m: dict, s: dict) -> tuple[list[list], list[float], list[float]]:
    """The (fold, seed) keys both rows have a finite value at (in `m`'s order), and the values."""
    single = dict(zip(zip(s["folds"], s["seeds"]), s["values"]))
    found = [
        (k, v, single[k])
        for k, v in zip(zip(m["folds"], m["seeds"]), m["values"])
        if k in single and math.isfinite(v) and math.isfinite(single[k])
    ]
    return [list(k) for k, _, _ in found], [v for _, v, _ in found], [w for _, _, w in found]


def _versus(rows: list[dict], settings: Mapping[str, Any] | None) -> list[dict]:
    single: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if not r["multi_task"]:
            single.setdefault((r["task"], r["metric"]), []).append(r)
    out = []
    for m in (r for r in rows if r["multi_task"]):
        for s in single.get((m["task"], m["metric"]), []):
            if settings is not None and settings.get(m["group"]) != settings.get(s["group"]):
                continue
            pairs, x, y = _pairs(m, s)
            test, statistic, p_value = paired_test(x, y)
            out.append(
                {
                    "task": m["task"],
                    "metric": m["metric"],
                    "headline": m["headline"],
                    "multi": m["group"],
                    "single": s["group"],
                    "multi_tasks": m["tasks"],
                    **{f"multi_{k}": m[k] for k in ("mean", "std", "n")},
                    **{f"single_{k}": s[k] for k in ("mean", "std", "n")},
                    "difference": m["mean"] - s["mean"],
                    "pairs": pairs,
                    "n_pairs": len(pairs),
                    "test": test,
                    "statistic": statistic,
                    "p_value": p_value,
                }
            )
    return sorted(out, key=lambda v: v["task"])


def _slot(entry: Mapping) -> str:
    return "headline" if entry["headline"] else entry["metric"]


def delta_m(versus: Sequence[Mapping]) -> list[dict]:
    """ΔM % of each multi-task group and metric slot, from `Comparison.versus` entries.

    ΔM = mean over tasks k of (-1)^l_k (M_multi,k - M_single,k) / M_single,k * 100, l_k = 1
    where lower is better (the loss), M the group means (Maninis et al. 2019): > 0 when
    multi-task training helps on average. A task with several single-task references among
    `versus` makes ΔM NaN (filter `versus`, or pass `compare` its `settings`).
    """
    by_multi: dict[tuple[str, str], list[Mapping]] = {}
    for v in versus:
        by_multi.setdefault((v["multi"], _slot(v)), []).append(v)
    out = []
    for (multi, slot), entries in by_multi.items():
        per: dict[str, list[Mapping]] = {}
        for v in entries:
            per.setdefault(v["task"], []).append(v)
        order = [t for t in entries[0]["multi_tasks"] if t in per]  # the group's task order
        used = {t: per[t][0] for t in order if len(per[t]) == 1}
        change = {}
        for task, v in used.items():
            sign = -1.0 if lower_is_better(v["metric"]) else 1.0
            base = v["single_mean"]
            change[task] = sign * (v["multi_mean"] - base) / base * 100 if base else math.nan
        ambiguous = [t for t in order if len(per[t]) > 1]
        value = float(np.mean(list(change.values()))) if change and not ambiguous else math.nan
        out.append(
            {
                "multi": multi,
                "metric": slot,
                "tasks": list(used),
                "single": {t: v["single"] for t, v in used.items()},
                "missing": [t for t in entries[0]["multi_tasks"] if t not in per],
                "ambiguous": ambiguous,
                "per_task": change,
                "delta_m": value,
            }
        )
    return out


def mean_std(mean: float, std: float, n: int) -> str:
    """A mean over n runs as text: "0.7500 ± 0.2500" (n > 1), "0.7500" (n = 1), "-" (NaN).

    Args:
      mean: the mean over the runs.
      std: their (sample) standard deviation.
      n: how many runs.
    """
    if not math.isfinite(mean):
        return "-"
    return f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f}"


def _signed(value: float, digits: int = 4) -> str:
    return f"{value:+.{digits}f}" if math.isfinite(value) else "-"


def _p(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.4f}" if value >= 1e-4 else f"{value:.1e}"


TEST_NAMES = {"wilcoxon": "Wilcoxon", "paired t": "paired t", None: "-"}


def rows_table(rows: Sequence[Mapping]) -> str:
    """The rows as a table: each group at its runs' chosen epochs, mean ± std."""

    def cells(r: Mapping) -> list:
        epochs = ",".join("-" if e is None else str(e) for e in r["epochs"])
        chosen = [epochs, ", ".join(dict.fromkeys(r["chosen_by"]))]
        run = [r["group"], len(r["runs"]), "+".join(r["tasks"]), r["task"], r["metric"]]
        return [*run, *chosen, mean_std(r["mean"], r["std"], r["n"])]

    headers = ["run / group", "runs", "tasks", "task", "metric", "epoch", "chosen by"]
    return tables.table([*headers, "mean ± std"], [cells(r) for r in rows])


def versus_table(versus: Sequence[Mapping]) -> str:
    """Multi-task against single-task per task: both, Δ, the paired test, its n and p."""

    def cells(v: Mapping) -> list:
        sides = [mean_std(v[f"{s}_mean"], v[f"{s}_std"], v[f"{s}_n"]) for s in ("multi", "single")]
        test = [_signed(v["difference"]), TEST_NAMES[v["test"]], v["n_pairs"], _p(v["p_value"])]
        return [v["task"], v["metric"], v["multi"], v["single"], *sides, *test]

    headers = ["task", "metric", "multi-task", "single-task", "multi", "single", "Δ"]
    return tables.table([*headers, "test", "n pairs", "p"], [cells(v) for v in versus])


def delta_m_table(entries: Sequence[Mapping]) -> str:
    """ΔM % per multi-task group and metric slot, with the tasks it covers."""

    def note(e: Mapping) -> str:
        parts = [f"no single-task run of {', '.join(e['missing'])}"] if e["missing"] else []
        if e["ambiguous"]:
            parts.append(f"several single-task groups of {', '.join(e['ambiguous'])}")
        return "; ".join(parts)

    return tables.table(
        ["multi-task", "metric", "over tasks", "ΔM %", "note"],
        [
            [e["multi"], e["metric"], "+".join(e["tasks"]), _signed(e["delta_m"], 2), note(e)]
            for e in entries
        ],
    )


def versus_text(versus: Sequence[Mapping], split: str, entries: Sequence[Mapping]) -> str:
    """The multi- vs single-task part of a comparison's text (`versus`, `delta_m`)."""
    if not versus:
        return (
            "multi-task vs single-task: no task has both a multi-task and a single-task"
            " group among these"
        )
    return "\n".join(
        [
            f"multi-task vs single-task ({split}; Δ = multi - single of the means over folds ×"
            " seeds; paired test over runs matched by (fold, seed), two-sided: Wilcoxon"
            f" signed-rank from {WILCOXON_MIN_PAIRS} pairs, paired t below)",
            versus_table(versus),
            "",
            "ΔM % (Maninis et al. 2019): mean over tasks of ±(multi - single) / single × 100,"
            " + where multi-task is better (for the loss, lower)",
            delta_m_table(entries),
        ]
    )


def compare(
    runs: Sequence[Run], *, split: str = "test", settings: Mapping[str, Any] | None = None
) -> Comparison:
    """Runs side by side at their chosen epochs, and multi-task groups against single-task.

    Reads each run's `config.json` ("tasks": task names or `Task.to_json()`; optional
    "group": the experiment, "fold", "seed", "chosen_epoch") and `history.json`. Runs sharing
    a "group" are its folds x seeds, reported as mean ± sample std (ddof 1); a run without one
    stands alone. For every task and metric (loss, the headline metric, macro F1): the value
    on `split` at the run's chosen epoch (`folder.chosen_epoch`). A group is multi-task when
    its config lists more than one task; `versus` pairs it with the single-task groups of
    each of its tasks, `delta_m` sums the pairs up per group.

    Args:
      runs: the runs to compare.
      split: the split whose values are reported ("test" or "validation").
      settings: group -> its choices besides the datasets (any comparable value); when
        given, a multi-task group is set against single-task groups with equal settings only.
    """
    if not runs:
        raise ValueError("compare needs at least one run")
    rows = [
        row
        for label, members in _groups(runs).items()
        for row in _group_rows(label, members, split)
    ]
    versus = _versus(rows, settings)
    entries = delta_m(versus)
    heading = (
        f"{split} split at each run's chosen epoch (the one its stopping rule restored; the"
        " last where the run folder records none), one epoch per run for every task and"
        " metric; mean ± sample std (ddof 1) over a group's folds × seeds"
    )
    text = "\n".join([heading, rows_table(rows), "", versus_text(versus, split, entries)])
    return Comparison(rows=rows, text=text, versus=versus, delta_m=entries, split=split)


def compare_plot(comparison: Comparison, path: str | os.PathLike) -> Path:
    """Writes `charts.comparison_figure` as a PNG: per metric and task, each group's mean ± std."""
    return files.write_bytes(Path(path), plots.png_bytes(charts.comparison_figure(comparison)))


def versus_plot(comparison: Comparison, path: str | os.PathLike) -> Path | None:
    """Writes `charts.versus_figure` as a PNG: per task, multi- vs single-task mean ± std.

    Returns its path, or None (nothing written) when no group is set against another.
    """
    if not comparison.versus:
        return None
    return files.write_bytes(Path(path), plots.png_bytes(charts.versus_figure(comparison)))
