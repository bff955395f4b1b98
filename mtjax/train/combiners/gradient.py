"""Gradient-level combiners: GradNorm, PCGrad, CAGrad and MGDA, on per-task gradients.

Each gets `grads`, the per-task gradients of the shared parameters (a pytree whose leaves
have a leading task axis K), and works on their Gram matrix where it can.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from mtjax.train.combiners import base
from mtjax.train.combiners.base import Combiner


def flatten_task_grads(grads: Any) -> jax.Array:
    """Per-task gradients as rows of one matrix.

    Args:
      grads: pytree whose every leaf has a leading task axis K.

    Returns:
      float32 [K, P], P the number of parameters.
    """
    leaves = jax.tree.leaves(grads)
    n_tasks = _leading_axis(leaves)
    return jnp.concatenate(
        [leaf.reshape(n_tasks, -1).astype(jnp.float32) for leaf in leaves], axis=1
    )


def gram(grads: Any) -> jax.Array:
    """Gram matrix of the per-task gradients, G_ij = g_i . g_j, leaf by leaf (no copy).

    Args:
      grads: pytree whose every leaf has a leading task axis K.

    Returns:
      float32 [K, K].
    """
    leaves = jax.tree.leaves(grads)
    n_tasks = _leading_axis(leaves)
    g_KxK = jnp.zeros([n_tasks, n_tasks], jnp.float32)
    for leaf in leaves:
        f_KxP = leaf.reshape(n_tasks, -1).astype(jnp.float32)
        g_KxK = g_KxK + jnp.matmul(f_KxP, f_KxP.T, precision=jax.lax.Precision.HIGHEST)
    return g_KxK


def _leading_axis(leaves: list) -> int:
    if not leaves:
        raise ValueError("per-task gradients: the pytree has no leaves")
    sizes = {leaf.shape[0] if leaf.ndim else None for leaf in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            f"per-task gradients need one leading task axis on every leaf, got sizes {sizes}"
        )
    (n_tasks,) = sizes
    assert n_tasks is not None  # checked above
    return int(n_tasks)


def _task_gram(grads: Any, losses: jax.Array, name: str) -> jax.Array:
    """G [K, K] of `grads`, checked against the number of tasks; no gradient flows through."""
    if grads is None:
        raise ValueError(f"{name} needs grads= (per-task gradients with a leading task axis)")
    g_KxK = jax.lax.stop_gradient(gram(grads))
    if g_KxK.shape[0] != losses.shape[0]:
        raise ValueError(f"{name}: grads have {g_KxK.shape[0]} tasks, losses {losses.shape[0]}")
    return g_KxK


def _safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    """Returns num / den where den > 0, else 0 (no NaN, in value or gradient)."""
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


class GradNormState(NamedTuple):
    """GradNorm's memory: the task weights and each task's first loss."""

    weights: jax.Array  # float32 [K], the task weights w_k
    initial: jax.Array  # float32 [K], L_k(0), each task's loss the first time it was present
    has_initial: jax.Array  # bool [K], whether `initial` is recorded


def gradnorm(alpha: float = 1.5, lr: float = 0.025) -> Combiner:
    """GradNorm (Chen et al., ICML 2018): balance the tasks' gradient norms.

    total = sum_k w_k L_k with the state's weights, renormalised to sum to the number n of
    present tasks. Then one gradient step of size `lr` on
        L_grad(w) = sum_k |w_k G_k - stop_gradient(mean_j(w_j G_j) * r_k^alpha)|,
    G_k = ||g_k|| over all parameters, r_k = (L_k / L_k(0)) / mean_j(L_j / L_j(0)) (means
    over present tasks), weights clipped at 1e-3 and renormalised to sum to n. The weights
    live in the state (they are not trained by the model's optimizer).

    Args:
      alpha: asymmetry; larger pulls slow tasks harder.
      lr: step size of the weight update.
    """

    def init(n_tasks: int) -> GradNormState:
        return GradNormState(
            weights=jnp.ones([n_tasks], jnp.float32),
            initial=jnp.zeros([n_tasks], jnp.float32),
            has_initial=jnp.zeros([n_tasks], bool),
        )

    def normalised(w_K, present):
        """Returns w scaled to sum to the number of present tasks over them, 0 elsewhere."""
        w_K = jnp.where(present, w_K, 0.0)
        return w_K * _safe_div(base.count_present(present), w_K.sum())

    def apply(losses, state, *, present, grads=None, **extra):
        del extra
        g_KxK = _task_gram(grads, losses, "gradnorm")
        norms_K = jnp.sqrt(jnp.maximum(jnp.diagonal(g_KxK), 0.0))
        seen_K = jax.lax.stop_gradient(losses).astype(jnp.float32)
        first = present & ~state.has_initial
        initial = jnp.where(first, seen_K, state.initial)
        has_initial = state.has_initial | present
        w_K = normalised(state.weights, present)
        total = base.weighted_total(w_K, losses, present)
        # relative inverse training rates
        rate_K = jnp.where(present, _safe_div(seen_K, initial), 0.0)
        r_K = _safe_div(rate_K, jnp.sum(rate_K) / jnp.maximum(base.count_present(present), 1.0))
        r_K = jnp.where(present, r_K, 0.0)

        def l_grad(w):
            wg_K = w * norms_K
            n_present = jnp.maximum(base.count_present(present), 1.0)
            mean_wg = jnp.sum(jnp.where(present, wg_K, 0.0)) / n_present
            target_K = jax.lax.stop_gradient(mean_wg * r_K**alpha)
            return jnp.sum(jnp.where(present, jnp.abs(wg_K - target_K), 0.0))

        stepped = jnp.maximum(w_K - lr * jax.grad(l_grad)(w_K), 1e-3)
        weights = jnp.where(present, normalised(stepped, present), state.weights)
        return total, GradNormState(weights=weights, initial=initial, has_initial=has_initial)

    return Combiner(init, apply, uses_grads=True)


def pcgrad() -> Combiner:
    """PCGrad, projecting conflicting gradients (Yu et al., NeurIPS 2020).

    For each present task i, in its own random order of the other present tasks j (drawn
    from `key`): if g_i^PC . g_j < 0, g_i^PC -= (g_i^PC . g_j) / ||g_j||^2 g_j. The combined
    gradient is sum_i g_i^PC. Every g_i^PC is kept as coefficients over the original
    gradients, so all work is on the Gram matrix G [K, K]; the result is weights a [K] with
    combined gradient sum_k a_k g_k, and total = sum_k stop_gradient(a_k) L_k. Without a
    conflict a = 1 on every present task (the plain sum).
    """

    def apply(losses, state, *, present, key, grads=None, **extra):
        del extra
        g_KxK = _task_gram(grads, losses, "pcgrad")
        n_tasks = losses.shape[0]
        eye_KxK = jnp.eye(n_tasks, dtype=jnp.float32)
        orders_KxK = jax.vmap(lambda k: jax.random.permutation(k, n_tasks))(
            jax.random.split(key, n_tasks)
        )

        def project(i, order_K):
            def body(c_K, j):
                dot = c_K @ g_KxK[:, j]
                conflict = (dot < 0) & present[j] & (j != i)
                coef = jnp.where(conflict, _safe_div(dot, g_KxK[j, j]), 0.0)
                return c_K - coef * eye_KxK[j], None

            c_K, _ = jax.lax.scan(body, eye_KxK[i], order_K)
            return jnp.where(present[i], c_K, 0.0)

        coefs_KxK = jax.vmap(project)(jnp.arange(n_tasks), orders_KxK)
        a_K = jnp.where(present, coefs_KxK.sum(0), 0.0)
        return base.weighted_total(a_K, losses, present), state

    return Combiner(base.no_state, apply, uses_grads=True)


def cagrad(c: float = 0.5, steps: int = 20) -> Combiner:
    """Conflict-averse gradient descent (Liu et al., NeurIPS 2021).

    With g_0 the mean gradient of the n present tasks and phi = c^2 ||g_0||^2, find w on
    the simplex of present tasks minimising F(w) = g_w . g_0 + sqrt(phi) ||g_w||, by
    `steps` exponentiated-gradient (mirror-descent) steps on the Gram matrix, w_k *=
    exp(-eta_t dF/dw_k), with the spread of eta_t dF/dw over present tasks scaled to
    8 / sqrt(t + 1) (the best iterate is kept). The combined
    gradient is d = (g_0 + sqrt(phi) / ||g_w|| g_w) / (1 + c^2), i.e. task weights
    a = (1/n + sqrt(phi) / ||g_w|| w) / (1 + c^2); total = sum_k stop_gradient(a_k) L_k.
    The result has the scale of the mean gradient; c = 0 gives exactly the mean.

    Args:
      c: radius of the ball around g_0 searched, relative to ||g_0||.
      steps: mirror-descent steps.
    """
    if c < 0:
        raise ValueError(f"cagrad: c must be >= 0, got {c}")

    def apply(losses, state, *, present, grads=None, **extra):
        del extra
        g_KxK = _task_gram(grads, losses, "cagrad")
        b_K = base.uniform(present)
        gb_K = g_KxK @ b_K
        root_phi = c * jnp.sqrt(jnp.maximum(b_K @ gb_K, 0.0))

        def norm_w(w_K):
            return jnp.sqrt(jnp.maximum(w_K @ g_KxK @ w_K, 0.0))

        def objective(w_K):
            return w_K @ gb_K + root_phi * norm_w(w_K)

        def body(t, carry):
            w_K, best_K, best_f = carry
            slope_K = gb_K + root_phi * _safe_div(g_KxK @ w_K, norm_w(w_K))
            low = jnp.min(jnp.where(present, slope_K, jnp.inf))
            high = jnp.max(jnp.where(present, slope_K, -jnp.inf))
            # the step spans [0, 8 / sqrt(t + 1)] whatever the gradients' scale
            step_K = _safe_div(slope_K - low, high - low) * (8.0 / jnp.sqrt(t + 1.0))
            w_K = jnp.where(present, w_K * jnp.exp(-jnp.where(present, step_K, 0.0)), 0.0)
            w_K = _safe_div(w_K, w_K.sum())
            f = objective(w_K)
            better = f < best_f
            return w_K, jnp.where(better, w_K, best_K), jnp.where(better, f, best_f)

        _, w_K, _ = jax.lax.fori_loop(0, steps, body, (b_K, b_K, objective(b_K)))
        a_K = (b_K + _safe_div(root_phi, norm_w(w_K)) * w_K) / (1.0 + c**2)
        return base.weighted_total(jnp.where(present, a_K, 0.0), losses, present), state

    return Combiner(base.no_state, apply, uses_grads=True)


def mgda(steps: int = 25) -> Combiner:
    """MGDA: the min-norm point of the present tasks' gradients (Sener & Koltun, NeurIPS 2018).

    Minimises ||sum_k w_k g_k||^2 over the simplex of present tasks by Frank-Wolfe on the
    Gram matrix, from the uniform point, `steps` steps, each with exact line search (so two
    tasks are solved exactly in one step: w_1 = clip((g_2.g_2 - g_1.g_2) / ||g_1 - g_2||^2,
    0, 1)). Weights sum to 1; total = sum_k stop_gradient(w_k) L_k. Gradients are used
    unnormalised.

    Args:
      steps: Frank-Wolfe steps.
    """

    def apply(losses, state, *, present, grads=None, **extra):
        del extra
        g_KxK = _task_gram(grads, losses, "mgda")
        eye_KxK = jnp.eye(losses.shape[0], dtype=jnp.float32)

        def body(_, w_K):
            gw_K = g_KxK @ w_K
            t = jnp.argmin(jnp.where(present, gw_K, jnp.inf))
            ww = w_K @ gw_K
            gamma = _safe_div(ww - gw_K[t], ww - 2.0 * gw_K[t] + g_KxK[t, t])
            gamma = jnp.clip(gamma, 0.0, 1.0)
            return (1.0 - gamma) * w_K + gamma * eye_KxK[t]

        w_K = jax.lax.fori_loop(0, steps, body, base.uniform(present))
        w_K = jnp.where(present & present.any(), w_K, 0.0)
        return base.weighted_total(w_K, losses, present), state

    return Combiner(base.no_state, apply, uses_grads=True)
