"""mtjax: multi-task, multi-dataset deep learning on audio, built on JAX.

The packages, in pipeline order (each imports only the ones before it):
  tasks -> tables -> data/ -> readers/ -> audio/ -> train/ -> runs/ -> inference/ ->
  demo/ -> experiments/ -> cli

Names are imported on first use, so worker processes that only extract features never
import JAX. The module paths of mtjax 0.1 (`mtjax.features`, `mtjax.batching`,
`mtjax.early_stopping`, ...) still import: each is the module now in its stage package.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

from mtjax import _lazy

__version__ = "0.1.0"

_NAMES = {
    "Task": "mtjax.tasks",
    "TaskDataset": "mtjax.data.values",
    "MultiTaskData": "mtjax.data.values",
    "Split": "mtjax.data.values",
    "DiskArray": "mtjax.data.arrays",
    "concat": "mtjax.data.values",
    "splits": "mtjax.data.prepare",
    "frame": "mtjax.data.prepare",
    "windows": "mtjax.data.prepare",
    "standardize": "mtjax.data.prepare",
    "limit": "mtjax.data.prepare",
    "read": "mtjax.audio.cache",
    "fit": "mtjax.train.loop",
    "Augment": "mtjax.train.augment",
    "evaluate": "mtjax.train.evaluation",
    "predict": "mtjax.train.evaluation",
    "Trained": "mtjax.train.step",
    "Run": "mtjax.runs.folder",
    "load": "mtjax.inference.predictor",
    "export": "mtjax.inference.artifact",
    "hear_module": "mtjax.inference.hear",
    # the stage packages
    "tasks": "mtjax.tasks:",
    "tables": "mtjax.tables:",
    "data": "mtjax.data:",
    "readers": "mtjax.readers:",
    "audio": "mtjax.audio:",
    "train": "mtjax.train:",
    "runs": "mtjax.runs:",
    "inference": "mtjax.inference:",
    "demo": "mtjax.demo:",
    "experiments": "mtjax.experiments:",
    "cli": "mtjax.cli:",
    # the public modules users reach by their short names
    "features": "mtjax.audio.features:",
    "models": "mtjax.train.models:",
    "losses": "mtjax.train.losses:",
    "combiners": "mtjax.train.combiners:",
    "batching": "mtjax.train.schedules:",
    "augment": "mtjax.train.augment:",
    "early_stopping": "mtjax.train.stopping:",
    "metrics": "mtjax.train.metrics:",
}

# Module paths of mtjax 0.1 -> the module that now holds their contents.
_OLD_MODULES = {
    "mtjax.arrays": "mtjax.data.arrays",
    "mtjax.npyfile": "mtjax.data.npyfile",
    "mtjax.folds": "mtjax.data.splitters",
    "mtjax.pipeline": "mtjax.data.prepare",
    "mtjax.report": "mtjax.data.describe",
    "mtjax.features": "mtjax.audio.features",
    "mtjax.extract": "mtjax.audio.worker",
    "mtjax.store": "mtjax.audio.cache",
    "mtjax.batching": "mtjax.train.schedules",
    "mtjax.models": "mtjax.train.models",
    "mtjax.losses": "mtjax.train.losses",
    "mtjax.combiners": "mtjax.train.combiners",
    "mtjax.step": "mtjax.train.step",
    "mtjax.early_stopping": "mtjax.train.stopping",
    "mtjax.evaluation": "mtjax.train.evaluation",
    "mtjax.metrics": "mtjax.train.metrics",
    "mtjax.plots": "mtjax.runs.plots",
    "mtjax.checkpoints": "mtjax.runs.checkpoints",
    "mtjax.recording": "mtjax.runs.recorder",
    "mtjax.configs": "mtjax.experiments",
    "mtjax.experiment": "mtjax.experiments",
}

__all__ = sorted(_NAMES)  # listed literally in __init__.pyi for type checkers


class _OldPath(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an mtjax 0.1 module path as the module that now holds its contents."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in _OLD_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> Any:
        module = importlib.import_module(_OLD_MODULES[spec.name])
        spec.loader_state = module.__spec__  # the import machinery overwrites it next
        return module

    def exec_module(self, module: Any) -> None:
        module.__spec__ = module.__spec__.loader_state


if not any(isinstance(f, _OldPath) for f in sys.meta_path):
    sys.meta_path.append(_OldPath())


def __getattr__(name: str) -> Any:
    return _lazy.attribute(globals(), name, _NAMES)


def __dir__() -> list[str]:
    return _lazy.names(globals(), __all__)
