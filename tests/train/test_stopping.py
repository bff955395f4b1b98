"""Stopping rules: patience over the flat history, plain functions as rules, no test metrics."""

from __future__ import annotations

import pytest

from mtjax import early_stopping
from mtjax.train import stopping


def history(values, metric="validation/loss"):
    return [{"epoch": e, metric: v} for e, v in enumerate(values)]


def test_patience_stops_after_epochs_without_improvement_and_keeps_the_best():
    rule = early_stopping.patience("validation/loss", 2)
    assert rule.metric == "validation/loss"
    assert rule.decide(history([3.0, 2.0, 2.5])) == (False, 1)
    assert rule.decide(history([3.0, 2.0, 2.5, 2.1])) == (True, 1)
    up = early_stopping.patience("validation/score", 1)  # "auto": a score is maximised
    assert up.decide(history([0.5, 0.7, 0.6], "validation/score")) == (True, 1)
    last = early_stopping.patience("validation/loss", 2, restore_best=False)
    assert last.decide(history([3.0, 2.0, 2.5, 2.1])) == (True, 3)


@pytest.mark.parametrize("metric", ["test/loss", "test/score", "test/word/accuracy"])
def test_rules_refuse_test_metrics(metric):
    # finding 4 of issue 9: patience("test/loss") ran, choosing epochs on the test set
    with pytest.raises(ValueError, match=f"may not watch '{metric}': the test side is never"):
        early_stopping.patience(metric)
    made = stopping.Rule(metric, lambda h: stopping.Decision(False, len(h) - 1))
    with pytest.raises(ValueError, match="the test side is never used for a choice"):
        stopping.as_rule(made)

    def plain(h):
        return False

    plain.metric = metric
    with pytest.raises(ValueError, match="the test side is never used for a choice"):
        stopping.as_rule(plain)


def test_validation_train_and_no_metric_rules_are_accepted():
    for metric in ("validation/loss", "validation/test_word/accuracy", "train/loss"):
        assert stopping.as_rule(early_stopping.patience(metric)).metric == metric
    assert stopping.as_rule(None).metric is None
    assert stopping.as_rule(lambda h: len(h) == 3).decide(history([1, 2, 3])) == (True, 2)
