"""`mtjax datasets EXP.toml`: what an experiment's datasets hold, read through the cache.

Two tables: per dataset its clips and durations per predefined part, and per dataset, task
and label the labelled clips per part. Features come from the feature cache (extracted
first where the cache lacks them); durations from the audio files' headers, which
`soundfile.info` reads without decoding the audio.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import soundfile

from mtjax import tasks as task_lib
from mtjax.data import describe, values
from mtjax.experiments import config, running
from mtjax.tables import table


def header_seconds(paths: Mapping[str, str], ids: Sequence[str] | np.ndarray) -> np.ndarray:
    """float64 [N]: each clip's duration from its file header; NaN where none is readable."""
    seconds = np.full(len(ids), np.nan)
    for i, item_id in enumerate(ids):
        try:
            seconds[i] = soundfile.info(paths[str(item_id)]).duration
        except (KeyError, RuntimeError, OSError, soundfile.LibsndfileError):
            continue
    return seconds


def _duration_text(seconds: np.ndarray) -> list[str]:
    known = seconds[np.isfinite(seconds)]
    if known.size == 0:
        return ["-", "-", "-"]
    unknown = f" ({seconds.size - known.size} unread)" if known.size < seconds.size else ""
    hours = f"{known.sum() / 3600:.2f}{unknown}"
    return [hours, f"{known.mean():.2f}", f"{known.min():.2f}-{known.max():.2f}"]


def label_counts(part: values.TaskDataset, task: task_lib.Task, column: slice) -> np.ndarray:
    """int64 [labels]: clips of `part` labelled with each of `task`'s labels."""
    labelled = part.has_task[:, part.tasks.index(task)]
    y = np.asarray(part.y[labelled, column])
    if task.kind == "multilabel":
        return (y > 0.5).sum(axis=0).astype(np.int64)
    return np.bincount(task.class_ids(y), minlength=len(task.labels)).astype(np.int64)


def clips_table(datasets: Sequence, readers: Sequence) -> str:
    """One row per dataset and part: clips, hours, mean and range of seconds, frames."""
    rows = []
    for value, reader in zip(datasets, readers):
        paths = {item.id: item.path for item in reader.items()}
        for name, part in describe.parts(value).items():
            seconds = header_seconds(paths, part.ids)
            frames = np.asarray(part.lengths)
            rows.append([reader.name, name, len(part), *_duration_text(seconds), int(frames.max())])
    head = ["dataset", "part", "clips", "hours", "mean s", "range s", "max frames"]
    return table(head, rows)


def labels_table(datasets: Sequence) -> str:
    """One row per dataset, task and label: labelled clips in each predefined part."""
    rows = []
    for value in datasets:
        parts = describe.parts(value)
        first = next(iter(parts.values()))
        columns = task_lib.task_slices(first.tasks)
        for task in first.tasks:
            counts = {
                name: label_counts(part, task, columns[task.name]) for name, part in parts.items()
            }
            for i, label in enumerate(task.labels):
                cells = [f"{name} {int(c[i])}" for name, c in counts.items()]
                rows.append([first.name, f"{task.name} ({task.kind})", label, " / ".join(cells)])
    return table(["dataset", "task", "label", "clips"], rows)


def inventory(experiment: config.Experiment, *, progress: bool = True) -> str:
    """Both tables of the experiment's datasets, as they are read (before any fold split)."""
    datasets = running.read_datasets(experiment, progress=progress)
    readers = running.build_readers(experiment)
    return f"{clips_table(datasets, readers)}\n\n{labels_table(datasets)}"
