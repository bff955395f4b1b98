"""Loss combiners, optax-style: a factory returns a `Combiner(init, apply)` pair.

base (the `Combiner` shape and shared helpers) -> weighting (loss-level: sum, mean,
weighted, uncertainty_weighting, dwa, rlw) -> gradient (per-task gradients: gradnorm,
pcgrad, cagrad, mgda) -> balancing (loss-level: gls, imtl_l, famo, stch; with gradient
norms: excess_mtl, db_mtl; `ema` of any combiner's weights) -> aggregators (from the Gram
matrix in closed form: imtl_g, config, aligned_mtl, krum, gradvac) -> aggregators_solved
(solved each step: upgrad, dualproj, nash_mtl, fairgrad) -> aggregators_sampled
(stochastic multi-objective: sdmgrad, modo) -> tracking (from tracked task gradients, the
shared gradient itself: moco) -> coordinates (the shared
gradient itself, coordinate by coordinate: graddrop, trimmed_mean) -> groups (any gradient
combiner per group of shared parameters: per_group) -> catalogue (every built-in by
name, `as_combiner`).
"""

from mtjax.train.combiners.aggregators import (
    GradVacState,
    aligned_mtl,
    aligned_mtl_weights,
    config_,
    config_weights,
    gradvac,
    gradvac_weights,
    imtl_g,
    imtl_g_weights,
    krum,
    krum_weights,
)
from mtjax.train.combiners.aggregators_sampled import (
    MoDoState,
    modo,
    modo_step,
    sdmgrad,
    sdmgrad_weights,
    simplex_projection,
)
from mtjax.train.combiners.aggregators_solved import (
    dualproj,
    fairgrad,
    lower_bounded_min_norm,
    nash_mtl,
    power_equilibrium,
    upgrad,
    upgrad_weights,
)
from mtjax.train.combiners.balancing import (
    DbMtlState,
    EmaState,
    ExcessState,
    FamoState,
    ImtlParams,
    StchState,
    db_mtl,
    ema,
    excess_mtl,
    famo,
    gls,
    imtl_l,
    stch,
)
from mtjax.train.combiners.base import Combiner, EmptyState, stateless
from mtjax.train.combiners.catalogue import COMBINERS, as_combiner, combiner_from_config
from mtjax.train.combiners.coordinates import graddrop, trimmed_mean
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
from mtjax.train.combiners.groups import per_group
from mtjax.train.combiners.tracking import MoCoState, moco, moco_step
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
    "DbMtlState",
    "DwaState",
    "EmaState",
    "EmptyState",
    "ExcessState",
    "FamoState",
    "GradNormState",
    "GradVacState",
    "ImtlParams",
    "MoCoState",
    "MoDoState",
    "StchState",
    "UncertaintyParams",
    "aligned_mtl",
    "aligned_mtl_weights",
    "as_combiner",
    "cagrad",
    "combiner_from_config",
    "config_",
    "config_weights",
    "conflict_averse_weights",
    "db_mtl",
    "dualproj",
    "dwa",
    "dwa_weights",
    "ema",
    "excess_mtl",
    "fairgrad",
    "famo",
    "flatten_task_grads",
    "gls",
    "graddrop",
    "gradnorm",
    "gradvac",
    "gradvac_weights",
    "gram",
    "imtl_g",
    "imtl_g_weights",
    "imtl_l",
    "krum",
    "krum_weights",
    "lower_bounded_min_norm",
    "mean",
    "mgda",
    "min_norm_weights",
    "moco",
    "moco_step",
    "modo",
    "modo_step",
    "nash_mtl",
    "pcgrad",
    "per_group",
    "power_equilibrium",
    "rlw",
    "sdmgrad",
    "sdmgrad_weights",
    "simplex_projection",
    "stateless",
    "stch",
    "sum",
    "sum_",
    "trimmed_mean",
    "uncertainty_weighting",
    "upgrad",
    "upgrad_weights",
    "weighted",
]
