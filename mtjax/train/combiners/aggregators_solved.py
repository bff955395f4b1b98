"""Gradient aggregators that solve a problem per step: UPGrad, DualProj, Nash-MTL, FairGrad.

As in `aggregators`, each works on the Gram matrix G [K, K] of the per-task gradients and
returns task weights a (total = sum_k stop_gradient(a_k) L_k); absent tasks are left out of
the geometry and weigh exactly 0; no present task gives 0. The solvers run a fixed number
of iterations (jit-safe) and meet a stated tolerance:

- `lower_bounded_min_norm`: min v^T G v subject to v >= l, by the Lawson–Hanson active-set
  method (exact once it has found the active set) on the Gram matrix;
- `power_equilibrium`: w > 0 with G w = w^(-1/alpha), by Newton's method on a strictly
  convex potential with a fixed-grid line search.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtjax.train.combiners import aggregators, base, gradient
from mtjax.train.combiners.base import Combiner

RIDGE = 1e-6  # added to the cosine matrix's diagonal in `power_equilibrium`
_LENGTHS = jnp.array([1.0, 0.9, 0.75] + [2.0**-j for j in range(1, 21)])  # Newton step lengths


# ----------------------------------------------------------------------------------------
# The dual cone: min v^T G v subject to v >= l


def lower_bounded_min_norm(
    g_KxK: jax.Array,
    lower: jax.Array,
    present: jax.Array,
    *,
    steps: int | None = None,
    tol: float = 1e-5,
) -> jax.Array:
    """The v minimising v^T G v subject to v >= lower on the present tasks (absent v_k = 0).

    J^T v is then the projection of J^T lower onto the dual cone of the gradients, the
    directions with g_k . d >= 0 for all k (Quinton & Rey 2024, Prop. 1). With v = l + x,
    x >= 0 solves the non-negative least squares problem min |J^T x + J^T l|^2, solved by
    the Lawson–Hanson active-set method on G: from x = 0, free the bound task j whose
    gradient has the least cosine with the direction d = J^T v while that cosine is below
    -tol, solve the free tasks' equations (G v)_free = 0 exactly, and step back to the
    bounds (re-binding a task) while the solution leaves them. At the end every bound task
    has cos(g_j, d) >= -tol and every free one (G v)_j = 0: v meets the KKT conditions. It
    runs a fixed `steps` iterations (one K x K solve each), stopping in place once solved.
    G is divided by its largest present diagonal first (v does not change). Duplicate,
    parallel and opposite gradients are handled (a dependent task is never freed); with
    more tasks than gradient dimensions and nearly dependent free sets, float32 G can hold
    too few digits to find the active set, and the result is then feasible but not optimal.

    Args:
      g_KxK: float32 [K, K], the Gram matrix of the task gradients.
      lower: float32 [K], l >= 0.
      present: bool [K].
      steps: iterations; None is 2K + 8.
      tol: the cosine below -tol at which a bound task is freed.

    Returns:
      float32 [K], v >= lower on present tasks, 0 elsewhere.
    """
    n_tasks = g_KxK.shape[0]
    present = present.astype(bool)
    g_KxK = aggregators.scaled_gram(g_KxK, present)
    l_K = jnp.where(present, lower, 0.0).astype(g_KxK.dtype)
    gl_K = gradient._dot(g_KxK, l_K)
    diag_K = jnp.diagonal(g_KxK)
    eye_KxK = jnp.eye(n_tasks, dtype=bool)
    steps = 2 * n_tasks + 8 if steps is None else steps

    def solve(free):
        inner = jnp.where(free[:, None] & free[None, :], g_KxK, eye_KxK.astype(g_KxK.dtype))
        return jnp.where(free, jnp.linalg.solve(inner, jnp.where(free, -gl_K, 0.0)), 0.0)

    def body(_, carry):
        x_K, free, minor, done = carry
        gv_K = gl_K + gradient._dot(g_KxK, x_K)
        vgv = jnp.maximum((l_K + x_K) @ gv_K, 0.0)
        slack_K = gv_K + tol * jnp.sqrt(diag_K * vgv)  # >= 0: cos(g_j, d) >= -tol
        j = jnp.argmin(jnp.where(present & ~free, slack_K, jnp.inf))
        violated = present[j] & ~free[j] & (slack_K[j] < 0)
        # a major cycle: stop at the optimum, else free the most violating task
        done = done | (~minor & ~violated)
        free = jnp.where(~minor & ~done, free | eye_KxK[j], free)
        s_K = solve(free)
        done = done | ~jnp.all(jnp.isfinite(s_K))
        inside = jnp.all(jnp.where(free, s_K > 0, True))
        # a minor cycle: the solution leaves x >= 0; go to the boundary, bind who reaches it
        ratio_K = jnp.where(free & (s_K <= 0), gradient._safe_div(x_K, x_K - s_K), jnp.inf)
        out = jnp.argmin(ratio_K)
        edge_K = x_K + jnp.clip(ratio_K[out], 0.0, 1.0) * (s_K - x_K)
        kept = free & (edge_K > 0) & ~eye_KxK[out]
        new_K = jnp.where(done, x_K, jnp.where(inside, s_K, jnp.where(kept, edge_K, 0.0)))
        free = jnp.where(done, free, jnp.where(inside, free, kept))
        return new_K, free, ~done & ~inside, done

    start = (jnp.zeros_like(l_K), jnp.zeros([n_tasks], bool), False, ~present.any())
    x_K = jax.lax.fori_loop(0, steps, body, start)[0]
    return jnp.where(present, l_K + x_K, 0.0)


def upgrad_weights(
    g_KxK: jax.Array, present: jax.Array, *, steps: int | None = None, tol: float = 1e-5
) -> jax.Array:
    """UPGrad's weights: the mean over present i of argmin_{v >= e_i} v^T G v.

    Args:
      g_KxK: float32 [K, K], the Gram matrix of the task gradients.
      present: bool [K].
      steps: iterations of each `lower_bounded_min_norm`.
      tol: its cosine tolerance.

    Returns:
      float32 [K]; 1/n each on n present tasks without conflict, 1 on a task alone.
    """
    present = present.astype(bool)
    eye_KxK = jnp.eye(g_KxK.shape[0], dtype=g_KxK.dtype)

    def one(e_K):
        return lower_bounded_min_norm(g_KxK, e_K, present, steps=steps, tol=tol)

    v_KxK = jnp.where(present[:, None], jax.vmap(one)(eye_KxK), 0.0)
    return v_KxK.sum(0) / jnp.maximum(base.count_present(present), 1.0)


def upgrad(steps: int | None = None, tol: float = 1e-5) -> Combiner:
    """UPGrad, unconflicting projection of gradients (Quinton & Rey, arXiv 2024).

    "Jacobian descent for multi-objective optimization".
    Each task's gradient is projected onto the dual cone of all of them (the directions
    conflicting with none) and the projections are averaged: weights = mean_i v^(i),
    v^(i) = argmin_{v >= e_i} v^T G v (`upgrad_weights`, solved exactly by
    `lower_bounded_min_norm`). Without a conflict this is the mean gradient. total =
    sum_k stop_gradient(a_k) L_k.

    Args:
      steps: active-set iterations per projection; None is 2K + 8.
      tol: the projections' cosine tolerance (see `lower_bounded_min_norm`).

    Parity: torchjd's default projector adds 1e-4 to the diagonal of the trace-normalised
    Gramian, which moves its result by up to 4e-2 (relative) on the parity cases; with
    1e-12 the two agree to 3e-7 (`benchmarks/parity.py`).
    """
    return aggregators.gram_weighting(
        "upgrad", lambda g_KxK, present: upgrad_weights(g_KxK, present, steps=steps, tol=tol)
    )


def dualproj(steps: int | None = None, tol: float = 1e-5) -> Combiner:
    """DualProj: the mean gradient projected onto the dual cone (Quinton & Rey, arXiv 2024).

    weights = argmin_{v >= 1/n} v^T G v over the n present tasks (`lower_bounded_min_norm`):
    the nearest direction to the mean gradient that conflicts with no task's gradient.
    total = sum_k stop_gradient(a_k) L_k.

    Args:
      steps: active-set iterations; None is 2K + 8.
      tol: the projection's cosine tolerance (see `lower_bounded_min_norm`).

    Parity: as `upgrad`'s (torchjd's 1e-4 regularisation; 2e-7 without it).
    """
    return aggregators.gram_weighting(
        "dualproj",
        lambda g_KxK, present: lower_bounded_min_norm(
            g_KxK, base.uniform(present), present, steps=steps, tol=tol
        ),
    )


# ----------------------------------------------------------------------------------------
# Nash-MTL and FairGrad: G w = w^(-1/alpha)


def power_equilibrium(
    g_KxK: jax.Array, present: jax.Array, *, alpha: float = 1.0, steps: int = 40
) -> jax.Array:
    """The w > 0 with (G w)_k = w_k^(-1/alpha) on present tasks with a gradient (0 elsewhere).

    With p = 1 / alpha, n_k = |g_k| and C = G / (n n^T) the cosine matrix, y = n w solves
    C y = n^(p-1) y^(-p), the minimiser of the strictly convex psi(y) = y^T C y / 2 -
    sum_k n_k^(p-1) h(y_k), h' = y^(-p) (h = log for alpha = 1); working on C keeps gradients
    of very unequal norms well conditioned. Newton's method: the step solves
    (C + diag(p n^(p-1) y^(-p-1))) dy = -(C y - n^(p-1) y^(-p)), its length the longest of
    1, 0.9, 0.75, 1/2, ..., 2^-20 that keeps y > 0 and psi descending (psi is convex along the
    step, so psi decreases; none such: stay); from y = n^((p-1)/(p+1)),
    exact for orthogonal gradients, it runs `steps` iterations. The tests' cases meet
    |G w - w^(-p)| <= 1e-5 w^(-p) (2e-4 for the near-singular ones). G is divided by its
    largest present diagonal s first and w scaled back by s^(-1 / (1 + p)). RIDGE is added
    to C's diagonal, so that gradients whose cone holds a line (opposite ones), where no
    solution exists, give a large finite w instead of diverging.

    Args:
      g_KxK: float32 [K, K], the Gram matrix of the task gradients.
      present: bool [K].
      alpha: > 0.
      steps: Newton iterations.

    Returns:
      float32 [K], > 0 on the present tasks with a gradient.
    """
    present = present.astype(bool)
    p = 1.0 / alpha
    top = jnp.max(jnp.where(present, jnp.diagonal(g_KxK), 0.0))
    g_KxK = aggregators.scaled_gram(g_KxK, present)
    live = present & (jnp.diagonal(g_KxK) > aggregators.TINY)
    norm_K = jnp.sqrt(jnp.where(live, jnp.diagonal(g_KxK), 1.0))
    c_KxK = aggregators._eye_outside(g_KxK / jnp.outer(norm_K, norm_K), live)
    c_KxK = c_KxK + RIDGE * jnp.eye(c_KxK.shape[0], dtype=c_KxK.dtype)
    b_K = norm_K ** (p - 1.0)

    def gradient_of_potential(y_K):
        return gradient._dot(c_KxK, y_K) - b_K * jnp.where(y_K > 0, y_K, 1.0) ** (-p)

    def newton(_, y_K):
        r_K = gradient_of_potential(y_K)
        h_KxK = c_KxK + jnp.diag(p * b_K * y_K ** (-p - 1.0))
        dy_K = -jnp.linalg.solve(h_KxK, r_K)
        # psi is convex along the step: take the longest listed length at which it still
        # descends (its slope, exact to rounding where psi's values no longer are)
        trial_TxK = y_K[None, :] + _LENGTHS[:, None] * dy_K[None, :]
        slope_T = jax.vmap(gradient_of_potential)(trial_TxK) @ dy_K
        fine_T = jnp.all(trial_TxK > 0, axis=1) & (slope_T <= 0) & jnp.isfinite(slope_T)
        best = jnp.argmax(fine_T)  # the lengths go down; none fine: stay
        return jnp.where(fine_T[best] & jnp.all(jnp.isfinite(dy_K)), trial_TxK[best], y_K)

    y_K = jax.lax.fori_loop(0, steps, newton, b_K ** (1.0 / (1.0 + p)))
    unscale = jnp.where(top > 0, top, 1.0) ** (-1.0 / (1.0 + p))
    return jnp.where(live, y_K / norm_K * unscale, 0.0)


def nash_mtl(steps: int = 40) -> Combiner:
    """Nash-MTL, multi-task learning as a bargaining game (Navon et al., ICML 2022).

    The weights a > 0 solve G a = 1 / a (elementwise; `power_equilibrium` with alpha = 1),
    the Nash bargaining solution: the update d = sum_k a_k g_k has g_k . d = 1 / a_k for every
    task, and |d| = sqrt(n) for n tasks with a gradient (the paper's scale; the authors'
    code clips the update's norm afterwards, left to the optimizer here). A task alone gets
    a = 1 / |g|. The weights are solved from scratch each step (the code warm-starts its
    CCP). total = sum_k stop_gradient(a_k) L_k.

    Parity: torchjd's NashMTL (norm clipping off) agrees to 1.2e-5, except on a case with
    task gradients of very different scales, where its CCP (cvxpy, 200 iterations) stops
    far from G a = 1/a (residual 55, against 9e-5 here) (`benchmarks/parity.py`).

    Args:
      steps: Newton iterations.
    """
    return aggregators.gram_weighting(
        "nash_mtl", lambda g_KxK, present: power_equilibrium(g_KxK, present, alpha=1.0, steps=steps)
    )


def fairgrad(alpha: float = 1.0, steps: int = 40) -> Combiner:
    """FairGrad, alpha-fair resource allocation (Ban & Ji, ICML 2024).

    "Fair resource allocation in multi-task learning".
    The weights w > 0 solve G w = w^(-1/alpha) (`power_equilibrium`), the update d =
    sum_k w_k g_k maximising the alpha-fair utility of the tasks' loss decreases g_k . d;
    alpha = 1 is Nash-MTL's equation, alpha -> infinity approaches max-min fairness. As the
    authors' code, G is not normalised. total = sum_k stop_gradient(w_k) L_k.

    Args:
      alpha: the fairness exponent, > 0.
      steps: Newton iterations.
    """
    if not alpha > 0:
        raise ValueError(f"fairgrad: alpha must be > 0, got {alpha}")

    return aggregators.gram_weighting(
        "fairgrad",
        lambda g_KxK, present: power_equilibrium(g_KxK, present, alpha=alpha, steps=steps),
    )
