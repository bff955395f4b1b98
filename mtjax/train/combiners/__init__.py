"""Loss combiners, optax-style: a factory returns a `Combiner(init, apply)` pair.

base (the `Combiner` shape and shared helpers) -> weighting (loss-level: sum, mean,
weighted, uncertainty_weighting, dwa, rlw) -> gradient (per-task gradients: gradnorm,
pcgrad, cagrad, mgda) -> catalogue (every built-in by name, `as_combiner`).
"""

from mtjax.train.combiners.base import Combiner, EmptyState, stateless
from mtjax.train.combiners.catalogue import COMBINERS, as_combiner, combiner_from_config
from mtjax.train.combiners.gradient import (
    GradNormState,
    cagrad,
    conflict_averse_weights,
    flatten_task_grads,
    gradnorm,
    gram,
    mgda,
    min_norm_weights,
    pcgrad,
)
from mtjax.train.combiners.weighting import (
    DwaState,
    UncertaintyParams,
    dwa,
    dwa_weights,
    mean,
    rlw,
    sum,
    sum_,
    uncertainty_weighting,
    weighted,
)

__all__ = [
    "COMBINERS",
    "Combiner",
    "DwaState",
    "EmptyState",
    "GradNormState",
    "UncertaintyParams",
    "as_combiner",
    "cagrad",
    "combiner_from_config",
    "conflict_averse_weights",
    "dwa",
    "dwa_weights",
    "flatten_task_grads",
    "gradnorm",
    "gram",
    "mean",
    "mgda",
    "min_norm_weights",
    "pcgrad",
    "rlw",
    "stateless",
    "sum",
    "sum_",
    "uncertainty_weighting",
    "weighted",
]
