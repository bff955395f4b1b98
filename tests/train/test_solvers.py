"""MGDA's min-norm point and CAGrad's inner problem against exact float64 solutions.

The references are computed here in float64: MGDA's by enumerating every support (the
min-norm point of the hull is the affine min-norm point of some affinely independent set
of vertices, the solution of a bordered linear system), CAGrad's by SLSQP on the simplex
with tight tolerances from several starts. The solvers work in float32 from Gram matrices.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

import mtjax.train.losses as mtl
from mtjax.train.combiners import gradient

MGDA_TOL = 1e-5  # on the weights, where they are unique
CAGRAD_TOL = 1e-4  # on the objective, relative to its scale, and on the weights

# ----------------------------------------------------------------------------------------
# Exact references


def min_norm_reference(g_KxP: np.ndarray, present: np.ndarray) -> np.ndarray:
    """float64 weights of the min-norm point of the present rows' hull, by enumeration."""
    g = g_KxP.astype(np.float64)
    gram = g @ g.T
    index = np.flatnonzero(present)
    gram = gram / gram[index, index].max()  # the weights do not change
    best, best_w = np.inf, np.zeros(len(g))
    for size in range(1, len(index) + 1):
        for support in itertools.combinations(index, size):
            s = list(support)
            m = np.zeros([size + 1, size + 1])
            m[:size, :size] = gram[np.ix_(s, s)]
            m[:size, size] = m[size, :size] = 1.0
            if np.linalg.cond(m) > 1e12:
                continue  # affinely dependent: another support gives the same point
            v = np.linalg.solve(m, np.eye(size + 1)[size])[:size]
            if (v < -1e-12).any():
                continue
            w = np.zeros(len(g))
            w[s] = v
            value = w @ gram @ w
            if value < best:
                best, best_w = value, w
    return best_w


def cagrad_objective(w, g_KxP, present, c):
    """F(w) = g_w . g_0 + c ||g_0|| ||g_w|| in float64."""
    g = g_KxP.astype(np.float64)
    g0 = g[present].mean(0)
    u = w @ g
    return u @ g0 + c * np.linalg.norm(g0) * np.linalg.norm(u)


def cagrad_reference(g_KxP: np.ndarray, present: np.ndarray, c: float) -> np.ndarray:
    """float64 minimiser of CAGrad's F on the simplex of present tasks, by SLSQP."""
    g = g_KxP.astype(np.float64)[present]
    scale = np.max(np.sum(g * g, 1))
    g = g / np.sqrt(scale)  # the minimiser does not change
    gram, g0 = g @ g.T, g.mean(0)
    b, rho = g @ g0, c * np.linalg.norm(g0)
    n = len(g)

    def f(w):
        return w @ b + rho * np.sqrt(max(w @ gram @ w, 1e-300))

    def df(w):
        return b + rho * (gram @ w) / np.sqrt(max(w @ gram @ w, 1e-300))

    simplex = {"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(n)}
    rng = np.random.default_rng(0)
    starts = [np.full(n, 1.0 / n), *np.eye(n), *rng.dirichlet(np.ones(n), size=4)]
    best = None
    for start in starts:
        result = optimize.minimize(
            f,
            start,
            jac=df,
            method="SLSQP",
            bounds=[(0.0, 1.0)] * n,
            constraints=[simplex],
            options={"ftol": 1e-16, "maxiter": 2000},
        )
        if best is None or result.fun < best.fun:
            best = result
    assert best is not None
    w = np.zeros(len(g_KxP))
    w[present] = np.clip(best.x, 0.0, None) / np.clip(best.x, 0.0, None).sum()
    return w


# ----------------------------------------------------------------------------------------
# The solvers, jitted, from float32 gradients


def _gram32(g_KxP):
    g = jnp.asarray(g_KxP, jnp.float32)
    return jnp.matmul(g, g.T, precision=jax.lax.Precision.HIGHEST)


@jax.jit
def _min_norm(g_KxK, present):
    return gradient.min_norm_weights(g_KxK, present)


@jax.jit
def _conflict_averse(g_all, present, c):
    return gradient.conflict_averse_weights(
        g_all[:-1, :-1], g_all[:-1, -1], g_all[-1, -1], present, c=c
    )


def mgda_weights(g_KxP, present):
    return np.asarray(_min_norm(_gram32(g_KxP), jnp.asarray(present)), np.float64)


def cagrad_weights(g_KxP, present, c):
    g = np.asarray(g_KxP, np.float32)
    mean = g[present].sum(0, keepdims=True) / max(present.sum(), 1)  # as the combiner: 0 alone
    with_mean = np.concatenate([g, mean])
    w = _conflict_averse(_gram32(with_mean), jnp.asarray(present), jnp.float32(c))
    return np.asarray(w, np.float64)


@functools.cache
def _jitted(name, **kwargs):
    """d total / d losses of a built-in combiner, as a function of (present, grads), jitted."""
    comb = mtl.combiner_from_config(name, **kwargs)

    @jax.jit
    def run(present, grads):
        def total(losses):
            state = comb.init(present.shape[0])
            return comb.apply(losses, state, present=present, key=jax.random.key(0), grads=grads)

        return jax.grad(lambda losses: total(losses)[0])(jnp.ones(present.shape, jnp.float32))

    return run


def combiner_weights(name, g_KxP, present, **kwargs):
    """Task weights of the combiner `name` given these per-task gradients, under jit."""
    padded = np.zeros([len(g_KxP), 64], np.float32)  # zero columns: the same inner products,
    padded[:, : g_KxP.shape[1]] = g_KxP  # one compilation per K
    grads = {"w": jnp.asarray(padded)}
    return np.asarray(_jitted(name, **kwargs)(jnp.asarray(present), grads), np.float64)


# ----------------------------------------------------------------------------------------
# Cases


def _random(k, p, seed):
    rng = np.random.default_rng(seed)
    scales = np.exp(rng.uniform(-1.0, 1.0, size=(k, 1)))
    return (rng.normal(size=(k, p)) * scales).astype(np.float32)


def cases():
    """(name, gradients float32 [K, P], present, weights unique?)."""
    rng = np.random.default_rng(7)
    out = []
    for k in (2, 3, 5):
        g = _random(k, 40, k)
        g[0] *= 100.0  # a 100:1 norm ratio
        out.append((f"ratio100-k{k}", g, np.ones(k, bool), True))
        g = _random(k, 40, 10 + k)
        g[-1] *= 0.01
        out.append((f"ratio1to100-k{k}", g, np.ones(k, bool), True))
    for k in (2, 3, 4):
        g = _random(k, 30, 20 + k)
        g[1] = -1.02 * g[0] + 0.02 * np.linalg.norm(g[0]) / np.sqrt(30) * rng.normal(size=30)
        out.append((f"near-opposite-k{k}", g.astype(np.float32), np.ones(k, bool), True))
    base = _random(1, 25, 30)[0]
    out.append(("aligned-k2", np.stack([base, 3.0 * base]), np.ones(2, bool), True))
    aligned = np.stack([base, 2.0 * base, 0.5 * base + 1e-3 * _random(1, 25, 31)[0]])
    out.append(("aligned-k3", aligned.astype(np.float32), np.ones(3, bool), True))
    g = _random(5, 20, 40)
    g[1] *= 1e3  # an absent task's gradient, however large, does not count
    g[3] = -g[0]
    out.append(("absent-k5", g, np.array([True, False, True, False, True]), True))
    for k in range(2, 9):
        for seed in range(3):
            p = (k, 3 * k, 64)[seed]
            out.append((f"random-k{k}-s{seed}", _random(k, p, 100 * k + seed), None, True))
    # more tasks than dimensions: the origin can be in the hull, weights are not unique
    for k in (4, 6, 8):
        out.append((f"low-rank-k{k}", _random(k, 2, 200 + k), None, False))
    return [(n, g, np.ones(len(g), bool) if p is None else p, u) for n, g, p, u in out]


CASES = cases()
IDS = [c[0] for c in CASES]


# ----------------------------------------------------------------------------------------
# MGDA


@pytest.mark.parametrize("name,g,present,unique", CASES, ids=IDS)
def test_mgda_reaches_the_exact_min_norm_point(name, g, present, unique):
    w = mgda_weights(g, present)
    ref = min_norm_reference(g, present)
    assert (w[~present] == 0.0).all(), name
    assert (w >= 0).all() and abs(w.sum() - 1.0) < 1e-6, (name, w)
    g64 = g.astype(np.float64)
    top = np.max(np.sum(g64[present] ** 2, 1))
    value, best = np.sum((w @ g64) ** 2), np.sum((ref @ g64) ** 2)
    # the objective: within 1e-5 of its own size (or of the largest gradient's when ~0)
    assert abs(value - best) <= MGDA_TOL * max(best, 1e-3 * top), (name, value, best)
    if unique:
        np.testing.assert_allclose(w, ref, atol=MGDA_TOL, err_msg=name)
    # the combiner applies these weights (computing G leaf by leaf, it may round apart)
    through = combiner_weights("mgda", g, present)
    if unique:
        np.testing.assert_allclose(through, w, atol=1e-6, err_msg=name)
    else:
        assert abs(np.sum((through @ g64) ** 2) - best) <= MGDA_TOL * 1e-3 * top, name


def test_mgda_two_tasks_is_the_closed_form():
    # Sener & Koltun, Alg. 1: gamma = clip((g2 - g1) . g2 / ||g1 - g2||^2, 0, 1)
    rng = np.random.default_rng(3)
    for _ in range(20):
        g = rng.normal(size=(2, 6)).astype(np.float32)
        g[0] *= rng.uniform(0.1, 10.0)
        g64 = g.astype(np.float64)
        gamma = np.clip((g64[1] - g64[0]) @ g64[1] / np.sum((g64[0] - g64[1]) ** 2), 0, 1)
        np.testing.assert_allclose(mgda_weights(g, np.ones(2, bool)), [gamma, 1 - gamma], atol=1e-6)


@pytest.mark.parametrize("k", [2, 3, 6])
def test_mgda_no_task_gives_zero_and_one_task_gives_one(k):
    g = _random(k, 10, k)
    w = mgda_weights(g, np.zeros(k, bool))
    np.testing.assert_array_equal(w, 0.0)
    for alone in range(k):
        present = np.eye(k, dtype=bool)[alone]
        np.testing.assert_array_equal(mgda_weights(g, present), present.astype(float))
    w = combiner_weights("mgda", g, np.zeros(k, bool))
    np.testing.assert_array_equal(w, 0.0)


def test_mgda_solver_is_far_closer_than_frank_wolfe_for_five_tasks():
    # the finding: 25 Frank-Wolfe steps stopped up to 5e-2 from the min-norm point for K=5
    # (7.8e-2 on these twenty problems)
    worst = 0.0
    for seed in range(20):
        g = _random(5, 12, 300 + seed)
        present = np.ones(5, bool)
        worst = max(worst, np.abs(mgda_weights(g, present) - min_norm_reference(g, present)).max())
    assert worst < MGDA_TOL


# ----------------------------------------------------------------------------------------
# CAGrad


@pytest.mark.parametrize("c", [0.5, 0.9])
@pytest.mark.parametrize("name,g,present,unique", CASES, ids=IDS)
def test_cagrad_reaches_the_exact_optimum(name, g, present, unique, c):
    w = cagrad_weights(g, present, c)
    ref = cagrad_reference(g, present, c)
    assert (w[~present] == 0.0).all(), name
    assert (w >= 0).all() and abs(w.sum() - 1.0) < 1e-6, (name, w)
    g64 = g.astype(np.float64)
    # F's scale: max_k ||g_k|| ||g_0|| bounds |F| / (1 + c)
    scale = np.sqrt(np.max(np.sum(g64[present] ** 2, 1))) * np.linalg.norm(g64[present].mean(0))
    value, best = cagrad_objective(w, g, present, c), cagrad_objective(ref, g, present, c)
    assert abs(value - best) <= CAGRAD_TOL * scale, (name, value, best, scale)
    if unique:
        np.testing.assert_allclose(w, ref, atol=CAGRAD_TOL, err_msg=name)


@pytest.mark.parametrize("name,g,present,unique", CASES, ids=IDS)
def test_cagrad_update_is_the_papers(name, g, present, unique):
    # d = (g_0 + c ||g_0|| / ||g_w|| g_w) / (1 + c^2), with w the exact minimiser
    c = 0.5
    a = combiner_weights("cagrad", g, present, c=c)
    assert (a[~present] == 0.0).all(), name
    g64 = g.astype(np.float64)
    g0 = g64[present].mean(0)
    u = cagrad_reference(g, present, c) @ g64
    d = (g0 + c * np.linalg.norm(g0) / np.linalg.norm(u) * u) / (1 + c**2)
    # the direction is as exact as float32 gradients allow: near-opposite gradients have a
    # small g_0 and g_w, so float32 rounding of G moves it by up to ~1e-4 there
    tol = 5e-4 if name.startswith("near-opposite") else CAGRAD_TOL
    assert np.linalg.norm(a @ g64 - d) <= tol * np.linalg.norm(d), (name, a @ g64, d)


def test_cagrad_settles_where_the_old_solver_returned_the_uniform_start():
    # similar norms, mild conflict: the old rescaled steps stayed at w = 1/3 here, a = 0.4
    # each (1.2x the mean gradient), 17 % off the exact update
    rng = np.random.default_rng(8)
    g = rng.normal(size=(3, 16))
    g = (g / np.linalg.norm(g, axis=1, keepdims=True)).astype(np.float32)
    present, c = np.ones(3, bool), 0.5
    ref = cagrad_reference(g, present, c)
    assert np.abs(ref - 1 / 3).max() > 0.1  # the uniform start is not the answer
    np.testing.assert_allclose(cagrad_weights(g, present, c), ref, atol=CAGRAD_TOL)
    a, g64 = combiner_weights("cagrad", g, present, c=c), g.astype(np.float64)
    g0, u = g64.mean(0), ref @ g64
    d = (g0 + c * np.linalg.norm(g0) / np.linalg.norm(u) * u) / (1 + c**2)
    assert np.linalg.norm(a @ g64 - d) <= CAGRAD_TOL * np.linalg.norm(d)
    assert np.abs(a - 0.4).max() > 0.05


@pytest.mark.parametrize("k", [2, 4])
def test_cagrad_no_task_gives_zero_and_one_task_the_papers_scale(k):
    g = _random(k, 10, k)
    c = 0.5
    np.testing.assert_array_equal(cagrad_weights(g, np.zeros(k, bool), c), 0.0)
    np.testing.assert_array_equal(combiner_weights("cagrad", g, np.zeros(k, bool), c=c), 0.0)
    for alone in range(k):
        present = np.eye(k, dtype=bool)[alone]
        np.testing.assert_array_equal(cagrad_weights(g, present, c), present.astype(float))
        # one task: d = (g + c g) / (1 + c^2)
        np.testing.assert_allclose(
            combiner_weights("cagrad", g, present, c=c),
            present * (1 + c) / (1 + c**2),
            rtol=1e-6,
        )
