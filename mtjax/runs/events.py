"""TensorBoard events of a run: per task and split the loss and scores, the combiner weights,
the learning rate, gradient conflicts and confusion images."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from tensorboardX import SummaryWriter

from mtjax import files
from mtjax.runs import plots
from mtjax.runs.folder import Run
from mtjax.tasks import Task


class EventWriter(NamedTuple):
    summary: SummaryWriter  # tensorboardX writer of the run's events folder
    folder: Path


def open_events(run: Run, *, purge_step: int | None = None) -> EventWriter:
    """A TensorBoard writer of the run's `events/`; each call adds a new event file.

    Args:
      run: the run.
      purge_step: a resumed run's first epoch: TensorBoard then hides what an interrupted
        writer logged at this epoch and later, so redone epochs are not shown twice.
    """
    folder = files.writable_folder(run.events)
    # A unique, time-ordered suffix: two writers opened within one second (tensorboardX names
    # files by the second) must not overwrite each other's file.
    suffix = f".{time.time_ns():020d}.{os.getpid()}"
    summary = SummaryWriter(logdir=str(folder), purge_step=purge_step, filename_suffix=suffix)
    return EventWriter(summary, folder)


def close_events(writer: EventWriter) -> None:
    """Flushes and closes the writer."""
    writer.summary.close()


_SPLIT_METRICS = ("loss", "accuracy", "micro_f1", "macro_f1")


_NOT_IN_TAGS = re.compile(r"[^-/\w.]")  # TensorBoard turns these into "_"


def scalars(
    record: Mapping,
    tasks: Sequence[Task],
    *,
    lr: float | None = None,
    conflicts: Mapping[tuple[str, str], float] | None = None,
) -> dict[str, float]:
    """The TensorBoard scalars of one history record: tag -> value.

    Tags: `train/loss` (the combined loss), `train/{task}/loss`, `train/weights/{task}`,
    `train/learning_rate`, `train/conflict/{a}/{b}`; for every other split in the record
    `{split}/loss` (mean over tasks), `{split}/score` (mean headline score), and
    `{split}/{task}/loss`, `.../accuracy` (binary, multiclass), `.../micro_f1` (multilabel),
    `.../macro_f1`. What the record lacks is left out. Characters TensorBoard does not allow
    in a tag (anything but letters, digits, "_", "-", "." and "/") become "_", as TensorBoard
    itself would write them.

    Args:
      record: one history record.
      tasks: the run's tasks, in order.
      lr: the learning rate at the end of the epoch.
      conflicts: (task a, task b) -> cosine similarity between the two tasks' gradients.
    """
    out: dict[str, float] = {}
    train = record.get("train")
    if isinstance(train, Mapping):
        if "loss" in train:
            out["train/loss"] = float(train["loss"])
        for task in tasks:
            if task.name in train.get("tasks", {}):
                out[f"train/{task.name}/loss"] = float(train["tasks"][task.name])
            if task.name in train.get("weights", {}):
                out[f"train/weights/{task.name}"] = float(train["weights"][task.name])
    if lr is not None:
        out["train/learning_rate"] = float(lr)
    for (a, b), similarity in (conflicts or {}).items():
        out[f"train/conflict/{a}/{b}"] = float(similarity)
    for split, summary in record.items():
        if split == "train" or not isinstance(summary, Mapping):
            continue
        for key in ("loss", "score"):
            if key in summary:
                out[f"{split}/{key}"] = float(summary[key])
        for task in tasks:
            entry = summary.get(task.name)
            for metric in _SPLIT_METRICS if isinstance(entry, Mapping) else ():
                if metric in entry:
                    out[f"{split}/{task.name}/{metric}"] = float(entry[metric])
    return {_NOT_IN_TAGS.sub("_", tag): number for tag, number in out.items()}


def log_epoch(
    writer: EventWriter,
    record: Mapping,
    tasks: Sequence[Task],
    reports_by_split: Mapping[str, Mapping[str, Mapping]] | None = None,
    *,
    lr: float | None = None,
    conflicts: Mapping[tuple[str, str], float] | None = None,
) -> None:
    """Logs one epoch at step `record["epoch"]`, then flushes.

    Scalars are `scalars(record, tasks, lr=lr, conflicts=conflicts)`; each task's report in
    `reports_by_split` (split -> task name -> report) adds its confusion matrix as an RGB
    image `{split}/{task}/confusion`.
    """
    step = int(record["epoch"])
    for tag, number in scalars(record, tasks, lr=lr, conflicts=conflicts).items():
        writer.summary.add_scalar(tag, number, step)
    for split, reports in (reports_by_split or {}).items():
        for task in tasks:
            if task.name in reports:
                fig = plots.confusion(reports[task.name], task, title=f"{split} {task.name}")
                writer.summary.add_image(
                    _NOT_IN_TAGS.sub("_", f"{split}/{task.name}/confusion"),
                    plots.to_rgb(fig),
                    step,
                    dataformats="HWC",
                )
    writer.summary.flush()
