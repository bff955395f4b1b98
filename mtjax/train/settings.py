"""What a run folder records about a training run: every resolved setting, as JSON values."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import flax.linen as nn

from mtjax.data.values import MultiTaskData
from mtjax.tasks import Task


def run_config(model: nn.Module, data: MultiTaskData, **settings) -> dict:
    """What a run folder records about a training run, as JSON values.

    `resume_key` holds the parts that must match for a resume to end where an
    uninterrupted run would: the model and its settings, the tasks, the data's shape and
    row ids, and the training settings.
    """
    model_fields = {
        f.name: _jsonable(getattr(model, f.name))
        for f in dataclasses.fields(model)
        if f.name not in ("parent", "name")
    }
    described = {k: _describe(v) for k, v in settings.items()}
    ids_hash = hashlib.sha256("\n".join(map(str, data.ids)).encode()).hexdigest()[:16]
    key = {
        "model": type(model).__name__,
        "model_settings": model_fields,
        **described,
        "rows": len(data),
        "x_shape": list(data.x.shape[1:]),
        "ids": ids_hash,
    }
    return {
        "model": {"name": type(model).__name__, "module": type(model).__module__, **model_fields},
        "tasks": [t.to_json() for t in data.tasks],
        "datasets": list(data.datasets),
        "extraction": data.extraction,
        **described,
        "resume_key": key,
    }


def _jsonable(value):
    if isinstance(value, Task):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return _describe(value)


def _describe(value) -> Any:
    """A JSON description of a setting: plain values as they are, functions by name."""
    if value is None or isinstance(value, (bool, int, float, str, dict, list, tuple)):
        return _jsonable(value)
    name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
    if name is not None:
        return f"{getattr(value, '__module__', '?')}.{name}"
    return type(value).__name__
