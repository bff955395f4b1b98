"""Evaluation: per-task classification reports, clip pooling and a summary table.

Everything here takes numpy arrays on the host and uses scikit-learn; nothing imports JAX
(`summary_table` imports `mtjax.report` when called). Reports are plain dicts of python
floats, ints, strings and lists, so `json.dumps` writes them as they are.

A task's report is scikit-learn's `classification_report(..., output_dict=True,
zero_division=0)` keyed by the task's label names, every label listed even when absent from
the data, plus:

  "confusion_matrix": binary, multiclass: [L, L] list of lists (rows true, columns
    predicted, label order); multilabel: {label: [[tn, fp], [fn, tp]]}.
  "support": int, number of rows.

Binary and multiclass reports hold "accuracy", "macro avg", "weighted avg"; multilabel ones
"micro avg", "macro avg", "weighted avg", "samples avg".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix, multilabel_confusion_matrix

from mtjax import tables
from mtjax.tasks import Task, task_slices

# Keys a report uses besides the label names; a label with one of these names is refused.
RESERVED_KEYS = (
    "accuracy",
    "micro avg",
    "macro avg",
    "weighted avg",
    "samples avg",
    "confusion_matrix",
    "support",
    "loss",
    "clip",
)


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
      above `threshold`; multiclass: the most probable column). Multilabel: int [N, C + 1]
      indicator matrices, strictly above `threshold` for predictions, with an all-zero column
      appended so that scikit-learn sees a multilabel matrix even when C is 1 (it reads a
      single column as a binary vector); the extra column is left out of `labels`.
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
    """`value` with every number set to 0 of the same type, structure kept."""
    if isinstance(value, dict):
        return {k: _zeroed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_zeroed(v) for v in value]
    return type(value)(0)


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
      all scores, supports and confusion counts 0 (accuracy 0.0) and "support" 0.
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
        return {**_zeroed(task_report(task, one, one, threshold=threshold)), "support": 0}

    y_true, y_pred = _decisions(task, targets, probs, threshold)
    labels = list(range(len(task.labels)))
    report = classification_report(
        y_true,
        y_pred,
        labels=labels,
        target_names=list(task.labels),
        output_dict=True,
        zero_division=0,
    )
    if task.kind == "multilabel":
        matrices = multilabel_confusion_matrix(y_true, y_pred, labels=labels)
        report["confusion_matrix"] = dict(zip(task.labels, matrices.tolist()))
    else:
        report["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    report["support"] = len(targets)
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


def _scores(report: Mapping | None, kind: str) -> list[str]:
    """[support, headline, macro F1] as text, "-" for a missing report."""
    if report is None:
        return ["-", "-", "-"]
    macro_f1 = report["macro avg"]["f1-score"]
    return [str(report["support"]), f"{headline(report, kind):.4f}", f"{macro_f1:.4f}"]


def summary_table(reports: Mapping[str, Mapping], tasks: Sequence[Task] | None = None) -> str:
    """A text table, one row per task: support, loss, headline score and macro F1.

    The headline is accuracy for binary and multiclass tasks, micro F1 for multilabel ones
    (`headline`). Clip-level columns are added when any report has "clip".

    Args:
      reports: task name -> report, as `evaluation_report` returns (or `task_report`s).
      tasks: the tasks, for their kinds; without them, kinds are guessed from the reports
        (a two-label multiclass task then reads as binary).

    Returns:
      The table as one string (`mtjax.report.table`).
    """
    kinds = {t.name: t.kind for t in tasks or ()}
    with_clip = any("clip" in r for r in reports.values())
    headers = ["task", "kind", "support", "loss", "accuracy / micro F1", "macro F1"]
    if with_clip:
        headers += ["clips", "clip accuracy / micro F1", "clip macro F1"]
    rows = []
    for name, report in reports.items():
        kind = kinds.get(name) or _kind(report)
        loss = f"{report['loss']:.4f}" if "loss" in report else "-"
        support, score, macro = _scores(report, kind)
        row = [name, kind, support, loss, score, macro]
        if with_clip:
            row += _scores(report.get("clip"), kind)
        rows.append(row)
    return tables.table(headers, rows)
