"""MoCo: hand-computed steps, absent tasks, no task present, jit, and a float64 replay."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mtjax as mt
from mtjax.train.combiners import catalogue
from mtjax.train.combiners import tracking as moco_


def _grads(rows):
    """The task gradients as a two-leaf pytree {"a": [K, 1], "b": [K, 1]}."""
    g = np.asarray(rows, np.float32)
    return {"a": jnp.asarray(g[:, :1]), "b": jnp.asarray(g[:, 1:])}


SHARED = {"a": jnp.zeros(1), "b": jnp.zeros(1)}


def _step(comb, grads, state, present):
    update, state, weights = comb.aggregate(
        grads, state, losses=jnp.ones(len(present)), present=jnp.asarray(present), key=None
    )
    return update, state, weights


def test_two_hand_computed_steps():
    comb = moco_.moco(beta=0.5, gamma=0.1, rho=0.0)
    state = comb.init(2, shared=SHARED)
    grads = _grads([[1.0, 0.0], [0.0, 2.0]])
    # step 1: y = 0.5 g = (0.5, 0), (0, 1); Y Y^T = diag(0.25, 1); lambda - 0.1 Y Y^T lambda
    # = (0.4875, 0.45), projected: + 0.03125 each = (0.51875, 0.48125)
    update, state, weights = _step(comb, grads, state, [True, True])
    np.testing.assert_allclose(weights, [0.51875, 0.48125], rtol=1e-6)
    np.testing.assert_allclose(state.weights, [0.51875, 0.48125], rtol=1e-6)
    np.testing.assert_allclose(state.tracked["a"], [[0.5], [0.0]])
    np.testing.assert_allclose(state.tracked["b"], [[0.0], [1.0]])
    np.testing.assert_allclose(update["a"], [0.5 * 0.51875], rtol=1e-6)
    np.testing.assert_allclose(update["b"], [0.48125], rtol=1e-6)
    # step 2: y = (0.75, 0), (0, 1.5); Y Y^T = diag(0.5625, 2.25); the step gives
    # (0.4895703125, 0.37296875), projected: + 0.06873046875 each
    update, state, weights = _step(comb, grads, state, [True, True])
    np.testing.assert_allclose(weights, [0.55830078125, 0.44169921875], rtol=1e-6)
    np.testing.assert_allclose(state.tracked["a"], [[0.75], [0.0]])
    np.testing.assert_allclose(state.tracked["b"], [[0.0], [1.5]])
    np.testing.assert_allclose(update["a"], [0.75 * 0.55830078125], rtol=1e-6)
    np.testing.assert_allclose(update["b"], [1.5 * 0.44169921875], rtol=1e-6)


def test_an_absent_task_weighs_0_keeps_its_estimate_and_stays_out_of_the_geometry():
    comb = moco_.moco()
    state = comb.init(3, shared=SHARED)
    state = state._replace(tracked=jax.tree.map(lambda y: y.at[2].set(7.0), state.tracked))
    grads = _grads([[1.0, 0.0], [0.0, 2.0], [1e6, -1e6]])
    update, new, weights = _step(comb, grads, state, [True, True, False])
    # the two present tasks' weights 1/3, 1/3 renormalised: the two-task step above
    np.testing.assert_allclose(weights, [0.51875, 0.48125, 0.0], rtol=1e-6)
    assert weights[2] == 0.0
    np.testing.assert_allclose(new.weights, [0.51875, 0.48125, 1 / 3], rtol=1e-6)
    np.testing.assert_array_equal(new.tracked["a"][2], [7.0])
    np.testing.assert_array_equal(new.tracked["b"][2], [7.0])
    np.testing.assert_allclose(update["a"], [0.5 * 0.51875], rtol=1e-6)
    np.testing.assert_allclose(update["b"], [0.48125], rtol=1e-6)


def test_no_task_present_gives_a_zero_gradient_and_keeps_the_state():
    comb = moco_.moco()
    state = comb.init(2, shared=SHARED)
    state = state._replace(tracked=jax.tree.map(lambda y: y + 3.0, state.tracked))
    grads = _grads([[np.nan, 1.0], [2.0, np.inf]])  # never read: no task is present
    grads = {k: jnp.where(jnp.isfinite(v), v, 0.0) for k, v in grads.items()}
    update, new, weights = jax.jit(lambda g, s: _step(comb, g, s, [False, False]))(grads, state)
    np.testing.assert_array_equal(weights, [0.0, 0.0])
    np.testing.assert_array_equal(update["a"], [0.0])
    np.testing.assert_array_equal(update["b"], [0.0])
    np.testing.assert_array_equal(new.weights, state.weights)
    np.testing.assert_array_equal(new.tracked["a"], state.tracked["a"])
    total, _ = comb.apply(jnp.array([1.0, 2.0]), new, present=jnp.array([False, False]))
    assert total == 0.0


def _replay(g_steps, present, beta, gamma, rho):
    """float64 MoCo over the present tasks, projection by bisection on theta."""
    k = g_steps.shape[1]
    y = np.zeros(g_steps.shape[1:])
    lam = np.full(k, 1.0 / k)
    idx = np.flatnonzero(present)
    out = []
    for g in g_steps:
        y[idx] -= beta * (y[idx] - g[idx])
        w = lam[idx] / lam[idx].sum()
        v = w - gamma * (y[idx] @ y[idx].T @ w + rho * w)
        lo, hi = v.min() - 1.0, v.max()
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if np.maximum(v - mid, 0).sum() > 1 else (lo, mid)
        lam[idx] = np.maximum(v - (lo + hi) / 2, 0)
        out.append(lam[idx] @ y[idx])
    return np.array(out), lam


def test_jit_is_bit_identical_and_matches_a_float64_replay():
    rng = np.random.default_rng(0)
    g_steps = rng.normal(size=(6, 4, 30)) * np.array([1.0, 3.0, 0.2, 1.0])[:, None]
    g_steps[:, 3] = -g_steps[:, 0] + 0.1 * rng.normal(size=(6, 30))  # a conflicting pair
    present = np.array([True, True, False, True])
    comb = mt.losses.moco(beta=0.3, gamma=0.05, rho=0.1)
    step = jax.jit(lambda g, s: _step(comb, {"w": g}, s, present))
    state_jit = state_eager = comb.init(4, shared={"w": jnp.zeros(30)})
    for g in g_steps.astype(np.float32):
        up_jit, state_jit, w_jit = step(g, state_jit)
        up_eager, state_eager, w_eager = _step(comb, {"w": jnp.asarray(g)}, state_eager, present)
        np.testing.assert_allclose(up_jit["w"], up_eager["w"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(w_jit, w_eager, rtol=1e-5, atol=1e-7)
    again = comb.init(4, shared={"w": jnp.zeros(30)})  # the same steps again: the same bits
    for g in g_steps.astype(np.float32):
        up_again, again, w_again = step(g, again)
    np.testing.assert_array_equal(up_again["w"], up_jit["w"])
    np.testing.assert_array_equal(again.tracked["w"], state_jit.tracked["w"])
    np.testing.assert_array_equal(w_again, w_jit)
    ref, lam = _replay(g_steps, present, 0.3, 0.05, 0.1)
    np.testing.assert_allclose(up_jit["w"], ref[-1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(state_jit.weights)[[0, 1, 3]], lam[[0, 1, 3]], atol=1e-5)


def test_names_and_errors():
    assert catalogue.combiner_from_config("moco", beta=0.2).uses_grads
    assert mt.losses.moco is moco_.moco
    with pytest.raises(ValueError, match="moco: its state tracks each task's gradient"):
        moco_.moco().init(2)
    with pytest.raises(ValueError, match="moco: beta must be in"):
        moco_.moco(beta=0.0)
    comb = moco_.moco()
    with pytest.raises(ValueError, match="moco: grads do not match"):
        _step(comb, {"w": jnp.ones((2, 3))}, comb.init(2, shared=SHARED), [True, True])
