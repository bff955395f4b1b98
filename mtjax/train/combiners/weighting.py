"""Loss weightings: sum, mean, fixed weights, uncertainty weighting, DWA and RLW."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mtjax.train.combiners import base
from mtjax.train.combiners.base import Combiner, EmptyState


def sum_() -> Combiner:
    """Sum of the present tasks' losses: total = sum_k present_k L_k."""

    def apply(losses, state, *, present, **extra):
        del extra
        return jnp.sum(jnp.where(present, losses, 0.0)), state

    return Combiner(base.no_state, apply)


def mean() -> Combiner:
    """Mean over the present tasks: total = sum_k present_k L_k / max(n_present, 1)."""

    def apply(losses, state, *, present, **extra):
        del extra
        return base.weighted_total(base.uniform(present), losses, present), state

    return Combiner(base.no_state, apply)


def weighted(weights: Sequence[float]) -> Combiner:
    """Fixed task weights: total = sum_k present_k w_k L_k (not renormalised).

    Args:
      weights: one non-negative float per task, in task order.
    """
    w = [float(v) for v in weights]
    if not all(math.isfinite(v) and v >= 0 for v in w):
        raise ValueError(f"task weights must be finite and non-negative, got {w}")

    def init(n_tasks: int) -> EmptyState:
        if n_tasks != len(w):
            raise ValueError(f"weighted: {len(w)} weights for {n_tasks} tasks")
        return EmptyState()

    def apply(losses, state, *, present, **extra):
        del extra
        return base.weighted_total(jnp.asarray(w, jnp.float32), losses, present), state

    return Combiner(init, apply)


class UncertaintyParams(NamedTuple):
    """The trainable log-variance of each task (Kendall et al., 2018)."""

    log_var: jax.Array  # float32 [K], s_k = log sigma_k^2, trainable


def uncertainty_weighting(init_log_var: float = 0.0) -> Combiner:
    """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

    total = sum_k present_k * (0.5 * exp(-s_k) * L_k + 0.5 * s_k), with s_k = log sigma_k^2
    trainable (`init_params`, updated by the trainer with the model's optimizer). This is
    the paper's `L / (2 sigma^2) + log sigma`; for fixed L_k it is minimised at s_k = log L_k,
    and d total / d s_k = 0.5 * (1 - exp(-s_k) * L_k). Absent tasks get no gradient.

    Args:
      init_log_var: initial s_k of every task (0: every weight starts at 0.5).
    """

    def init_params(n_tasks: int) -> UncertaintyParams:
        return UncertaintyParams(log_var=jnp.full([n_tasks], init_log_var, jnp.float32))

    def apply(losses, state, *, present, params=None, **extra):
        del extra
        if params is None:
            raise ValueError("uncertainty_weighting needs params= (from its init_params)")
        s = params.log_var.astype(losses.dtype)
        terms = 0.5 * jnp.exp(-s) * losses + 0.5 * s
        return jnp.sum(jnp.where(present, terms, 0.0)), state

    return Combiner(base.no_state, apply, init_params=init_params)


class DwaState(NamedTuple):
    """DWA's memory: this epoch's running loss sums and the last two epochs' means."""

    epoch: jax.Array  # int32 [], the epoch being accumulated
    sums: jax.Array  # float32 [K], sum of this epoch's batch losses of each task
    counts: jax.Array  # float32 [K], number of this epoch's batches that had each task
    history: jax.Array  # float32 [2, K], mean loss of the last two epochs with the task
    seen: jax.Array  # int32 [K], how many of those rows are filled (0, 1 or 2)


def dwa_weights(
    history: jax.Array, temperature: float = 2.0, *, present: jax.Array | None = None
) -> jax.Array:
    """Dynamic weight average (Liu, Johns & Davison, CVPR 2019).

    w_k = n * softmax_k(r / T), r_k = L_k(e-1) / L_k(e-2), softmax over the n present tasks.

    Args:
      history: float32 [2, K], mean task losses of epochs e-2 (row 0) and e-1 (row 1).
      temperature: T; larger gives more even weights.
      present: bool [K]; default all present. Absent tasks get weight 0.

    Returns:
      float32 [K], summing to the number of present tasks.
    """
    history = jnp.asarray(history, jnp.float32)
    if present is None:
        present = jnp.ones(history.shape[1:], bool)
    before, last = history[0], history[1]
    ratio = jnp.where(before > 0, last / jnp.where(before > 0, before, 1.0), 1.0)
    return base.count_present(present) * base.masked_softmax(ratio / temperature, present)


def dwa(temperature: float = 2.0) -> Combiner:
    """Dynamic weight average: weights from the rate each task's loss fell at.

    total = sum_k w_k L_k with w = `dwa_weights` of the mean losses of the previous two
    epochs. A task with fewer than two past epochs counts as r_k = 1, so every weight is 1
    in the first two epochs. The state sums this epoch's batch losses and rolls them over
    to `history` on the first step of a new `epoch` (a task absent for a whole epoch keeps
    its history).

    Args:
      temperature: T of the softmax.
    """

    def init(n_tasks: int) -> DwaState:
        return DwaState(
            epoch=jnp.zeros([], jnp.int32),
            sums=jnp.zeros([n_tasks], jnp.float32),
            counts=jnp.zeros([n_tasks], jnp.float32),
            history=jnp.ones([2, n_tasks], jnp.float32),
            seen=jnp.zeros([n_tasks], jnp.int32),
        )

    def apply(losses, state, *, present, epoch, **extra):
        del extra
        epoch = jnp.asarray(epoch, jnp.int32)
        # roll over the finished epoch
        new_epoch = epoch != state.epoch
        shift_K = new_epoch & (state.counts > 0)
        finished_K = state.sums / jnp.maximum(state.counts, 1.0)
        shifted = jnp.stack([state.history[1], finished_K])
        history = jnp.where(shift_K[None, :], shifted, state.history)
        seen = jnp.where(shift_K, jnp.minimum(state.seen + 1, 2), state.seen)
        sums = jnp.where(new_epoch, 0.0, state.sums)
        counts = jnp.where(new_epoch, 0.0, state.counts)
        # weigh, then accumulate this step's losses
        ready = (seen >= 2)[None, :]
        w = dwa_weights(jnp.where(ready, history, 1.0), temperature, present=present)
        seen_losses = jax.lax.stop_gradient(losses).astype(jnp.float32)
        sums = sums + jnp.where(present, seen_losses, 0.0)
        counts = counts + present.astype(jnp.float32)
        new = DwaState(epoch=epoch, sums=sums, counts=counts, history=history, seen=seen)
        return base.weighted_total(w, losses, present), new

    return Combiner(init, apply)


_RLW_DRAWS = ("normal", "uniform", "dirichlet")


def rlw(distribution: str = "normal") -> Combiner:
    """Random loss weighting (Lin et al., TMLR 2022).

    Each step draws fresh weights from `key`: w = n * softmax(z) over the n present tasks,
    z_k ~ N(0, 1) ("normal") or U(0, 1) ("uniform"); "dirichlet" draws w / n from
    Dirichlet(1, ..., 1). The factor n makes the weights sum to n, so the loss has the
    scale of `sum()` (the paper's weights sum to 1). total = sum_k w_k L_k.

    Args:
      distribution: "normal", "uniform" or "dirichlet".
    """
    if distribution not in _RLW_DRAWS:
        raise ValueError(f"unknown rlw distribution {distribution!r}; known: {_RLW_DRAWS}")

    def apply(losses, state, *, present, key, **extra):
        del extra
        shape = losses.shape
        if distribution == "normal":
            p = base.masked_softmax(jax.random.normal(key, shape), present)
        elif distribution == "uniform":
            p = base.masked_softmax(jax.random.uniform(key, shape), present)
        else:
            e = jnp.where(present, jax.random.exponential(key, shape), 0.0)
            p = e / jnp.maximum(e.sum(), jnp.finfo(e.dtype).tiny)
        return base.weighted_total(base.count_present(present) * p, losses, present), state

    return Combiner(base.no_state, apply)


sum = sum_  # `mt.losses.sum()`, the public name; nothing here calls builtin sum
