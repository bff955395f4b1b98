"""A trained run as a HEAR-API module (hearbenchmark.com): its trunk's output as embeddings.

This module is itself one: `load_model(run folder)`, `get_scene_embeddings(audio, model)`,
`get_timestamp_embeddings(audio, model)`. `hear_module(run, ...)` gives the same functions
with the run and `mt.load`'s options bound (a run trained on an `Embedding` needs its
`extraction=`).

The embedding of a model input row is the shared trunk's output: the input of the first
task head's first layer (the layer named `head_*` that runs first, mtjax's naming), read
with `flax.linen.intercept_methods`, so no model needs a change. A sound's scene
embedding is the mean over its rows as the run prepares them (`Predictor.prepared`: framed
or windowed, scaled); its timestamp embeddings are those of windows of the run's input
length, one every `hop_frames` feature frames, each stamped at its centre.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mtjax.audio.features.base import Extraction
from mtjax.audio.features.embedding import as_numpy
from mtjax.audio.features.raw import Raw
from mtjax.audio.features.summary import LogbankSummary
from mtjax.inference import predictor as predictors
from mtjax.train import metrics
from mtjax.train.step import Trained, make_forward


@dataclasses.dataclass(frozen=True, eq=False)
class HearModel:
    """What `load_model` returns: the HEAR attributes and the run's predictor.

    Attributes:
      sample_rate: Hz of the audio the functions take (the extraction's rate).
      scene_embedding_size: D, the trunk's width.
      timestamp_embedding_size: D as well.
      predictor: the run at its chosen epoch (`mt.load`).
      trunk: `(params, batch_stats, x [B, T, F]) -> [B, D]`, jitted.
      hop_frames: feature frames between timestamps.
      batch_size: rows through the model at a time.
      to_tensor: applied to every array returned (e.g. `torch.from_numpy`); None: numpy.
    """

    sample_rate: int
    scene_embedding_size: int
    timestamp_embedding_size: int
    predictor: predictors.Predictor = dataclasses.field(repr=False)
    trunk: Callable = dataclasses.field(repr=False)
    hop_frames: int = 1
    batch_size: int = 64
    to_tensor: Callable[[np.ndarray], Any] | None = dataclasses.field(default=None, repr=False)


def trunk_function(model: nn.Module) -> Callable:
    """`trunk(params, batch_stats, x [B, T, F]) -> float32 [B, D]`, jitted: the heads' input.

    D is what the first `head_*` layer to run takes (evaluation mode: no dropout).

    Raises:
      ValueError (when traced): the model runs no layer named `head_*`.
    """
    forward = make_forward(model)

    def trunk(params, batch_stats, x):
        seen: list[jax.Array] = []

        def grab(call, args, kwargs, context):
            named = (context.module.name or "").startswith("head_")
            if not seen and named and context.method_name == "__call__" and args:
                seen.append(args[0])
            return call(*args, **kwargs)

        with nn.intercept_methods(grab):
            forward(params, batch_stats, x, False, jax.random.key(0))
        if not seen:
            raise ValueError(
                f"{type(model).__name__} runs no layer named head_*: its trunk output cannot"
                " be found (name each task's output layers head_{task})"
            )
        return jnp.asarray(seen[0], jnp.float32).reshape(x.shape[0], -1)

    return jax.jit(trunk)


def frame_seconds(extraction: Extraction) -> float | None:
    """Seconds between the extraction's frames, None when it has no time axis or none known.

    STFT-based ones: `hop_samples / sample_rate` (`LogbankSummary`: None); `Raw`: its hop
    (or frame) length, one sample unframed; others (an `Embedding`): their `hop_seconds`.
    """
    if isinstance(extraction, LogbankSummary):  # its rows are statistics, not times
        return None
    hop = getattr(extraction, "hop_samples", None)
    if isinstance(hop, int):
        return hop / extraction.sample_rate
    if isinstance(extraction, Raw):
        return (extraction.hop_length or extraction.frame_length or 1) / extraction.sample_rate
    seconds = getattr(extraction, "hop_seconds", None)
    return None if seconds is None else float(seconds)


# The HEAR API


def load_model(
    model_file_path: str = "",
    *,
    hop_frames: int = 1,
    batch_size: int = 64,
    to_tensor: Callable[[np.ndarray], Any] | None = None,
    **load: Any,
) -> HearModel:
    """HEAR's `load_model`: the run at `model_file_path` (a run folder), via `mt.load`.

    Args:
      model_file_path: the run's folder.
      hop_frames: feature frames between timestamp embeddings (>= 1).
      batch_size: rows through the model at a time.
      to_tensor: converts every returned numpy array (e.g. `torch.from_numpy`).
      **load: `mt.load`'s options: `model`, `models`, `extraction`, `dataset`.

    Raises:
      ValueError: no path, a bad `hop_frames`, or what `mt.load` raises.
    """
    if not model_file_path:
        raise ValueError("load_model: give the run folder (model_file_path), or use mt.hear_module")
    if isinstance(hop_frames, bool) or not isinstance(hop_frames, int) or hop_frames < 1:
        raise ValueError(f"load_model: hop_frames must be an int >= 1, got {hop_frames!r}")
    predictor = predictors.load(model_file_path, **load)
    trunk = trunk_function(predictor.trained.model)
    trained = predictor.trained
    example = jax.ShapeDtypeStruct((1, predictor.frames, predictor.n_features), jnp.float32)
    size = int(jax.eval_shape(trunk, trained.params, trained.batch_stats, example).shape[1])
    return HearModel(
        predictor.extraction.sample_rate,
        size,
        size,
        predictor,
        trunk,
        hop_frames,
        batch_size,
        to_tensor,
    )


def get_scene_embeddings(audio: Any, model: HearModel) -> Any:
    """HEAR's scene embeddings: float32 [n_sounds, D], the mean trunk output of each sound's rows.

    Args:
      audio: float [n_sounds, n_samples] at `model.sample_rate` (numpy, jax, torch, tf).
      model: from `load_model`.
    """
    prepared = model.predictor.prepared(_features(audio, model))
    rows = _trunk_rows(model, np.asarray(prepared.x, np.float32))
    return _out(model, metrics.pool_clips(rows, np.asarray(prepared.clip))[0])


def get_timestamp_embeddings(audio: Any, model: HearModel) -> tuple[Any, Any]:
    """HEAR's timestamp embeddings and their times.

    Window k of a sound covers feature frames `[k h, k h + L)` (L the run's input length,
    h `model.hop_frames`; a sound shorter than L gives one zero-padded window), prepared as
    the run's rows are, and is stamped at its centre: `(k h + (L - 1) / 2) * hop * 1000` ms,
    hop the extraction's `frame_seconds`.

    Returns:
      embeddings float32 [n_sounds, n_timestamps, D], timestamps float32
      [n_sounds, n_timestamps] in milliseconds.

    Raises:
      ValueError: the extraction's frame hop is unknown (give an `Embedding` its
        `hop_seconds`), or the sounds give different numbers of windows.
    """
    predictor = model.predictor
    hop = frame_seconds(predictor.extraction)
    if hop is None:
        raise ValueError(
            f"timestamp embeddings need the time between frames of {predictor.extraction.key},"
            " which it does not give (an Embedding's hop_seconds)"
        )
    length, step = predictor.frames, model.hop_frames
    windows = {"step": "windows", "length": length, "hop": step}
    steps = _reshaped(predictor.preparation, windows)
    prepared = dataclasses.replace(predictor, preparation=steps).prepared(_features(audio, model))
    clip = np.asarray(prepared.clip)
    counts = np.bincount(clip)
    if len(set(counts.tolist())) != 1:
        raise ValueError(f"the sounds give different numbers of windows: {counts.tolist()}")
    rows = _trunk_rows(model, np.asarray(prepared.x, np.float32))
    embeddings = rows.reshape(len(counts), int(counts[0]), -1)
    centres = np.arange(counts[0]) * step + (length - 1) / 2
    times = np.broadcast_to(centres * hop * 1000.0, embeddings.shape[:2]).astype(np.float32)
    return _out(model, embeddings), _out(model, np.ascontiguousarray(times))


def hear_module(
    run: Any = None,
    *,
    hop_frames: int = 1,
    batch_size: int = 64,
    to_tensor: Callable[[np.ndarray], Any] | None = None,
    **load: Any,
) -> types.SimpleNamespace:
    """`mt.hear_module(run)`: a HEAR-API module of a trained run (its trunk's output).

    Args:
      run: a `mt.Run` or run folder; `load_model()` loads it (`load_model(path)` another).
      hop_frames: feature frames between timestamp embeddings (>= 1).
      batch_size: rows through the model at a time.
      to_tensor: converts every returned numpy array (e.g. `torch.from_numpy`).
      **load: `mt.load`'s options (`extraction=` for a run trained on an `Embedding`).

    Returns:
      a namespace with `load_model(model_file_path="")`, `get_scene_embeddings(audio,
      model)` and `get_timestamp_embeddings(audio, model)`.
    """
    default = "" if run is None else str(getattr(run, "path", run))

    def bound_load_model(model_file_path: str = "") -> HearModel:
        return load_model(
            model_file_path or default,
            hop_frames=hop_frames,
            batch_size=batch_size,
            to_tensor=to_tensor,
            **load,
        )

    return types.SimpleNamespace(
        load_model=bound_load_model,
        get_scene_embeddings=get_scene_embeddings,
        get_timestamp_embeddings=get_timestamp_embeddings,
    )


# Helpers


def _features(audio: Any, model: HearModel) -> list[np.ndarray]:
    """float32 [T, F] features of each sound of audio [n_sounds, n_samples]."""
    sounds = as_numpy(audio)
    if sounds.ndim != 2 or not sounds.shape[0]:
        raise ValueError(f"HEAR audio must be [n_sounds, n_samples], got shape {sounds.shape}")
    rate = model.sample_rate
    return [
        model.predictor.features((np.asarray(s, np.float32), rate), f"<sound {i}>")
        for i, s in enumerate(sounds)
    ]


def _trunk_rows(model: HearModel, x: np.ndarray) -> np.ndarray:
    """float32 [N, D] trunk outputs of rows x [N, T, F], in batches of one fixed size."""
    trained: Trained = model.predictor.trained
    size = max(1, min(model.batch_size, len(x)))
    out = []
    for begin in range(0, len(x), size):
        rows = np.arange(begin, min(begin + size, len(x)))
        padded = np.concatenate([rows, np.full(size - len(rows), rows[0])])
        got = model.trunk(trained.params, trained.batch_stats, x[padded])
        out.append(np.asarray(got)[: len(rows)])
    return np.concatenate(out)


def _reshaped(preparation: Sequence[Mapping], windows: dict) -> tuple[dict, ...]:
    """The records with every framing or windows step (also per dataset) as `windows`."""
    steps = []
    for record in preparation:
        if record.get("step") in ("frame", "windows"):
            steps.append(dict(windows))
        elif record.get("step") == "per_dataset":
            each = {k: list(_reshaped(v, windows)) for k, v in dict(record["datasets"]).items()}
            steps.append({**record, "datasets": each})
        else:
            steps.append(dict(record))
    return tuple(steps)


def _out(model: HearModel, array: np.ndarray) -> Any:
    array = np.asarray(array, np.float32)
    return array if model.to_tensor is None else model.to_tensor(array)
