"""Using a trained run: a predictor of new audio (`load`) and a JAX-only artifact (`export`).

predictor (`load(run) -> Predictor`: the run's extraction, prepare steps and model at its
chosen epoch; `predict_to_csv`) -> artifact (`export(run, path)`: a serialized
`jax.export` of features -> probabilities, with the scaling folded in, and its JSON);
hear (`hear_module(run)`: the run's trunk as a HEAR-API module of embeddings).

Names are imported on first use.
"""

from __future__ import annotations

from typing import Any

from mtjax import _lazy

_NAMES = {
    "Predictor": "mtjax.inference.predictor",
    "load": "mtjax.inference.predictor",
    "predict_to_csv": "mtjax.inference.predictor",
    "export": "mtjax.inference.artifact",
    "hear_module": "mtjax.inference.hear",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    return _lazy.attribute(globals(), name, _NAMES)


def __dir__() -> list[str]:
    return _lazy.names(globals(), __all__)
