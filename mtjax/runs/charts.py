"""Figures of a comparison of runs (`mtjax.runs.compare`): bars with mean ± std error bars.

`comparison_figure`: every run or group per task, one panel per metric. `versus_figure`:
multi-task against single-task per task, one panel per metric. Both are pure (a `Comparison`
in, a matplotlib `Figure` out; `mtjax.runs.comparison` writes them) and name the split in
their title. Every bar is a mean over a group's folds × seeds at each run's chosen epoch,
its error bar ± the sample std (none where a group has one run).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from mtjax.runs import plots

if TYPE_CHECKING:
    from mtjax.runs.comparison import Comparison

# metric -> the panel it is drawn in (accuracy and micro F1 are the headline metrics)
PANELS = {
    "loss": "loss",
    "accuracy": "accuracy / micro F1",
    "micro_f1": "accuracy / micro F1",
    "macro_f1": "macro F1",
}
SINGLE = "single-task"  # the series of single-task references in `versus_figure`


def panel(metric: str) -> str:
    """The panel (and y-axis label) a metric is drawn in: `PANELS`, else its name."""
    return PANELS.get(metric, metric)


def grouped_bars(
    categories: Sequence[str],
    panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
    *,
    title: str | None = None,
    ylabels: Mapping[str, str] | None = None,
) -> Figure:
    """Side-by-side bars with error bars, one panel per entry of `panels`.

    Args:
      categories: the x positions' names (C), e.g. task names.
      panels: panel title -> series name -> (heights [C], errors [C]); NaN draws no bar,
        a NaN error an error bar of length 0.
      title: the figure's title.
      ylabels: panel title -> its y-axis label; a panel not named gets its title.
    """
    fig, axes = plots.grid(
        len(panels), width=max(5.5, 1.2 * len(categories) + 2.0), height=3.5, max_cols=1
    )
    x = np.arange(len(categories), dtype=np.float64)
    for ax, (name, bars) in zip(axes, panels.items()):
        width = 0.8 / max(1, len(bars))
        for i, (label, (heights, errors)) in enumerate(bars.items()):
            h = np.asarray(heights, np.float64)
            e = np.nan_to_num(np.asarray(errors, np.float64))
            drawn = np.isfinite(h)
            if drawn.any():
                offset = (i - (len(bars) - 1) / 2) * width
                ax.bar(x[drawn] + offset, h[drawn], width, yerr=e[drawn], capsize=3, label=label)
        ax.set_xticks(x, categories)
        ax.set_title(name)
        ax.set_ylabel((ylabels or {}).get(name, name))
        if ax.containers:
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def _spread(std: float) -> float:
    return std if math.isfinite(std) else 0.0


def comparison_figure(comparison: Comparison) -> Figure:
    """Per metric, per task, one bar per run or group at its chosen epochs, ± the std.

    Panels are titled "{metric} per task" with the metric as y label; the title names the
    split.
    """
    rows = comparison.rows
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    groups = list(dict.fromkeys(r["group"] for r in rows))
    titles = {name: f"{name} per task" for name in dict.fromkeys(panel(r["metric"]) for r in rows)}
    panels = {
        t: {g: ([math.nan] * len(tasks), [0.0] * len(tasks)) for g in groups}
        for t in titles.values()
    }
    for r in rows:
        heights, errors = panels[titles[panel(r["metric"])]][r["group"]]
        heights[tasks.index(r["task"])] = r["mean"]
        errors[tasks.index(r["task"])] = _spread(r["std"])
    title = (
        f"{comparison.split} split, each run at its chosen epoch\n"
        "mean ± sample std over folds × seeds"
    )
    ylabels = {t: name for name, t in titles.items()}
    return grouped_bars(tasks, panels, title=title, ylabels=ylabels)


def versus_figure(comparison: Comparison) -> Figure:
    """Multi-task against single-task per task: mean ± std bars, one panel per metric.

    x: each task with its single-task group ("sex" over "vs st-sex"); bars: each multi-task
    group's mean of the task, and the single-task group's ("single-task"), each ± its
    sample std over folds × seeds (`Comparison.versus`).

    Raises:
      ValueError: the comparison sets no multi-task group against a single-task one.
    """
    versus = comparison.versus
    if not versus:
        raise ValueError("versus_figure: the comparison has no multi-task vs single-task pair")
    pairs = list(dict.fromkeys((v["task"], v["single"]) for v in versus))
    multis = list(dict.fromkeys(v["multi"] for v in versus))
    names = list(dict.fromkeys(panel(v["metric"]) for v in versus))
    titles = {name: f"{name}: multi-task vs single-task" for name in names}
    nan = [math.nan] * len(pairs)
    panels = {
        titles[name]: {s: (list(nan), [0.0] * len(pairs)) for s in [*multis, SINGLE]}
        for name in names
    }
    for v in versus:
        bars = panels[titles[panel(v["metric"])]]
        at = pairs.index((v["task"], v["single"]))
        for series, side in ((v["multi"], "multi"), (SINGLE, "single")):
            bars[series][0][at] = v[f"{side}_mean"]
            bars[series][1][at] = _spread(v[f"{side}_std"])
    title = (
        f"multi-task vs single-task per task, {comparison.split} split\n"
        "each run at its chosen epoch\nmean ± sample std over folds × seeds"
    )
    categories = [f"{task}\nvs {single}" for task, single in pairs]
    ylabels = {t: name for name, t in titles.items()}
    return grouped_bars(categories, panels, title=title, ylabels=ylabels)
