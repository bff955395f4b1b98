"""Gradient-level combiners: GradNorm, PCGrad, CAGrad and MGDA, on per-task gradients.

Each gets `grads`, the per-task gradients of the shared parameters (a pytree whose leaves
have a leading task axis K), and works on their Gram matrix where it can. MGDA and CAGrad
solve their problems on the simplex exactly (`min_norm_weights`,
`conflict_averse_weights`), with fixed iteration counts, so they are jit-safe.
"""

from __future__ import annotations

from collections.abc import Callable
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


def _checked(grads: Any, n_tasks: int, name: str) -> Any:
    """`grads`, checked to be per-task gradients of `n_tasks` tasks."""
    if grads is None:
        raise ValueError(f"{name} needs grads= (per-task gradients with a leading task axis)")
    found = _leading_axis(jax.tree.leaves(grads))
    if found != n_tasks:
        raise ValueError(f"{name}: grads have {found} tasks, losses {n_tasks}")
    return grads


def _task_gram(grads: Any, n_tasks: int, name: str) -> jax.Array:
    """G [K, K] of `grads`, checked against the number of tasks; no gradient flows through."""
    return jax.lax.stop_gradient(gram(_checked(grads, n_tasks, name)))


def gram_total(
    gramian: Callable[..., tuple[jax.Array, Any]],
    name: str,
    losses: jax.Array,
    state: Any,
    *,
    present: jax.Array,
    grads: Any = None,
    **extra: Any,
) -> tuple[jax.Array, Any]:
    """The `apply` of a combiner from its `gramian` rule, on the Gram matrix of `grads`.

    Returns:
      (sum_k stop_gradient(a_k) L_k over present tasks, the rule's new state).
    """
    g_KxK = _task_gram(grads, losses.shape[0], name)
    extra.pop("params", None)
    a_K, state = gramian(g_KxK, state, losses=losses, present=present, **extra)
    return base.weighted_total(a_K, losses, present), state


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
    """The product a @ b in full float32 precision on every backend."""
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


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
    G_k = ||g_k|| over the parameters in `grads` (the shared ones), r_k = (L_k / L_k(0)) /
    mean_j(L_j / L_j(0)) (means over present tasks), weights clipped at 1e-3 and
    renormalised to sum to n. The weights live in the state (they are not trained by the
    model's optimizer); they scale the shared parameters' gradients, while each head
    trains on its own task's gradient.

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

    def gramian(g_KxK, state, *, losses, present, **extra):
        del extra
        norms_K = jnp.sqrt(jnp.maximum(jnp.diagonal(g_KxK), 0.0))
        seen_K = jax.lax.stop_gradient(losses).astype(jnp.float32)
        first = present & ~state.has_initial
        initial = jnp.where(first, seen_K, state.initial)
        has_initial = state.has_initial | present
        w_K = normalised(state.weights, present)
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
        return w_K, GradNormState(weights=weights, initial=initial, has_initial=has_initial)

    def apply(losses, state, **kw):
        return gram_total(gramian, "gradnorm", losses, state, **kw)

    return Combiner(init, apply, uses_grads=True, gramian=gramian)


def pcgrad() -> Combiner:
    """PCGrad, projecting conflicting gradients (Yu et al., NeurIPS 2020).

    For each present task i, in its own random order of the other present tasks j (drawn
    from `key`): if g_i^PC . g_j < 0, g_i^PC -= (g_i^PC . g_j) / ||g_j||^2 g_j. The combined
    gradient is sum_i g_i^PC. Every g_i^PC is kept as coefficients over the original
    gradients, so all work is on the Gram matrix G [K, K]; the result is weights a [K] with
    combined gradient sum_k a_k g_k, and total = sum_k stop_gradient(a_k) L_k. Without a
    conflict a = 1 on every present task (the plain sum).
    """

    def gramian(g_KxK, state, *, present, key, **extra):
        del extra
        n_tasks = g_KxK.shape[0]
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
        return jnp.where(present, coefs_KxK.sum(0), 0.0), state

    def apply(losses, state, **kw):
        return gram_total(gramian, "pcgrad", losses, state, **kw)

    return Combiner(base.no_state, apply, uses_grads=True, gramian=gramian)


# ----------------------------------------------------------------------------------------
# Exact solvers on the simplex of present tasks, from Gram matrices


def _affine_min_norm(g_KxK: jax.Array, corral: jax.Array) -> jax.Array:
    """Weights of the min-norm point of the affine hull of the `corral` points.

    Solves the bordered KKT system [[G_SS, 1], [1^T, 0]] [v; lambda] = [0; 1] on the corral S
    (identity rows elsewhere), nonsingular whenever the corral's points are affinely
    independent, as Wolfe's algorithm keeps them. Returns float32 [K], 0 outside S.
    """
    n_tasks = g_KxK.shape[0]
    s_K = corral.astype(g_KxK.dtype)
    inner = jnp.where(corral[:, None] & corral[None, :], g_KxK, jnp.eye(n_tasks, dtype=s_K.dtype))
    m = jnp.block([[inner, s_K[:, None]], [s_K[None, :], jnp.zeros([1, 1], s_K.dtype)]])
    rhs = jnp.zeros([n_tasks + 1], s_K.dtype).at[n_tasks].set(1.0)
    return jnp.where(corral, jnp.linalg.solve(m, rhs)[:n_tasks], 0.0)


def min_norm_weights(
    g_KxK: jax.Array, present: jax.Array, *, steps: int | None = None, tol: float = 1e-6
) -> jax.Array:
    """The min-norm point of the convex hull of the present tasks' gradients, as weights.

    w = argmin ||sum_k w_k g_k||^2 over the simplex of present tasks, from the Gram matrix
    G = [g_i . g_j] alone. Two tasks have the closed form of Sener & Koltun (2018, Alg. 1):
    w_1 = clip((G_22 - G_12) / (G_11 + G_22 - 2 G_12), 0, 1). More are solved by Wolfe's
    min-norm-point algorithm (Wolfe 1976), an active-set method that is exact once it has
    found the support: from the present vertex of least norm it adds the vertex j of least
    (G w)_j while w.Gw - (G w)_j > tol * w.Gw, re-solves the affine min-norm point of the
    support exactly, and steps back to the simplex's boundary (dropping a vertex) while that
    point has a weight <= 0; each iterate is nearer the origin than the last. It runs a
    fixed `steps` iterations (one solve of a K+1 system each), stopping in place once
    solved; supports are found in about K iterations. G is scaled by its largest present
    diagonal first (the weights do not change).

    Args:
      g_KxK: float32 [K, K], the Gram matrix of the task gradients.
      present: bool [K]; absent tasks get weight exactly 0 and are left out of the geometry.
      steps: iterations for K > 2; None is 2K + 8.
      tol: relative gap at which the solve stops.

    Returns:
      float32 [K], on the simplex of present tasks; 1 on a task present alone; all 0 when no
      task is present.
    """
    n_tasks = g_KxK.shape[0]
    present = present.astype(bool)
    diag_K = jnp.where(present, jnp.diagonal(g_KxK), 0.0)
    g_KxK = jnp.where(present[:, None] & present[None, :], g_KxK, 0.0)
    g_KxK = _safe_div(g_KxK, jnp.max(diag_K)).astype(jnp.float32)
    if n_tasks == 2:
        gamma = _safe_div(g_KxK[1, 1] - g_KxK[0, 1], g_KxK[0, 0] + g_KxK[1, 1] - 2 * g_KxK[0, 1])
        gamma = jnp.where(present.all(), jnp.clip(gamma, 0.0, 1.0), present[0].astype(jnp.float32))
        return jnp.where(present, jnp.stack([gamma, 1.0 - gamma]), 0.0)
    steps = 2 * n_tasks + 8 if steps is None else steps
    eye_KxK = jnp.eye(n_tasks, dtype=bool)
    start = jnp.argmin(jnp.where(present, jnp.diagonal(g_KxK), jnp.inf))
    w0_K = jnp.where(present & eye_KxK[start], 1.0, 0.0)

    def body(_, carry):
        w_K, corral, minor, done = carry
        gw_K = _dot(g_KxK, w_K)
        norm2 = w_K @ gw_K
        j = jnp.argmin(jnp.where(present, gw_K, jnp.inf))
        # a major cycle: stop at the optimum, else add the most violating vertex
        done = done | (~minor & ((norm2 - gw_K[j] <= tol * norm2) | corral[j]))
        corral = jnp.where(~minor & ~done, corral | eye_KxK[j], corral)
        v_K = _affine_min_norm(g_KxK, corral)
        done = done | ~jnp.all(jnp.isfinite(v_K))
        inside = jnp.all(jnp.where(corral, v_K > 0, True))
        # a minor cycle: the affine point leaves the simplex; go to its boundary
        ratio_K = jnp.where(corral & (v_K <= 0), _safe_div(w_K, w_K - v_K), jnp.inf)
        out = jnp.argmin(ratio_K)
        edge_K = w_K + jnp.clip(ratio_K[out], 0.0, 1.0) * (v_K - w_K)
        kept = corral & (edge_K > 0) & ~eye_KxK[out]
        edge_K = _safe_div(jnp.where(kept, edge_K, 0.0), jnp.where(kept, edge_K, 0.0).sum())
        new_K = jnp.where(done, w_K, jnp.where(inside, v_K, edge_K))
        corral = jnp.where(done, corral, jnp.where(inside, corral, kept))
        return new_K, corral, ~done & ~inside, done

    w_K = jax.lax.fori_loop(0, steps, body, (w0_K, w0_K > 0, False, ~present.any()))[0]
    return jnp.where(present, w_K, 0.0)


def conflict_averse_weights(
    g_KxK: jax.Array,
    gg0_K: jax.Array,
    g0_sq: jax.Array,
    present: jax.Array,
    *,
    c: float,
    steps: int = 24,
    inner_steps: int | None = None,
) -> jax.Array:
    """CAGrad's inner problem: w minimising F(w) = g_w . g_0 + sqrt(phi) ||g_w|| on the simplex.

    g_w = sum_k w_k g_k over present tasks, g_0 their mean, phi = c^2 ||g_0||^2 (Liu et al.,
    2021). With rho = sqrt(phi), rho ||u|| = min_t rho (||u||^2 / (2t) + t / 2), so for a fixed
    t the problem is the min-norm point of the hull of the shifted points g_k + (t / rho) g_0
    (`min_norm_weights`, exact), and the optimal t is the root of t = ||g_w(t)||, the sign
    change of the derivative of a convex function of t, bracketed by [0, max_k ||g_k||]: it
    is found by `steps` bisections. Everything is computed from inner products.

    Args:
      g_KxK: float32 [K, K], g_i . g_j.
      gg0_K: float32 [K], g_k . g_0 (computed from the gradients, not from G, so that g_0 of
        near-opposite gradients keeps its precision).
      g0_sq: float32 [], ||g_0||^2.
      present: bool [K].
      c: the radius factor, c >= 0.
      steps: bisection steps on t.
      inner_steps: `min_norm_weights` iterations per bisection step.

    Returns:
      float32 [K] on the simplex of present tasks (all 0 when none is present).
    """
    present = present.astype(bool)
    g0_sq = jnp.maximum(g0_sq, 0.0)
    rho = c * jnp.sqrt(g0_sq)
    top = jnp.sqrt(jnp.max(jnp.where(present, jnp.diagonal(g_KxK), 0.0)))

    def solve(t):
        s = _safe_div(t, rho)
        shifted_KxK = g_KxK + s * (gg0_K[:, None] + gg0_K[None, :]) + s * s * g0_sq
        return min_norm_weights(shifted_KxK, present, steps=inner_steps)

    def norm(w_K):
        return jnp.sqrt(jnp.maximum(w_K @ _dot(g_KxK, w_K), 0.0))

    def bisect(_, bracket):
        low, high = bracket
        mid = 0.5 * (low + high)
        below = norm(solve(mid)) > mid  # the derivative at mid is negative
        return jnp.where(below, mid, low), jnp.where(below, high, mid)

    low, high = jax.lax.fori_loop(0, steps, bisect, (jnp.zeros_like(top), top))
    w_low, w_high = solve(low), solve(high)

    def objective(w_K):
        return w_K @ gg0_K + rho * norm(w_K)

    return jnp.where(objective(w_high) <= objective(w_low), w_high, w_low)


# ----------------------------------------------------------------------------------------
# CAGrad and MGDA


def cagrad(c: float = 0.5, steps: int = 24) -> Combiner:
    """Conflict-averse gradient descent (Liu et al., NeurIPS 2021).

    With g_0 the mean gradient of the n present tasks and phi = c^2 ||g_0||^2, w on the
    simplex of present tasks minimises F(w) = g_w . g_0 + sqrt(phi) ||g_w||, solved exactly
    (`conflict_averse_weights`: bisection on a scalar, each step an exact min-norm solve).
    The combined gradient is the paper's g_0 + sqrt(phi) / ||g_w|| g_w divided by 1 + c^2
    as in the paper's code, i.e. task weights a = (1/n + sqrt(phi) / ||g_w|| w) / (1 + c^2),
    and total = sum_k stop_gradient(a_k) L_k. This keeps the scale of the mean gradient:
    c = 0 gives exactly the mean, one present task a = (1 + c) / (1 + c^2), and g_w = 0 (c >= 1
    with 0 in the hull) gives g_0 / (1 + c^2).

    Parity: torchjd's CAGrad does not divide by 1 + c^2, so its update is this one times
    1 + c^2; then the two agree to 7e-5 (`benchmarks/parity.py`).

    Args:
      c: radius of the ball around g_0 searched, relative to ||g_0||.
      steps: bisection steps of the solve.
    """
    if c < 0:
        raise ValueError(f"cagrad: c must be >= 0, got {c}")

    def weights(g_KxK, gg0_K, g0_sq, present):
        w_K = conflict_averse_weights(g_KxK, gg0_K, g0_sq, present, c=c, steps=steps)
        root_phi = c * jnp.sqrt(jnp.maximum(g0_sq, 0.0))
        norm_w = jnp.sqrt(jnp.maximum(w_K @ _dot(g_KxK, w_K), 0.0))
        a_K = (base.uniform(present) + _safe_div(root_phi, norm_w) * w_K) / (1.0 + c**2)
        return jnp.where(present, a_K, 0.0)

    def gramian(g_KxK, state, *, present, **extra):
        del extra
        b_K = base.uniform(present)
        if c == 0:
            return b_K, state
        gg0_K = _dot(g_KxK, b_K)  # from G: less precise than `apply` for opposite gradients
        return weights(g_KxK, gg0_K, b_K @ gg0_K, present), state

    def apply(losses, state, *, present, grads=None, **extra):
        del extra
        grads = _checked(grads, losses.shape[0], "cagrad")
        b_K = base.uniform(present)
        if c == 0:
            return base.weighted_total(b_K, losses, present), state

        def with_mean(g):
            mean = jnp.tensordot(b_K.astype(g.dtype), g, 1, precision=jax.lax.Precision.HIGHEST)
            return jnp.concatenate([g, mean[None]])

        # the mean gradient joins as one more row, so that g_k . g_0 and ||g_0||^2 are
        # inner products of gradients (exact to float32) rather than sums of G's entries
        g_all = jax.lax.stop_gradient(gram(jax.tree.map(with_mean, grads)))
        g_KxK, gg0_K, g0_sq = g_all[:-1, :-1], g_all[:-1, -1], g_all[-1, -1]
        return base.weighted_total(weights(g_KxK, gg0_K, g0_sq, present), losses, present), state

    return Combiner(base.no_state, apply, uses_grads=True, gramian=gramian)


def mgda(steps: int | None = None) -> Combiner:
    """MGDA: the min-norm point of the present tasks' gradients (Sener & Koltun, NeurIPS 2018).

    w = argmin ||sum_k w_k g_k||^2 over the simplex of present tasks, solved exactly
    (`min_norm_weights`: the closed form for two tasks, Wolfe's active-set algorithm for
    more). Weights sum to 1; total = sum_k stop_gradient(w_k) L_k. Gradients are used
    unnormalised. torchjd's MGDA (Frank-Wolfe) approximates this point: 1e-3 relative after
    3000 iterations on the parity cases, 1.7e-4 after 20000 (`benchmarks/parity.py`).

    Args:
      steps: active-set iterations for more than two tasks; None is 2K + 8.
    """

    def gramian(g_KxK, state, *, present, **extra):
        del extra
        return min_norm_weights(g_KxK, present, steps=steps), state

    def apply(losses, state, **kw):
        return gram_total(gramian, "mgda", losses, state, **kw)

    return Combiner(base.no_state, apply, uses_grads=True, gramian=gramian)
