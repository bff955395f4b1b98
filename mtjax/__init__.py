"""mtjax: multi-task, multi-dataset deep learning on audio, built on JAX.

The pipeline, one module per stage:
  audio -> features -> readers -> store (read) -> data -> pipeline (splits)
  -> batching -> models -> losses -> step -> train (fit) -> evaluation -> metrics -> runs

Names are imported on first use, so worker processes that only extract features
never import JAX.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_NAMES = {
    # values
    "Task": "mtjax.tasks",
    "TaskDataset": "mtjax.data",
    "MultiTaskData": "mtjax.data",
    "Split": "mtjax.data",
    "DiskArray": "mtjax.arrays",
    # reading
    "read": "mtjax.store",
    # combining and preparing
    "concat": "mtjax.data",
    "splits": "mtjax.pipeline",
    "frame": "mtjax.pipeline",
    "windows": "mtjax.pipeline",
    "standardize": "mtjax.pipeline",
    "limit": "mtjax.pipeline",
    # training
    "fit": "mtjax.train",
    "evaluate": "mtjax.evaluation",
    "predict": "mtjax.evaluation",
    "Trained": "mtjax.step",
    # runs
    "Run": "mtjax.runs",
}
_MODULES = (
    "audio", "features", "readers", "extract", "store", "arrays", "npyfile", "tasks", "data",
    "folds", "pipeline", "batching", "models", "losses", "step", "train", "evaluation",
    "early_stopping", "metrics",
    "runs", "plots", "checkpoints", "recording", "report", "configs", "experiment", "demo",
    "cli",
)

__all__ = sorted(_NAMES) + list(_MODULES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
    elif name in _MODULES:
        value = importlib.import_module(f"mtjax.{name}")
    else:
        raise AttributeError(f"module 'mtjax' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
