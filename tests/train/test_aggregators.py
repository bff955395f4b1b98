"""Gradient aggregators as task weights, against exact float64 references.

Every method runs as a Combiner under jit, its task weights read back as d total / d
losses, on K = 5 task slots: a case with fewer tasks leaves the rest absent, holding large
gradients that must not count. The references are computed here in float64 from the
gradients themselves (not from the Gram matrix): IMTL-G's closed form as the paper writes
it, ConFIG's pseudo-inverse direction, Aligned-MTL's SVD, Krum by brute force, GradVac's
loop on vectors, UPGrad's and DualProj's QPs by enumerating active sets, and Nash-MTL's and
FairGrad's equations by their residual.
"""

from __future__ import annotations

import itertools

import gram_cases
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtjax.train.combiners import aggregators as agg
from mtjax.train.combiners import aggregators_solved as solved
from mtjax.train.combiners import gradient

K, P = 5, 48
# on the weights or direction, relative to their largest entry or norm; "near" cases
# (cosines within 2e-3 of +-1) lose float32 digits in G itself
TOL, NEAR_TOL = 1e-4, 2e-3

FACTORIES = {
    "imtl_g": agg.imtl_g,
    "config": agg.config_,
    "aligned_mtl": agg.aligned_mtl,
    "krum": agg.krum,
    "gradvac": agg.gradvac,
    "upgrad": solved.upgrad,
    "dualproj": solved.dualproj,
    "nash_mtl": solved.nash_mtl,
    "fairgrad": solved.fairgrad,
}


weights = gram_cases.weights_of(FACTORIES, K, P)


# ----------------------------------------------------------------------------------------
# Cases: conflicting, near-opposite, near-parallel and unequal-norm gradients


_random = gram_cases.random_gradients


def _cases():
    rng = np.random.default_rng(5)
    out = []
    for k in (3, 5):
        g = _random(k, 40, k)
        g[0] *= 100.0
        out.append((f"ratio100-k{k}", g))
    for k in (2, 4):
        g = _random(k, 30, 20 + k)
        g[1] = -1.02 * g[0] + 0.02 * np.linalg.norm(g[0]) / np.sqrt(30) * rng.normal(size=30)
        out.append((f"near-opposite-k{k}", g))
    for k in (2, 3):
        g = _random(k, 30, 60 + k)
        g[1] = 3.0 * g[0] + 0.05 * np.linalg.norm(g[0]) / np.sqrt(30) * rng.normal(size=30)
        out.append((f"near-parallel-k{k}", g))
    g = np.array([[1.0, 0.0, 0.0], [-0.9, 0.5, 0.0], [-0.2, -1.0, 0.3]])
    out.append(("conflicting-k3", g))
    for k, p, seed in ((4, 5, 1), (5, 6, 2), (5, 40, 3)):
        out.append((f"random-k{k}-p{p}", _random(k, p, 100 + seed)))
    return [(n, g.astype(np.float32)) for n, g in out]


CASES = _cases()
IDS = [c[0] for c in CASES]


def _tol(name):
    return NEAR_TOL if name.startswith("near") else TOL


def _all(g):
    return np.ones(len(g), bool)


# ----------------------------------------------------------------------------------------
# Closed forms


@pytest.mark.parametrize("name,g", CASES, ids=IDS)
def test_imtl_g_is_the_papers_closed_form(name, g):
    # a_{2:K} = g_1 U^T (D U^T)^{-1}, D rows g_1 - g_k, U rows u_1 - u_k; a_1 = 1 - sum
    g64 = g.astype(np.float64)
    u = g64 / np.linalg.norm(g64, axis=1, keepdims=True)
    d, du = g64[0] - g64[1:], u[0] - u[1:]
    tail = g64[0] @ du.T @ np.linalg.inv(d @ du.T)
    ref = np.concatenate([[1.0 - tail.sum()], tail])
    a = weights("imtl_g", g, _all(g))
    np.testing.assert_allclose(a, ref, atol=_tol(name) * np.abs(ref).max(), err_msg=name)
    proj = u @ (a @ g64)  # equal projections on every unit gradient
    assert np.ptp(proj) <= _tol(name) * np.abs(a).max() * np.linalg.norm(g64, axis=1).max()


@pytest.mark.parametrize("name,g", CASES, ids=IDS)
def test_config_is_the_pseudo_inverse_direction_with_the_projection_length(name, g):
    g64 = g.astype(np.float64)
    u = g64 / np.linalg.norm(g64, axis=1, keepdims=True)
    best = np.linalg.pinv(u) @ np.ones(len(g))
    unit = best / np.linalg.norm(best)
    ref = np.sum(g64 @ unit) * unit
    d = weights("config", g, _all(g)) @ g64
    assert np.linalg.norm(d - ref) <= _tol(name) * np.linalg.norm(ref), name
    cos = u @ d / np.linalg.norm(d)
    assert np.ptp(cos) <= _tol(name) and cos.min() > 0, (name, cos)


@pytest.mark.parametrize("name,g", CASES, ids=IDS)
def test_aligned_mtl_is_the_procrustes_solution(name, g):
    # J = U S W^T: the aligned gradients are sigma_min U W^T's rows... as weights B 1,
    # B = sigma_min U S^{-1} U^T
    uu, s, _ = np.linalg.svd(g.astype(np.float64), full_matrices=False)
    b = uu @ np.diag(s.min() / s) @ uu.T
    aligned = b.T @ g.astype(np.float64)  # orthogonal rows of equal norm sigma_min
    np.testing.assert_allclose(aligned @ aligned.T, s.min() ** 2 * np.eye(len(g)), atol=1e-9)
    a = weights("aligned_mtl", g, _all(g))
    np.testing.assert_allclose(a, b.sum(1), atol=TOL * np.abs(b.sum(1)).max(), err_msg=name)
    # "rmse": the aligned norm is the root mean square singular value
    a = weights("aligned_mtl", g, _all(g), scale="rmse")
    ref = uu @ np.diag(np.sqrt(np.mean(s**2)) / s) @ uu.T @ np.ones(len(g))
    np.testing.assert_allclose(a, ref, atol=_tol(name) * np.abs(ref).max(), err_msg=name)


def test_aligned_mtl_by_hand_on_orthogonal_unequal_gradients():
    g = np.array([[2.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 1.0]], np.float32)
    # G = diag(4, 0.25, 1): B = 0.5 diag(1/2, 2, 1), every aligned gradient has norm 0.5
    np.testing.assert_allclose(weights("aligned_mtl", g, _all(g)), [0.25, 1.0, 0.5], rtol=1e-6)


def _krum_reference(g, f, selected):
    g = g.astype(np.float64)
    n = len(g)
    m = max(n - f - 2, 1)
    scores = [
        sum(sorted(np.sum((g[i] - g[j]) ** 2) for j in range(n) if j != i)[:m]) for i in range(n)
    ]
    chosen = np.argsort(scores, kind="stable")[:selected]
    out = np.zeros(n)
    out[chosen] = 1.0 / len(chosen)
    return out


@pytest.mark.parametrize("f,selected", [(0, 1), (1, 1), (1, 2), (2, 3)])
def test_krum_chooses_as_brute_force(f, selected):
    rng = np.random.default_rng(f + 10 * selected)
    for trial in range(4):
        g = rng.normal(size=(5, 8)).astype(np.float32)
        g[trial % 5] *= 20.0  # an outlier is never chosen
        a = weights("krum", g, _all(g), f=f, selected=selected)
        np.testing.assert_allclose(a, _krum_reference(g, f, selected), rtol=1e-7)
        assert a[trial % 5] == 0.0
    # three present of five: m = max(3 - f - 2, 1) nearest
    g = rng.normal(size=(5, 8)).astype(np.float32)
    present = np.array([True, False, True, True, False])
    a = weights("krum", g, present, f=f, selected=selected)
    ref = np.zeros(5)
    ref[present] = _krum_reference(g[present], f, selected)
    np.testing.assert_allclose(a, ref, rtol=1e-7)


# ----------------------------------------------------------------------------------------
# GradVac


def _orders(key, n_tasks):
    return np.asarray(
        jax.vmap(lambda k: jax.random.permutation(k, n_tasks))(
            jax.random.split(jax.random.key(key), n_tasks)
        )
    )


def _gradvac_reference(g, present, orders, target, beta):
    g, target = g.astype(np.float64), target.astype(np.float64).copy()
    total = np.zeros(g.shape[1])
    for i in np.flatnonzero(present):
        gi = g[i].copy()
        for j in orders[i]:
            if j == i or not present[j]:
                continue
            rho = gi @ g[j] / (np.linalg.norm(gi) * np.linalg.norm(g[j]))
            t = target[i, j]
            if rho < t:
                w = np.linalg.norm(gi) * (t * np.sqrt(1 - rho**2) - rho * np.sqrt(1 - t**2))
                gi = gi + w / (np.linalg.norm(g[j]) * np.sqrt(1 - t**2)) * g[j]
            target[i, j] = (1 - beta) * t + beta * rho
        total += gi
    return total, target


@pytest.mark.parametrize("name,g", [c for c in CASES if len(c[1]) >= 3], ids=lambda x: x)
def test_gradvac_follows_the_papers_loop_over_steps(name, g):
    present = np.ones(K, bool)
    present[len(g) :] = False
    g64 = np.zeros([K, g.shape[1]])
    g64[: len(g)] = g
    state, target = None, np.zeros([K, K])
    for step in range(3):
        a, state, _ = weights("gradvac", g, _all(g), key=step, state=state, full=True)
        ref, target = _gradvac_reference(g64, present, _orders(step, K), target, 0.5)
        tol = _tol(name) * np.abs(g64 @ g64.T).max()
        assert np.linalg.norm(a @ g64[: len(g)] - ref) <= tol, (name, step)
        np.testing.assert_allclose(state.target, target, atol=10 * _tol(name), err_msg=name)


@jax.jit
def _pcgrad_weights(grads, key):
    def total(x):
        return gradient.pcgrad().apply(x, (), present=jnp.arange(K) < 3, key=key, grads=grads)[0]

    return jax.grad(total)(jnp.ones([K]))


def test_gradvac_first_step_is_pcgrad_and_the_order_comes_from_the_key():
    g = np.array([[1.0, 0.0], [-0.8, 1.0], [-0.5, -1.0]], np.float32)
    padded = np.zeros([K, 2], np.float32)
    padded[:3] = g
    for seed in range(4):
        ref = _pcgrad_weights({"w": jnp.asarray(padded)}, jax.random.key(seed))
        a = weights("gradvac", g, _all(g), key=seed)
        np.testing.assert_allclose(a, np.asarray(ref)[:3], rtol=1e-5)
    results = {tuple(np.round(weights("gradvac", g, _all(g), key=s), 5)) for s in range(8)}
    assert len(results) > 1


# ----------------------------------------------------------------------------------------
# UPGrad and DualProj: QPs on the dual cone


def _lower_bounded_reference(g, lower):
    """float64 argmin v^T G v subject to v >= lower, by enumerating the free set."""
    gram = g.astype(np.float64) @ g.astype(np.float64).T
    gram = gram / gram.diagonal().max()
    n = len(g)
    best, best_v = np.inf, None
    for size in range(n + 1):
        for free in itertools.combinations(range(n), size):
            f, bound = list(free), [j for j in range(n) if j not in free]
            v = lower.astype(np.float64).copy()
            if f:
                rhs = -gram[np.ix_(f, bound)] @ lower[bound]
                v[f] = np.linalg.lstsq(gram[np.ix_(f, f)], rhs, rcond=1e-13)[0]
            if (v < lower - 1e-10).any() or (gram @ v < -1e-9).any():
                continue  # not a KKT point
            if v @ gram @ v < best - 1e-15:
                best, best_v = v @ gram @ v, v
    assert best_v is not None
    return best_v


@pytest.mark.parametrize("name,g", CASES, ids=IDS)
def test_upgrad_and_dualproj_solve_their_qps_exactly(name, g):
    g64, n = g.astype(np.float64), len(g)
    refs = {
        "upgrad": sum(_lower_bounded_reference(g, np.eye(n)[i]) for i in range(n)) / n,
        "dualproj": _lower_bounded_reference(g, np.full(n, 1.0 / n)),
    }
    for method, ref in refs.items():
        a = weights(method, g, _all(g))
        d, d_ref = a @ g64, ref @ g64
        assert np.linalg.norm(d - d_ref) <= TOL * np.linalg.norm(d_ref), (method, name)
        np.testing.assert_allclose(a, ref, atol=TOL * np.abs(ref).max(), err_msg=method + name)
        # the direction conflicts with no task
        cos = g64 @ d / (np.linalg.norm(g64, axis=1) * np.linalg.norm(d))
        assert cos.min() >= -TOL, (method, name, cos)


@jax.jit
def _dual_cone(gram, lower):
    return solved.lower_bounded_min_norm(gram, lower, jnp.ones(gram.shape[0], bool))


def test_dual_cone_solver_on_many_conflicting_tasks():
    # eight tasks in twelve dimensions, three pairs nearly opposite, norms over e^2: many
    # active-set changes. (With more tasks than dimensions and near-singular free sets,
    # float32 G can hold too few digits to pick the active set.)
    rng = np.random.default_rng(11)
    worst = 0.0
    for trial in range(4):
        g = _random(8, 12, 500 + trial)
        g[1:7:2] = -0.9 * g[0:6:2] + 0.1 * rng.normal(size=(3, 12))
        g = g.astype(np.float32)
        gram = jnp.matmul(g, g.T, precision="highest")
        g64 = g.astype(np.float64)
        for i in range(8):
            lower = np.eye(8)[i]
            v = np.asarray(_dual_cone(gram, jnp.asarray(lower, jnp.float32)), np.float64)
            ref = _lower_bounded_reference(g, lower)
            worst = max(worst, np.linalg.norm((v - ref) @ g64) / np.linalg.norm(ref @ g64))
    assert worst <= TOL, worst


def test_dual_cone_solver_with_duplicate_parallel_and_opposite_gradients():
    # G singular: a duplicated or doubled gradient, an exactly opposite one, a near-opposite
    # pair; the direction is unique, the weights need not be
    rng = np.random.default_rng(0)
    worst = 0.0
    for trial in range(8):
        g = rng.normal(size=(5, 10))
        g[1] = g[0] * (1.0 if trial % 2 else 2.0)
        g[3] = -0.8 * g[2] + 0.05 * rng.normal(size=10)
        if trial % 3 == 0:
            g[4] = -g[0]
        g = g.astype(np.float32)
        gram, g64 = jnp.matmul(g, g.T, precision="highest"), g.astype(np.float64)
        for i in range(5):
            lower = np.eye(5)[i]
            v = np.asarray(_dual_cone(gram, jnp.asarray(lower, jnp.float32)), np.float64)
            assert np.isfinite(v).all() and (v >= lower).all()
            ref = _lower_bounded_reference(g, lower)
            # relative to the projected gradient (the projection can be ~0 here)
            worst = max(worst, np.linalg.norm((v - ref) @ g64) / np.linalg.norm(g64[i]))
    assert worst <= TOL, worst


# ----------------------------------------------------------------------------------------
# Nash-MTL and FairGrad: G w = w^(-1/alpha)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("name,g", CASES, ids=IDS)
def test_fairgrad_and_nash_mtl_solve_their_equation(name, g, alpha):
    g64 = g.astype(np.float64)
    gram = g64 @ g64.T
    w = weights("fairgrad", g, _all(g), alpha=alpha)
    assert (w > 0).all(), (name, w)
    residual = np.abs(gram @ w * w ** (1 / alpha) - 1.0).max()  # relative to w^(-1/alpha)
    # float32 G of condition number up to ~200 ("conflicting-k3") allows 5e-4; near-opposite
    # gradients make G nearly singular, where RIDGE (1e-6) bounds the accuracy
    assert residual <= (2e-2 if "opposite" in name else 5e-4), (name, residual)
    if alpha == 1.0:
        np.testing.assert_allclose(weights("nash_mtl", g, _all(g)), w, rtol=1e-6)
        # the Nash bargaining update has norm sqrt(K)
        if "opposite" not in name:
            assert abs(w @ gram @ w - len(g)) <= 5e-4 * len(g)


def test_fairgrad_by_hand_on_orthogonal_gradients():
    g = np.array([[2.0, 0.0], [0.0, 0.5]], np.float32)
    for alpha in (0.5, 1.0, 3.0):
        # G_kk w_k = w_k^(-1/alpha): w_k = G_kk^(-alpha / (1 + alpha))
        ref = np.array([4.0, 0.25]) ** (-alpha / (1 + alpha))
        np.testing.assert_allclose(weights("fairgrad", g, _all(g), alpha=alpha), ref, rtol=1e-5)
    np.testing.assert_allclose(weights("nash_mtl", g, _all(g)), [0.5, 2.0], rtol=1e-5)


# ----------------------------------------------------------------------------------------
# Every method: absent tasks, no task, one task, degenerate gradients, jit


ALONE = {  # the weight of a task present alone, with gradient g
    "imtl_g": lambda g: 1.0,
    "config": lambda g: 1.0,
    "aligned_mtl": lambda g: 1.0,
    "krum": lambda g: 1.0,
    "gradvac": lambda g: 1.0,
    "upgrad": lambda g: 1.0,
    "dualproj": lambda g: 1.0,
    "nash_mtl": lambda g: 1.0 / np.linalg.norm(g),
    "fairgrad": lambda g: np.sum(g.astype(np.float64) ** 2) ** -0.5,
}


@pytest.mark.parametrize("method", sorted(FACTORIES))
def test_absent_none_and_one_present_task(method):
    g = _random(4, 10, 7).astype(np.float32)
    # absent tasks are left out of the geometry, not fed zero gradients
    present = np.array([True, False, True, True])
    a = weights(method, g, present)
    assert a[1] == 0.0 and np.isfinite(a).all()
    sub = weights(method, g[present], _all(g[present]))
    np.testing.assert_allclose(a[present], sub, rtol=1e-4, atol=1e-5, err_msg=method)
    # no task present: total and weights exactly 0, state finite
    a, state, total = weights(method, g, np.zeros(4, bool), full=True)
    assert total == 0.0 and (a == 0.0).all()
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state))
    for alone in range(4):
        a = weights(method, g, np.eye(4, dtype=bool)[alone])
        np.testing.assert_allclose(a[alone], ALONE[method](g[alone]), rtol=1e-5, err_msg=method)
        assert (np.delete(a, alone) == 0.0).all()


@pytest.mark.parametrize("method", sorted(FACTORIES))
def test_parallel_opposite_and_zero_gradients_stay_finite(method):
    v = _random(1, 6, 3)[0]
    for g in (
        np.stack([v, 2.0 * v, 0.5 * v]),  # exactly parallel
        np.stack([v, -v, 0.3 * v]),  # exactly opposite
        np.stack([v, 0.0 * v, -v + 0.1]),  # a zero gradient
    ):
        a, state, total = weights(method, g.astype(np.float32), _all(g), full=True)
        assert np.isfinite(a).all() and np.isfinite(total), (method, a)
        assert all(np.isfinite(x).all() for x in jax.tree.leaves(state))
    g = np.stack([v, 2.0 * v, 0.5 * v]).astype(np.float32)
    if method in ("imtl_g", "config", "upgrad", "dualproj", "gradvac"):
        # no conflict at all: the same direction as the sum
        d = weights(method, g, _all(g)) @ g.astype(np.float64)
        assert d @ v > 0 and np.linalg.norm(np.cross(d[:3], v[:3])) <= 1e-4 * np.linalg.norm(d)
    if method == "imtl_g":
        assert abs(weights(method, g, _all(g)).sum() - 1.0) <= 1e-5


@pytest.mark.parametrize("method", sorted(FACTORIES))
def test_jit_is_bitwise_repeatable(method):
    g = _random(3, 12, 9).astype(np.float32)
    g[1] = -0.7 * g[0] + 0.3 * g[1]
    first, second = weights(method, g, _all(g), key=3), weights(method, g, _all(g), key=3)
    np.testing.assert_array_equal(first, second)


def test_options_are_checked():
    for call, message in [
        (lambda: agg.aligned_mtl(scale="median"), "aligned_mtl: scale must be 'min' or 'rmse'"),
        (lambda: agg.krum(f=-1), "krum: f must be >= 0"),
        (lambda: agg.gradvac(beta=0.0), r"gradvac: beta must be in \(0, 1\]"),
        (lambda: solved.fairgrad(alpha=0.0), "fairgrad: alpha must be > 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            call()
    with pytest.raises(ValueError, match="upgrad needs grads="):
        solved.upgrad().apply(jnp.ones([2]), (), present=jnp.ones([2], bool))
