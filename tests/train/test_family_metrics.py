"""Each task kind's standard metric: EER, mAP, ROC-AUC and d', lwlrap, against hand work.

Every expected value is worked out here by hand or by an independent computation written in
the test (pairwise counts, rank loops, the standard library's normal quantile), not by the
scikit-learn calls the metrics are built on.
"""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest

from mtjax import metrics
from mtjax.tasks import Task
from mtjax.train import history

SPOOF = Task("spoof", ("bonafide", "spoof"), "binary")
TAGS = Task("tags", ("dog", "car", "bird"), "multilabel")
WORD = Task("word", ("go", "stop", "yes"))


def pairwise_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Share of (positive, negative) pairs ordered right, ties half: the AUC by counting."""
    pos, neg = scores[positive], scores[~positive]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def loop_lwlrap(truth: np.ndarray, scores: np.ndarray) -> float:
    """lwlrap as the FSDKaggle 2019 challenge states it, pair by pair (scores without ties)."""
    precisions = []
    for row_truth, row_scores in zip(truth, scores):
        order = np.argsort(-row_scores)  # labels, best first
        hits = np.cumsum(row_truth[order])  # positives among the top r labels
        for rank, label in enumerate(order, start=1):
            if row_truth[label]:
                precisions.append(hits[rank - 1] / rank)
    return float(np.mean(precisions))


# EER.


def test_eer_of_a_perfect_a_reversed_and_a_constant_scorer():
    labels = np.array([0, 0, 0, 1, 1], float)
    assert metrics.equal_error_rate(labels, [0.1, 0.2, 0.3, 0.7, 0.8]) == 0.0
    assert metrics.equal_error_rate(labels, [0.9, 0.8, 0.7, 0.2, 0.1]) == 1.0
    assert metrics.equal_error_rate(labels, np.full(5, 0.5)) == 0.5


def test_eer_of_a_random_scorer_is_one_half():
    rng = np.random.default_rng(0)
    labels = rng.random(20_000) < 0.3
    eer = metrics.equal_error_rate(labels, rng.random(20_000))
    assert eer == pytest.approx(0.5, abs=0.015)


def test_eer_where_the_rates_cross_at_a_threshold_and_between_two():
    # negatives 0.1 0.2 0.7, positives 0.6 0.8 0.9: accepting >= 0.7 rejects one positive
    # (1/3) and accepts one negative (1/3); the rates meet there.
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert metrics.equal_error_rate(labels, [0.1, 0.2, 0.7, 0.6, 0.8, 0.9]) == pytest.approx(1 / 3)
    # negatives 0.1 0.2 0.3 0.9, positives 0.5 0.6: accepting >= 0.6 gives (FPR, FNR) =
    # (1/4, 1/2), >= 0.5 gives (1/4, 0); FNR passes 1/4 halfway, where FPR is 1/4.
    labels = np.array([0, 0, 0, 0, 1, 1])
    assert metrics.equal_error_rate(labels, [0.1, 0.2, 0.3, 0.9, 0.5, 0.6]) == pytest.approx(0.25)
    # negatives 0.1 0.4, positives 0.3 0.5 0.6: >= 0.5 gives (0, 1/3), >= 0.4 (1/2, 1/3),
    # >= 0.3 (1/2, 0). FNR - FPR goes 1/3 -> -1/6 on the first step: 2/3 of the way,
    # FPR = 2/3 * 1/2 = 1/3 = FNR.
    labels = np.array([0, 0, 1, 1, 1])
    assert metrics.equal_error_rate(labels, [0.1, 0.4, 0.3, 0.5, 0.6]) == pytest.approx(1 / 3)


def test_eer_needs_both_classes():
    assert metrics.equal_error_rate(np.ones(3), [0.1, 0.5, 0.9]) is None
    assert metrics.equal_error_rate(np.zeros(3), [0.1, 0.5, 0.9]) is None


# mAP, ROC-AUC, d'.

# Four rows; bird never present. dog ranks pos, neg, pos, neg; car's positive ranks first.
TARGETS = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]], np.float32)
SCORES = np.array([[0.9, 0.2, 0.3], [0.8, 0.6, 0.1], [0.7, 0.1, 0.2], [0.1, 0.3, 0.4]])


def test_map_averages_the_labels_present_and_matches_hand_work():
    # dog: precision 1/1 at its first positive, 2/3 at its second: AP 5/6. car: AP 1.
    assert metrics.mean_average_precision(TARGETS, SCORES) == pytest.approx((5 / 6 + 1) / 2)
    assert metrics.mean_average_precision(np.zeros([3, 2]), np.ones([3, 2])) is None


def test_roc_auc_averages_labels_with_both_classes_and_d_prime_follows():
    auc = metrics.macro_roc_auc(TARGETS, SCORES)
    # dog: 3 of its 4 (positive, negative) pairs are ordered right; car: all 3.
    assert auc == pytest.approx((3 / 4 + 1) / 2)
    counted = [pairwise_auc(TARGETS[:, c] > 0.5, SCORES[:, c]) for c in (0, 1)]
    assert auc == pytest.approx(np.mean(counted))
    expected = math.sqrt(2) * statistics.NormalDist().inv_cdf(0.875)
    assert metrics.d_prime(auc) == pytest.approx(expected)
    assert metrics.d_prime(0.5) == 0.0 and metrics.d_prime(1.0) == math.inf
    assert metrics.d_prime(None) is None
    all_positive = np.ones([3, 1])
    assert metrics.macro_roc_auc(all_positive, [[0.1], [0.2], [0.3]]) is None


# lwlrap.


def test_lwlrap_of_a_hand_ranked_case_weighs_each_positive_label_once():
    truth = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0]], np.float32)
    scores = np.array([[0.9, 0.5, 0.3], [0.6, 0.2, 0.1], [0.3, 0.2, 0.1]])
    # row 0: dog ranks 1st (precision 1), bird 3rd with 2 positives in the top 3 (2/3);
    # row 1: car ranks 2nd (1/2); row 2 has no positive and counts nowhere.
    assert metrics.lwlrap(truth, scores) == pytest.approx((1 + 2 / 3 + 1 / 2) / 3)
    # Plain label-ranking AP would average rows: ((1 + 2/3) / 2 + 1/2) / 2 = 2/3.
    assert metrics.lwlrap(truth, scores) != pytest.approx(2 / 3)
    assert metrics.lwlrap(np.zeros([2, 3]), scores[:2]) is None


def test_lwlrap_equals_the_challenge_definition_on_random_data():
    rng = np.random.default_rng(1)
    truth = (rng.random([40, 6]) < 0.3).astype(np.float32)
    truth[0] = 0  # a row without positives
    scores = rng.random([40, 6])
    assert metrics.lwlrap(truth, scores) == pytest.approx(loop_lwlrap(truth > 0.5, scores))


# In every report, history record and clip-level report.


def test_reports_hold_each_kinds_standard_metrics():
    tags = metrics.task_report(TAGS, TARGETS, SCORES)
    assert tags["mAP"] == pytest.approx(11 / 12) and tags["roc_auc"] == pytest.approx(0.875)
    assert tags["d_prime"] == pytest.approx(metrics.d_prime(0.875))
    assert tags["lwlrap"] == pytest.approx(metrics.lwlrap(TARGETS, SCORES))
    assert set(metrics.family_metrics("multilabel")) <= set(tags)
    scores = np.array([[0.1], [0.6], [0.4], [0.9]])
    spoof = metrics.task_report(SPOOF, np.array([[0], [0], [1], [1.0]]), scores)
    assert spoof["roc_auc"] == 0.75 and spoof["eer"] == 0.5
    word = metrics.task_report(WORD, np.eye(3), np.eye(3))
    assert metrics.family_metrics("multiclass") == () and "eer" not in word
    assert json.loads(json.dumps(tags)) == tags


def test_clip_reports_score_the_pooled_clips_and_reach_the_history():
    # Two windows per clip: the windows rank two of their four pairs wrong, the clips none.
    y = np.array([[1], [1], [0], [0]], np.float32)
    probs = {"spoof": np.array([[0.9], [0.2], [0.3], [0.4]])}  # clip means 0.55 and 0.35
    reports = metrics.evaluation_report(
        (SPOOF,), y, np.ones([4, 1], bool), probs, {"spoof": 0.5}, np.array([0, 0, 1, 1])
    )
    report = reports["spoof"]
    assert report["roc_auc"] == 0.5 and report["eer"] == 0.5  # 0.9 and 0.2 vs 0.3 and 0.4
    assert report["clip"]["roc_auc"] == 1.0 and report["clip"]["eer"] == 0.0
    means = history.TrainMeans(loss=0.5, objective=0.5, tasks={"spoof": 0.5}, weights={"spoof": 1})
    rec = history.record(0, seconds=1.0, train=means, reports={"test": reports}, tasks=(SPOOF,))
    assert rec["test/spoof/eer"] == 0.5 and rec["test/spoof/clip/eer"] == 0.0
    assert rec["test/spoof/clip/accuracy"] == 1.0


def test_lower_is_better_for_losses_the_objective_and_the_eer():
    lower = ["validation/loss", "train/objective", "validation/spoof/eer", "test/x/clip/eer"]
    higher = ["validation/tags/mAP", "validation/tags/lwlrap", "validation/spoof/roc_auc"]
    higher.append("validation/score")
    assert [metrics.lower_is_better(m) for m in lower] == [True] * 4
    assert [metrics.lower_is_better(m) for m in higher] == [False] * 4
