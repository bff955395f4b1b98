"""Every built-in combiner by name, and turning what a user gives into a `Combiner`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mtjax.train.combiners import (
    aggregators,
    aggregators_sampled,
    aggregators_solved,
    balancing,
    base,
    coordinates,
    gradient,
    tracking,
    weighting,
)
from mtjax.train.combiners import groups as groups_
from mtjax.train.combiners.base import Combiner


def as_combiner(x: Any) -> Combiner:
    """A Combiner from what a user gives as `combine=`.

    Accepted: a Combiner, an object with `init` and `apply`, a plain function
    `losses [K] -> scalar` (made `stateless`), or a name in `COMBINERS`.
    """
    if isinstance(x, Combiner):
        return x
    if isinstance(x, str):
        return combiner_from_config(x)
    if callable(getattr(x, "init", None)) and callable(getattr(x, "apply", None)):
        return Combiner(
            x.init,
            x.apply,
            uses_grads=bool(getattr(x, "uses_grads", False)),
            init_params=getattr(x, "init_params", None),
            aggregate=getattr(x, "aggregate", None),
            gramian=getattr(x, "gramian", None),
        )
    if callable(x):
        return base.stateless(x)
    raise TypeError(
        f"a loss combiner is a Combiner, a function losses -> scalar or one of"
        f" {sorted(COMBINERS)}; got {type(x).__name__}"
    )


COMBINERS: dict[str, Callable[..., Combiner]] = {
    "sum": weighting.sum_,
    "mean": weighting.mean,
    "weighted": weighting.weighted,
    "uncertainty_weighting": weighting.uncertainty_weighting,
    "dwa": weighting.dwa,
    "rlw": weighting.rlw,
    "gradnorm": gradient.gradnorm,
    "pcgrad": gradient.pcgrad,
    "cagrad": gradient.cagrad,
    "mgda": gradient.mgda,
    "gls": balancing.gls,
    "imtl_l": balancing.imtl_l,
    "famo": balancing.famo,
    "stch": balancing.stch,
    "excess_mtl": balancing.excess_mtl,
    "db_mtl": balancing.db_mtl,
    "imtl_g": aggregators.imtl_g,
    "gradvac": aggregators.gradvac,
    "config": aggregators.config_,
    "aligned_mtl": aggregators.aligned_mtl,
    "krum": aggregators.krum,
    "upgrad": aggregators_solved.upgrad,
    "dualproj": aggregators_solved.dualproj,
    "nash_mtl": aggregators_solved.nash_mtl,
    "fairgrad": aggregators_solved.fairgrad,
    "sdmgrad": aggregators_sampled.sdmgrad,
    "modo": aggregators_sampled.modo,
    "moco": tracking.moco,
    "graddrop": coordinates.graddrop,
    "trimmed_mean": coordinates.trimmed_mean,
}


def ema(combiner: Any = "mean", decay: float = 0.9) -> Combiner:
    """`balancing.ema` over a combiner given by name (`{name = "ema", combiner = "dwa"}`)."""
    return balancing.ema(as_combiner(combiner), decay=decay)


def per_group(combiner: Any = "pcgrad", by: str = "layer", groups: int | None = None) -> Combiner:
    """`groups.per_group` over a combiner given by name.

    In an experiment file: `{name = "per_group", combiner = "gradvac", by = "layer",
    groups = 9}`.
    """
    return groups_.per_group(as_combiner(combiner), by=by, groups=groups)


COMBINERS["ema"] = ema
COMBINERS["per_group"] = per_group


def combiner_from_config(name: str, **kwargs: Any) -> Combiner:
    """The combiner `COMBINERS[name](**kwargs)`; a wrong name lists the known ones."""
    if name not in COMBINERS:
        raise ValueError(f"unknown combiner {name!r}; known: {', '.join(sorted(COMBINERS))}")
    return COMBINERS[name](**kwargs)
