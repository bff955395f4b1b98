"""TensorBoard events of a run, one step per epoch.

Per task and split the loss and scores, the mean task loss and the combiner's objective as
two tags, the combiner weights, the learning rate, gradient conflicts and confusion images;
the scalar tags are the history's keys.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from tensorboardX import SummaryWriter

from mtjax import files
from mtjax.runs import plots
from mtjax.runs.folder import Run
from mtjax.tasks import Task
from mtjax.train import history as records


class EventWriter(NamedTuple):
    """An open writer of a run's events folder."""

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


_NOT_IN_TAGS = re.compile(r"[^-/\w.]")  # TensorBoard turns these into "_"
_TAGS = {"learning_rate": "train/learning_rate"}  # record keys logged under another tag


def scalars(
    record: Mapping,
    tasks: Sequence[Task],
    *,
    conflicts: Mapping[tuple[str, str], float] | None = None,
) -> dict[str, float]:
    """The TensorBoard scalars of one history record: tag -> value.

    A record's keys are its tags (`mtjax.train.history.keys`): `train/loss` (mean over the
    tasks of their loss, as `{split}/loss` is), `train/objective` (the combiner's objective,
    the quantity the gradient descends), `train/{task}/loss`, `train/weights/{task}`,
    `{split}/loss` (mean over tasks), `{split}/score` (mean headline score) and
    `{split}/{task}/loss`, `.../accuracy` (binary, multiclass), `.../micro_f1`
    (multilabel), `.../macro_f1`, the kind's standard metrics (`.../roc_auc`, `.../eer`;
    `.../mAP`, `.../d_prime`, `.../lwlrap`) and, with windows, `.../clip/...` of the
    clip-level report; `learning_rate` is logged as `train/learning_rate`, and each pair of
    tasks' gradient cosine as `train/conflict/{a}/{b}`. What the record lacks is left out.
    Characters TensorBoard does not allow in a tag (anything but letters, digits, "_", "-",
    "." and "/") become "_", as TensorBoard itself would write them.

    Args:
      record: one history record.
      tasks: the run's tasks, in order.
      conflicts: (task a, task b) -> cosine similarity between the two tasks' gradients.
    """
    out: dict[str, float] = {}
    for key in records.keys(tasks):
        found = records.value(record, key, default=None)
        if found is not None:
            out[_TAGS.get(key, key)] = float(found)
    for (a, b), similarity in (conflicts or {}).items():
        out[records.key("train", "conflict", a, b)] = float(similarity)
    return {_NOT_IN_TAGS.sub("_", tag): number for tag, number in out.items()}


def log_epoch(
    writer: EventWriter,
    record: Mapping,
    tasks: Sequence[Task],
    reports_by_split: Mapping[str, Mapping[str, Mapping]] | None = None,
    *,
    conflicts: Mapping[tuple[str, str], float] | None = None,
) -> None:
    """Logs one epoch at step `record["epoch"]`, then flushes.

    Scalars are `scalars(record, tasks, conflicts=conflicts)`; each task's report in
    `reports_by_split` (split -> task name -> report) adds its confusion matrix as an RGB
    image `{split}/{task}/confusion`.
    """
    step = int(record["epoch"])
    for tag, number in scalars(record, tasks, conflicts=conflicts).items():
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
