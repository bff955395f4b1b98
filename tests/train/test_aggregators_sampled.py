"""SDMGrad and MoDo as task weights, against exact float64 references.

Each runs as a Combiner under jit, its task weights read back as d total / d losses, on
K = 7 task slots: a case with fewer tasks leaves the rest absent, holding large gradients
that must not count. SDMGrad's QP is solved here in float64 from the shifted gradients
themselves by enumerating active sets; MoDo's steps are replayed in float64 with a
bisection projection onto the simplex.
"""

from __future__ import annotations

import functools
import itertools

import gram_cases
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtjax.train.combiners import aggregators_sampled as sampled
from mtjax.train.combiners import gradient

K, P = 7, 48
TOL = 1e-4  # on weights, and on directions relative to the reference's norm
FACTORIES = {"sdmgrad": sampled.sdmgrad, "modo": sampled.modo}


weights = gram_cases.weights_of(FACTORIES, K, P)


_random = gram_cases.random_gradients


def _cases():
    rng = np.random.default_rng(5)
    out = []
    for k in (3, 6):
        g = _random(k, 40, k)
        g[0] *= 100.0
        out.append((f"ratio100-k{k}", g))
    for k in (3, 5):
        g = _random(k, 40, 10 + k)
        g[1:] /= 100.0  # one large gradient, the others 100 times smaller
        out.append((f"ratio1to100-k{k}", g))
    for k in (2, 4):
        g = _random(k, 30, 20 + k)
        g[1] = -1.02 * g[0] + 0.02 * np.linalg.norm(g[0]) / np.sqrt(30) * rng.normal(size=30)
        out.append((f"near-opposite-k{k}", g))
    for k in (2, 3):
        g = _random(k, 30, 60 + k)
        g[1] = 3.0 * g[0] + 0.05 * np.linalg.norm(g[0]) / np.sqrt(30) * rng.normal(size=30)
        out.append((f"near-parallel-k{k}", g))
    out.append(("conflicting-k3", np.array([[1.0, 0.0, 0.0], [-0.9, 0.5, 0.0], [-0.2, -1.0, 0.3]])))
    for k, p, seed in ((2, 5, 0), (4, 5, 1), (5, 6, 2), (6, 40, 3)):
        out.append((f"random-k{k}-p{p}", _random(k, p, 100 + seed)))
    return [(n, g.astype(np.float32)) for n, g in out]


CASES = _cases()
IDS = [c[0] for c in CASES]


def _all(g):
    return np.ones(len(g), bool)


def _projection_reference(v):
    """float64 projection onto the simplex, by bisection on the threshold."""
    low, high = v.min() - 1.0, v.max()
    for _ in range(200):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if np.maximum(v - mid, 0.0).sum() > 1.0 else (low, mid)
    return np.maximum(v - 0.5 * (low + high), 0.0)


def _sorted_projection(v):
    """float64 projection onto the simplex, sort-based (fast, for long loops)."""
    u = np.sort(v)[::-1]
    cum = np.cumsum(u) - 1.0
    r = np.flatnonzero(u * np.arange(1, len(v) + 1) > cum)[-1]
    return np.maximum(v - cum[r] / (r + 1), 0.0)


# ----------------------------------------------------------------------------------------
# SDMGrad


def _min_norm_reference(points):
    """float64 argmin |sum_k w_k p_k|^2 over the simplex, by enumerating the support."""
    h = points @ points.T
    h = h / h.diagonal().max()
    n = len(points)
    best, best_w = np.inf, None
    for size in range(1, n + 1):
        for support in itertools.combinations(range(n), size):
            s = list(support)
            kkt = np.block([[h[np.ix_(s, s)], np.ones([size, 1])], [np.ones([1, size]), 0.0]])
            sol = np.linalg.lstsq(kkt, np.r_[np.zeros(size), 1.0], rcond=1e-13)[0]
            w = np.zeros(n)
            w[s] = sol[:size]
            if (w < -1e-12).any() or ((h @ w) < w @ h @ w - 1e-10).any():
                continue  # not a KKT point
            if w @ h @ w < best - 1e-15:
                best, best_w = w @ h @ w, w
    assert best_w is not None
    return best_w


def _sdmgrad_reference(g, lam):
    g64 = g.astype(np.float64)
    g0 = g64.mean(0)
    w = _min_norm_reference(g64 + lam * g0)
    return (w + lam / len(g)) / (1.0 + lam)


@pytest.mark.parametrize("lam", [0.3, 2.0])
@pytest.mark.parametrize("name,g", CASES, ids=IDS)
def test_sdmgrad_solves_its_qp_exactly(name, g, lam):
    # measured: directions within 1e-5 of |d_ref|, weights within 3e-5 (ratio cases)
    g64 = g.astype(np.float64)
    ref = _sdmgrad_reference(g, lam)
    a = weights("sdmgrad", g, _all(g), lam=lam)
    d, d_ref = a @ g64, ref @ g64
    assert np.linalg.norm(d - d_ref) <= TOL * np.linalg.norm(d_ref), name
    np.testing.assert_allclose(a, ref, atol=TOL, err_msg=name)
    assert abs(a.sum() - 1.0) <= 1e-5 and (a >= lam / len(g) / (1 + lam) - 1e-6).all()


@pytest.mark.parametrize("name", ["conflicting-k3", "random-k4-p5"])
def test_sdmgrad_is_the_limit_of_the_papers_projected_gradient_steps(name):
    # Algorithm 1's inner loop, w <- Proj(w - beta G^T (G w + lam g0)), on the paper's
    # objective as written (no use of sum w = 1), run to convergence in float64
    g = dict(CASES)[name]
    g64, lam = g.astype(np.float64), 0.3
    jac, g0 = (
        g64 / np.linalg.norm(g64, axis=1).max(),
        g64.mean(0) / np.linalg.norm(g64, axis=1).max(),
    )
    beta = 1.0 / np.linalg.eigvalsh(jac @ jac.T).max()
    w = np.full(len(g), 1.0 / len(g))
    for _ in range(20000):
        w = _sorted_projection(w - beta * jac @ (jac.T @ w + lam * g0))
    ref = (w + lam / len(g)) / (1.0 + lam)
    np.testing.assert_allclose(weights("sdmgrad", g, _all(g), lam=lam), ref, atol=TOL)


def test_sdmgrad_by_hand_on_two_orthogonal_gradients():
    # g1 = (1, 0), g2 = (0, 2), lam = 0.3: g0 = (0.5, 1), shifted p1 = (1.15, 0.3),
    # p2 = (0.15, 2.3); w1 = (p2.p2 - p1.p2) / |p1 - p2|^2 = (5.3125 - 0.8625) / 5 = 0.89;
    # a = (w + 0.15) / 1.3 = (0.8, 0.2)
    g = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
    np.testing.assert_allclose(weights("sdmgrad", g, _all(g)), [0.8, 0.2], rtol=1e-6)
    # the two-task closed form (two slots) gives the same
    gram = jnp.asarray(g @ g.T)
    a2 = jax.jit(functools.partial(sampled.sdmgrad_weights, lam=0.3))(gram, jnp.ones(2, bool))
    np.testing.assert_allclose(np.asarray(a2), [0.8, 0.2], rtol=1e-6)


@pytest.mark.parametrize("name,g", [CASES[0], CASES[-1]], ids=[IDS[0], IDS[-1]])
def test_sdmgrad_ends_are_mgda_and_the_mean(name, g):
    gram = jnp.asarray(g.astype(np.float64) @ g.T.astype(np.float64), jnp.float32)
    mgda = np.asarray(gradient.min_norm_weights(gram, jnp.ones(len(g), bool)))
    np.testing.assert_allclose(weights("sdmgrad", g, _all(g), lam=0.0), mgda, atol=1e-6)
    mean = np.full(len(g), 1.0 / len(g))
    np.testing.assert_allclose(weights("sdmgrad", g, _all(g), lam=1e5), mean, atol=1e-4)


# ----------------------------------------------------------------------------------------
# MoDo


def test_simplex_projection_is_exact():
    rng = np.random.default_rng(0)
    project = jax.jit(sampled.simplex_projection)
    for trial in range(30):
        v = rng.normal(size=K) * 10.0 ** rng.integers(-3, 3)
        if trial % 3 == 0:
            v[:3] = v[0]  # ties
        present = rng.random(K) < 0.7
        present[trial % K] = True
        w = np.asarray(project(jnp.asarray(v, jnp.float32), jnp.asarray(present)), np.float64)
        ref = np.zeros(K)
        ref[present] = _projection_reference(v.astype(np.float32).astype(np.float64)[present])
        np.testing.assert_allclose(w, ref, atol=1e-6 * max(1.0, np.abs(v).max()), err_msg=trial)
        assert (w[~present] == 0.0).all() and abs(w.sum() - 1.0) <= 1e-6
    assert (np.asarray(project(jnp.ones(K), jnp.zeros(K, bool))) == 0.0).all()


def test_modo_by_hand_one_step():
    # G = diag(1, 4), lambda = (1/2, 1/2), gamma = 0.1: lambda - 0.1 G lambda = (0.45, 0.3);
    # theta = (0.75 - 1) / 2, so lambda' = (0.575, 0.425)
    g = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
    comb = sampled.modo(gamma=0.1)
    state = sampled.MoDoState(weights=jnp.array([0.5, 0.5] + [0.0] * (K - 2), jnp.float32))
    a, state, _ = weights("modo", g, _all(g), state=state, full=True, gamma=0.1)
    np.testing.assert_allclose(a, [0.575, 0.425], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(state.weights)[:2], [0.575, 0.425], rtol=1e-6)
    init = np.asarray(comb.init(4).weights)
    assert init.dtype == np.float32 and (init == 0.25).all()


def test_modo_three_step_state_trace_with_an_absent_task():
    rng = np.random.default_rng(3)
    gammas_rhos = [(0.1, 0.0), (0.05, 0.5)]
    for gamma, rho in gammas_rhos:
        w64 = np.full(K, 1.0 / K)
        state = None
        presents = [np.ones(4, bool), np.array([True, False, True, True]), np.ones(4, bool)]
        for step, present in enumerate(presents):
            g = (rng.normal(size=(4, 8)) * np.array([[3.0], [1.0], [0.3], [1.0]])).astype(
                np.float32
            )
            a, state, total = weights(
                "modo", g, present, state=state, full=True, gamma=gamma, rho=rho
            )
            # float64 replay: renormalise the present weights, step, project
            g64, mask = g.astype(np.float64)[present], np.flatnonzero(present)
            view = w64[mask] / w64[mask].sum()
            new = _projection_reference(view - gamma * (g64 @ g64.T @ view + rho * view))
            w64[mask] = new
            ref = np.zeros(4)
            ref[mask] = new
            np.testing.assert_allclose(a, ref, atol=1e-6, err_msg=f"step {step}")
            np.testing.assert_allclose(np.asarray(state.weights), w64, atol=1e-6)
            assert abs(float(total) - ref.sum()) <= 1e-5  # the losses are all 1
        # the absent task (slot 1 at step 2) held its weight through that step
        assert np.isclose(w64[4:], 1.0 / K).all()


def test_modo_state_round_trips_through_numpy():
    g = _random(3, 10, 4).astype(np.float32)
    _, s1, _ = weights("modo", g, _all(g), full=True)
    a2, s2, _ = weights("modo", g, _all(g), state=s1, full=True)
    saved = {k: np.asarray(v) for k, v in s1._asdict().items()}
    restored = sampled.MoDoState(**{k: jnp.asarray(v) for k, v in saved.items()})
    b2, t2, _ = weights("modo", g, _all(g), state=restored, full=True)
    np.testing.assert_array_equal(a2, b2)
    np.testing.assert_array_equal(np.asarray(s2.weights), np.asarray(t2.weights))


# ----------------------------------------------------------------------------------------
# Both: absent tasks, no task, one task, degenerate gradients, jit


@pytest.mark.parametrize("method", sorted(FACTORIES))
def test_absent_none_and_one_present_task(method):
    g = _random(4, 10, 7).astype(np.float32)
    # absent tasks are left out of the geometry, not fed zero gradients
    present = np.array([True, False, True, True])
    a = weights(method, g, present)
    assert a[1] == 0.0 and np.isfinite(a).all()
    # (MoDo: the first step renormalises 1/K over the three present tasks either way)
    sub = weights(method, g[present], _all(g[present]))
    np.testing.assert_allclose(a[present], sub, rtol=1e-5, atol=1e-6, err_msg=method)
    # no task present: total and weights exactly 0, state finite and unchanged
    a, state, total = weights(method, g, np.zeros(4, bool), full=True)
    assert total == 0.0 and (a == 0.0).all()
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state))
    if method == "modo":
        assert (np.asarray(state.weights) == np.float32(1.0 / K)).all()
    for alone in range(4):
        a = weights(method, g, np.eye(4, dtype=bool)[alone])
        assert a[alone] == pytest.approx(1.0, abs=1e-6) and (np.delete(a, alone) == 0.0).all()


@pytest.mark.parametrize("method", sorted(FACTORIES))
def test_parallel_opposite_and_zero_gradients_stay_finite(method):
    v = _random(1, 6, 3)[0]
    for g in (
        np.stack([v, 2.0 * v, 0.5 * v]),  # exactly parallel
        np.stack([v, -v, 0.3 * v]),  # exactly opposite
        np.stack([v, 0.0 * v, -v + 0.1]),  # a zero gradient
        np.zeros([3, 6]),  # no gradient at all
        np.stack([1e4 * v, v, -v]),  # large: MoDo's step leaves the simplex far behind
    ):
        a, state, total = weights(method, g.astype(np.float32), _all(g), full=True)
        assert np.isfinite(a).all() and np.isfinite(total), (method, a)
        assert abs(a.sum() - 1.0) <= 1e-5 and (a >= 0).all(), (method, a)
        assert all(np.isfinite(x).all() for x in jax.tree.leaves(state))


@pytest.mark.parametrize("method", sorted(FACTORIES))
def test_jit_is_bitwise_repeatable(method):
    g = _random(3, 12, 9).astype(np.float32)
    g[1] = -0.7 * g[0] + 0.3 * g[1]
    first, second = weights(method, g, _all(g), key=3), weights(method, g, _all(g), key=3)
    np.testing.assert_array_equal(first, second)


def test_options_are_checked():
    for call, message in [
        (lambda: sampled.sdmgrad(lam=-0.1), "sdmgrad: lam must be >= 0"),
        (lambda: sampled.modo(gamma=0.0), "modo: gamma must be > 0 and rho >= 0"),
        (lambda: sampled.modo(rho=-1.0), "modo: gamma must be > 0 and rho >= 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            call()
    with pytest.raises(ValueError, match="modo needs grads="):
        sampled.modo().apply(jnp.ones([2]), sampled.MoDoState(jnp.ones(2)), present=jnp.ones(2))
