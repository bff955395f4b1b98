"""`mt.export(run, path)`: a run's model as a `jax.export` artifact that needs only JAX.

`path/model.jax` is the serialized `jax.export.Exported` of

    features float32 [B, T, F] -> {task name: probabilities float32 [B, C_k]}

where features are what the run's extraction gives (`mtjax.features`), framed (or cut into
windows) to T frames as model.json says, not scaled: the recorded scaling is folded into
the function. B is symbolic: any batch size runs. Frames whose features are all exactly 0
are padding (a clip shorter than T is zero-padded) and stay 0, as in mtjax. `path/model.json`
holds the tasks, their labels and kinds, the extraction's fields, the frame length and
windows, and the input shape. Loading it back needs `jax` alone:

    exported = jax.export.deserialize(bytearray(open("model.jax", "rb").read()))
    probabilities = exported.call(features_BxTxF)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtjax import files
from mtjax.audio.features.base import Extraction
from mtjax.data import prepare
from mtjax.inference.predictor import Predictor, load
from mtjax.tasks import Task
from mtjax.train.step import make_forward

MODEL = "model.jax"
SETTINGS = "model.json"
FORMAT = "mtjax.export/1"


def export(
    run: Any,
    path: str | os.PathLike,
    *,
    model: nn.Module | type[nn.Module] | None = None,
    models: Sequence[type[nn.Module]] = (),
    extraction: Extraction | type | None = None,
    dataset: str | None = None,
    platforms: Sequence[str] | None = None,
) -> Path:
    """Writes `path/model.jax` and `path/model.json` for a run at its chosen epoch.

    Args:
      run: a `mt.Run` or its folder.
      path: the folder to write into (made if absent).
      model: as for `mt.load`.
      models: as for `mt.load`.
      extraction: as for `mt.load`.
      dataset: as for `mt.load`.
      platforms: the platforms the artifact runs on ("cpu", "cuda", ...); default the
        one JAX runs on now.

    Returns:
      `path`.

    Raises:
      as `mt.load`; ValueError when the recorded scaling cannot be folded into one map
      (a per-cell scaling followed by framing or windows).
    """
    predictor = load(run, model=model, models=models, extraction=extraction, dataset=dataset)
    return export_predictor(predictor, path, platforms=platforms)


def export_predictor(
    predictor: Predictor, path: str | os.PathLike, *, platforms: Sequence[str] | None = None
) -> Path:
    """`export` of a loaded predictor (see `export`)."""
    shaping, affine = prepare.folded_scaling(predictor.preparation, dataset=predictor.dataset)
    n_features = predictor.n_features
    frames = predictor.frames
    fn = probabilities_function(predictor, affine)
    shape = jax.export.symbolic_shape(f"batch, {frames}, {n_features}")
    exported = jax.export.export(
        jax.jit(fn), platforms=None if platforms is None else tuple(platforms)
    )(jax.ShapeDtypeStruct(shape, jnp.float32))
    folder = Path(path)
    files.write_bytes(folder / MODEL, bytes(exported.serialize()))
    settings = describe(predictor, shaping, frames, n_features, exported.platforms)
    text = json.dumps(settings, indent=2, sort_keys=False) + "\n"
    files.write_bytes(folder / SETTINGS, text.encode())
    return folder


def probabilities_function(predictor: Predictor, affine: Any):
    """`fn(x float32 [B, T, F]) -> {task: probabilities [B, C_k]}`, the parameters inside.

    Valid frames (any feature not 0) get `x * mult + add`; padding stays 0.
    """
    forward = make_forward(predictor.trained.model)
    params, batch_stats = predictor.trained.params, predictor.trained.batch_stats
    tasks = predictor.tasks

    def fn(x_BxTxF: jax.Array) -> dict[str, jax.Array]:
        h = x_BxTxF
        if affine is not None:
            valid = jnp.any(h != 0, axis=-1, keepdims=True)
            scaled = h * jnp.asarray(affine.mult)[None] + jnp.asarray(affine.add)[None]
            h = jnp.where(valid, scaled, 0.0)
        logits, _ = forward(params, batch_stats, h, False, jax.random.key(0))
        return {t.name: _activation(t, logits[t.name]) for t in tasks}

    return fn


def _activation(task: Task, logits: jax.Array) -> jax.Array:
    if task.kind == "multiclass":
        return jax.nn.softmax(logits, axis=-1)
    return jax.nn.sigmoid(logits)


def describe(
    predictor: Predictor,
    shaping: list[dict],
    frames: int,
    n_features: int,
    platforms: Sequence[str],
) -> dict[str, Any]:
    """model.json: what a caller needs to feed the artifact and read its outputs."""
    framed = [r for r in shaping if r["step"] == "frame"]
    windows = [r for r in shaping if r["step"] == "windows"]
    outputs = {
        t.name: {
            "shape": ["batch", t.n_columns],
            "columns": [t.labels[1]] if t.kind == "binary" else list(t.labels),
            "activation": "softmax" if t.kind == "multiclass" else "sigmoid",
        }
        for t in predictor.tasks
    }
    return {
        "format": FORMAT,
        "run": str(predictor.run),
        "epoch": predictor.epoch,
        "tasks": [t.to_json() for t in predictor.tasks],
        "extraction": json.loads(json.dumps(predictor.extraction.to_config())),
        "extraction_key": predictor.extraction.key,
        "input": {
            "shape": ["batch", frames, n_features],
            "dtype": "float32",
            "features": "the extraction's [T, F] frames, not scaled (the scaling is inside)",
            "padding": "a clip shorter than the frames is zero-padded; all-zero frames are padding",
        },
        "frame": {"length": framed[-1]["length"], "start": framed[-1].get("start", "begin")}
        if framed
        else None,
        "windows": {
            "length": windows[-1]["length"],
            "hop": windows[-1]["hop"],
            "pooling": "mean of the windows' probabilities per clip",
        }
        if windows
        else None,
        "preparation": shaping,
        "outputs": outputs,
        "batch": "symbolic",
        "platforms": list(platforms),
        "jax_version": jax.__version__,
    }
