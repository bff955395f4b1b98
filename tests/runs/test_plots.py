"""Figures read back through matplotlib's objects, not pixels: the chosen-epoch marker, whole
epoch ticks, run and fold in titles, axis labels, comparison bars' mean ± std error bars.

Histories are made by hand (no training); numbers are dyadic fractions, exact in float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import BarContainer

from mtjax import runs
from mtjax.runs import Run, charts, plots
from mtjax.runs import comparison as comparisons
from mtjax.tasks import Task

SEX = Task("sex", ("f", "m"), "binary")
TAGS = Task("tags", ("bird", "car", "rain"), "multilabel")


def record(epoch: int) -> dict:
    e = epoch / 8
    out = {"epoch": epoch, "train/weights/sex": 1.0 - e, "train/weights/tags": e}
    for split in ("train", "validation", "test"):
        out |= {f"{split}/sex/loss": 1.0 - e, f"{split}/tags/loss": 0.75 - e}
    for split in ("validation", "test"):
        out |= {
            f"{split}/sex/accuracy": 0.5 + e,
            f"{split}/sex/macro_f1": 0.25 + e,
            f"{split}/tags/micro_f1": 0.375 + e,
            f"{split}/tags/macro_f1": 0.125 + e,
        }
    return out


HISTORY = [record(e) for e in range(3)]  # epochs 0, 1, 2


def drawn(fig) -> None:
    FigureCanvasAgg(fig).draw()  # tick labels get their text when drawn


def chosen_marks(ax) -> tuple[list, list]:
    """(x data of the line labelled "chosen (epoch N)", x of the ringed points)."""
    (line,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("chosen")]
    (rings,) = ax.collections
    return list(line.get_xdata()), list(rings.get_offsets()[:, 0])


@pytest.mark.parametrize("figure", [plots.learning_curves, plots.scores])
def test_curves_mark_the_chosen_epoch_with_whole_epoch_ticks_and_name_run_and_fold(figure):
    fig = figure(HISTORY, (SEX, TAGS), chosen=1, name="exp-a", fold=3)
    drawn(fig)
    assert (
        fig.get_suptitle()
        == f"{'learning curves' if figure is plots.learning_curves else 'scores'}: exp-a, fold 3"
    )
    assert [ax.get_title() for ax in fig.axes] == ["sex", "tags"]
    for ax in fig.axes:
        assert ax.get_xlabel() == "epoch" and ax.get_ylabel() in ("loss", "score")
        line_x, ring_x = chosen_marks(ax)
        assert line_x == [1, 1] and ring_x == [1.0] * len(ring_x) and ring_x
        (label,) = [ln.get_label() for ln in ax.get_lines() if ln.get_label().startswith("chosen")]
        assert label == "chosen (epoch 1)"
        assert "chosen (epoch 1)" in [t.get_text() for t in ax.get_legend().get_texts()]
        lo, hi = ax.get_xlim()
        shown = [t.get_text() for t in ax.get_xticklabels() if lo <= t.get_position()[0] <= hi]
        assert shown == ["0", "1", "2"]  # no 0.25, 0.5, ... on a 3-epoch run
    # the rings sit on the curves' values at the chosen epoch
    rings = fig.axes[0].collections[0].get_offsets()[:, 1]
    if figure is plots.learning_curves:
        assert sorted(rings) == [0.875, 0.875, 0.875]  # train, validation, test sex loss
    else:
        assert sorted(rings) == [0.375, 0.375, 0.625, 0.625]  # macro F1, accuracy (2 splits)


def test_weights_mark_the_chosen_epoch_and_no_chosen_epoch_marks_nothing():
    fig = plots.weights(HISTORY, (SEX, TAGS), chosen=2, name="exp-a", fold=0)
    (ax,) = fig.axes
    assert ax.get_title() == "combiner weights: exp-a, fold 0"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("epoch", "weight")
    assert chosen_marks(ax) == ([2, 2], [2.0, 2.0])
    bare = plots.learning_curves(HISTORY, (SEX,))
    assert bare.get_suptitle() == "learning curves"
    assert not [ln for ln in bare.axes[0].get_lines() if ln.get_label().startswith("chosen")]
    assert not bare.axes[0].collections
    outside = plots.scores(HISTORY, (SEX,), chosen=7)  # not in the history: no marker
    assert not outside.axes[0].collections


def test_write_plots_takes_the_chosen_epoch_experiment_and_fold_from_config(tmp_path, monkeypatch):
    run = Run(tmp_path, "exp-a/fold2")
    runs.write_config(
        run, {"tasks": ["sex"], "fold": 2, "experiment": {"name": "exp-a"}, "chosen_epoch": 1}
    )
    assert plots.shown_run(run, HISTORY) == {"chosen": 1, "name": "exp-a", "fold": 2}
    made = {}
    for name in ("learning_curves", "scores", "weights"):
        original = getattr(plots, name)
        monkeypatch.setattr(
            plots, name, lambda *a, _o=original, _n=name, **k: made.setdefault(_n, _o(*a, **k))
        )
    paths = plots.write_plots(run, HISTORY, (SEX,))
    assert {p.name for p in paths} == {"learning_curves.png", "scores.png", "weights.png"}
    assert made["learning_curves"].get_suptitle() == "learning curves: exp-a, fold 2"
    assert chosen_marks(made["scores"].axes[0])[0] == [1, 1]
    # No config.json: the run's name, no fold, no marker.
    assert plots.shown_run(Run(tmp_path, "b"), HISTORY) == {
        "chosen": None,
        "name": "b",
        "fold": None,
    }
    # A chosen epoch the history lacks marks nothing rather than a wrong epoch.
    runs.write_config(run, {"tasks": ["sex"], "chosen_epoch": 9})
    assert plots.shown_run(run, HISTORY)["chosen"] is None


def test_terminal_epochs_are_zero_based_like_the_files():
    assert plots.epoch_text(0, 9) == "epoch 0 of 0-9"
    assert plots.epoch_text(np.int64(3), 9) == "epoch 3 of 0-9"


# Comparison charts.


def bars(ax) -> dict[str, list[tuple[float, float, float, float]]]:
    """Series label -> (x, height, error bar low, error bar high) of each bar drawn."""
    out = {}
    for c in ax.containers:
        if isinstance(c, BarContainer):
            segments = c.errorbar.lines[2][0].get_segments()
            out[c.get_label()] = [
                (p.get_x() + p.get_width() / 2, p.get_height(), s[0][1], s[1][1])
                for p, s in zip(c.patches, segments)
            ]
    return out


HEADLINE = {"sex": "accuracy", "tags": "micro_f1"}


def history_at(**values: float) -> list[dict]:
    """Two epochs of test values; each task's headline metric is `values[task]` at epoch 1
    (the one config.json chooses), 0 at epoch 0."""
    out = []
    for e in range(2):
        r = {"epoch": e}
        for task, value in values.items():
            r |= {f"test/{task}/loss": 0.5, f"test/{task}/macro_f1": 0.5}
            r[f"test/{task}/{HEADLINE[task]}"] = value if e else 0.0
        out.append(r)
    return out


@pytest.fixture
def comparison(tmp_path):
    made = []
    values = {  # group -> its tasks -> fold 0's and fold 1's headline values
        "mt": ([SEX, TAGS], [{"sex": 0.5, "tags": 0.75}, {"sex": 0.75, "tags": 0.25}]),
        "st-sex": ([SEX], [{"sex": 0.25}, {"sex": 0.75}]),
        "st-tags": ([TAGS], [{"tags": 0.5}, {"tags": 1.0}]),
    }
    for group, (tasks, folds) in values.items():
        for fold, headline in enumerate(folds):
            run = Run(tmp_path, f"{group}/fold{fold}")
            config = {"tasks": [t.to_json() for t in tasks], "group": group, "fold": fold}
            runs.write_config(run, {**config, "seed": 0, "chosen_epoch": 1})
            runs.write_history(run, history_at(**headline))
            made.append(run)
    return runs.compare(made, split="test")


def spread(a: float, b: float) -> tuple[float, float]:
    """(mean, sample std) of two values, by hand: std = |a - b| / sqrt(2)."""
    return (a + b) / 2, abs(a - b) / math.sqrt(2)


def test_versus_chart_bars_are_means_with_std_error_bars_per_task(comparison, tmp_path):
    fig = charts.versus_figure(comparison)
    assert "test split" in fig.get_suptitle() and "multi-task vs single-task" in fig.get_suptitle()
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "loss: multi-task vs single-task",
        "accuracy / micro F1: multi-task vs single-task",
        "macro F1: multi-task vs single-task",
    ]
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "accuracy / micro F1", "macro F1"]
    headline = fig.axes[1]
    assert [t.get_text() for t in headline.get_xticklabels()] == [
        "sex\nvs st-sex",
        "tags\nvs st-tags",
    ]
    got = bars(headline)
    assert list(got) == ["mt", "single-task"]
    want = {
        "mt": [spread(0.5, 0.75), spread(0.75, 0.25)],
        "single-task": [spread(0.25, 0.75), spread(0.5, 1.0)],
    }
    for series, per_task in want.items():
        for (_, height, lo, hi), (mean, std) in zip(got[series], per_task):
            assert height == pytest.approx(mean)
            assert (lo, hi) == pytest.approx((mean - std, mean + std))
    # multi-task bars left of the single-task ones, at each task
    assert [b[0] < s[0] for b, s in zip(got["mt"], got["single-task"])] == [True, True]
    path = comparisons.versus_plot(comparison, tmp_path / "out" / "comparison_versus.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_comparison_chart_labels_its_metrics_and_names_the_split(comparison, tmp_path):
    fig = charts.comparison_figure(comparison)
    assert fig.get_suptitle().startswith("test split, each run at its chosen epoch")
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "accuracy / micro F1", "macro F1"]
    assert [ax.get_title() for ax in fig.axes] == [
        "loss per task",
        "accuracy / micro F1 per task",
        "macro F1 per task",
    ]
    got = bars(fig.axes[1])
    assert list(got) == ["mt", "st-sex", "st-tags"]
    mean, std = spread(0.25, 0.75)
    ((_, height, lo, hi),) = got["st-sex"]
    assert (height, lo, hi) == pytest.approx((mean, mean - std, mean + std))
    validation = comparison._replace(split="validation")
    assert charts.comparison_figure(validation).get_suptitle().startswith("validation split")
    assert comparisons.versus_plot(comparison._replace(versus=[]), tmp_path / "v.png") is None
    assert not (tmp_path / "v.png").exists()
    with pytest.raises(ValueError, match="no multi-task vs single-task pair"):
        charts.versus_figure(comparison._replace(versus=[]))
    path = runs.compare_plot(comparison, tmp_path / "comparison.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
