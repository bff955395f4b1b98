"""The flat history record: one writer, one lookup, old nested records read flat, and the
stopping rules that read it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mtjax import early_stopping, metrics
from mtjax.tasks import Task
from mtjax.train import history

WORD = Task("word", ("go", "stop", "yes"))
LOUD = Task("loud", ("no", "yes"), "binary")
TAGS = Task("tags", ("bird", "car", "rain"), "multilabel")
TASKS = (WORD, LOUD, TAGS)


def reports(shift: float = 0.0) -> dict[str, dict]:
    """Real `task_report`s with a loss; `shift` moves a prediction across the threshold."""
    word = metrics.task_report(
        WORD,
        np.eye(3)[[0, 1, 2, 2]],
        np.array(
            [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.5, 0.2, 0.3], [0.1, 0.1 + shift, 0.8 - shift]]
        ),
    )
    loud = metrics.task_report(
        LOUD, np.array([[0.0], [1.0], [1.0]]), np.array([[0.2], [0.7], [0.4 + shift]])
    )
    tags = metrics.task_report(
        TAGS,
        np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]),
        np.array([[0.9, 0.2, 0.4 + shift], [0.1, 0.8, 0.3]]),
    )
    return {
        "word": {**word, "loss": 0.5},
        "loud": {**loud, "loss": 0.25},
        "tags": {**tags, "loss": 0.75},
    }


MEANS = history.TrainMeans(
    loss=0.5,
    objective=1.5,
    tasks={"word": 0.5, "loud": 0.25, "tags": 0.75},
    weights={"word": 1.0, "loud": 0.5, "tags": 2.0},
)


def test_record_is_one_flat_mapping_of_split_task_metric_keys():
    r = reports()
    rec = history.record(
        3,
        seconds=1.5,
        train=MEANS,
        reports={"validation": r, "test": r},
        tasks=TASKS,
        learning_rate=1e-3,
    )
    assert list(rec)[:5] == ["epoch", "seconds", "learning_rate", "train/loss", "train/objective"]
    assert rec["epoch"] == 3 and rec["train/weights/tags"] == 2.0
    assert rec["train/loss"] == 0.5 and rec["train/objective"] == 1.5
    assert rec["validation/word/accuracy"] == r["word"]["accuracy"] == 0.75
    assert rec["validation/loud/accuracy"] == r["loud"]["accuracy"]
    assert rec["validation/tags/micro_f1"] == r["tags"]["micro avg"]["f1-score"]
    assert rec["test/word/macro_f1"] == r["word"]["macro avg"]["f1-score"]
    assert rec["validation/loss"] == pytest.approx(0.5)  # mean of 0.5, 0.25, 0.75
    headlines = [r["word"]["accuracy"], r["loud"]["accuracy"], r["tags"]["micro avg"]["f1-score"]]
    assert rec["validation/score"] == pytest.approx(np.mean(headlines))
    assert "validation/tags/accuracy" not in rec and "validation/word/micro_f1" not in rec
    for name in ("roc_auc", "eer"):  # the binary task's standard metrics
        assert rec[f"test/loud/{name}"] == r["loud"][name]
    for name in ("mAP", "roc_auc", "d_prime", "lwlrap"):  # the multilabel task's
        assert rec[f"validation/tags/{name}"] == r["tags"][name]
    word_keys = {k for k in rec if k.startswith("validation/word/")}
    assert word_keys == {f"validation/word/{m}" for m in ("loss", "accuracy", "macro_f1")}
    assert all(isinstance(v, (int, float)) for v in rec.values())
    assert json.loads(json.dumps(rec)) == rec
    clip_keys = {k for k in history.keys(TASKS) if "/clip/" in k}  # with windows only
    assert set(rec) == {"epoch", "seconds"} | set(history.keys(TASKS)) - clip_keys
    assert set(history.record(0, seconds=1.0, train=MEANS, reports={}, tasks=TASKS)) == {
        "epoch",
        "seconds",
        "train/loss",
        "train/objective",
        *[f"train/{t.name}/loss" for t in TASKS],
        *[f"train/weights/{t.name}" for t in TASKS],
    }


def test_a_task_without_rows_in_a_split_has_no_keys_there():
    r = reports()
    r["loud"] = {**r["loud"], "support": 0}
    rec = history.record(0, seconds=1.0, train=MEANS, reports={"test": r}, tasks=TASKS)
    assert not [k for k in rec if k.startswith("test/loud/")]
    assert rec["test/loss"] == pytest.approx(0.625)  # word and tags only
    empty = history.record(0, seconds=1.0, train=MEANS, reports={"test": {}}, tasks=TASKS)
    assert math.isnan(empty["test/loss"]) and math.isnan(empty["test/score"])


def test_train_means_count_each_task_over_the_steps_it_was_present():
    step_metrics = {
        "loss": np.array([1.0, 3.0], np.float32),
        "tasks": np.array([[0.5, 9.0], [1.5, 0.25]], np.float32),
        "present": np.array([[True, False], [True, True]]),
        "weights": np.array([[1.0, 7.0], [2.0, 0.5]], np.float32),
    }
    means = history.train_means(step_metrics, (WORD, LOUD))
    assert means == history.TrainMeans(
        loss=0.625,  # mean of the tasks' losses, as validation/loss is
        objective=2.0,  # the combiner's, mean over the steps
        tasks={"word": 1.0, "loud": 0.25},
        weights={"word": 1.5, "loud": 0.5},
    )


def test_train_loss_is_the_mean_task_loss_and_the_objective_its_own_key():
    # Finding 9 of issue 9: train/loss was the combiner's objective (here uncertainty
    # weighting's sum with its log terms, 3.5) while validation/loss is a mean over tasks.
    step_metrics = {
        "loss": np.array([3.5, 3.5], np.float32),
        "tasks": np.array([[0.5, 0.0, 1.0], [0.5, 0.0, 2.0]], np.float32),
        "present": np.array([[True, False, True], [True, False, True]]),  # loud: no rows
        "weights": np.ones([2, 3], np.float32),
    }
    means = history.train_means(step_metrics, TASKS)
    assert means.loss == pytest.approx((0.5 + 1.5) / 2)  # loud, without rows, left out
    assert means.objective == 3.5 and means.tasks["loud"] == 0.0
    r = reports()
    rec = history.record(0, seconds=1.0, train=means, reports={"validation": r}, tasks=TASKS)
    assert rec["train/loss"] == 1.0 and rec["train/objective"] == 3.5
    assert rec["validation/loss"] == pytest.approx(np.mean([0.5, 0.25, 0.75]))
    nothing = dict(step_metrics, present=np.zeros([2, 3], bool))
    assert math.isnan(history.train_means(nothing, TASKS).loss)


def test_windowed_reports_add_the_clip_level_scores():
    r = reports()
    r["tags"] = {**r["tags"], "clip": r["tags"]}
    r["loud"] = {**r["loud"], "clip": {**r["loud"], "support": 0}}  # no clip: no keys
    rec = history.record(0, seconds=1.0, train=MEANS, reports={"test": r}, tasks=TASKS)
    clip = {k for k in rec if "/clip/" in k}
    names = ("micro_f1", "macro_f1", "mAP", "roc_auc", "d_prime", "lwlrap")
    assert clip == {f"test/tags/clip/{m}" for m in names}
    assert rec["test/tags/clip/lwlrap"] == r["tags"]["lwlrap"]
    assert clip <= set(history.keys(TASKS, ("test",)))


def test_value_is_the_one_lookup_and_names_the_closest_keys():
    rec = history.record(
        0, seconds=1.0, train=MEANS, reports={"validation": reports()}, tasks=TASKS
    )
    assert history.value(rec, "validation/word/accuracy") == 0.75
    assert history.value(rec, "validation/word/acc", default=None) is None
    with pytest.raises(KeyError, match=r"'validation/word/acuracy' is not in the history") as err:
        history.value(rec, "validation/word/acuracy")
    listed = str(err.value).split("closest first: ")[1]
    assert listed.startswith("validation/word/accuracy, ")
    assert set(listed.rstrip("'\"").split(", ")) == set(rec)
    later = dict(rec, epoch=1, **{"validation/word/accuracy": 1.0})
    del later["validation/loss"]
    np.testing.assert_array_equal(
        history.series([rec, later], "validation/word/accuracy"), [0.75, 1.0]
    )
    np.testing.assert_array_equal(
        history.series([rec, later], "validation/loss"), [rec["validation/loss"], np.nan]
    )


def test_a_nested_record_of_mtjax_0_1_reads_as_the_flat_one():
    r = reports()
    rec = history.record(
        2, seconds=1.5, train=MEANS, reports={"validation": r, "test": r}, tasks=TASKS
    )

    def split(s: str) -> dict:
        out: dict = {"loss": rec[f"{s}/loss"], "score": rec[f"{s}/score"]}
        for t in TASKS:
            metric = metrics.headline_metric(t.kind)
            out[t.name] = {m: rec[f"{s}/{t.name}/{m}"] for m in ("loss", metric, "macro_f1")}
        return out

    nested = {
        "epoch": 2,
        "train": {"loss": 1.5, "tasks": MEANS.tasks, "weights": MEANS.weights},
        "validation": split("validation"),
        "test": split("test"),
        "seconds": 1.5,
    }
    # 0.1's train loss was the combiner's objective; it recorded no mean task loss and no
    # family metrics.
    family = ("roc_auc", "eer", "mAP", "d_prime", "lwlrap")
    kept = {k: v for k, v in rec.items() if k != "train/loss" and k.split("/")[-1] not in family}
    assert history.flat(nested) == kept and kept["train/objective"] == 1.5
    assert history.flat(rec) == rec and history.flat(rec) is not rec


# Stopping rules read the flat history through `history.value`.


def losses_history(values: list[float]) -> list[dict]:
    return [
        {"epoch": e, "validation/loss": v, "validation/word/accuracy": -v}
        for e, v in enumerate(values)
    ]


def test_patience_is_a_rule_of_metric_and_decide():
    rule = early_stopping.patience("validation/loss", 2)
    assert isinstance(rule, early_stopping.Rule) and rule.metric == "validation/loss"
    values = [0.9, 0.5, 0.6, 0.7, 0.4]
    assert rule.decide(losses_history(values[:3])) == early_stopping.Decision(False, 1)
    assert rule.decide(losses_history(values[:4])) == early_stopping.Decision(True, 1)
    by_accuracy = early_stopping.patience("validation/word/accuracy", 2)  # higher is better
    assert by_accuracy.decide(losses_history(values[:4])) == (True, 1)
    with pytest.raises(KeyError, match="closest first: validation/loss"):
        early_stopping.patience("validation/los", 2).decide(losses_history(values))
    last = early_stopping.patience("validation/loss", 2, restore_best=False)
    assert last.decide(losses_history(values[:4])) == (True, 3)


def test_never_and_plain_functions_are_rules():
    never = early_stopping.never()
    assert never.metric is None and never.decide(losses_history([1.0, 2.0])) == (False, 1)
    assert early_stopping.as_rule(None).decide(losses_history([1.0])) == (False, 0)
    rule = early_stopping.patience()
    assert early_stopping.as_rule(rule) is rule

    def long_enough(records):  # history -> bool
        return len(records) >= 3

    plain = early_stopping.as_rule(long_enough)
    assert plain.metric is None
    assert plain.decide(losses_history([1.0, 1.0])) == (False, 1)
    assert plain.decide(losses_history([1.0, 1.0, 1.0])) == (True, 2)
    chosen = early_stopping.as_rule(lambda records: (True, 0))  # history -> (stop, best)
    assert chosen.decide(losses_history([1.0, 2.0])) == early_stopping.Decision(True, 0)
    with pytest.raises(TypeError, match="a stopping rule is"):
        early_stopping.as_rule("validation/loss")
