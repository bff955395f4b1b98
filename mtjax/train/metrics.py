"""Evaluation: per-task classification reports, clip pooling and a summary table.

Everything here takes numpy arrays on the host and uses scikit-learn; nothing imports JAX
(`summary_table` imports `mtjax.report` when called). Reports are plain dicts of python
floats, ints, strings, None and lists, so `json.dumps` writes them as they are.

A task's report is scikit-learn's `classification_report(..., output_dict=True,
zero_division=0)` keyed by the task's label names, every label listed even when absent from
the data, plus:

  "confusion_matrix": binary, multiclass: [L, L] list of lists (rows true, columns
    predicted, label order); multilabel: {label: [[tn, fp], [fn, tp]]}.
  "support": int, number of rows.
  the task kind's standard ranking metrics (`family_metrics`), from the probabilities:
    binary: "roc_auc" and "eer" (equal error rate, `equal_error_rate`);
    multilabel: "mAP" (`mean_average_precision`), "roc_auc" (`macro_roc_auc`), "d_prime"
    (`d_prime` of that ROC-AUC) and "lwlrap" (`lwlrap`). None where the split cannot
    define one (a binary split of one class, a multilabel split without positives).

Binary and multiclass reports hold "accuracy", "macro avg", "weighted avg"; multilabel ones
"micro avg", "macro avg", "weighted avg", "samples avg".

Macro averages are over the labels present in the split: "macro avg" precision, recall and
F1 are means over the labels that occur in the split's true labels (support > 0), not over
every label as scikit-learn's are; an absent label keeps its row, with support 0. With no
label present (no rows, or multilabel rows without positives) the macro scores are 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import special
from sklearn import metrics as skm

from mtjax import tables
from mtjax.tasks import Task, task_slices

# Keys a report uses besides the label names; a label with one of these names is refused.
RESERVED_KEYS = (
    *("accuracy", "micro avg", "macro avg", "weighted avg", "samples avg", "confusion_matrix"),
    *("support", "loss", "clip", "mAP", "roc_auc", "d_prime", "lwlrap", "eer"),
)

# Each task kind's standard metrics beside accuracy and F1, in report and history order.
_FAMILY_METRICS = {
    "binary": ("roc_auc", "eer"),
    "multiclass": (),
    "multilabel": ("mAP", "roc_auc", "d_prime", "lwlrap"),
}


def _check_columns(task: Task, name: str, array: np.ndarray) -> None:
    if array.ndim != 2 or array.shape[1] != task.n_columns:
        raise ValueError(
            f"task {task.name!r} ({task.kind}): {name} must be [N, {task.n_columns}],"
            f" got shape {list(array.shape)}"
        )


def probabilities(task: Task, logits: np.ndarray) -> np.ndarray:
    """Probabilities from a task's logits, computed without overflow.

    Sigmoid for binary and multilabel tasks (each column on its own), softmax over the
    columns for multiclass tasks.

    Args:
      task: the task the columns belong to.
      logits: float [N, C], C = `task.n_columns`.

    Returns:
      float [N, C] in [0, 1] (float32 stays float32, integers become float64); multiclass
      rows sum to 1.
    """
    logits = np.asarray(logits)
    _check_columns(task, "logits", logits)
    x = logits.astype(np.result_type(logits.dtype, np.float32))
    if task.kind == "multiclass":
        e = np.exp(x - x.max(axis=-1, keepdims=True, initial=-np.inf))
        return e / e.sum(axis=-1, keepdims=True)
    e = np.exp(-np.abs(x))  # in (0, 1]: never overflows
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype)


def _decisions(
    task: Task, targets: np.ndarray, probs: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """True and predicted labels in scikit-learn's form.

    Returns:
      binary, multiclass: int [N] class ids each (binary: 1 when the probability is strictly
      above `threshold`; multiclass: the argmax). Multilabel: int [N, C + 1] indicators
      (predictions strictly above `threshold`) with an all-zero column appended, left out of
      `labels`, so that scikit-learn never reads a single column as a binary vector.
    """
    if task.kind == "binary":
        return task.class_ids(targets), (probs[:, 0] > threshold).astype(np.int64)
    if task.kind == "multiclass":
        return task.class_ids(targets), probs.argmax(-1)
    pad = np.zeros([len(targets), 1], np.int64)
    y_true = np.concatenate([(targets > 0.5).astype(np.int64), pad], axis=1)
    y_pred = np.concatenate([(probs > threshold).astype(np.int64), pad], axis=1)
    return y_true, y_pred


def _plain(value: Any) -> Any:
    """`value` with numpy scalars and arrays turned into python numbers and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return value


def _zeroed(value: Any) -> Any:
    """`value` with every number set to 0 of the same type (None kept), structure kept."""
    if isinstance(value, dict):
        return {k: _zeroed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_zeroed(v) for v in value]
    return None if value is None else type(value)(0)


def family_metrics(kind: str) -> tuple[str, ...]:
    """The report keys of a task kind's standard metrics beside accuracy and F1."""
    return _FAMILY_METRICS[kind]


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of `metric` (a name or a history key) is the better one.

    True for losses, the combiner's objective and the equal error rate ("eer").
    """
    name = metric.rsplit("/", 1)[-1]
    return name in ("objective", "eer") or name.endswith("loss")


def _label_mean(score, targets, scores, *, both: bool) -> float | None:
    """Mean `score(targets, scores)` of the labels with a positive (and a negative, `both`)."""
    positive, scores = np.asarray(targets) > 0.5, np.asarray(scores, np.float64)
    kept = positive.any(0) & ((~positive).any(0) | (not both))
    found = [score(positive[:, c], scores[:, c]) for c in np.flatnonzero(kept)]
    return float(np.mean(found)) if found else None


def mean_average_precision(targets: npt.ArrayLike, scores: npt.ArrayLike) -> float | None:
    """mAP: the mean `average_precision_score` over the labels with a positive.

    Args:
      targets: float [N, C], 1 (above 0.5) marks a positive.
      scores: float [N, C], higher means more likely positive.

    Returns:
      float in [0, 1], or None when no label has a positive.
    """
    return _label_mean(skm.average_precision_score, targets, scores, both=False)


def macro_roc_auc(targets: npt.ArrayLike, scores: npt.ArrayLike) -> float | None:
    """The mean `roc_auc_score` over the labels with both classes; None when none has.

    Args: as `mean_average_precision`.
    """
    return _label_mean(skm.roc_auc_score, targets, scores, both=True)


def d_prime(auc: float | None) -> float | None:
    """Sensitivity index d' = sqrt(2) * Phi^-1(AUC) (Hershey et al. 2017); inf for AUC 1."""
    return None if auc is None else float(np.sqrt(2.0) * special.ndtri(auc))


def lwlrap(targets: npt.ArrayLike, scores: npt.ArrayLike) -> float | None:
    """Label-weighted label-ranking average precision (the FSDKaggle 2019 challenge metric).

    The mean over all (row, positive label) pairs of the precision at that label's rank (the
    share of positives among the row's labels scored at least as high), so each label weighs
    by its number of positives: `label_ranking_average_precision_score` with each row
    weighted by its number of positives. Ties count against the label.

    Args: as `mean_average_precision`.

    Returns:
      float in [0, 1], or None when no row has a positive.
    """
    positive, scores = np.asarray(targets) > 0.5, np.asarray(scores, np.float64)
    counts_N = positive.sum(1)
    if not counts_N.any():
        return None
    rows, ranked = counts_N > 0, skm.label_ranking_average_precision_score
    return float(ranked(positive[rows], scores[rows], sample_weight=counts_N[rows]))


def equal_error_rate(targets: npt.ArrayLike, scores: npt.ArrayLike) -> float | None:
    """EER: the error rate at which false positives and false negatives are equally likely.

    Read from the ROC curve (`roc_curve`) where FPR = 1 - TPR, linearly between the curve's
    points on either side (the rates of a random choice between their thresholds). 0 for
    scores that separate the classes, 0.5 for chance, 1 for separating them the wrong way.

    Args: as `mean_average_precision`, but [N] each.

    Returns:
      float in [0, 1], or None when `targets` lack a class.
    """
    positive = np.asarray(targets).reshape(-1) > 0.5
    if positive.all() or not positive.any():
        return None
    scores = np.asarray(scores, np.float64).reshape(-1)
    fpr, tpr, _ = skm.roc_curve(positive, scores, drop_intermediate=False)
    gap = (1.0 - tpr) - fpr  # from 1 at (0, 0) down to -1 at (1, 1), never rising
    i = int(np.argmax(gap <= 0))  # >= 1: the first point at or past the crossing
    share = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(fpr[i - 1] + share * (fpr[i] - fpr[i - 1]))


def family_report(task: Task, targets: np.ndarray, probs: np.ndarray) -> dict[str, float | None]:
    """The task kind's standard metrics (`family_metrics`) of [N, C] targets and probabilities."""
    if task.kind == "multiclass":
        return {}
    auc = macro_roc_auc(targets, probs)
    if task.kind == "binary":
        return {"roc_auc": auc, "eer": equal_error_rate(targets[:, 0], probs[:, 0])}
    mean_ap, ranked = mean_average_precision(targets, probs), lwlrap(targets, probs)
    return {"mAP": mean_ap, "roc_auc": auc, "d_prime": d_prime(auc), "lwlrap": ranked}


def _macro_over_present(report: dict, labels: Sequence[str]) -> None:
    """Sets `report`'s "macro avg" scores to the means over labels with support > 0."""
    present = [report[label] for label in labels if report[label]["support"] > 0]
    for score in ("precision", "recall", "f1-score"):
        report["macro avg"][score] = float(np.mean([r[score] for r in present])) if present else 0.0


def task_report(
    task: Task, targets: np.ndarray, probs: np.ndarray, *, threshold: float = 0.5
) -> dict:
    """Classification report of one task (see the module docstring for its keys).

    Args:
      task: the task.
      targets: float [N, C], the task's target columns (C = `task.n_columns`).
      probs: float [N, C], predicted probabilities (see `probabilities`).
      threshold: a binary or multilabel column is predicted positive when its probability
        is strictly above this; unused for multiclass (argmax).

    Returns:
      dict, JSON-serialisable. With N = 0 the report has every key a non-empty one has, with
      all scores, supports and confusion counts 0 (accuracy 0.0), "support" 0 and the
      family metrics None.
    """
    targets, probs = np.asarray(targets), np.asarray(probs)
    _check_columns(task, "targets", targets)
    _check_columns(task, "probs", probs)
    if len(targets) != len(probs):
        raise ValueError(
            f"task {task.name!r}: targets have {len(targets)} rows, probs {len(probs)}"
        )
    clash = sorted(set(task.labels) & set(RESERVED_KEYS))
    if clash:
        raise ValueError(
            f"task {task.name!r}: labels {clash} clash with report keys; rename them"
            f" (reserved: {list(RESERVED_KEYS)})"
        )
    if len(targets) == 0:  # scikit-learn refuses empty input: take one row's form, zeroed
        one = np.zeros([1, task.n_columns], np.float32)
        zeroed = _zeroed(task_report(task, one, one, threshold=threshold))
        return {**zeroed, "support": 0, **dict.fromkeys(family_metrics(task.kind))}

    y_true, y_pred = _decisions(task, targets, probs, threshold)
    labels = list(range(len(task.labels)))
    names = list(task.labels)
    report = skm.classification_report(
        y_true, y_pred, labels=labels, target_names=names, output_dict=True, zero_division=0
    )
    if task.kind == "multilabel":
        matrices = skm.multilabel_confusion_matrix(y_true, y_pred, labels=labels)
        report["confusion_matrix"] = dict(zip(task.labels, matrices.tolist()))
    else:
        report["confusion_matrix"] = skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    _macro_over_present(report, task.labels)
    report["support"] = len(targets)
    report.update(family_report(task, targets, probs))
    return _plain(report)


def pool_clips(probs: np.ndarray, clip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean probabilities of the windows of each clip.

    Args:
      probs: float [N, C], one row per window.
      clip: [N] clip id of each window (any values numpy can sort: ints, strings).

    Returns:
      clip_probs: float64 [M, C], the mean over each clip's windows, clips in order of
        first appearance.
      first_row: int64 [M], the row of each clip's first window (to fetch its targets).
    """
    probs, clip = np.asarray(probs), np.asarray(clip)
    if probs.ndim != 2 or clip.shape != probs.shape[:1]:
        raise ValueError(
            f"probs must be [N, C] and clip [N]; got {list(probs.shape)} and {list(clip.shape)}"
        )
    _, first_sorted, inverse = np.unique(clip, return_index=True, return_inverse=True)
    order = np.argsort(first_sorted)  # appearance position -> sorted position
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))  # sorted position -> appearance position
    clip_id_N = rank[inverse.reshape(-1)]
    sums_MxC = np.zeros([len(order), probs.shape[1]], np.float64)
    np.add.at(sums_MxC, clip_id_N, probs)
    counts_M = np.bincount(clip_id_N, minlength=len(order))
    return sums_MxC / counts_M[:, None], first_sorted[order].astype(np.int64)


def evaluation_report(
    tasks: Sequence[Task],
    y: np.ndarray,
    has_task: np.ndarray,
    probs: Mapping[str, np.ndarray],
    losses: Mapping[str, float],
    clip: np.ndarray | None,
    *,
    threshold: float = 0.5,
) -> dict[str, dict]:
    """Reports of every task on the rows that carry it.

    When `clip` repeats a value anywhere (the data were cut into windows), every task's report
    also gets "clip": the `task_report` of its clips, window probabilities averaged
    (`pool_clips` over that task's rows only) and targets taken from each clip's first window.
    Clip ids must therefore be unique across all rows passed.

    Args:
      tasks: the K tasks, in the column order of `y`.
      y: float [N, C_total], all tasks' target columns (`task_slices(tasks)`).
      has_task: bool [N, K], whether row n carries task k; other rows are left out.
      probs: task name -> float [N, C_k], probabilities for all N rows.
      losses: task name -> mean loss of the task on this data.
      clip: [N] clip id of each row, or None when rows are whole clips.
      threshold: see `task_report`.

    Returns:
      task name -> `task_report` plus "loss" (float), and "clip" as above.
    """
    y, has_task = np.asarray(y), np.asarray(has_task, bool)
    slices = task_slices(tasks)
    n_columns = sum(t.n_columns for t in tasks)
    if y.ndim != 2 or y.shape[1] != n_columns or has_task.shape != (len(y), len(tasks)):
        raise ValueError(
            f"y must be [N, {n_columns}] and has_task [N, {len(tasks)}] for tasks"
            f" {[t.name for t in tasks]}; got {list(y.shape)} and {list(has_task.shape)}"
        )
    missing = [t.name for t in tasks if t.name not in probs or t.name not in losses]
    if missing:
        raise ValueError(
            f"tasks {missing} lack probs or losses; probs has {sorted(probs)},"
            f" losses has {sorted(losses)}"
        )
    windowed = clip is not None and len(np.unique(clip)) < len(clip)
    reports = {}
    for k, task in enumerate(tasks):
        rows = has_task[:, k]
        targets, p = y[rows, slices[task.name]], np.asarray(probs[task.name])
        if len(p) != len(y):
            raise ValueError(f"task {task.name!r}: probs have {len(p)} rows, y has {len(y)}")
        p = p[rows]
        report = task_report(task, targets, p, threshold=threshold)
        report["loss"] = float(losses[task.name])
        if windowed:
            clip_probs, first_row = pool_clips(p, np.asarray(clip)[rows])
            report["clip"] = task_report(task, targets[first_row], clip_probs, threshold=threshold)
        reports[task.name] = report
    return reports


def headline_metric(kind: str) -> str:
    """The name of a task's headline metric: "accuracy", or "micro_f1" for multilabel tasks.

    The headline metric is the number models are selected by. Its name is the one used in
    the history (`{split}/{task}/accuracy`), the plots, the TensorBoard tags and the
    comparison of runs.
    """
    return "micro_f1" if kind == "multilabel" else "accuracy"


def headline(report: Mapping, kind: str) -> float:
    """The value of `headline_metric(kind)` in a report: its accuracy, or its micro F1.

    Args:
      report: a `task_report`.
      kind: the task's kind.
    """
    if headline_metric(kind) == "micro_f1":
        return float(report["micro avg"]["f1-score"])
    return float(report["accuracy"])


def _kind(report: Mapping) -> str:
    """A report's task kind, guessed from its keys: 2 labels read as binary."""
    if "samples avg" in report:
        return "multilabel"
    return "binary" if len(report["confusion_matrix"]) == 2 else "multiclass"


# The family metrics `summary_table` shows, with their column headers.
_TABLE_METRICS = {"mAP": "mAP", "lwlrap": "lwlrap", "roc_auc": "ROC-AUC", "eer": "EER"}


def _scores(report: Mapping | None, kind: str, family: Sequence[str]) -> list[str]:
    """[support, headline, macro F1, *family metrics] as text, "-" where missing."""
    if report is None:
        return ["-"] * (3 + len(family))
    found = [report["macro avg"]["f1-score"], *(report.get(m) for m in family)]
    numbers = ["-" if v is None else f"{v:.4f}" for v in found]
    return [str(report["support"]), f"{headline(report, kind):.4f}", *numbers]


def summary_table(reports: Mapping[str, Mapping], tasks: Sequence[Task] | None = None) -> str:
    """A text table, one row per task: support, loss, headline score, macro F1, family metrics.

    The headline is accuracy for binary and multiclass tasks, micro F1 for multilabel ones
    (`headline`). The family metrics are mAP, lwlrap, ROC-AUC and EER, those any report holds
    ("-" where a task has none). Clip-level columns are added when any report has "clip".

    Args:
      reports: task name -> report, as `evaluation_report` returns (or `task_report`s).
      tasks: the tasks, for their kinds; without them, kinds are guessed from the reports
        (a two-label multiclass task then reads as binary).

    Returns:
      The table as one string (`mtjax.report.table`).
    """
    kinds = {t.name: t.kind for t in tasks or ()}
    with_clip = any("clip" in r for r in reports.values())
    family = [m for m in _TABLE_METRICS if any(m in r for r in reports.values())]
    names = [_TABLE_METRICS[m] for m in family]
    headers = ["task", "kind", "support", "loss", "accuracy / micro F1", "macro F1", *names]
    if with_clip:
        headers += ["clips", "clip accuracy / micro F1", "clip macro F1"]
        headers += [f"clip {name}" for name in names]
    rows = []
    for name, report in reports.items():
        kind = kinds.get(name) or _kind(report)
        loss = f"{report['loss']:.4f}" if "loss" in report else "-"
        scores = _scores(report, kind, family)
        row = [name, kind, scores[0], loss, *scores[1:]]
        if with_clip:
            row += _scores(report.get("clip"), kind, family)
        rows.append(row)
    return tables.table(headers, rows)
