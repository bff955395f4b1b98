"""Closed-form gradient aggregators as task weights: IMTL-G, ConFIG, Aligned-MTL, Krum, GradVac.

Each method's combined gradient of the shared parameters is a linear combination
sum_k a_k g_k of the per-task gradients, so it is computed from their Gram matrix
G [K, K] alone (cheap: no copy of the gradients) and returned as task weights a, with
total = sum_k stop_gradient(a_k) L_k (the Combiner contract, `base`). Absent tasks are left
out of the geometry (their rows and columns of G are zeroed) and weigh exactly 0; a present
task whose gradient is 0 (|g_k|^2 <= 1e-12 of the largest) has no direction and weighs 0 in
the methods that normalise gradients (IMTL-G, ConFIG). G is divided by its largest present
diagonal first; every weight here is unchanged by that. Singular values of cosine matrices
below `RTOL` of the largest count as 0 (float32 G carries ~1e-7 noise), so exactly
parallel gradients give finite weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mtjax.train.combiners import base, gradient
from mtjax.train.combiners.base import Combiner

RTOL = 1e-5  # relative cut-off of the singular values taken as 0 in pseudo-inverses
TINY = 1e-12  # a squared gradient norm below TINY x the largest one counts as a zero gradient


def scaled_gram(g_KxK: jax.Array, present: jax.Array) -> jax.Array:
    """G over the present tasks, divided by its largest present diagonal.

    Args:
      g_KxK: float32 [K, K], g_i . g_j.
      present: bool [K].

    Returns:
      float32 [K, K] with max diagonal 1 (all 0 when no present task has a gradient), rows
      and columns of absent tasks 0.
    """
    present = present.astype(bool)
    g_KxK = jnp.where(present[:, None] & present[None, :], g_KxK, 0.0)
    return gradient._safe_div(g_KxK, jnp.max(jnp.diagonal(g_KxK)))


def _directed(g_KxK: jax.Array, present: jax.Array) -> jax.Array:
    """The present tasks whose gradient is not 0 in a scaled Gram, bool [K]."""
    return present.astype(bool) & (jnp.diagonal(g_KxK) > TINY)


def _eye_outside(m_KxK: jax.Array, inside: jax.Array) -> jax.Array:
    """The matrix m on the rows and columns of `inside`, the identity elsewhere."""
    eye_KxK = jnp.eye(m_KxK.shape[0], dtype=m_KxK.dtype)
    return jnp.where(inside[:, None] & inside[None, :], m_KxK, eye_KxK)


def _pinv_solve(m: jax.Array, rhs: jax.Array, *, hermitian: bool = False) -> jax.Array:
    """The min-norm least-squares solution of m x = rhs, singular values < RTOL cut off."""
    return gradient._dot(jnp.linalg.pinv(m, rtol=RTOL, hermitian=hermitian), rhs)


# ----------------------------------------------------------------------------------------
# IMTL-G


def gram_weighting(name: str, weights: Callable[[jax.Array, jax.Array], jax.Array]) -> Combiner:
    """A combiner without state whose task weights are `weights(gram [K, K], present [K])`.

    The Gram matrix is of the per-task gradients of the shared parameters; the total is
    `sum_k stop_gradient(a_k) L_k` over present tasks (`base.weighted_total`). The rule is
    also the combiner's `gramian`.
    """

    def gramian(g_KxK, state, *, present, **extra):
        del extra
        return weights(g_KxK, present), state

    def apply(losses, state, **kw):
        return gradient.gram_total(gramian, name, losses, state, **kw)

    return Combiner(base.no_state, apply, uses_grads=True, gramian=gramian)


def imtl_g_weights(g_KxK: jax.Array, present: jax.Array) -> jax.Array:
    """IMTL-G's weights: sum_k a_k = 1 and sum_k a_k g_k has equal projections on every u_k.

    u_k = g_k / |g_k|. The paper's closed form a_{2:K} = g_1 U^T (D U^T)^{-1} (D rows
    g_1 - g_k, U rows u_1 - u_k, a_1 = 1 - sum a_{2:K}) solves u_k . g = u_1 . g for all k.
    With b_k = |g_k| a_k this reads C b = c 1 (C the cosine matrix, c the common projection)
    and sum_k b_k / |g_k| = 1: a bordered system solved here symmetrically in the tasks, with
    the last row scaled by min_k |g_k|, by a pseudo-inverse (cut-off `RTOL`), so that
    parallel gradients, for which any a on the plane sum a = 1 does, give its min-norm point
    instead of NaN. (Where C is invertible the direction is ConFIG's.)

    Args:
      g_KxK: float32 [K, K], the Gram matrix of the task gradients.
      present: bool [K].

    Returns:
      float32 [K], summing to 1 over the present tasks with a gradient (1 on one alone), 0
      elsewhere; all 0 when there is none.
    """
    n_tasks = g_KxK.shape[0]
    g_KxK = scaled_gram(g_KxK, present)
    live = _directed(g_KxK, present)
    norm_K = jnp.sqrt(jnp.where(live, jnp.diagonal(g_KxK), 1.0))
    cos_KxK = _eye_outside(g_KxK / jnp.outer(norm_K, norm_K), live)
    least = jnp.min(norm_K)
    row_K = jnp.where(live, least / norm_K, 0.0)
    one_K = live.astype(g_KxK.dtype)
    system = jnp.block([[cos_KxK, -one_K[:, None]], [row_K[None, :], jnp.zeros([1, 1])]])
    rhs = jnp.zeros([n_tasks + 1]).at[n_tasks].set(jnp.where(live.any(), least, 0.0))
    return jnp.where(live, _pinv_solve(system, rhs)[:n_tasks] / norm_K, 0.0)


def imtl_g() -> Combiner:
    """IMTL-G, impartial gradient balancing (Liu et al., ICLR 2021).

    "Towards impartial multi-task learning".
    The combined gradient g = sum_k a_k g_k, sum_k a_k = 1, has the same projection on every
    task's unit gradient u_k (`imtl_g_weights`, the paper's closed form from G);
    total = sum_k stop_gradient(a_k) L_k. This is the gradient half of IMTL (its loss-scale
    half, IMTL-L, is not included).
    """
    return gram_weighting("imtl_g", lambda g_KxK, present: imtl_g_weights(g_KxK, present))


# ----------------------------------------------------------------------------------------
# ConFIG


def config_weights(g_KxK: jax.Array, present: jax.Array) -> jax.Array:
    """ConFIG's weights: the direction equally aligned to every unit gradient, as task weights.

    g_u = pinv(U) 1 for the unit gradients U (rows u_k), the min-norm g_u with u_k . g_u = 1
    for all k: g_u = sum_k (y_k / |g_k|) g_k with y = C^+ 1, C = U U^T the cosine matrix
    (pseudo-inverse, cut-off `RTOL`). The update is (sum_k g_k . ĝ) ĝ, ĝ = g_u / |g_u|, the
    paper's projection length, i.e. weights a = (1^T G c) / (c^T G c) c with c_k = y_k / |g_k|.

    Args:
      g_KxK: float32 [K, K], the Gram matrix of the task gradients.
      present: bool [K].

    Returns:
      float32 [K]; 1 on a task alone, 0 on absent tasks and zero gradients.
    """
    g_KxK = scaled_gram(g_KxK, present)
    live = _directed(g_KxK, present)
    norm_K = jnp.sqrt(jnp.where(live, jnp.diagonal(g_KxK), 1.0))
    cos_KxK = jnp.where(live[:, None] & live[None, :], g_KxK / jnp.outer(norm_K, norm_K), 0.0)
    y_K = _pinv_solve(cos_KxK, live.astype(g_KxK.dtype), hermitian=True)
    c_K = jnp.where(live, y_K / norm_K, 0.0)
    gc_K = gradient._dot(g_KxK, c_K)
    return jnp.where(live, gradient._safe_div(jnp.sum(gc_K), c_K @ gc_K) * c_K, 0.0)


def config_() -> Combiner:
    """ConFIG, conflict-free updates (Liu, Chen & Thuerey, arXiv 2024, ICLR 2025).

    "ConFIG: towards conflict-free training of physics informed neural networks".
    The update has a positive, equal cosine with every task's gradient and the length of
    the sum of the gradients' projections on it (`config_weights`, from G); total =
    sum_k stop_gradient(a_k) L_k. Registered as "config". (The momentum variant, M-ConFIG,
    is not included.)
    """
    return gram_weighting("config", lambda g_KxK, present: config_weights(g_KxK, present))


# ----------------------------------------------------------------------------------------
# Aligned-MTL


def aligned_mtl_weights(g_KxK: jax.Array, present: jax.Array, *, scale: str = "min") -> jax.Array:
    """Aligned-MTL's weights B 1, B = sqrt(lambda_ref) V Lambda^{-1/2} V^T from G = V Lambda V^T.

    The aligned gradients (columns of J^T B) are orthogonal, each of norm sqrt(lambda_ref);
    eigenvalues below K x float32 eps of the largest are dropped (rank truncation, as the
    authors' code). scale="min" takes lambda_ref the smallest kept eigenvalue (the paper's), "rmse"
    their mean (the code's other mode).

    Args:
      g_KxK: float32 [K, K], the Gram matrix of the task gradients.
      present: bool [K].
      scale: "min" or "rmse".

    Returns:
      float32 [K]; 1 on a task alone and on orthogonal gradients of equal norm.
    """
    present = present.astype(bool)
    g_KxK = scaled_gram(g_KxK, present)
    lam_K, v_KxK = jnp.linalg.eigh(g_KxK)
    keep = lam_K > g_KxK.shape[0] * jnp.finfo(g_KxK.dtype).eps * jnp.max(lam_K)
    if scale == "min":
        ref = jnp.min(jnp.where(keep, lam_K, jnp.inf))
    else:
        ref = gradient._safe_div(jnp.sum(jnp.where(keep, lam_K, 0.0)), keep.sum())
    d_K = jnp.where(keep, jnp.sqrt(gradient._safe_div(ref, jnp.where(keep, lam_K, 1.0))), 0.0)
    b_KxK = gradient._dot(v_KxK * d_K[None, :], v_KxK.T)
    return jnp.where(present, gradient._dot(b_KxK, present.astype(g_KxK.dtype)), 0.0)


def aligned_mtl(scale: str = "min") -> Combiner:
    """Aligned-MTL (Senushkin et al., CVPR 2023).

    "Independent component alignment for multi-task learning".
    The task gradients are replaced by their nearest orthogonal set of equal norms (the
    Procrustes solution, from the eigen-decomposition of G) and summed with unit pre-weights:
    a = B 1 (`aligned_mtl_weights`); total = sum_k stop_gradient(a_k) L_k.

    Args:
      scale: the aligned gradients' norm: "min", sqrt of G's smallest (kept) eigenvalue, as
        in the paper (stable updates), or "rmse", sqrt of their mean.

    Parity (`benchmarks/parity.py`): torchjd's AlignedMTL averages the aligned gradients
    (pref_vector 1/K), so its update is this one divided by K; then the two agree to 4e-5,
    except where G is near-singular (smallest eigenvalue 3e-5 of the largest: 1.9e-3, from
    float32 rounding of G, whose smallest eigenvalue's root scales the update).
    """
    if scale not in ("min", "rmse"):
        raise ValueError(f"aligned_mtl: scale must be 'min' or 'rmse', got {scale!r}")

    return gram_weighting(
        "aligned_mtl", lambda g_KxK, present: aligned_mtl_weights(g_KxK, present, scale=scale)
    )


# ----------------------------------------------------------------------------------------
# Krum


def krum_weights(g_KxK: jax.Array, present: jax.Array, *, f: int, selected: int) -> jax.Array:
    """Krum's choice as weights: 1 / s on the s task gradients of least score.

    score_i = sum of |g_i - g_j|^2 (= G_ii + G_jj - 2 G_ij) over the m present j != i nearest
    to g_i, m = max(n - f - 2, 1) for n present tasks. Ties go to the lower index.

    Args:
      g_KxK: float32 [K, K], the Gram matrix of the task gradients.
      present: bool [K].
      f: the number of Byzantine (outlying) gradients tolerated.
      selected: s, how many gradients are averaged (1 is Krum, more is Multi-Krum); fewer
        when fewer tasks are present.

    Returns:
      float32 [K], one-hot for s = 1; all 0 when no task is present.
    """
    present = present.astype(bool)
    n_tasks = g_KxK.shape[0]
    g_KxK = scaled_gram(g_KxK, present)
    diag_K = jnp.diagonal(g_KxK)
    d2_KxK = jnp.maximum(diag_K[:, None] + diag_K[None, :] - (g_KxK + g_KxK.T), 0.0)
    others = present[:, None] & present[None, :] & ~jnp.eye(n_tasks, dtype=bool)
    nearest_KxK = jnp.sort(jnp.where(others, d2_KxK, jnp.inf), axis=1)
    m = jnp.maximum(present.sum() - f - 2, 1)
    counted = (jnp.arange(n_tasks) < m)[None, :] & jnp.isfinite(nearest_KxK)
    score_K = jnp.where(present, jnp.sum(jnp.where(counted, nearest_KxK, 0.0), 1), jnp.inf)
    rank_K = jnp.argsort(jnp.argsort(score_K))
    chosen = present & (rank_K < selected)
    return jnp.where(chosen, 1.0 / jnp.maximum(chosen.sum(), 1), 0.0)


def krum(f: int = 1, selected: int = 1) -> Combiner:
    """Krum, a Byzantine-robust aggregator (Blanchard et al., NeurIPS 2017).

    "Machine learning with adversaries: Byzantine tolerant gradient descent".
    The update is the task gradient nearest to its m = n - f - 2 nearest others (Krum), or
    the mean of the `selected` best (Multi-Krum); distances come from G (`krum_weights`).
    total = sum_k stop_gradient(a_k) L_k with a one-hot (1 / selected each for Multi-Krum).

    Args:
      f: outlying gradients tolerated, f >= 0 (the theory wants n > 2 f + 2 tasks).
      selected: gradients averaged, >= 1.
    """
    if f < 0 or selected < 1:
        raise ValueError(f"krum: f must be >= 0 and selected >= 1, got f={f}, selected={selected}")

    return gram_weighting(
        "krum", lambda g_KxK, present: krum_weights(g_KxK, present, f=f, selected=selected)
    )


# ----------------------------------------------------------------------------------------
# GradVac


class GradVacState(NamedTuple):
    """GradVac's memory: the EMA target cosine of each ordered task pair."""

    target: jax.Array  # float32 [K, K], phi-hat_ij, the EMA of cos(g_i', g_j); 0 at the start


def gradvac_weights(
    g_KxK: jax.Array, target: jax.Array, present: jax.Array, key: jax.Array, *, beta: float
) -> tuple[jax.Array, jax.Array]:
    """GradVac's sequential pairwise adjustment, tracked as coefficients over the gradients.

    For each present task i, in its own random order of the other present tasks j (one
    permutation per task from `key`, drawn as `pcgrad` draws them): phi = cos(g_i', g_j);
    if phi < phi-hat_ij, g_i' += |g_i'| (phi-hat sqrt(1 - phi^2) - phi sqrt(1 - phi-hat^2)) /
    (|g_j| sqrt(1 - phi-hat^2)) g_j, which sets cos(g_i', g_j) to phi-hat_ij; then
    phi-hat_ij = (1 - beta) phi-hat_ij + beta phi. g_i' is kept as coefficients over the
    original gradients, so every inner product comes from G. Pairs with an absent task or a
    zero gradient are skipped and keep their target.

    Args:
      g_KxK: float32 [K, K], the Gram matrix of the task gradients.
      target: float32 [K, K], the state's phi-hat.
      present: bool [K].
      key: the order's randomness.
      beta: the EMA rate.

    Returns:
      (weights float32 [K], sum over present i of g_i''s coefficients; new target [K, K]).
    """
    present = present.astype(bool)
    n_tasks = g_KxK.shape[0]
    g_KxK = scaled_gram(g_KxK, present)
    eye_KxK = jnp.eye(n_tasks, dtype=jnp.float32)
    orders_KxK = jax.vmap(lambda k: jax.random.permutation(k, n_tasks))(
        jax.random.split(key, n_tasks)
    )
    norm_K = jnp.sqrt(jnp.maximum(jnp.diagonal(g_KxK), 0.0))

    def adjust(i, order_K, target_K):
        def body(carry, j):
            c_K, t_K = carry
            gc_K = gradient._dot(g_KxK, c_K)
            norm_i = jnp.sqrt(jnp.maximum(c_K @ gc_K, 0.0))
            valid = present[i] & present[j] & (j != i) & (norm_i > 0) & (norm_K[j] > 0)
            phi = jnp.clip(gradient._safe_div(gc_K[j], norm_i * norm_K[j]), -1.0, 1.0)
            hat = t_K[j]
            root_hat = jnp.sqrt(jnp.maximum(1.0 - hat**2, 0.0))
            step = norm_i * (hat * jnp.sqrt(jnp.maximum(1.0 - phi**2, 0.0)) - phi * root_hat)
            w = jnp.where(valid & (phi < hat), gradient._safe_div(step, norm_K[j] * root_hat), 0.0)
            t_K = t_K.at[j].set(jnp.where(valid, (1.0 - beta) * hat + beta * phi, hat))
            return (c_K + w * eye_KxK[j], t_K), None

        (c_K, t_K), _ = jax.lax.scan(body, (eye_KxK[i], target_K), order_K)
        return jnp.where(present[i], c_K, 0.0), t_K

    coefs_KxK, target = jax.vmap(adjust)(jnp.arange(n_tasks), orders_KxK, target)
    return jnp.where(present, coefs_KxK.sum(0), 0.0), target


def gradvac(beta: float = 0.5) -> Combiner:
    """Gradient Vaccine (Wang et al., ICLR 2021).

    "Gradient vaccine: investigating and improving multi-task optimization in massively
    multilingual models".
    Each task's gradient is moved toward every other's until their cosine reaches an EMA
    target (`gradvac_weights`); the update is the sum of the adjusted gradients, and total =
    sum_k stop_gradient(a_k) L_k. The targets start at 0, where the first step is exactly
    PCGrad's (same orders from the same key); they live in `GradVacState`. One target per
    task pair over all shared parameters (the paper also offers per-layer targets).

    Args:
      beta: EMA rate of the targets, 0 < beta <= 1 (the paper uses 1e-2; 0.5 as LibMTL).
    """
    if not 0 < beta <= 1:
        raise ValueError(f"gradvac: beta must be in (0, 1], got {beta}")

    def init(n_tasks: int) -> GradVacState:
        return GradVacState(target=jnp.zeros([n_tasks, n_tasks], jnp.float32))

    def gramian(g_KxK, state, *, present, key, **extra):
        del extra
        a_K, target = gradvac_weights(g_KxK, state.target, present, key, beta=beta)
        return a_K, GradVacState(target=target)

    def apply(losses, state, **kw):
        return gradient.gram_total(gramian, "gradvac", losses, state, **kw)

    return Combiner(init, apply, uses_grads=True, gramian=gramian)
