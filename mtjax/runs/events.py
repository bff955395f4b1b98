"""TensorBoard events of a run, one step per epoch.

Per task and split the loss and scores, the mean task loss and the combiner's objective as
two tags, the combiner weights, the learning rate, gradient conflicts and the epoch's time;
the scalar tags are the history's keys. Besides them, what TensorBoard's dashboards read:

- Custom Scalars: one chart per task and metric holding its train, validation and test
  curves (`layout`), the plain per-split tags staying as they are;
- Text: the run's config.json (`log_config`);
- HParams: the run's settings flattened to numbers and strings (`hparams`) and, as metrics,
  the chosen epoch's headline numbers under `chosen/...` (`chosen_metrics`, `log_hparams`);
- Images: confusion matrices (`log_images`), which the recorder draws only for the chosen
  and the last epoch, at their epoch's step.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from tensorboardX import SummaryWriter
from tensorboardX import summary as tb_summary

from mtjax import files
from mtjax.runs import plots
from mtjax.runs.folder import Run
from mtjax.tasks import Task
from mtjax.train import history as records
from mtjax.train import metrics as scores


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
EPOCH_SECONDS = "time/epoch_seconds"  # the record's "seconds", with `log_epoch(timed=True)`
CHOSEN = "chosen"  # tag prefix of the chosen epoch's metrics, the HParams dashboard's columns


def tag(name: str) -> str:
    """`name` as TensorBoard stores it: characters it does not allow become "_"."""
    return _NOT_IN_TAGS.sub("_", name)


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
    return {tag(name): number for name, number in out.items()}


def log_epoch(
    writer: EventWriter,
    record: Mapping,
    tasks: Sequence[Task],
    reports_by_split: Mapping[str, Mapping[str, Mapping]] | None = None,
    *,
    conflicts: Mapping[tuple[str, str], float] | None = None,
    timed: bool = False,
) -> None:
    """Logs one epoch at step `record["epoch"]`, then flushes.

    Scalars are `scalars(record, tasks, conflicts=conflicts)`, with `timed` also the
    record's "seconds" as `EPOCH_SECONDS`; each task's report in `reports_by_split` (split
    -> task name -> report) adds its confusion matrix as an RGB image
    `{split}/{task}/confusion` (drawn now: a run's recorder gives none, and draws the chosen
    and the last epoch's when it closes).
    """
    step = int(record["epoch"])
    for name, number in scalars(record, tasks, conflicts=conflicts).items():
        writer.summary.add_scalar(name, number, step)
    if timed and "seconds" in record:
        writer.summary.add_scalar(EPOCH_SECONDS, float(record["seconds"]), step)
    if reports_by_split:
        log_images(writer, step, plots.confusion_images(reports_by_split, tasks))
    writer.summary.flush()


def log_images(
    writer: EventWriter, step: int, images: Mapping[tuple[str, str], np.ndarray]
) -> None:
    """Confusion images at `step`, tagged `{split}/{task}/confusion`.

    Args:
      writer: the run's writer.
      step: the epoch they are of.
      images: (split, task name) -> uint8 [H, W, 3] (`plots.confusion_images`).
    """
    for (split, task), image in images.items():
        writer.summary.add_image(tag(f"{split}/{task}/confusion"), image, step, dataformats="HWC")
    writer.summary.flush()


def layout(tags: Iterable[str], tasks: Sequence[Task]) -> dict[str, dict[str, list]]:
    """The Custom Scalars layout: one chart per task and metric, one line per split.

    A tag `{split}/{task}/{metric}` (split train, validation or test) joins the chart
    "{task} {metric}" of category `{task}`; `{split}/loss` and `{split}/score` join
    "loss" and "score" of category "mean over tasks". Other tags (weights, conflicts, the
    learning rate) have no chart here; every tag keeps its own chart in Scalars.

    Args:
      tags: the scalar tags the run logs (`scalars` of a record).
      tasks: the run's tasks.

    Returns:
      {category: {chart: ["Multiline", [tag regex, ...]]}}, for `add_custom_scalars`.
    """
    names = {tag(t.name): t.name for t in tasks}
    charts: dict[str, dict[str, list[str]]] = {}
    for found in tags:
        split, _, rest = found.partition("/")
        first, _, metric = rest.partition("/")
        if split not in records.SPLITS or not rest:
            continue
        if rest in ("loss", "score"):
            category, chart = "mean over tasks", rest
        elif first in names and metric:
            category, chart = names[first], f"{names[first]} {metric}"
        else:
            continue
        charts.setdefault(category, {}).setdefault(chart, []).append(f"^{re.escape(found)}$")
    return {
        category: {chart: ["Multiline", found] for chart, found in by_chart.items()}
        for category, by_chart in charts.items()
    }


def log_layout(writer: EventWriter, tags: Iterable[str], tasks: Sequence[Task]) -> None:
    """Writes `layout(tags, tasks)`: once per writer (TensorBoard reads one per file)."""
    writer.summary.add_custom_scalars(layout(tags, tasks))


def log_config(writer: EventWriter, config: Mapping[str, Any], step: int) -> None:
    """The run's config as the text summary "config" (a JSON code block) at `step`."""
    text = json.dumps(dict(config), indent=2, default=str)
    writer.summary.add_text("config", f"```json\n{text}\n```", step)
    writer.summary.flush()


_NOT_HPARAMS = ("resume_key", "chosen_epoch", "chosen_by", "model.tasks")  # copies, results


def hparams(config: Mapping[str, Any]) -> dict[str, float | str | bool]:
    """A run's settings as HParams values: config.json flattened to dotted names.

    Dicts open into "a.b" names; a list holding a dict opens by index ("tasks[0].name");
    other lists become their JSON text ("model.hidden": "[512, 512]"); None becomes
    "none" (so runs with and without a setting compare); numbers stay numbers. Left out:
    "resume_key" and "model.tasks" (copies of other entries) and the chosen epoch, which
    is a result (`chosen_metrics`).
    """
    out: dict[str, float | str | bool] = {}

    def walk(name: str, value: Any) -> None:
        if name in _NOT_HPARAMS:
            return
        if isinstance(value, Mapping):
            for key, inner in value.items():
                walk(f"{name}.{key}" if name else str(key), inner)
        elif isinstance(value, (list, tuple)) and any(isinstance(v, Mapping) for v in value):
            for i, inner in enumerate(value):
                walk(f"{name}[{i}]", inner)
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(list(value), default=str)
        elif value is None:
            out[name] = "none"
        elif isinstance(value, (bool, str)):
            out[name] = value
        elif isinstance(value, (int, float)):
            out[name] = float(value)
        else:
            out[name] = str(value)

    walk("", config)
    return out


def chosen_metrics(record: Mapping, tasks: Sequence[Task]) -> dict[str, float]:
    """The chosen epoch's headline numbers, tagged `chosen/...`: the HParams metrics.

    "chosen/epoch", "chosen/train/loss", and for validation and test the mean loss and
    score and each task's loss and headline metric, those the record holds and finite.
    """
    wanted = ["train/loss"]
    for split in records.SPLITS[1:]:
        wanted += [records.key(split, "loss"), records.key(split, "score")]
        for t in tasks:
            head = scores.headline_metric(t.kind)
            wanted += [records.key(split, t.name, m) for m in ("loss", head)]
    out = {f"{CHOSEN}/epoch": float(record["epoch"])}
    for key in wanted:
        found = records.value(record, key, default=None)
        if isinstance(found, (int, float)) and math.isfinite(found):
            out[tag(f"{CHOSEN}/{key}")] = float(found)
    return out


def log_hparams(
    writer: EventWriter, settings: Mapping[str, Any], metrics: Mapping[str, float], step: int
) -> None:
    """Writes the HParams session of this run: its settings, and `metrics` as scalars.

    Only the session's start and end are written, no experiment summary: TensorBoard then
    builds the dashboard's columns from every run's settings together (an experiment
    summary would be taken from one run alone, hiding settings other runs have), and
    its metrics from the runs' scalar tags, `chosen/...` among them.

    Args:
      writer: the run's writer.
      settings: name -> number, string or bool (`hparams`).
      metrics: tag -> value (`chosen_metrics`), logged at `step`.
      step: the chosen epoch.
    """
    _, start, end = tb_summary.hparams(dict(settings), dict(metrics))
    writer.summary.file_writer.add_summary(start)
    for name, number in metrics.items():
        writer.summary.add_scalar(name, number, step)
    writer.summary.file_writer.add_summary(end)
    writer.summary.flush()
