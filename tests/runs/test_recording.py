"""What recording a run costs: figures of the chosen and the last epoch only, two checkpoints.

One tiny `fit(run=...)` of four epochs whose stopping rule chooses epoch 1, so the chosen
(1) and the last (3) epoch differ; every confusion figure drawn is counted.
"""

from __future__ import annotations

import json

import jax
import matplotlib.image
import numpy as np
import pytest
from tiny_training import WORD, fit_choosing

import mtjax as mt
from mtjax import runs
from mtjax.runs import plots
from mtjax.tasks import Task

CHOSEN, LAST = 1, 3
SPLITS = ("validation", "test")


def fit_into(run: runs.Run) -> mt.Trained:
    return fit_choosing(run, CHOSEN, LAST)


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """(run, trained, titles of every confusion figure drawn, titles drawn by a second fit)."""
    titles: list[str] = []
    confusion = plots.confusion

    def counted(report, task, *, title=None, **kwargs):
        titles.append(title)
        return confusion(report, task, title=title, **kwargs)

    plots.confusion = counted
    try:
        run = runs.Run(tmp_path_factory.mktemp("recording"), "r")
        trained = fit_into(run)
        first = list(titles)
        again = fit_into(run)  # the same settings: the finished run, read back
    finally:
        plots.confusion = confusion
    return run, trained, first, titles[len(first) :], again


def test_confusion_figures_are_drawn_for_the_chosen_and_the_last_epoch_only(drawn):
    run, trained, titles, _, _ = drawn
    assert trained.best_epoch == CHOSEN and len(trained.history) == LAST + 1
    names = [t.name for t in trained.tasks]
    assert sorted(titles) == sorted(
        f"{split} {name} (epoch {epoch}, {what})"
        for epoch, what in ((CHOSEN, "chosen"), (LAST, "last"))
        for split in SPLITS
        for name in names
    )
    confusions = {p.name for p in run.plots.glob("confusion_*.png")}
    assert confusions == {
        f"confusion_{split}_{name}{suffix}.png"
        for suffix in ("", "_last")
        for split in SPLITS
        for name in names
    }
    assert {"learning_curves.png", "scores.png", "weights.png"} <= {
        p.name for p in run.plots.iterdir()
    }


def test_the_chosen_epochs_figure_is_drawn_from_its_json_report(drawn):
    run, _, _, _, _ = drawn
    report = runs.read_reports(run, CHOSEN, "test")["word"]
    want = plots.to_rgb(plots.confusion(report, WORD, title=f"test word (epoch {CHOSEN}, chosen)"))
    got = matplotlib.image.imread(run.plots / "confusion_test_word.png")
    np.testing.assert_array_equal((got[..., :3] * 255).round().astype(np.uint8), want)


def test_the_checkpoints_kept_are_the_chosen_and_the_last_epoch(drawn):
    run, _, _, _, _ = drawn
    kept = sorted(int(p.name) for p in run.checkpoints.iterdir() if p.name.isdigit())
    assert kept == [CHOSEN, LAST]
    assert runs.read_config(run)["max_to_keep"] is None


def test_a_finished_run_fitted_again_restores_the_chosen_epoch_and_draws_nothing(drawn):
    _, trained, _, drawn_again, again = drawn
    assert drawn_again == []
    assert again.best_epoch == CHOSEN
    for a, b in zip(jax.tree.leaves(trained.params), jax.tree.leaves(again.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_history_and_reports_of_every_epoch_are_written(drawn):
    run, trained, _, _, _ = drawn
    assert runs.report_epochs(run) == [0, 1, 2, 3]
    assert json.loads((run.path / "history.json").read_text()) == json.loads(
        json.dumps(list(trained.history))
    )


# The figures themselves.


def multilabel(supports: list[int]) -> tuple[Task, dict]:
    """A multilabel task of len(supports) labels and a report whose label i has supports[i]
    true rows: [[tn, fp], [fn, tp]] = [[10, i], [supports[i] - 1, 1]]."""
    task = Task("tags", tuple(f"l{i:02d}" for i in range(len(supports))), "multilabel")
    matrix = {
        label: [[10, i], [n - 1, 1]] for i, (label, n) in enumerate(zip(task.labels, supports))
    }
    return task, {"confusion_matrix": matrix}


def test_multilabel_panels_are_the_most_frequent_labels_and_the_rest_summed():
    supports = [5, 30, 7, 30, 2, 9, 11, 3, 4, 50, 6, 8, 12, 13, 14, 15, 16, 17, 1, 2]
    task, report = multilabel(supports)
    fig = plots.confusion(report, task)
    order = sorted(range(20), key=lambda i: (-supports[i], i))  # ties in the task's order
    kept, rest = order[:16], order[16:]
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [task.labels[i] for i in kept] + ["other 4 (summed)"]
    assert fig.get_suptitle() == "tags\n16 most frequent of 20 labels; 4 left out"
    summed = [[40, sum(rest)], [sum(supports[i] - 1 for i in rest), 4]]
    assert [t.get_text() for t in fig.axes[-1].texts] == [str(c) for row in summed for c in row]
    assert plots.most_frequent_labels(report["confusion_matrix"], task.labels, 3) == [
        "l09",
        "l01",
        "l03",
    ]
    everything = plots.confusion(report, task, max_labels=None)
    assert [ax.get_title() for ax in everything.axes] == list(task.labels)
    assert everything.get_suptitle() == "tags"


def test_a_large_matrix_shows_a_colour_bar_instead_of_cell_counts():
    small = Task("few", tuple(f"c{i}" for i in range(6)))
    fig = plots.confusion({"confusion_matrix": np.eye(6, dtype=int).tolist()}, small)
    assert len(fig.axes) == 1 and len(fig.axes[0].texts) == 36
    big = Task("many", tuple(f"c{i}" for i in range(plots.ANNOTATED_UP_TO + 1)))
    n = len(big.labels)
    fig = plots.confusion({"confusion_matrix": np.eye(n, dtype=int).tolist()}, big)
    assert (
        len(fig.axes) == 2 and len(fig.axes[0].texts) == 0 and fig.axes[1].get_ylabel() == "count"
    )


def test_confusion_images_skip_tasks_without_a_report_and_name_the_epoch():
    task, report = multilabel([3, 1])
    images = plots.confusion_images({"test": {"tags": report}}, (WORD, task), note="epoch 2, last")
    assert list(images) == [("test", "tags")]
    image = images["test", "tags"]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    png = plots.rgb_png(image)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
