"""The history schema: one flat record per epoch, of "split/task/metric" keys.

As big_vision logs them, a record maps names to numbers (python ints and floats, so
`json.dumps` writes it as it is):

  epoch                     the epoch, from 0
  seconds                   wall time of the epoch: training and evaluation
  learning_rate             at the end of the epoch, where it is known (see `fit`)
  train/loss                mean over the tasks the epoch had rows of, of train/{task}/loss:
                            the same quantity as {split}/loss
  train/objective           the combiner's objective (what the gradient descends: a sum,
                            weighted, with uncertainty terms...), mean over the epoch's steps
  train/{task}/loss         the task's loss, mean over the steps that had a row of it
  train/weights/{task}      d objective / d loss_task, mean over the same steps
  {split}/loss              mean over the split's tasks of their loss (split: validation, test)
  {split}/score             mean over the split's tasks of their headline metric
  {split}/{task}/loss
  {split}/{task}/accuracy   binary and multiclass tasks (`metrics.headline_metric`)
  {split}/{task}/micro_f1   multilabel tasks
  {split}/{task}/macro_f1   over the labels present in the split (`metrics`)
  {split}/{task}/{family}   the kind's standard metrics (`metrics.family_metrics`): roc_auc
                            and eer (binary); mAP, roc_auc, d_prime and lwlrap (multilabel);
                            left out where the split cannot define one
  {split}/{task}/clip/...   with windows: the headline, macro_f1 and family metrics of the
                            clip-level report (window probabilities pooled per clip)

A split's task without rows in that split has no keys. `record` writes a record and is the
only writer; `value` reads one number and is the only lookup (stopping rules, checkpoint
ranking, TensorBoard tags, plots and the comparison of runs all read through it). Run
folders of mtjax 0.1 hold nested records (`{"train": {"loss": ..., "tasks": {...}}, ...}`);
`flat` turns one into this form (their train loss was the objective), and the run folder's
readers apply it.

Nothing here imports JAX.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from mtjax.tasks import Task
from mtjax.train import metrics

SPLITS = ("train", "validation", "test")
_MISSING: Any = object()


def key(*parts: str) -> str:
    """The record key of a path: `key("validation", "word", "accuracy")` is "validation/...".

    >>> key("validation", "word", "accuracy")
    'validation/word/accuracy'
    """
    return "/".join(parts)


def keys(tasks: Sequence[Task], splits: Sequence[str] = SPLITS[1:]) -> list[str]:
    """Every key a record of these tasks can hold besides "epoch" and "seconds", in order.

    Args:
      tasks: the run's tasks.
      splits: the evaluated splits.
    """
    out = ["learning_rate", key("train", "loss"), key("train", "objective")]
    out += [key("train", t.name, "loss") for t in tasks]
    out += [key("train", "weights", t.name) for t in tasks]
    for split in splits:
        out += [key(split, "loss"), key(split, "score")]
        for t in tasks:
            out += [key(split, t.name, m) for m in ("loss", *_scores(t.kind))]
            out += [key(split, t.name, "clip", m) for m in _scores(t.kind)]
    return out


def _scores(kind: str) -> tuple[str, ...]:
    """The names of a report's scores in a record, for a task of `kind`."""
    return (metrics.headline_metric(kind), "macro_f1", *metrics.family_metrics(kind))


def _mean_over_tasks(losses: Sequence[float]) -> float:
    """The mean of the tasks' losses (those with rows), NaN for none: {split}/loss."""
    return float(np.mean(losses)) if len(losses) else math.nan


def _report_scores(report: Mapping, kind: str, *parts: str) -> dict[str, float]:
    """Record entries `parts/metric` of a report's scores, those it defines (not None)."""
    found = {
        metrics.headline_metric(kind): metrics.headline(report, kind),
        "macro_f1": report["macro avg"]["f1-score"],
        **{m: report.get(m) for m in metrics.family_metrics(kind)},
    }
    return {key(*parts, m): float(v) for m, v in found.items() if v is not None}


class TrainMeans(NamedTuple):
    """An epoch's training numbers (`train_means`).

    Attributes:
      loss: the mean over the tasks the epoch had rows of, of their loss in `tasks`
        (NaN when none had): computed as a split's loss is (`record`).
      objective: the combiner's objective, the quantity the gradient descends, mean over
        the steps.
      tasks: task name -> its loss, mean over the steps that had a row of it (0 for a task
        the epoch had no row of).
      weights: task name -> d objective / d loss_task, mean over the same steps.
    """

    loss: float
    objective: float
    tasks: dict[str, float]
    weights: dict[str, float]


def train_means(step_metrics: Mapping[str, Any], tasks: Sequence[Task]) -> TrainMeans:
    """The epoch means of the train step's metrics, on the host.

    Args:
      step_metrics: the steps' metrics as numpy arrays (`jax.device_get` them first): loss
        [S] (the combiner's objective), tasks [S, K], present bool [S, K], weights [S, K].
      tasks: the K tasks.
    """
    present_SxK = np.asarray(step_metrics["present"], np.float64)
    losses_SxK = np.asarray(step_metrics["tasks"], np.float64)
    weights_SxK = np.asarray(step_metrics["weights"], np.float64)
    steps_K = present_SxK.sum(0)
    seen_K = np.maximum(steps_K, 1)
    task_losses = (losses_SxK * present_SxK).sum(0) / seen_K
    task_weights = (weights_SxK * present_SxK).sum(0) / seen_K
    return TrainMeans(
        loss=_mean_over_tasks([float(v) for v in task_losses[steps_K > 0]]),
        objective=float(np.mean(np.asarray(step_metrics["loss"], np.float64))),
        tasks={t.name: float(task_losses[k]) for k, t in enumerate(tasks)},
        weights={t.name: float(task_weights[k]) for k, t in enumerate(tasks)},
    )


def epoch_cosines(cosines_SxKxK: np.ndarray, present_SxK: np.ndarray) -> np.ndarray:
    """float64 [K, K]: each pair's mean gradient cosine over the steps holding both tasks.

    0 for a pair that never shared a step; 1 on the diagonal of a task that was present.
    """
    present = np.asarray(present_SxK, np.float64)
    both_SxKxK = present[:, :, None] * present[:, None, :]
    total_KxK = (np.asarray(cosines_SxKxK, np.float64) * both_SxKxK).sum(0)
    return total_KxK / np.maximum(both_SxKxK.sum(0), 1.0)


def record(
    epoch: int,
    *,
    seconds: float,
    train: TrainMeans,
    reports: Mapping[str, Mapping[str, Mapping]],
    tasks: Sequence[Task],
    learning_rate: float | None = None,
) -> dict[str, float]:
    """One epoch's history record (the module docstring lists its keys).

    Args:
      epoch: the epoch.
      seconds: its wall time.
      train: its training means.
      reports: split name -> task name -> `evaluate` report of that split, this epoch.
      tasks: the run's tasks, in order.
      learning_rate: the learning rate at the end of the epoch; None leaves the key out.
    """
    out: dict[str, Any] = {"epoch": int(epoch), "seconds": float(seconds)}
    if learning_rate is not None:
        out["learning_rate"] = float(learning_rate)
    out[key("train", "loss")] = float(train.loss)
    out[key("train", "objective")] = float(train.objective)
    out.update({key("train", t.name, "loss"): float(train.tasks[t.name]) for t in tasks})
    out.update({key("train", "weights", t.name): float(train.weights[t.name]) for t in tasks})
    for split, split_reports in reports.items():
        scored = [
            (t, split_reports[t.name])
            for t in tasks
            if split_reports.get(t.name, {}).get("support")
        ]
        loss = [float(r["loss"]) for _, r in scored]
        score = [metrics.headline(r, t.kind) for t, r in scored]
        out[key(split, "loss")] = _mean_over_tasks(loss)
        out[key(split, "score")] = float(np.mean(score)) if scored else math.nan
        for (t, report), task_loss in zip(scored, loss):
            out[key(split, t.name, "loss")] = task_loss
            out.update(_report_scores(report, t.kind, split, t.name))
            clip = report.get("clip")
            if clip and clip.get("support"):
                out.update(_report_scores(clip, t.kind, split, t.name, "clip"))
    return out


def value(record: Mapping[str, Any], key: str, *, default: Any = _MISSING) -> Any:
    """The number at `key` in one record.

    Args:
      record: a history record.
      key: e.g. "validation/loss", "validation/score", "validation/word/accuracy".
      default: returned when the record lacks `key`; without it, a KeyError.

    Raises:
      KeyError listing the record's keys, the closest to `key` first.
    """
    if key in record:
        return record[key]
    if default is not _MISSING:
        return default
    known = sorted(record, key=lambda k: -difflib.SequenceMatcher(None, key, str(k)).ratio())
    raise KeyError(
        f"{key!r} is not in the history record; its keys, closest first: "
        f"{', '.join(map(str, known))}"
    )


def series(history: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    """float64 [E]: `value` of `key` in every record, NaN where a record lacks it."""
    return np.array([value(r, key, default=math.nan) for r in history], np.float64)


def flat(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record of either form in the flat one; a flat record comes back as a copy.

    The nested form (mtjax 0.1): {"epoch", "seconds", "train": {"loss", "tasks": {task:
    loss}, "weights": {task: weight}}, split: {"loss", "score", task: {metric: value}}}. Its
    train "loss" was the combiner's objective: it becomes "train/objective", and the record
    has no "train/loss" (0.1 did not record which tasks each epoch had rows of).
    """
    out: dict[str, Any] = {}
    for name, part in record.items():
        if not isinstance(part, Mapping):
            out[name] = part
            continue
        for inner, entry in part.items():
            if name == "train" and inner == "loss":
                out[key("train", "objective")] = entry
            elif not isinstance(entry, Mapping):
                out[key(name, inner)] = entry
            elif name == "train" and inner == "tasks":
                out.update({key(name, task, "loss"): v for task, v in entry.items()})
            elif name == "train" and inner == "weights":
                out.update({key(name, "weights", task): v for task, v in entry.items()})
            else:
                out.update({key(name, inner, metric): v for metric, v in entry.items()})
    return out
