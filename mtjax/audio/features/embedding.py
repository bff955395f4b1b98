"""Embedding: any callable from a waveform to frames x dims as a cached extraction.

    emb = Embedding(fn, "my-model", 16000, version="2024-05")  # fn(signal [S]) -> [T, D]
    data = mt.read(reader, emb)  # cached under a key of the fields, never of `fn`

`fn` (a JAX, ONNX or torch model wrapped in a function) is not part of the key, of equality
or of the config: `model` and `version` name it, so change `version` whenever `fn` changes
what it returns. An Embedding always extracts in the calling process (`in_process`): JAX and
torch models are not safe to fork. `hear_embedding` wraps a HEAR-API module as one.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import types
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from mtjax.audio.features.base import Extraction, integer, optional, real, set_field

HEAR_KINDS = ("timestamp", "scene")


def as_numpy(value: Any) -> np.ndarray:
    """A framework tensor (torch, tf, jax) or array-like as a numpy array.

    Torch tensors are detached and moved to the CPU first; anything with `.numpy()` uses it.
    """
    for method in ("detach", "cpu", "numpy"):
        if not isinstance(value, np.ndarray) and callable(getattr(value, method, None)):
            value = getattr(value, method)()
    return np.asarray(value)


def _text(cls_name: str, field: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{cls_name}: {field} must be a non-empty string, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Embedding(Extraction):
    """Frames x dims of a user's callable, as an extraction `mt.read` caches.

    `key`, equality and hash cover every field but `fn`.

    Attributes:
      fn: `fn(signal float32 [S] at sample_rate) -> [T, D]` real numbers (numpy, jax, or a
        torch/tf tensor). Excluded from the key: `model` and `version` stand for it.
      model: the embedding's name, e.g. "openl3-mel128" (the field is not called `name`,
        which configs use for the class).
      sample_rate: the rate `fn` takes, in Hz; audio is resampled to it.
      version: the user's version of `fn` and its weights; a new one is a new cache entry.
      min_samples: the shortest signal `fn` accepts, in samples at `sample_rate`.
      hop_seconds: time between frames, for timestamps (`mt.hear_module`); None if unknown.
      dims: D, checked on every output when given.
    """

    in_process: ClassVar[bool] = True  # `mt.read` never sends it to a worker process

    fn: Callable[[np.ndarray], Any] = dataclasses.field(compare=False, repr=False)
    model: str
    sample_rate: int
    _: dataclasses.KW_ONLY
    version: str
    min_samples: int = 1
    hop_seconds: float | None = None
    dims: int | None = None

    def __post_init__(self):
        name = type(self).__name__
        if not callable(self.fn):
            raise ValueError(f"{name}: fn must be callable, got {self.fn!r}")
        set_field(self, "model", _text(name, "model", self.model))
        set_field(self, "version", _text(f"{name} {self.model!r}", "version", self.version))
        set_field(self, "sample_rate", integer(name, "sample_rate", self.sample_rate))
        set_field(self, "min_samples", integer(name, "min_samples", self.min_samples))
        set_field(self, "hop_seconds", optional(real, name, "hop_seconds", self.hop_seconds))
        set_field(self, "dims", optional(integer, name, "dims", self.dims))

    def _plain_fields(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if f.compare]

    @property
    def key(self) -> str:
        """`Embedding(model=...,sample_rate=...,version=...,...)`: every field but `fn`."""
        fields = ",".join(f"{k}={getattr(self, k)!r}" for k in self._plain_fields())
        return f"{type(self).__name__}({fields})"

    def to_config(self) -> dict[str, Any]:
        """`{"name": "Embedding", field: value, ...}` without `fn` (it cannot be rebuilt)."""
        return {"name": type(self).__name__, **{k: getattr(self, k) for k in self._plain_fields()}}

    @property
    def n_features(self) -> int | None:
        """D when `dims` is given, else None (known after the first call)."""
        return self.dims

    def _compute(self, signal: np.ndarray) -> np.ndarray:
        out = as_numpy(self.fn(signal))
        what = f"Embedding {self.model!r} (version {self.version!r})"
        if out.dtype.kind not in "fiu" or out.ndim != 2 or 0 in out.shape:
            raise ValueError(
                f"{what}: fn must return real frames x dims [T, D], got {out.dtype} {out.shape}"
            )
        if self.dims is not None and out.shape[1] != self.dims:
            raise ValueError(f"{what}: fn returned {out.shape[1]} dims, dims={self.dims}")
        if not np.isfinite(out).all():
            raise ValueError(f"{what}: fn returned NaN or inf, shape {out.shape}")
        return out


# ---------------------------------------------------------------------------------------------
# HEAR-API modules (hearbenchmark.com) as embeddings.


def hear_embedding(
    module: types.ModuleType | Any,
    *,
    name: str,
    version: str,
    model_file: str = "",
    kind: str = "timestamp",
    to_tensor: Callable[[np.ndarray], Any] | None = None,
    min_samples: int = 1,
    hop_seconds: float | None = None,
) -> Embedding:
    """A HEAR-API module's embeddings as an `Embedding` (model `"{name}:{kind}"`).

    The module provides `load_model(model_file_path="") -> model` (with `sample_rate`,
    `scene_embedding_size`, `timestamp_embedding_size`), `get_scene_embeddings(audio
    [n_sounds, n_samples], model) -> [n_sounds, D]` and `get_timestamp_embeddings(audio,
    model) -> ([n_sounds, n_timestamps, D], timestamps [n_sounds, n_timestamps] in ms)`.
    The model is loaded here, once; each clip is passed as one sound [1, S].

    Args:
      module: the module object, or the name of one to import (imported only because
        the caller names it here).
      name: the embedding's name in the cache key.
      version: the module's and weights' version, in the cache key.
      model_file: passed to `load_model` (the module's default when "").
      kind: "timestamp" (features [n_timestamps, D]; the module's timestamps are not
        kept) or "scene" (one frame [1, D] a clip).
      to_tensor: turns the float32 numpy audio [1, S] into what the module takes (e.g.
        `torch.from_numpy`); default: the numpy array. Outputs may be any tensor
        `as_numpy` converts.
      min_samples: the shortest clip the module takes, in samples at its rate.
      hop_seconds: time between the module's timestamps, when known (for timestamps).

    Raises:
      ValueError: an unknown `kind`, or a module without the HEAR functions.
    """
    if kind not in HEAR_KINDS:
        raise ValueError(f"hear_embedding {name!r}: kind must be one of {HEAR_KINDS}, got {kind!r}")
    if isinstance(module, str):
        module = importlib.import_module(module)
    wanted = ("load_model", f"get_{kind}_embeddings")
    missing = [f for f in wanted if not callable(getattr(module, f, None))]
    if missing:
        raise ValueError(f"hear_embedding {name!r}: {module!r} has no HEAR function {missing[0]}")
    model = module.load_model(model_file) if model_file else module.load_model()
    if not hasattr(model, "sample_rate"):
        raise ValueError(f"hear_embedding {name!r}: load_model gave {model!r}, no sample_rate")
    size = getattr(model, f"{kind}_embedding_size", None)
    return Embedding(
        functools.partial(_hear_features, module, model, kind, to_tensor),
        f"{name}:{kind}",
        model.sample_rate,
        version=version,
        min_samples=min_samples,
        hop_seconds=hop_seconds,
        dims=size,
    )


def _hear_features(module, model, kind: str, to_tensor, signal: np.ndarray) -> np.ndarray:
    """[T, D] of one clip through a HEAR module: its sound's timestamps, or one scene row."""
    audio = np.asarray(signal, np.float32)[None, :]
    audio = audio if to_tensor is None else to_tensor(audio)
    if kind == "scene":
        return as_numpy(module.get_scene_embeddings(audio, model))  # [1, D], checked after
    embeddings, _ = module.get_timestamp_embeddings(audio, model)
    out = as_numpy(embeddings)
    return out[0] if out.ndim == 3 and out.shape[0] == 1 else out
