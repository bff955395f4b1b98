"""Training: schedules, models, per-task losses, combiners, the step, fit, evaluation.

schedules (which rows each step sees) -> augment (on-device batch augmentation) -> models
-> losses (masked per-task means) -> combiners (task losses to one) -> step (the jitted
train step) -> state (the initial state, the default optimizer) -> epochs (the epoch
runner) -> history (the flat per-epoch record) -> stopping (rules over the history) ->
metrics (per-task reports) -> evaluation (`evaluate`, `predict`) -> loop (`fit`).

Names are imported on first use: `history` and `metrics`, which the run folders read
with, import no JAX.
"""

from __future__ import annotations

from typing import Any

from mtjax import _lazy

_NAMES = {
    "augment": "mtjax.train.augment:",
    "combiners": "mtjax.train.combiners:",
    "epochs": "mtjax.train.epochs:",
    "history": "mtjax.train.history:",
    "losses": "mtjax.train.losses:",
    "metrics": "mtjax.train.metrics:",
    "models": "mtjax.train.models:",
    "schedules": "mtjax.train.schedules:",
    "state": "mtjax.train.state:",
    "stopping": "mtjax.train.stopping:",
    "evaluate": "mtjax.train.evaluation",
    "predict": "mtjax.train.evaluation",
    "predict_logits": "mtjax.train.evaluation",
    "carve_validation": "mtjax.train.loop",
    "default_model": "mtjax.train.loop",
    "fit": "mtjax.train.loop",
    "create_train_state": "mtjax.train.state",
    "default_learning_rate": "mtjax.train.state",
    "default_optimizer": "mtjax.train.state",
    "Augment": "mtjax.train.augment",
    "Batch": "mtjax.train.step",
    "TrainState": "mtjax.train.step",
    "Trained": "mtjax.train.step",
    "TrainingError": "mtjax.train.step",
}

__all__ = [
    "Augment",
    "Batch",
    "TrainState",
    "Trained",
    "TrainingError",
    "augment",
    "carve_validation",
    "combiners",
    "create_train_state",
    "default_learning_rate",
    "default_model",
    "default_optimizer",
    "epochs",
    "evaluate",
    "fit",
    "history",
    "losses",
    "metrics",
    "models",
    "predict",
    "predict_logits",
    "schedules",
    "state",
    "stopping",
]


def __getattr__(name: str) -> Any:
    return _lazy.attribute(globals(), name, _NAMES)


def __dir__() -> list[str]:
    return _lazy.names(globals(), __all__)
