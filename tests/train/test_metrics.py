"""Metrics: reports equal scikit-learn's on hand cases, pooling and filtering are exact."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import classification_report

from mtjax.metrics import (
    evaluation_report,
    family_metrics,
    headline,
    headline_metric,
    pool_clips,
    probabilities,
    summary_table,
    task_report,
)
from mtjax.tasks import Task

BINARY = Task("loud", ("quiet", "loud"), "binary")
WORD = Task("word", ("go", "stop", "yes"))
TAGS = Task("tags", ("dog", "car", "bird"), "multilabel")


def sklearn_report(y_true, y_pred, names) -> dict:
    return classification_report(
        y_true,
        y_pred,
        labels=list(range(len(names))),
        target_names=list(names),
        output_dict=True,
        zero_division=0,
    )


def assert_sklearn_part(report: dict, expected: dict, task: Task) -> None:
    """The report holds exactly scikit-learn's keys and values, plus our extra keys, but for
    "macro avg": the mean of scikit-learn's per-label scores over the labels present."""
    extra = {"confusion_matrix", "support", *family_metrics(task.kind)}
    assert set(report) == set(expected) | extra
    for key, value in expected.items():
        if key != "macro avg":
            assert report[key] == pytest.approx(value), key
    present = [expected[label] for label in task.labels if expected[label]["support"] > 0]
    for score in ("precision", "recall", "f1-score"):
        mean = sum(row[score] for row in present) / len(present)
        assert report["macro avg"][score] == pytest.approx(mean), score
    assert report["macro avg"]["support"] == expected["macro avg"]["support"]


def test_probabilities_are_stable_and_match_the_formulas():
    logits = np.array([[-1000.0, 0.0, 1000.0], [1.0, 2.0, 3.0]], np.float32)
    soft = probabilities(WORD, logits)
    assert soft.dtype == np.float32 and np.all(np.isfinite(soft))
    np.testing.assert_allclose(soft[0], [0, 0, 1], atol=1e-7)
    e = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(soft[1], e / e.sum(), rtol=1e-6)
    sig = probabilities(TAGS, logits)
    assert sig.dtype == np.float32
    np.testing.assert_allclose(sig[1], 1 / (1 + np.exp(-np.array([1.0, 2.0, 3.0]))), rtol=1e-6)
    np.testing.assert_array_equal(sig[0], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(probabilities(BINARY, [[0.0], [np.log(3.0)]]), [[0.5], [0.75]])
    with pytest.raises(ValueError, match=r"'word'.*\[N, 3\].*\[2, 2\]"):
        probabilities(WORD, np.zeros([2, 2]))


def test_binary_equals_sklearn_and_thresholds_strictly_above():
    targets = np.array([[1], [0], [1], [0], [1]], np.float32)
    probs = np.array([[0.9], [0.5], [0.5], [0.2], [0.51]])  # 0.5 is not above 0.5: negative
    report = task_report(BINARY, targets, probs)
    y_pred = [1, 0, 0, 0, 1]
    expected = sklearn_report([1, 0, 1, 0, 1], y_pred, BINARY.labels)
    assert_sklearn_part(report, expected, BINARY)
    assert report["macro avg"] == pytest.approx(expected["macro avg"])  # both labels present
    assert report["accuracy"] == pytest.approx(0.8)
    assert report["confusion_matrix"] == [[2, 0], [1, 2]]
    assert report["support"] == 5
    low = task_report(BINARY, targets, probs, threshold=0.4)
    assert low["confusion_matrix"] == [[1, 1], [0, 3]]
    assert headline(report, "binary") == pytest.approx(0.8)


def test_multiclass_equals_sklearn_with_exact_confusion_matrix():
    targets = WORD.encode_many(["go", "go", "stop", "yes", "yes", "yes"])
    probs = np.array(
        [
            [0.7, 0.2, 0.1],  # go -> go
            [0.1, 0.8, 0.1],  # go -> stop
            [0.2, 0.5, 0.3],  # stop -> stop
            [0.1, 0.1, 0.8],  # yes -> yes
            [0.6, 0.3, 0.1],  # yes -> go
            [0.3, 0.3, 0.4],  # yes -> yes
        ]
    )
    report = task_report(WORD, targets, probs)
    expected = sklearn_report([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], WORD.labels)
    assert_sklearn_part(report, expected, WORD)
    assert report["macro avg"] == pytest.approx(expected["macro avg"])  # every label present
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert report["accuracy"] == pytest.approx(4 / 6)


def test_absent_label_is_listed_but_left_out_of_the_macro_average():
    # Finding 5 of issue 9: accuracy 1.0 next to macro F1 0.667, "yes" absent from the split.
    targets = WORD.encode_many(["go", "stop", "go"])
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.4, 0.0]])
    report = task_report(WORD, targets, probs)
    assert report["yes"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0.0}
    assert report["confusion_matrix"] == [[2, 0, 0], [0, 1, 0], [0, 0, 0]]
    assert report["accuracy"] == 1.0
    every_label = sklearn_report([0, 1, 0], [0, 1, 0], WORD.labels)["macro avg"]
    assert every_label["f1-score"] == pytest.approx(2 / 3)  # what the finding saw
    assert report["macro avg"] == {"precision": 1.0, "recall": 1.0, "f1-score": 1.0, "support": 3}
    assert report["weighted avg"]["f1-score"] == 1.0
    # The third row (go) called stop: go precision 1, recall 1/2; stop 1/2 and 1.
    wrong = task_report(WORD, targets, probs[[0, 1, 1]])
    assert wrong["macro avg"]["f1-score"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert wrong["macro avg"]["precision"] == pytest.approx((1.0 + 0.5) / 2)
    assert wrong["macro avg"]["recall"] == pytest.approx((0.5 + 1.0) / 2)


def test_binary_split_of_one_class_averages_over_that_class():
    report = task_report(BINARY, np.zeros([3, 1]), np.array([[0.1], [0.2], [0.9]]))
    assert report["quiet"]["f1-score"] == pytest.approx(0.8)  # precision 1, recall 2/3
    assert report["macro avg"]["f1-score"] == pytest.approx(0.8)  # not (0.8 + 0) / 2
    assert report["roc_auc"] is None and report["eer"] is None  # one class: undefined


def test_multilabel_equals_sklearn_with_a_label_never_present():
    targets = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]], np.float32)  # no bird
    probs = np.array([[0.8, 0.6, 0.1], [0.3, 0.9, 0.2], [0.1, 0.7, 0.9], [0.2, 0.1, 0.0]])
    y_pred = (probs > 0.5).astype(int)
    report = task_report(TAGS, targets, probs)
    assert_sklearn_part(report, sklearn_report(targets.astype(int), y_pred, TAGS.labels), TAGS)
    # dog: precision 1, recall 1/2, f1 2/3; car: precision 2/3, recall 1, f1 4/5; bird absent.
    assert report["macro avg"]["f1-score"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert set(report) >= {"micro avg", "macro avg", "weighted avg", "samples avg", "bird"}
    assert "accuracy" not in report
    assert report["bird"]["support"] == 0
    assert report["confusion_matrix"] == {
        "dog": [[2, 0], [1, 1]],
        "car": [[1, 1], [0, 2]],
        "bird": [[3, 1], [0, 0]],
    }
    assert headline(report, "multilabel") == report["micro avg"]["f1-score"]


def test_single_label_multilabel_task_counts_its_positive_column():
    solo = Task("speech", ("speech",), "multilabel")
    targets = np.array([[1], [0], [1], [0]], np.float32)
    probs = np.array([[0.9], [0.8], [0.2], [0.1]])
    report = task_report(solo, targets, probs)
    assert report["speech"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1-score": 0.5, "support": 2}
    )
    assert report["confusion_matrix"] == {"speech": [[1, 1], [1, 1]]}
    assert "samples avg" in report and "micro avg" in report


@pytest.mark.parametrize("task", [BINARY, WORD, TAGS], ids=lambda t: t.kind)
def test_zero_rows_give_an_all_zero_report_of_the_same_form(task):
    empty = np.zeros([0, task.n_columns], np.float32)
    report = task_report(task, empty, empty)
    one = np.ones([1, task.n_columns], np.float32)
    assert set(report) == set(task_report(task, one, one))
    assert report["support"] == 0
    assert all(report[label]["f1-score"] == 0.0 for label in task.labels)
    assert report["macro avg"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0}
    assert all(report[name] is None for name in family_metrics(task.kind))
    counts = report["confusion_matrix"]
    flat = np.ravel(list(counts.values()) if isinstance(counts, dict) else counts)
    assert flat.size > 0 and not flat.any()
    assert headline(report, task.kind) == 0.0
    json.dumps(report)


def test_reports_are_json_serialisable():
    rng = np.random.default_rng(0)
    for task in (BINARY, WORD, TAGS):
        targets = (rng.random([7, task.n_columns]) > 0.5).astype(np.float32)
        report = task_report(task, targets, rng.random([7, task.n_columns]).astype(np.float32))
        assert json.loads(json.dumps(report)) == report


def test_reserved_label_names_are_refused():
    with pytest.raises(ValueError, match=r"\['accuracy'\] clash"):
        task_report(Task("t", ("accuracy", "b")), np.eye(2), np.eye(2))


def test_pool_clips_means_in_order_of_first_appearance():
    probs = np.array([[0.2, 0.8], [0.4, 0.6], [1.0, 0.0], [0.6, 0.4], [0.0, 1.0]])
    clip = np.array([7, 3, 7, 3, 5])
    clip_probs, first_row = pool_clips(probs, clip)
    np.testing.assert_allclose(clip_probs, [[0.6, 0.4], [0.5, 0.5], [0.0, 1.0]])
    np.testing.assert_array_equal(first_row, [0, 1, 4])
    words, rows = pool_clips(probs[:3], np.array(["b", "a", "b"]))
    np.testing.assert_allclose(words, [[0.6, 0.4], [0.4, 0.6]])
    np.testing.assert_array_equal(rows, [0, 1])
    none, no_rows = pool_clips(np.zeros([0, 2]), np.zeros([0], int))
    assert none.shape == (0, 2) and no_rows.shape == (0,)


def two_task_data():
    """Six rows: rows 0-3 carry `loud`, rows 2-5 carry `word`; other columns are garbage."""
    tasks = (BINARY, WORD)
    y = np.array(
        [
            [1, 9, 9, 9],
            [0, 9, 9, 9],
            [1, 1, 0, 0],
            [0, 0, 1, 0],
            [9, 0, 0, 1],
            [9, 0, 0, 1],
        ],
        np.float32,
    )
    has_task = np.array([[1, 0], [1, 0], [1, 1], [1, 1], [0, 1], [0, 1]], bool)
    probs = {
        "loud": np.array([[0.9], [0.1], [0.2], [0.3], [0.9], [0.9]]),
        "word": np.array(
            [
                [0.0, 0.0, 1.0],
                [0.0, 0.0, 1.0],  # rows without `word`
                [0.8, 0.1, 0.1],
                [0.1, 0.2, 0.7],
                [0.1, 0.2, 0.7],
                [0.3, 0.2, 0.5],
            ]
        ),
    }
    return tasks, y, has_task, probs, {"loud": 0.25, "word": 1.5}


def test_evaluation_report_counts_only_rows_with_the_task():
    tasks, y, has_task, probs, losses = two_task_data()
    reports = evaluation_report(tasks, y, has_task, probs, losses, None)
    assert list(reports) == ["loud", "word"]
    loud, word = reports["loud"], reports["word"]
    assert loud["support"] == 4 and word["support"] == 4
    assert loud == {**task_report(BINARY, y[:4, :1], probs["loud"][:4]), "loss": 0.25}
    assert loud["confusion_matrix"] == [[2, 0], [1, 1]]
    assert word["confusion_matrix"] == [[1, 0, 0], [0, 0, 1], [0, 0, 2]]
    assert word["loss"] == 1.5 and "clip" not in word
    unique_clips = evaluation_report(tasks, y, has_task, probs, losses, np.arange(6))
    assert unique_clips == reports  # no clip repeats: rows are whole clips
    json.dumps(reports)


def test_evaluation_report_adds_clip_level_reports_when_windows_repeat():
    tasks, y, has_task, probs, losses = two_task_data()
    clip = np.array([0, 0, 1, 1, 2, 2])
    reports = evaluation_report(tasks, y, has_task, probs, losses, clip)
    loud_clip = reports["loud"]["clip"]
    # loud: clip 0 = rows 0, 1 (mean 0.5 -> negative, target 1), clip 1 = rows 2, 3 (0.25).
    assert loud_clip["support"] == 2
    assert loud_clip["confusion_matrix"] == [[0, 0], [2, 0]]
    # word: clip 1 = rows 2, 3 (mean [.45, .15, .4] -> go), clip 2 = rows 4, 5 (-> yes).
    word_clip = reports["word"]["clip"]
    assert word_clip == task_report(
        WORD, y[[2, 4], 1:], np.array([[0.45, 0.15, 0.4], [0.2, 0.2, 0.6]])
    )
    assert word_clip["accuracy"] == 1.0
    assert "loss" not in word_clip
    json.dumps(reports)


def test_evaluation_report_errors_name_the_problem():
    tasks, y, has_task, probs, losses = two_task_data()
    with pytest.raises(ValueError, match=r"\['word'\] lack probs or losses"):
        evaluation_report(tasks, y, has_task, {"loud": probs["loud"]}, losses, None)
    with pytest.raises(ValueError, match=r"has_task \[N, 2\]"):
        evaluation_report(tasks, y, has_task[:, :1], probs, losses, None)


def test_summary_table_lists_tasks_and_formatted_numbers():
    tasks, y, has_task, probs, losses = two_task_data()
    tags_targets = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    reports = evaluation_report(tasks, y, has_task, probs, losses, None)
    reports["tags"] = task_report(TAGS, tags_targets, tags_targets)
    text = summary_table(reports, tasks=(*tasks, TAGS))
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["task", "kind", "support", "loss"]
    assert lines[0].split()[-4:] == ["mAP", "lwlrap", "ROC-AUC", "EER"]
    assert "clip" not in lines[0]
    # loud: scores 0.9, 0.2 (positives) and 0.1, 0.3: 3 of 4 pairs ordered, EER 1/2.
    loud = ["loud", "binary", "4", "0.2500", "0.7500", "0.7333", "-", "-", "0.7500", "0.5000"]
    assert lines[2].split() == loud
    word = f"{reports['word']['macro avg']['f1-score']:.4f}"
    assert lines[3].split() == ["word", "multiclass", "4", "1.5000", "0.7500", word, *["-"] * 4]
    # tags: perfect on dog and car; bird, absent, counts in no macro average (was 0.6667).
    tags = ["tags", "multilabel", "2", "-", "1.0000", "1.0000", "1.0000", "1.0000", "1.0000"]
    assert lines[4].split() == [*tags, "-"]
    assert summary_table(reports).splitlines()[4].split()[1] == "multilabel"  # guessed kind
    windowed = evaluation_report(tasks, y, has_task, probs, losses, np.array([0, 0, 1, 1, 2, 2]))
    clip_lines = summary_table(windowed, tasks=tasks).splitlines()
    assert "clip macro F1" in clip_lines[0] and "clip EER" in clip_lines[0]
    assert "mAP" not in clip_lines[0]  # no multilabel task: no mAP column
    # loud's two clips are both positive: ROC-AUC and EER undefined at clip level.
    assert clip_lines[2].split()[-5:] == ["2", "0.0000", "0.0000", "-", "-"]


def test_headline_metric_names_the_headline_number():
    assert [headline_metric(k) for k in ("binary", "multiclass", "multilabel")] == [
        "accuracy",
        "accuracy",
        "micro_f1",
    ]
    tags = task_report(
        TAGS,
        np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]),
        np.array([[0.9, 0.6, 0.2], [0.1, 0.8, 0.3]]),
    )
    assert (
        headline(tags, "multilabel")
        == tags["micro avg"]["f1-score"]
        != tags["macro avg"]["f1-score"]
    )
