"""Training: schedules, models, per-task losses, combiners, the step, fit, evaluation.

schedules (which rows each step sees) -> models -> losses (masked per-task means) ->
combiners (task losses to one) -> step (the jitted train step) -> stopping (rules over
the flat history) -> metrics (per-task reports) -> evaluation (`evaluate`, `predict`) ->
fit (the loop).
"""

from mtjax.train import combiners, losses, metrics, models, schedules, stopping
from mtjax.train.evaluation import evaluate, predict, predict_logits
from mtjax.train.loop import carve_validation, default_model, default_optimizer, fit
from mtjax.train.step import Batch, Trained, TrainingError, TrainState

__all__ = [
    "Batch",
    "TrainState",
    "Trained",
    "TrainingError",
    "carve_validation",
    "combiners",
    "default_model",
    "default_optimizer",
    "evaluate",
    "fit",
    "losses",
    "metrics",
    "models",
    "predict",
    "predict_logits",
    "schedules",
    "stopping",
]
