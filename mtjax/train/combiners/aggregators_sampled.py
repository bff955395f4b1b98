"""Aggregators from stochastic multi-objective optimisation: SDMGrad and MoDo.

Both papers analyse updates built from independent samples of the task gradients (double
or triple sampling, for unbiased estimates of products of gradients); here every product
uses the one batch's per-task gradients, through their Gram matrix G [K, K]. As in
`aggregators`, the result is task weights a with total = sum_k stop_gradient(a_k) L_k;
absent tasks are left out of the geometry and weigh exactly 0, and no present task gives 0.
Neither method draws random numbers.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mtjax.train.combiners import aggregators, base, gradient
from mtjax.train.combiners.base import Combiner


def simplex_projection(v: jax.Array, present: jax.Array) -> jax.Array:
    """The Euclidean projection of v onto the simplex of the present tasks (sort-based).

    w = max(v - theta, 0) on present tasks with theta such that they sum to 1: with u the
    present v sorted down and r the largest j with u_j > (u_1 + ... + u_j - 1) / j,
    theta = (u_1 + ... + u_r - 1) / r (Held, Wolfe & Crowder 1974; Duchi et al. 2008).

    Args:
      v: float32 [K].
      present: bool [K].

    Returns:
      float32 [K], >= 0 and summing to 1 over the present tasks, 0 elsewhere (all 0 when
      none is present).
    """
    present = present.astype(bool)
    n_tasks = v.shape[0]
    u_K = -jnp.sort(-jnp.where(present, v, -jnp.inf))  # descending, absent last
    rank_K = jnp.arange(1, n_tasks + 1, dtype=v.dtype)
    valid = rank_K <= present.sum()
    cum_K = jnp.cumsum(jnp.where(valid, u_K, 0.0))
    positive = valid & (u_K * rank_K > cum_K - 1.0)
    r = jnp.maximum(jnp.sum(positive), 1)  # the condition holds on a prefix
    theta = (cum_K[r - 1] - 1.0) / r.astype(v.dtype)
    return jnp.where(present, jnp.maximum(v - theta, 0.0), 0.0)


# ----------------------------------------------------------------------------------------
# SDMGrad


def sdmgrad_weights(
    g_KxK: jax.Array, present: jax.Array, *, lam: float, steps: int | None = None
) -> jax.Array:
    """SDMGrad's weights a = (w* + lam u) / (1 + lam), u uniform over the n present tasks.

    w* = argmin_w 1/2 |g_w + lam g_0|^2 over the simplex of present tasks, g_w = sum_k
    w_k g_k, g_0 = sum_k u_k g_k the mean gradient. As sum_k w_k = 1, g_w + lam g_0 =
    sum_k w_k (g_k + lam g_0): w* is the min-norm point of the hull of the shifted gradients,
    whose Gram matrix is G + lam (G u 1^T + 1 u^T G) + lam^2 u^T G u, solved exactly by
    `gradient.min_norm_weights` (the closed form for two tasks, Wolfe's active-set method
    for more). G is divided by its largest present diagonal first (w* does not change).

    Args:
      g_KxK: float32 [K, K], the Gram matrix of the task gradients.
      present: bool [K].
      lam: lambda >= 0, the pull toward the mean gradient.
      steps: active-set iterations for K > 2; None is 2K + 8.

    Returns:
      float32 [K], summing to 1 over the present tasks (1 on a task alone), 0 elsewhere;
      all 0 when none is present.
    """
    present = present.astype(bool)
    g_KxK = aggregators.scaled_gram(g_KxK, present)
    u_K = base.uniform(present)
    gu_K = gradient._dot(g_KxK, u_K)
    shifted_KxK = g_KxK + lam * (gu_K[:, None] + gu_K[None, :]) + lam**2 * (u_K @ gu_K)
    w_K = gradient.min_norm_weights(shifted_KxK, present, steps=steps)
    return jnp.where(present, (w_K + lam * u_K) / (1.0 + lam), 0.0)


def sdmgrad(lam: float = 0.3, steps: int | None = None) -> Combiner:
    """SDMGrad, stochastic direction-oriented MGDA (Xiao, Ban & Ji, NeurIPS 2023).

    "Direction-oriented multi-objective learning: simple and provable stochastic
    algorithms". The direction solves max_d min_{w in simplex} g_w . d - |d|^2 / 2 -
    lam / 2 |d - g_0|^2, g_0 the mean gradient: d = (g_w* + lam g_0) / (1 + lam) with
    w* = argmin_w 1/2 |g_w + lam g_0|^2 on the simplex, the problem the paper's Algorithm 1
    solves by S steps of projected stochastic gradient descent on w (gradient
    G^T (G w + lam g_0), two independent samples of the task gradients). Here w* is solved
    exactly from the one batch's Gram matrix (`sdmgrad_weights`), which those steps
    approximate; task weights a = (w* + lam / n) / (1 + lam), total = sum_k
    stop_gradient(a_k) L_k. lam = 0 is MGDA; lam -> infinity the mean gradient. (The
    paper's objective-sampling variant, SDMGrad-OS, is not included.)

    Args:
      lam: lambda >= 0 (the paper tunes it per benchmark, 0.1 to 0.6 on NYU-v2).
      steps: active-set iterations for more than two tasks; None is 2K + 8.

    Parity: torchjd's SDMGradWeighting runs the paper's inner loop (20 projected momentum
    steps of size 10), which does not converge on the parity cases; run to convergence
    (lr 0.1, 2000 steps) it agrees with this exact solve to 2e-7 (`benchmarks/parity.py`).
    """
    if not lam >= 0:
        raise ValueError(f"sdmgrad: lam must be >= 0, got {lam}")

    return aggregators.gram_weighting(
        "sdmgrad", lambda g_KxK, present: sdmgrad_weights(g_KxK, present, lam=lam, steps=steps)
    )


# ----------------------------------------------------------------------------------------
# MoDo


class MoDoState(NamedTuple):
    """MoDo's memory: the task weights on the simplex."""

    weights: jax.Array  # float32 [K], lambda; 1/K each at the start


def modo_step(
    g_KxK: jax.Array, w_K: jax.Array, present: jax.Array, *, gamma: float, rho: float
) -> jax.Array:
    """One MoDo update of the weights over the present tasks: Proj(w - gamma (G w + rho w)).

    The present tasks' weights are first renormalised to sum to 1 (uniform over them if
    they sum to 0); absent tasks are left out of G and of the projection
    (`simplex_projection`).

    Args:
      g_KxK: float32 [K, K], the Gram matrix of the task gradients (not rescaled).
      w_K: float32 [K], the state's weights.
      present: bool [K].
      gamma: the step size.
      rho: the ridge.

    Returns:
      float32 [K] on the simplex of present tasks, 0 elsewhere (all 0 when none is present).
    """
    present = present.astype(bool)
    g_KxK = jnp.where(present[:, None] & present[None, :], g_KxK, 0.0)
    w_K = jnp.where(present, w_K, 0.0)
    mass = w_K.sum()
    w_K = jnp.where(mass > 0, w_K / jnp.where(mass > 0, mass, 1.0), base.uniform(present))
    step_K = gradient._dot(g_KxK, w_K) + rho * w_K
    return simplex_projection(w_K - gamma * step_K, present)


def modo(gamma: float = 0.1, rho: float = 0.0) -> Combiner:
    """MoDo, multi-objective gradient with double sampling (Chen et al., NeurIPS 2023).

    "Three-way trade-off in multi-objective learning: optimization, generalization and
    conflict-avoidance". The weights lambda live in `MoDoState` (uniform at the start) and
    take one projected gradient step per training step toward MGDA's min-norm weights:
    lambda <- Proj_simplex(lambda - gamma (G lambda + rho lambda)) (`modo_step`); the update
    is sum_k lambda_k g_k with the new lambda: a = lambda, total = sum_k stop_gradient(a_k)
    L_k. The paper draws three independent samples per step (two for the product G lambda,
    one for the update); here all three are the one batch's gradients. G is not rescaled,
    as in the paper, so gamma is relative to the squared gradient norms. Absent tasks keep
    their stored weight and weigh 0; the present ones are renormalised before the step.

    Args:
      gamma: the weights' step size, > 0.
      rho: the ridge on the weights, >= 0 (rho > 0 makes the weights' problem strongly
        convex).

    Parity: torchjd's MoDoWeighting defaults to rho = 0.1; with rho = 0 the two agree to
    4e-6 over three steps (`benchmarks/parity.py`).
    """
    if not gamma > 0 or not rho >= 0:
        raise ValueError(f"modo: gamma must be > 0 and rho >= 0, got gamma={gamma}, rho={rho}")

    def init(n_tasks: int) -> MoDoState:
        return MoDoState(weights=jnp.full([n_tasks], 1.0 / n_tasks, jnp.float32))

    def apply(losses, state, *, present, grads=None, **extra):
        del extra
        g_KxK = gradient._task_gram(grads, losses.shape[0], "modo")
        a_K = modo_step(g_KxK, state.weights, present, gamma=gamma, rho=rho)
        weights = jnp.where(present, a_K, state.weights)
        return base.weighted_total(a_K, losses, present), MoDoState(weights=weights)

    return Combiner(init, apply, uses_grads=True)
