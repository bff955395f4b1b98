"""Figures of runs: learning curves, scores, combiner weights, confusion matrices.

Every figure function is pure (`save`, `shown_run` and `write_*` touch files): plain data
in (flat history records as `fit` writes them, `evaluate` reports, `Task` values), a
matplotlib `Figure` out. Figures are built with
`matplotlib.figure.Figure` and drawn on the Agg canvas, so nothing needs a display and no
pyplot state is touched (a notebook's backend is left as it is). `mtjax.runs` writes them;
`mtjax.runs.charts` draws comparisons of runs.

Epochs are 0-based everywhere, as in history.json, the checkpoints and `reports/epoch_000`:
the curves' x ticks are whole epochs, the chosen epoch is marked "chosen (epoch N)", and the
terminal says `epoch_text`, "epoch 3 of 0-9".
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mtjax import files
from mtjax.runs import folder
from mtjax.runs.folder import Run
from mtjax.tasks import Task
from mtjax.train import history as records
from mtjax.train import metrics

SPLITS = records.SPLITS
COLORS = {"train": "tab:blue", "validation": "tab:orange", "test": "tab:green"}


def _epochs(history: Sequence[Mapping]) -> np.ndarray:
    return np.array([int(r["epoch"]) for r in history], np.int64)


def epoch_text(epoch: int, last: int) -> str:
    """An epoch as the terminal shows it, 0-based like every file: "epoch 3 of 0-9".

    Args:
      epoch: the epoch (0 is the first).
      last: the run's last epoch (epochs - 1).
    """
    return f"epoch {int(epoch)} of 0-{int(last)}"


def run_title(what: str, name: str | None = None, fold: int | None = None) -> str:
    """A figure's title naming its run: "learning curves: exp, fold 1" (`what` alone if none)."""
    named = [part for part in (name, None if fold is None else f"fold {fold}") if part]
    return f"{what}: {', '.join(named)}" if named else what


def _epoch_axis(ax: Axes, epochs: np.ndarray, chosen: int | None) -> None:
    """Whole-epoch x ticks; at `chosen`, a dotted vertical line and a ring on every curve.

    The line is labelled "chosen (epoch N)" for the legend; nothing is marked when no curve
    is drawn or `chosen` is not among `epochs`.
    """
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    curves = list(ax.get_lines())
    if chosen is None or not curves or int(chosen) not in epochs:
        return
    at = int(np.flatnonzero(epochs == int(chosen))[0])
    points = [(float(np.asarray(c.get_ydata(), np.float64)[at]), c.get_color()) for c in curves]
    points = [(y, color) for y, color in points if math.isfinite(y)]
    ax.axvline(chosen, color="0.35", linestyle=":", linewidth=1.2, label=f"chosen (epoch {chosen})")
    if points:
        ax.scatter(
            [int(chosen)] * len(points),
            [y for y, _ in points],
            s=45,
            facecolors="none",
            edgecolors=[color for _, color in points],
            linewidths=1.5,
            zorder=3,
        )


def grid(n: int, *, width: float, height: float, max_cols: int) -> tuple[Figure, list[Axes]]:
    """A figure with `n` axes in rows of at most `max_cols`, unused cells removed."""
    cols = max(1, min(n, max_cols))
    rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]


def _plot_if_any(ax: Axes, x: np.ndarray, y: np.ndarray, **style) -> bool:
    if not np.isfinite(y).any():
        return False
    ax.plot(x, y, marker="o", markersize=3, **style)
    return True


def learning_curves(
    history: Sequence[Mapping],
    tasks: Sequence[Task],
    *,
    chosen: int | None = None,
    name: str | None = None,
    fold: int | None = None,
) -> Figure:
    """One panel per task: its train, validation and test loss over the epochs.

    Args:
      history: the run's flat records.
      tasks: the run's tasks, one panel each.
      chosen: the run's chosen epoch, marked on every panel; None marks none.
      name: the run (experiment) named in the title.
      fold: its fold, named in the title too.
    """
    fig, axes = grid(len(tasks), width=4.0, height=3.0, max_cols=3)
    epochs = _epochs(history)
    for ax, task in zip(axes, tasks):
        for split in SPLITS:
            _plot_if_any(
                ax,
                epochs,
                records.series(history, records.key(split, task.name, "loss")),
                label=split,
                color=COLORS[split],
            )
        ax.set(title=task.name, xlabel="epoch", ylabel="loss")
        _epoch_axis(ax, epochs, chosen)
        if ax.get_lines():
            ax.legend(fontsize="small")
    fig.suptitle(run_title("learning curves", name, fold))
    return fig


def scores(
    history: Sequence[Mapping],
    tasks: Sequence[Task],
    *,
    chosen: int | None = None,
    name: str | None = None,
    fold: int | None = None,
) -> Figure:
    """One panel per task: validation and test headline score (solid) and macro F1 (dashed).

    `chosen`, `name`, `fold`: as for `learning_curves`.
    """
    fig, axes = grid(len(tasks), width=4.0, height=3.0, max_cols=3)
    epochs = _epochs(history)
    for ax, task in zip(axes, tasks):
        head = metrics.headline_metric(task.kind)
        for split in SPLITS[1:]:
            _plot_if_any(
                ax,
                epochs,
                records.series(history, records.key(split, task.name, head)),
                label=f"{split} {head}",
                color=COLORS[split],
            )
            _plot_if_any(
                ax,
                epochs,
                records.series(history, records.key(split, task.name, "macro_f1")),
                label=f"{split} macro_f1",
                color=COLORS[split],
                linestyle="--",
            )
        ax.set(title=task.name, xlabel="epoch", ylabel="score", ylim=(0.0, 1.02))
        _epoch_axis(ax, epochs, chosen)
        if ax.get_lines():
            ax.legend(fontsize="small")
    fig.suptitle(run_title("scores", name, fold))
    return fig


def weights(
    history: Sequence[Mapping],
    tasks: Sequence[Task],
    *,
    chosen: int | None = None,
    name: str | None = None,
    fold: int | None = None,
) -> Figure:
    """The combiner's weight of every task over the epochs, one line per task.

    `chosen`, `name`, `fold`: as for `learning_curves`.
    """
    fig = Figure(figsize=(6.0, 3.5), layout="constrained")
    ax = fig.subplots()
    epochs = _epochs(history)
    for task in tasks:
        w = records.series(history, records.key("train", "weights", task.name))
        _plot_if_any(ax, epochs, w, label=task.name)
    ax.set(title=run_title("combiner weights", name, fold), xlabel="epoch", ylabel="weight")
    _epoch_axis(ax, epochs, chosen)
    if ax.get_lines():
        ax.legend(fontsize="small")
    return fig


ANNOTATED_UP_TO = 20  # label count up to which every cell of a matrix shows its count
MAX_LABEL_PANELS = 16  # multilabel confusion: panels drawn, for the most frequent labels


def _matrix(ax: Axes, counts: np.ndarray, labels: Sequence[str], *, title: str | None) -> None:
    """Counts as an image, rows true labels, columns predictions.

    Up to `ANNOTATED_UP_TO` labels each cell shows its count; past that a colour bar does
    (thousands of text cells took seconds to lay out).
    """
    image = ax.imshow(counts, cmap="Blues", vmin=0, vmax=max(1, int(counts.max(initial=0))))
    n = len(labels)
    fontsize = "small" if n <= 10 else "xx-small"
    ax.set_xticks(
        range(n),
        labels,
        rotation=45 if n > 2 else 0,
        ha="right" if n > 2 else "center",
        fontsize=fontsize,
    )
    ax.set_yticks(range(n), labels, fontsize=fontsize)
    ax.set(xlabel="predicted", ylabel="true")
    if title:
        ax.set_title(title, fontsize="medium")
    if n > ANNOTATED_UP_TO:
        ax.figure.colorbar(image, ax=ax, shrink=0.8, label="count")
        return
    dark = counts.max(initial=0) / 2
    for (i, j), c in np.ndenumerate(counts):
        ax.text(
            j,
            i,
            str(c),
            ha="center",
            va="center",
            fontsize=fontsize,
            color="white" if c > dark else "black",
            in_layout=False,
        )


def most_frequent_labels(matrix: Mapping[str, Sequence], labels: Sequence[str], n: int) -> list:
    """The `n` labels of a multilabel confusion matrix with the most true rows (fn + tp).

    Args:
      matrix: label -> [[tn, fp], [fn, tp]], a multilabel report's "confusion_matrix".
      labels: the task's labels, in order; those missing from `matrix` are skipped.
      n: how many to keep.

    Returns:
      Up to `n` labels, most frequent first; ties keep the task's order.
    """
    present = [label for label in labels if label in matrix]
    support = {label: int(np.asarray(matrix[label], np.int64)[1].sum()) for label in present}
    return sorted(present, key=lambda label: -support[label])[: max(n, 0)]


def confusion(
    report: Mapping,
    task: Task,
    *,
    title: str | None = None,
    max_labels: int | None = MAX_LABEL_PANELS,
) -> Figure:
    """A task's confusion matrix from its report.

    Binary and multiclass: one [L, L] matrix (rows true, columns predicted). Multilabel: one
    small 2x2 panel per label ([[tn, fp], [fn, tp]], rows "no"/"yes"), for the `max_labels`
    most frequent labels (`most_frequent_labels`) when there are more, most frequent first;
    the title then says how many were left out.

    Args:
      report: a `mtjax.metrics.task_report` (its "confusion_matrix" is read).
      task: the report's task, for its kind and label order.
      title: defaults to the task's name.
      max_labels: the most multilabel panels drawn; None draws every label.
    """
    title = task.name if title is None else title
    matrix = report["confusion_matrix"]
    if task.kind != "multilabel":
        counts = np.asarray(matrix, np.int64)
        per_label = 0.45 if len(task.labels) <= ANNOTATED_UP_TO else 0.16  # inches
        side = max(3.5, per_label * len(task.labels) + 2.0)
        fig = Figure(figsize=(side, side), layout="constrained")
        _matrix(fig.subplots(), counts, task.labels, title=title)
        return fig
    present = [label for label in task.labels if label in matrix]
    labels = present if max_labels is None else most_frequent_labels(matrix, present, max_labels)
    rest = [label for label in present if label not in labels]
    panels = {label: np.asarray(matrix[label], np.int64) for label in labels}
    if rest:  # one more panel: the left-out labels' counts summed
        panels[f"other {len(rest)} (summed)"] = sum(
            (np.asarray(matrix[label], np.int64) for label in rest), np.zeros((2, 2), np.int64)
        )
        title = (
            f"{title}\n{len(labels)} most frequent of {len(present)} labels; {len(rest)} left out"
        )
    fig, axes = grid(len(panels), width=2.4, height=2.4, max_cols=6)
    for ax, (label, counts) in zip(axes, panels.items()):
        _matrix(ax, counts, ("no", "yes"), title=label)
    fig.suptitle(title)
    return fig


def to_rgb(fig: Figure) -> np.ndarray:
    """The figure drawn on the Agg canvas: uint8 [H, W, 3]."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def png_bytes(fig: Figure, *, dpi: float = 100) -> bytes:
    """The figure as PNG file contents."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def save(fig: Figure, path: str | Path) -> Path:
    """Writes the figure as a PNG at `path` (its folder must exist); returns the path."""
    path = Path(path)
    path.write_bytes(png_bytes(fig))
    return path


def confusion_images(
    reports_by_split: Mapping[str, Mapping[str, Mapping]],
    tasks: Sequence[Task],
    *,
    note: str = "",
) -> dict[tuple[str, str], np.ndarray]:
    """Each report's confusion matrix drawn once, as pixels (`confusion`, `to_rgb`).

    Args:
      reports_by_split: split -> task name -> report; tasks without a report are skipped.
      tasks: the run's tasks, in order.
      note: added to each title, e.g. "epoch 3, chosen".

    Returns:
      (split, task name) -> uint8 [H, W, 3] image, for TensorBoard and `write_confusions`.
    """
    suffix = f" ({note})" if note else ""
    return {
        (split, task.name): to_rgb(
            confusion(reports[task.name], task, title=f"{split} {task.name}{suffix}")
        )
        for split, reports in reports_by_split.items()
        for task in tasks
        if task.name in reports
    }


def rgb_png(image: np.ndarray) -> bytes:
    """uint8 [H, W, 3] pixels as PNG file contents (no figure drawn again)."""
    from PIL import Image  # matplotlib's own dependency

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_confusions(
    run: Run, images: Mapping[tuple[str, str], np.ndarray], *, suffix: str = ""
) -> list[Path]:
    """Writes `plots/confusion_{split}_{task}{suffix}.png` for each of `confusion_images`."""
    return [
        files.write_bytes(
            run.plots / f"confusion_{folder.file_part(split, 'split')}_{task}{suffix}.png",
            rgb_png(image),
        )
        for (split, task), image in images.items()
    ]


def shown_run(run: Run, history: Sequence[Mapping]) -> dict:
    """What the run's figures show of it, from its config.json (none: the run's name only).

    Returns:
      {"chosen": the recorded chosen epoch (None where none is, or the history lacks it),
      "name": the experiment's name, else the run's, "fold": config "fold" or None}.
    """
    config = folder.read_config(run) if (run.path / folder.CONFIG).is_file() else {}
    experiment = config.get("experiment")
    name = experiment.get("name") if isinstance(experiment, Mapping) else None
    chosen = config.get("chosen_epoch")
    if chosen is not None and int(chosen) not in _epochs(history):
        chosen = None
    fold = config.get("fold")
    return {
        "chosen": None if chosen is None else int(chosen),
        "name": str(name or run.name),
        "fold": None if fold is None else int(fold),
    }


def write_plots(
    run: Run,
    history: Sequence[Mapping],
    tasks: Sequence[Task],
    reports_by_split: Mapping[str, Mapping[str, Mapping]] | None = None,
) -> list[Path]:
    """Writes the run's PNGs under `plots/`; returns their paths.

    `learning_curves.png`, `scores.png`, `weights.png` (titled with the run's experiment and
    fold, the chosen epoch marked: `shown_run`), and `confusion_{split}_{task}.png` for
    each report in `reports_by_split` (split -> task name -> report; a run's recorder gives
    none and writes the chosen and the last epoch's itself, `write_confusions`).
    """
    shown = shown_run(run, history)
    figures = {
        "learning_curves.png": learning_curves(history, tasks, **shown),
        "scores.png": scores(history, tasks, **shown),
        "weights.png": weights(history, tasks, **shown),
    }
    paths = [files.write_bytes(run.plots / name, png_bytes(fig)) for name, fig in figures.items()]
    return paths + write_confusions(run, confusion_images(reports_by_split or {}, tasks))
