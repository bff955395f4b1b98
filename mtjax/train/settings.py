"""What a run folder records about a training run: every resolved setting, as JSON values.

A setting is described by what it is made of, not by its identity, so the same setting
built twice (in two processes, say) gets the same description and another one a
different description (`describe`):

- optimizers, combiners, schedules and stopping rules are the closures their factories
  return; a function is described by its qualified name and the values it closes over
  (`optax.adam(0.1)`'s `b1`, `b2`, `eps` and its learning rate, a schedule's
  parameters, `dwa`'s temperature), recursively, and a NamedTuple of closures of one
  factory (`optax.GradientTransformation`, `Combiner`) by that factory and the merged
  values of its closures. This is exact and the same on every platform, where running
  the transformation on a probe would compare floats.
- data are described by a digest (`data_digest`): sha256 of the labels (`y`), `has_task`,
  the ids, lengths, datasets, groups and clips in full, and of the features `x` in full
  up to `FULL_HASH_BYTES`, else of `SAMPLE_ROWS` evenly spaced rows and the shape. The
  prepare steps (framing, windows, scaling with statistics fitted on train) are covered
  by it: their output is what is hashed.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import math
import types
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from mtjax.data.values import MultiTaskData
from mtjax.tasks import Task

FULL_HASH_BYTES = 64 * 2**20  # features up to this size are hashed in full
SAMPLE_ROWS = 256  # rows of bigger features hashed, evenly spaced
_MAX_DEPTH = 32  # a description stops here ("<deeper>")


def run_config(
    model: nn.Module,
    data: MultiTaskData,
    *,
    validation: Any = None,
    test: Any = None,
    **settings: Any,
) -> dict:
    """What a run folder records about a training run, as JSON values.

    Args:
      model: the Flax module trained.
      data: the training data (after any carve of validation rows).
      validation: the validation side (a MultiTaskData), digested as `data` is; None
        for none.
      test: the test side, likewise.
      **settings: every other setting (optimizer, combine, batches, early_stop, loss,
        epochs, seed, ...), each recorded as `describe` gives it.

    Returns:
      A dict: "model", "tasks", "datasets", "extraction" (its key), "features" (the
      extraction as `{"name": class name, field: value, ...}`, `extraction_config`),
      "preparation" (`data.preparation`: every fitted prepare step, in order), each
      setting, "data" (split -> `data_digest`) and "resume_key", the parts that must
      match for a resume to end where an uninterrupted run would: the model and its
      settings, every setting and the data digests (which cover the preparation).
    """
    model_fields = {
        f.name: _jsonable(getattr(model, f.name))
        for f in dataclasses.fields(model)
        if f.name not in ("parent", "name")
    }
    described = {k: describe(v) for k, v in settings.items()}
    sides = {"train": data, "validation": validation, "test": test}
    digests = {side: data_digest(part) for side, part in sides.items() if part is not None}
    key = {
        "model": type(model).__name__,
        "model_settings": {
            f.name: describe(getattr(model, f.name))
            for f in dataclasses.fields(model)
            if f.name not in ("parent", "name")
        },
        **described,
        "data": digests,
    }
    return {
        "model": {"name": type(model).__name__, "module": type(model).__module__, **model_fields},
        "tasks": [t.to_json() for t in data.tasks],
        "datasets": list(data.datasets),
        "extraction": data.extraction,
        "features": extraction_config(data.extraction),
        "preparation": [_jsonable(dict(step)) for step in data.preparation],
        **described,
        "data": digests,
        "resume_key": key,
    }


# Data


def extraction_config(key: str) -> dict[str, Any] | None:
    """The extraction of `key` as `{"name": class name, field: value, ...}`, JSON values.

    Read from the key's text (`mtjax.audio.features.base.config_from_key`), so a run
    records every field of the extraction that made its data; None for a key that is not
    of that form (features from `TaskDataset.from_arrays`, say).
    """
    from mtjax.audio.features.base import config_from_key  # librosa only when recording

    try:
        return _jsonable(config_from_key(key)) if key else None
    except ValueError:
        return None


def data_digest(data: MultiTaskData) -> dict[str, Any]:
    """A digest of a dataset's content, as JSON values.

    Returns:
      {"rows": N, "x_shape": [T, F], "x_digest": "full" or "S of N rows, evenly
      spaced", "x", "lengths", "y", "has_task", "ids", "dataset_id", "groups", "clip":
      16 hex digits of sha256 each}. `x` is hashed in full when it holds at most
      `FULL_HASH_BYTES`, else rows `linspace(0, N - 1, SAMPLE_ROWS)` with the shape;
      everything else always in full.
    """
    n = len(data)
    x = data.x
    if 4 * math.prod(x.shape) <= FULL_HASH_BYTES:
        how, x_hash = "full", _hash(np.asarray(x, np.float32))
    else:
        rows = sample_rows(n)
        how = f"{len(rows)} of {n} rows, evenly spaced"
        x_hash = _hash(np.asarray(x[rows], np.float32), extra=str(list(x.shape)))
    out: dict[str, Any] = {"rows": n, "x_shape": list(x.shape[1:]), "x_digest": how, "x": x_hash}
    for name in ("lengths", "y", "has_task"):
        out[name] = _hash(np.asarray(getattr(data, name)))
    out["ids"] = hashlib.sha256("\n".join(map(str, data.ids)).encode()).hexdigest()[:16]
    for name in ("dataset_id", "groups", "clip"):
        out[name] = _hash(np.asarray(getattr(data, name)))
    return out


def sample_rows(n: int) -> np.ndarray:
    """The rows of N hashed when features are too big to hash in full: int [S]."""
    return np.unique(np.linspace(0, max(n - 1, 0), SAMPLE_ROWS).round().astype(np.int64))


def _hash(a: np.ndarray, extra: str = "") -> str:
    a = np.ascontiguousarray(a)
    head = f"{a.dtype.str}{list(a.shape)}{extra}".encode()
    return hashlib.sha256(head + a.tobytes()).hexdigest()[:16]


# Settings


def describe(value: Any) -> Any:
    """A JSON description of a setting: equal for equal settings, in every process.

    Plain values stay as they are (non-finite floats as text); tuples and lists become
    lists, mappings dicts with str keys; a function is its "module.qualname", or, when
    it closes over values or has defaults, {"function": name, variable: description,
    ...}; a NamedTuple whose functions are closures of one factory is {"factory": name,
    every closed-over variable, the other fields}, any other NamedTuple or dataclass
    {"type": name, field: description}; a bound method {"method", "self"}; a
    `functools.partial` {"partial", "args", "keywords"}; arrays of up to 16 numbers are
    lists, bigger ones {"shape", "dtype", "sha256"}; other objects {"type", attribute:
    description} over their public attributes. Never an address or an id.
    """
    return _walk(value, 0, frozenset())


def _jsonable(value: Any) -> Any:
    if isinstance(value, Task):
        return value.to_json()
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return describe(value)


def _walk(value: Any, depth: int, active: frozenset[int]) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Task):
        return value.to_json()
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    if isinstance(value, np.generic):
        return _walk(value.item(), depth, active)
    if isinstance(value, np.dtype):
        return str(value)
    if isinstance(value, (np.ndarray, jax.Array)):
        return _array(value)
    if depth >= _MAX_DEPTH:
        return "<deeper>"
    if id(value) in active:
        return "<recursive>"
    active = active | {id(value)}

    def walk(v: Any) -> Any:
        return _walk(v, depth + 1, active)

    if isinstance(value, Mapping):
        return {str(k): walk(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return _named_tuple(value, walk)
    if isinstance(value, (list, tuple)):
        return [walk(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((walk(v) for v in value), key=lambda d: json.dumps(d, sort_keys=True))
    if isinstance(value, functools.partial):
        return {
            "partial": walk(value.func),
            "args": walk(list(value.args)),
            "keywords": walk(dict(value.keywords)),
        }
    if isinstance(value, types.FunctionType):
        parts = _closure(value, walk)
        return {"function": _name(value), **parts} if parts else _name(value)
    if isinstance(value, types.MethodType):
        return {"method": walk(value.__func__), "self": walk(value.__self__)}
    if isinstance(value, (type, types.BuiltinFunctionType, np.ufunc)):
        return _name(value)
    if isinstance(value, types.ModuleType):
        return value.__name__
    if hasattr(value, "__wrapped__"):  # functools.wraps, jax.jit, jax.custom_jvp
        return walk(value.__wrapped__)
    if dataclasses.is_dataclass(value):
        fields = [f.name for f in dataclasses.fields(value) if f.name not in ("parent", "name")]
        return {"type": _name(type(value)), **{f: walk(getattr(value, f)) for f in fields}}
    attributes = getattr(value, "__dict__", None)
    public = {} if not isinstance(attributes, dict) else attributes
    return {
        "type": _name(type(value)),
        **{k: walk(v) for k, v in sorted(public.items()) if not k.startswith("_")},
    }


# Fields added to a NamedTuple after runs recorded it: left out while unset, so that those
# runs' resume keys stay as they were.
UNSET_LEFT_OUT = ("aggregate", "gramian")


def _named_tuple(value: Any, walk) -> dict:
    """A NamedTuple: by its factory when its functions are closures of one factory."""
    fields = {k: v for k, v in value._asdict().items() if not (k in UNSET_LEFT_OUT and v is None)}
    local = {k: f for k, f in fields.items() if _factory(f) is not None}
    factories = {_factory(f) for f in local.values()}
    if len(factories) != 1:
        return {"type": _name(type(value)), **{k: walk(v) for k, v in fields.items()}}
    out: dict[str, Any] = {"factory": factories.pop()}
    for k, v in fields.items():
        if k in local:
            out.update(_closure(v, walk))
        else:
            out[k] = walk(v)
    return out


def _closure(fn: types.FunctionType, walk, seen: frozenset[int] = frozenset()) -> dict:
    """The values `fn` closes over (local helpers of its factory merged in) and its defaults."""
    out: dict[str, Any] = {}
    factory = _factory(fn)
    for variable, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
        try:
            v = cell.cell_contents
        except ValueError:  # a variable not yet bound
            out[variable] = "<unbound>"
            continue
        if factory is not None and _factory(v) == factory and id(v) not in seen:
            out.update(_closure(v, walk, seen | {id(fn)}))
        elif v is not fn:
            out[variable] = walk(v)
    if fn.__defaults__ and any(d is not None for d in fn.__defaults__):
        out["(defaults)"] = walk(list(fn.__defaults__))
    if fn.__kwdefaults__ and any(d is not None for d in fn.__kwdefaults__.values()):
        out["(keyword defaults)"] = walk(dict(fn.__kwdefaults__))
    return out


def _factory(fn: Any) -> str | None:
    """The "module.factory" a function was defined in, None for one at module level."""
    if not isinstance(fn, types.FunctionType) or ".<locals>." not in fn.__qualname__:
        return None
    return f"{fn.__module__}.{fn.__qualname__.rsplit('.<locals>.', 1)[0]}"


def _name(value: Any) -> str:
    name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
    return f"{getattr(value, '__module__', None) or '?'}.{name or type(value).__name__}"


def _array(value: Any) -> Any:
    """A small array as its values, a bigger one by shape, dtype and hash."""
    a = np.asarray(jax.device_get(value))
    if a.size <= 16 and a.dtype.kind in "biuf":
        return _walk(a.tolist(), 0, frozenset())
    return {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": _hash(a)}
