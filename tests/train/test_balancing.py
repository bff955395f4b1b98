"""Loss balancing combiners (GLS, IMTL-L, FAMO, STCH, ExcessMTL, DB-MTL, EMA): hand-worked."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtjax.train.combiners import balancing as bal
from mtjax.train.combiners import gradient, weighting

K = 3


def _grads(present, seed=1):
    """Per-task gradients with a leading K axis, 0 for absent tasks (as the trainer gives)."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    grads = {"kernel": jax.random.normal(k1, [K, 4, 3]), "bias": jax.random.normal(k2, [K, 3])}
    mask = jnp.asarray(present)
    return jax.tree.map(
        lambda g: jnp.where(mask.reshape((K,) + (1,) * (g.ndim - 1)), g, 0.0), grads
    )


def _step(comb, losses, state, present, *, epoch=0, key=None, grads=None, params=None):
    """(total, new state, d total / d losses, d total / d params); jit it for speed."""
    key = jax.random.key(0) if key is None else key

    def total(losses, params):
        return comb.apply(
            losses,
            state,
            present=present,
            key=key,
            step=jnp.int32(0),
            epoch=epoch,
            grads=grads,
            params=params,
        )

    (t, new), (w, d_params) = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(
        losses, params
    )
    return t, new, w, d_params


_jit_step = jax.jit(_step, static_argnums=0)


def _run(comb, losses, state, present, *, jit=True, epoch=0, **kw):
    n = len(losses)
    if comb.uses_grads and "grads" not in kw:
        kw["grads"] = _grads(present) if n == K else None
    if comb.init_params is not None and "params" not in kw:
        kw["params"] = comb.init_params(n)
    if "params" not in kw:
        kw["params"] = jnp.zeros([])  # something to differentiate against
    fn = _jit_step if jit else _step
    return fn(
        comb,
        jnp.asarray(losses, jnp.float32),
        state,
        jnp.asarray(present),
        epoch=jnp.int32(epoch),
        **kw,
    )


ALL = {
    "gls": bal.gls,
    "imtl_l": bal.imtl_l,
    "famo": bal.famo,
    "stch": lambda: bal.stch(mu=0.5, warmup_epochs=1),
    "excess_mtl": bal.excess_mtl,
    "db_mtl": bal.db_mtl,
    "ema_mean": lambda: bal.ema(weighting.mean()),
    "ema_imtl_l": lambda: bal.ema(bal.imtl_l()),
    "ema_rlw": lambda: bal.ema(weighting.rlw()),
    "ema_db_mtl": lambda: bal.ema(bal.db_mtl()),
}


def _leaves_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("name", list(ALL))
def test_contract_absent_zero_nobody_zero_jit_equal_and_resumable(name):
    comb = ALL[name]()
    present = np.array([True, False, True])
    state = comb.init(K)
    for step, losses in enumerate([[0.7, 5.0, 1.3], [0.6, 5.0, 1.1], [0.5, 5.0, 1.2]]):
        epoch = step // 2  # crosses an epoch boundary (STCH leaves its warm-up)
        key = jax.random.key(step)
        total, new, w, d_params = _run(comb, losses, state, present, epoch=epoch, key=key)
        assert np.isfinite(total), (name, step)
        assert w[1] == 0.0, (name, step, w)  # exactly 0, though its loss is 5
        w = np.asarray(w)
        assert np.isfinite(w).all() and (w[[0, 2]] > 0).all(), (name, step, w)
        assert all(np.isfinite(x).all() for x in jax.tree.leaves((new, d_params)))
        # for a fixed key the jitted call repeats bit for bit
        _leaves_equal((total, new, w), _run(comb, losses, state, present, epoch=epoch, key=key)[:3])
        state = new

    # resumable: the state through numpy (as a checkpoint holds it) continues identically
    restored = jax.tree.map(np.asarray, state)
    _leaves_equal(
        _run(comb, [0.4, 5.0, 1.0], state, present, epoch=2)[:3],
        _run(comb, [0.4, 5.0, 1.0], restored, present, epoch=2)[:3],
    )

    # no task present: total exactly 0, nothing NaN
    nobody = np.zeros([K], bool)
    total, new, w, d_params = _run(comb, [0.0] * K, state, nobody, epoch=2)
    assert total == 0.0, name
    np.testing.assert_array_equal(w, 0.0)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves((new, d_params))), name
    assert jax.tree.structure(new) == jax.tree.structure(state)


@pytest.mark.parametrize("name", ["gls", "famo", "stch", "ema_rlw"])
def test_jit_matches_eager_to_rounding(name):
    # XLA fuses the jitted call, so the last bit may differ from op-by-op execution
    comb = ALL[name]()
    state = comb.init(K)
    present = np.array([True, False, True])
    for epoch, losses in enumerate([[0.7, 5.0, 1.3], [0.5, 5.0, 1.2]]):
        jitted = _run(comb, losses, state, present, epoch=epoch, key=jax.random.key(epoch))
        eager = _run(
            comb, losses, state, present, epoch=epoch, key=jax.random.key(epoch), jit=False
        )
        for x, y in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager)):
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7, err_msg=name)
        state = jitted[1]


def test_gls_is_the_geometric_mean_of_present_losses():
    total, _, w, _ = _run(bal.gls(), [2.0, 5.0, 8.0], bal.gls().init(K), [True, False, True])
    np.testing.assert_allclose(total, 4.0, rtol=1e-6)  # sqrt(2 * 8)
    np.testing.assert_allclose(w, [4 / (2 * 2), 0.0, 4 / (2 * 8)], rtol=1e-6)  # G / (n L_k)
    # a zero loss: the product is ~0, with no NaN anywhere
    total, _, w, _ = _run(bal.gls(), [0.0, 4.0], bal.gls().init(2), [True, True])
    assert 0 <= total < 1e-18 and np.isfinite(w).all()


def test_imtl_l_formula_and_gradients():
    params = bal.ImtlParams(log_scale=jnp.array([0.0, math.log(2.0), 1.0]))
    comb = bal.imtl_l()
    total, _, w, d_params = _run(
        comb, [3.0, 0.5, 7.0], comb.init(K), [True, True, False], params=params
    )
    # exp(s) L - s: 3 - 0 and 2 * 0.5 - log 2; the absent task counts nothing
    np.testing.assert_allclose(total, 4.0 - math.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(w, [1.0, 2.0, 0.0], rtol=1e-6)  # exp(s_k)
    np.testing.assert_allclose(d_params.log_scale, [2.0, 0.0, 0.0], atol=1e-6)  # e^s L - 1
    np.testing.assert_array_equal(comb.init_params(2).log_scale, [0.0, 0.0])
    with pytest.raises(ValueError, match="imtl_l needs params="):
        comb.apply(jnp.ones([2]), (), present=jnp.ones([2], bool))


def _adam(g, m, v, t, lr):
    m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g**2
    step = lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    return step, m, v


def test_famo_three_steps_by_hand():
    lr, gamma = 0.025, 0.001
    comb = bal.famo(lr=lr, gamma=gamma)
    present = [True, True]
    state = comb.init(2)
    # step 1: no previous loss, xi = 0: w_k = (1 / L_k) / sum_j (1 / L_j)
    total, state, w, _ = _run(comb, [1.0, 2.0], state, present)
    np.testing.assert_allclose(w, [2 / 3, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(total, 2 / 3 + 2 / 3, rtol=1e-6)
    np.testing.assert_array_equal(state.logits, [0.0, 0.0])
    # step 2: task 0's log loss fell by log 2, task 1's not. z = (1/2, 1/2):
    # J^T delta = z * (delta - z . delta) = (log 2 / 4, -log 2 / 4); Adam's first step
    g = np.array([0.25, -0.25]) * math.log(2.0)
    step, m, v = _adam(g, 0.0, 0.0, 1, lr)
    xi = -step  # ~ (-0.025, 0.025): the task that improved gets less weight
    _, state, w, _ = _run(comb, [0.5, 2.0], state, present)
    np.testing.assert_allclose(state.logits, xi, rtol=1e-6)
    z = np.exp(xi) / np.exp(xi).sum()
    np.testing.assert_allclose(w, (z / [0.5, 2.0]) / (z / [0.5, 2.0]).sum(), rtol=1e-6)
    # step 3: both fell by log 2, so J^T delta = 0 and only the weight decay acts
    step, m, v = _adam(gamma * xi, m, v, 2, lr)
    xi = xi - step
    _, state, w, _ = _run(comb, [0.25, 1.0], state, present)
    np.testing.assert_allclose(state.logits, xi, rtol=1e-5)
    np.testing.assert_array_equal(state.steps, [2, 2])
    z = np.exp(xi) / np.exp(xi).sum()
    np.testing.assert_allclose(w, (z / [0.25, 1.0]) / (z / [0.25, 1.0]).sum(), rtol=1e-5)


def test_famo_updates_only_tasks_present_at_both_steps():
    comb = bal.famo()
    state = comb.init(K)
    _, state, _, _ = _run(comb, [1.0, 2.0, 0.0], state, [True, True, False])
    _, state, _, _ = _run(comb, [0.5, 0.0, 3.0], state, [True, False, True])
    # only task 0 was present at both steps: a softmax over it alone has zero gradient,
    # so its logit moves by the (zero) weight decay only; the others keep theirs
    np.testing.assert_array_equal(state.logits, [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(state.steps, [1, 0, 0])
    np.testing.assert_array_equal(state.last, [0.5, 2.0, 3.0])
    np.testing.assert_array_equal(state.last_present, [True, False, True])


def test_stch_warm_up_then_nadir_normalised_soft_max():
    comb = bal.stch(mu=0.5, warmup_epochs=1)
    present = [True, True]
    state = comb.init(2)
    # epoch 0 (warm-up): total = sum log L, weights 1 / L
    for losses in ([1.0, 4.0], [3.0, 2.0]):
        total, state, w, _ = _run(comb, losses, state, present, epoch=0)
        np.testing.assert_allclose(total, np.log(losses).sum(), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(w, 1 / np.array(losses), rtol=1e-6)
    # epoch 1: nadir = epoch 0's means (2, 3); u = log(L / N) = (log 1, log 0.5);
    # total = n mu log sum exp(u / mu) = 2 * 0.5 * log(1 + 0.25)
    total, state, w, _ = _run(comb, [2.0, 1.5], state, present, epoch=1)
    np.testing.assert_allclose(state.nadir, [2.0, 3.0])
    np.testing.assert_allclose(total, math.log(1.25), rtol=1e-6)
    p = np.array([1.0, 0.25]) / 1.25  # softmax(u / mu)
    np.testing.assert_allclose(w, 2 * p / [2.0, 1.5], rtol=1e-6)  # n p_k / L_k
    # later epochs keep the nadir; a small mu approaches the max
    _, state, _, _ = _run(comb, [2.0, 1.5], state, present, epoch=2)
    np.testing.assert_allclose(state.nadir, [2.0, 3.0])
    sharp = bal.stch(mu=1e-3, warmup_epochs=0)
    total, _, _, _ = _run(sharp, [2.0, 0.5], sharp.init(2), present)
    np.testing.assert_allclose(total, 2 * math.log(2.0), rtol=1e-3)  # n max_k log L_k
    with pytest.raises(ValueError, match="mu must be > 0"):
        bal.stch(mu=0.0)


def test_excess_mtl_two_steps_by_hand():
    step_size = 0.01
    comb = bal.excess_mtl(step_size=step_size)
    present = [True, True]
    state = comb.init(2)
    # P = 2 parameters; step 1: ||g||^2 = (1, 9), mean squares (0.5, 4.5)
    grads1 = {"w": jnp.array([[1.0, 0.0], [0.0, 3.0]])}
    _, state, w, _ = _run(comb, [1.0, 1.0], state, present, grads=grads1)
    np.testing.assert_allclose(w, [1.0, 1.0])  # the first step records the risks only
    r0 = np.array([1.0, 9.0]) / np.sqrt(np.array([0.5, 4.5]) + 1e-7)
    np.testing.assert_allclose(state.initial, r0, rtol=1e-6)
    # step 2: ||g||^2 = (4, 9), sums (2.5, 9): risk ratio r / r0 = (1.789, 0.707)
    grads2 = {"w": jnp.array([[2.0, 0.0], [0.0, 3.0]])}
    _, state, w, _ = _run(comb, [1.0, 1.0], state, present, grads=grads2)
    r = np.array([4.0, 9.0]) / np.sqrt(np.array([2.5, 9.0]) + 1e-7)
    stepped = np.exp(step_size * r / r0)
    expected = 2 * stepped / stepped.sum()
    np.testing.assert_allclose(state.weights, expected, rtol=1e-6)
    np.testing.assert_allclose(w, expected, rtol=1e-6)
    assert w[0] > 1 > w[1]  # the task whose risk rose gains weight
    with pytest.raises(ValueError, match="excess_mtl needs grads="):
        comb.apply(jnp.ones([2]), comb.init(2), present=jnp.ones([2], bool))


def test_excess_mtl_absent_task_keeps_its_weight_and_the_others_their_sum():
    comb = bal.excess_mtl(step_size=0.5)
    state = comb.init(K)
    grads = _grads([True] * 3)
    _, state, _, _ = _run(comb, [1.0] * 3, state, [True] * 3, grads=grads)
    _, state, w, _ = _run(comb, [1.0] * 3, state, [True, False, True], grads=_grads([1, 0, 1], 2))
    assert state.weights[1] == 1.0 and w[1] == 0.0
    np.testing.assert_allclose(np.asarray(state.weights)[[0, 2]].sum(), 2.0, rtol=1e-6)
    np.testing.assert_allclose(w.sum(), 2.0, rtol=1e-6)


def test_db_mtl_two_steps_by_hand():
    comb = bal.db_mtl(beta=0.9)
    present = [True, True]
    grads = {"w": jnp.array([[1.0, 0.0], [0.0, 4.0]])}
    # step 1: log-loss gradient norms ||g|| / L = (1 / 0.5, 4 / 2) = (2, 2): equal, alpha = 1,
    # and a_k = alpha_k / L_k
    _, state, w, _ = _run(comb, [0.5, 2.0], comb.init(2), present, grads=grads)
    np.testing.assert_allclose(w, [2.0, 0.5], rtol=1e-6)
    np.testing.assert_allclose(state.norm_ema, [0.2, 0.2], rtol=1e-6)
    # step 2: norms (1, 2); EMA (0.9 * 0.2 + 0.1 * 1, 0.9 * 0.2 + 0.1 * 2) / (1 - 0.81)
    _, state, w, _ = _run(comb, [1.0, 2.0], state, present, grads=grads)
    u = np.array([0.28, 0.38]) / 0.19
    np.testing.assert_allclose(w, [u.max() / u[0] / 1.0, u.max() / u[1] / 2.0], rtol=1e-5)
    np.testing.assert_array_equal(state.steps, [2, 2])


def test_ema_smooths_the_inner_weights_and_keeps_absent_tasks_at_zero():
    comb = bal.ema(bal.gls(), decay=0.5)
    state = comb.init(2)
    # GLS weights G / (n L_k): losses (1, 4) give (1, 1/4); (4, 1) give (1/4, 1)
    _, state, w, _ = _run(comb, [1.0, 4.0], state, [True, True])
    np.testing.assert_allclose(w, [1.0, 0.25], rtol=1e-6)  # the first step: the inner weights
    total, state, w, _ = _run(comb, [4.0, 1.0], state, [True, True])
    np.testing.assert_allclose(w, [0.625, 0.625], rtol=1e-6)
    np.testing.assert_allclose(total, 0.625 * 4 + 0.625 * 1, rtol=1e-6)
    # task 0 absent: weight 0, its average kept; task 1 alone has GLS weight 1
    _, state, w, _ = _run(comb, [0.0, 9.0], state, [False, True])
    np.testing.assert_allclose(w, [0.0, 0.8125], rtol=1e-6)
    np.testing.assert_allclose(state.weights, [0.625, 0.8125], rtol=1e-6)
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\)"):
        bal.ema(bal.gls(), decay=1.0)


def test_ema_passes_params_and_grads_through():
    inner = bal.imtl_l()
    comb = bal.ema(inner, decay=0.9)
    assert comb.init_params is inner.init_params and not comb.uses_grads
    assert bal.ema(gradient.mgda()).uses_grads
    params = bal.ImtlParams(log_scale=jnp.array([0.0, math.log(2.0)]))
    total, _, w, d_params = _run(comb, [3.0, 0.5], comb.init(2), [True, True], params=params)
    np.testing.assert_allclose(total, 3.0 + 1.0, rtol=1e-6)  # sum of EMA weights * L
    np.testing.assert_allclose(w, [1.0, 2.0], rtol=1e-6)
    # the inner loss's own parameters still learn: d/ds (e^s L - s) = e^s L - 1
    np.testing.assert_allclose(d_params.log_scale, [2.0, 0.0], atol=1e-6)
    # a gradient method inside: its first weights are the inner ones (DB-MTL, as by hand)
    grads = {"w": jnp.array([[1.0, 0.0], [0.0, 4.0]])}
    comb = bal.ema(bal.db_mtl(), decay=0.9)
    _, state, w, _ = _run(comb, [0.5, 2.0], comb.init(2), [True, True], grads=grads)
    np.testing.assert_allclose(w, [2.0, 0.5], rtol=1e-6)
    np.testing.assert_allclose(state.inner.norm_ema, [0.2, 0.2], rtol=1e-6)
