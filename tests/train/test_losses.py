"""Losses: per-task masked losses and loss combiners, checked against hand-worked numbers."""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mtjax.train.losses as mtl
from mtjax.tasks import Task

# ----------------------------------------------------------------------------------------
# Per-row losses and masked means


def _sigmoid_ce(x, t):
    p = 1.0 / (1.0 + np.exp(-x))
    return -(t * np.log(p) + (1 - t) * np.log(1 - p))


def test_per_row_losses_match_numpy(rng):
    x = rng.normal(size=(5, 3)).astype(np.float32)
    onehot = np.eye(3, dtype=np.float32)[[0, 2, 1, 1, 0]]
    multi = (rng.uniform(size=(5, 3)) > 0.5).astype(np.float32)

    np.testing.assert_allclose(
        mtl.binary_cross_entropy(x[:, :1], multi[:, :1]),
        _sigmoid_ce(x[:, 0], multi[:, 0]),
        rtol=1e-5,
    )
    log_softmax = x - np.log(np.exp(x).sum(1, keepdims=True))
    np.testing.assert_allclose(
        mtl.softmax_cross_entropy(x, onehot), -(onehot * log_softmax).sum(1), rtol=1e-5
    )
    np.testing.assert_allclose(
        mtl.multilabel_cross_entropy(x, multi), _sigmoid_ce(x, multi).mean(1), rtol=1e-5
    )
    # a hand value: logit 0 is p = 0.5 whatever the target
    np.testing.assert_allclose(
        mtl.binary_cross_entropy(jnp.zeros([1, 1]), jnp.ones([1, 1])), [math.log(2)], rtol=1e-6
    )


def test_default_loss_and_overrides():
    tasks = [
        Task("loud", ("no", "yes"), "binary"),
        Task("word", ("a", "b", "c")),
        Task("tags", ("x", "y"), "multilabel"),
    ]
    assert [mtl.default_loss(t) for t in tasks] == [
        mtl.binary_cross_entropy,
        mtl.softmax_cross_entropy,
        mtl.multilabel_cross_entropy,
    ]

    def mine(logits, targets):
        return jnp.zeros(logits.shape[:1])

    fns = mtl.loss_functions(tasks, {"word": mine})
    assert fns == (mtl.binary_cross_entropy, mine, mtl.multilabel_cross_entropy)
    with pytest.raises(ValueError, match=r"unknown tasks \['wrod'\].*'loud', 'word', 'tags'"):
        mtl.loss_functions(tasks, {"wrod": mine})


def test_masked_task_means_absent_task_is_zero_and_nan_cannot_leak():
    losses = jnp.array([[1.0, jnp.nan], [3.0, jnp.nan], [100.0, 5.0]])
    mask = jnp.array([[True, False], [True, False], [True, False]])
    weight = jnp.array([1.0, 1.0, 0.0])  # the last row is padding
    means = mtl.masked_task_means(losses, mask, weight)
    np.testing.assert_array_equal(means, [2.0, 0.0])


TASKS = (
    Task("loud", ("no", "yes"), "binary"),
    Task("word", ("a", "b", "c")),
    Task("tags", ("x", "y"), "multilabel"),
)


def _batch():
    """4 rows: loud on rows 0-2, word on rows 1-3, tags on none; row 3 is padding."""
    logits = {
        "loud": jnp.array([[0.0], [2.0], [-1.0], [7.0]]),
        "word": jnp.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [9.0, 0.0, 0.0]]),
        "tags": jnp.ones([4, 2]),
    }
    nan = np.nan
    y = jnp.array(
        [
            [1.0, nan, nan, nan, nan, nan],
            [0.0, 1.0, 0.0, 0.0, nan, nan],
            [1.0, 0.0, 1.0, 0.0, nan, nan],
            [1.0, 0.0, 0.0, 1.0, nan, nan],
        ]
    )
    has_task = jnp.array(
        [[True, False, False], [True, True, False], [True, True, False], [False, True, False]]
    )
    weight = jnp.array([1.0, 1.0, 1.0, 0.0])
    return logits, y, has_task, weight


def test_task_losses_are_masked_means_over_weighted_rows():
    logits, y, has_task, weight = _batch()
    losses, present = jax.jit(mtl.task_losses, static_argnums=4)(logits, y, has_task, weight, TASKS)
    loud = np.mean([_sigmoid_ce(0.0, 1.0), _sigmoid_ce(2.0, 0.0), _sigmoid_ce(-1.0, 1.0)])

    def ce(row, c):
        row = np.asarray(row)
        return -(row[c] - np.log(np.exp(row).sum()))

    word = np.mean([ce([1.0, 0.0, 0.0], 0), ce([0.0, 2.0, 0.0], 1)])  # row 3 is padding
    np.testing.assert_allclose(losses, [loud, word, 0.0], rtol=1e-5)
    assert losses[2] == 0.0
    np.testing.assert_array_equal(present, [True, True, False])


def test_task_losses_gradient_is_finite_with_nan_targets_in_unlabelled_rows():
    logits, y, has_task, weight = _batch()

    def total(logits):
        return mtl.task_losses(logits, y, has_task, weight, TASKS)[0].sum()

    grads = jax.grad(total)(logits)
    for name, g in grads.items():
        assert np.isfinite(g).all(), name
    np.testing.assert_array_equal(grads["tags"], 0.0)
    np.testing.assert_array_equal(grads["word"][3], 0.0)  # padding row


def test_task_losses_use_override():
    logits, y, has_task, weight = _batch()
    fns = mtl.loss_functions(TASKS, {"loud": lambda x, t: jnp.full(x.shape[:1], 4.0)})
    losses, _ = mtl.task_losses(logits, y, has_task, weight, TASKS, fns)
    assert losses[0] == 4.0


def test_check_outputs_names_the_task():
    logits, *_ = _batch()
    mtl.check_outputs(logits, TASKS)
    with pytest.raises(ValueError, match=r"missing \['tags'\]"):
        mtl.check_outputs({k: v for k, v in logits.items() if k != "tags"}, TASKS)
    with pytest.raises(ValueError, match=r"unexpected \['speaker'\]"):
        mtl.check_outputs({**logits, "speaker": jnp.zeros([4, 2])}, TASKS)
    with pytest.raises(ValueError, match=r"task 'word'.*\[B, 3\], got \[4, 2\]"):
        mtl.check_outputs({**logits, "word": jnp.zeros([4, 2])}, TASKS)


# ----------------------------------------------------------------------------------------
# Every combiner: jitted, finite, same state, absent tasks weigh 0

K = 3


def _grads(key, present):
    """Per-task gradients pytree with a leading K axis; an absent task's slice is 0."""
    k1, k2 = jax.random.split(key)
    grads = {
        "dense": {"kernel": jax.random.normal(k1, [K, 4, 3]), "bias": jax.random.normal(k2, [K, 3])}
    }
    return jax.tree.map(
        lambda g: jnp.where(present.reshape((K,) + (1,) * (g.ndim - 1)), g, 0.0), grads
    )


ALL = [
    ("sum", {}),
    ("mean", {}),
    ("weighted", {"weights": [1.0, 0.5, 2.0]}),
    ("uncertainty_weighting", {}),
    ("dwa", {}),
    ("rlw", {}),
    ("gradnorm", {}),
    ("pcgrad", {}),
    ("cagrad", {}),
    ("mgda", {}),
    ("gls", {}),
    ("imtl_l", {}),
    ("famo", {}),
    ("stch", {"warmup_epochs": 1}),
    ("excess_mtl", {}),
    ("db_mtl", {}),
    ("ema", {"combiner": "dwa"}),
    ("imtl_g", {}),
    ("gradvac", {}),
    ("config", {}),
    ("aligned_mtl", {}),
    ("krum", {"selected": 2}),  # one-hot weights with selected=1
    ("upgrad", {}),
    ("dualproj", {}),
    ("nash_mtl", {}),
    ("fairgrad", {}),
    ("sdmgrad", {}),
    ("modo", {}),
    ("graddrop", {}),
    ("trimmed_mean", {}),
    ("per_group", {"combiner": "pcgrad", "by": "matrix"}),
]


def _call(comb, losses, state, present, *, step=0, epoch=0, key=None, grads=None, params=None):
    """total and new state, and the task weights d total / d losses, all under jit."""
    key = jax.random.key(0) if key is None else key
    extra = {}
    if comb.uses_grads:
        extra["grads"] = _grads(jax.random.key(1), present) if grads is None else grads
    if comb.init_params is not None:
        extra["params"] = comb.init_params(K) if params is None else params

    @jax.jit
    def run(losses, state, present, key, step, epoch, extra):
        def total(losses):
            return comb.apply(
                losses, state, present=present, key=key, step=step, epoch=epoch, **extra
            )

        (t, new_state), weights = jax.value_and_grad(total, has_aux=True)(losses)
        return t, new_state, weights

    return run(losses, state, present, key, jnp.int32(step), jnp.int32(epoch), extra)


def _same_tree(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.dtype == y.dtype and x.shape == y.shape


@pytest.mark.parametrize("name,kwargs", ALL, ids=[n for n, _ in ALL])
def test_every_combiner_is_jittable_finite_and_ignores_absent_tasks(name, kwargs):
    comb = mtl.combiner_from_config(name, **kwargs)
    state = comb.init(K)
    present = jnp.array([True, False, True])
    losses = jnp.array([0.7, 0.0, 1.3])
    for step in range(3):  # a few steps, across an epoch boundary
        total, new_state, weights = _call(
            comb, losses, state, present, step=step, epoch=step // 2, key=jax.random.key(step)
        )
        assert np.isfinite(total), (name, step)
        _same_tree(state, new_state)
        assert all(np.isfinite(x).all() for x in jax.tree.leaves(new_state))
        assert weights[1] == 0.0, (name, weights)
        assert np.isfinite(weights).all() and (weights[::2] > 0).all(), (name, weights)
        state = new_state

    # no task present: total exactly 0, nothing NaN
    nobody = jnp.zeros([K], bool)
    total, new_state, weights = _call(comb, jnp.zeros([K]), state, nobody, step=3, epoch=2)
    assert total == 0.0, name
    np.testing.assert_array_equal(weights, 0.0)
    _same_tree(state, new_state)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(new_state)), name


def test_normalisation_over_present_tasks():
    present = jnp.array([True, False, True])
    losses = jnp.array([1.0, 5.0, 3.0])  # the absent loss must not count, even if nonzero
    expected = {"sum": [1, 0, 1], "mean": [0.5, 0, 0.5], "weighted": [1.0, 0, 2.0]}
    for name, kwargs in ALL:
        comb = mtl.combiner_from_config(name, **kwargs)
        _, _, w = _call(comb, losses, comb.init(K), present)
        if name in expected:
            np.testing.assert_allclose(w, expected[name], err_msg=name)
        if name in ("dwa", "rlw", "gradnorm"):  # weights sum to the number of present tasks
            np.testing.assert_allclose(w.sum(), 2.0, rtol=1e-6, err_msg=name)
        if name == "mgda":
            np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-6)


def test_unknown_combiner_lists_the_known_ones():
    with pytest.raises(
        ValueError, match=r"unknown combiner 'avg'; known: aligned_mtl, cagrad, config"
    ):
        mtl.combiner_from_config("avg")
    with pytest.raises(ValueError, match="3 weights for 2 tasks"):
        mtl.weighted([1.0, 2.0, 3.0]).init(2)
    with pytest.raises(ValueError, match="unknown rlw distribution 'cauchy'"):
        mtl.rlw("cauchy")
    assert mtl.sum is mtl.sum_ and mtl.COMBINERS["sum"] is mtl.sum_


# ----------------------------------------------------------------------------------------
# Hand-worked cases


def _two_task_grads(g1, g2):
    return {"w": jnp.array([g1, g2], jnp.float32)}


@functools.partial(jax.jit, static_argnums=0)
def _weights_and_state(comb, losses, state, present, key, grads):
    def total(losses):
        return comb.apply(
            losses,
            state,
            present=present,
            key=key,
            step=jnp.int32(0),
            epoch=jnp.int32(0),
            grads=grads,
        )

    (_, new_state), w = jax.value_and_grad(total, has_aux=True)(losses)
    return w, new_state


def _grad_weights(comb, grads, present=(True, True), key=None, state=None):
    """Task weights d total / d losses (at losses 1) and the new state, under jit."""
    n = len(present)
    state = comb.init(n) if state is None else state
    key = jax.random.key(0) if key is None else key
    w, new_state = _weights_and_state(comb, jnp.ones([n]), state, jnp.array(present), key, grads)
    return np.asarray(w), new_state


def test_pcgrad_two_conflicting_gradients_by_hand():
    # g1 = (1, 0), g2 = (-1, 1): g1.g2 = -1 < 0, so both are projected.
    #   g1' = g1 - (g1.g2 / |g2|^2) g2 = (1, 0) + 1/2 (-1, 1) = (0.5, 0.5)
    #   g2' = g2 - (g2.g1 / |g1|^2) g1 = (-1, 1) + (1, 0)     = (0, 1)
    #   sum = (0.5, 1.5) = 2 g1 + 1.5 g2
    g = np.array([[1.0, 0.0], [-1.0, 1.0]])
    grads = _two_task_grads(*g)
    comb = mtl.pcgrad()
    for seed in range(3):  # two tasks: the order does not matter
        w, _ = _grad_weights(comb, grads, key=jax.random.key(seed))
        np.testing.assert_allclose(w, [2.0, 1.5], rtol=1e-6)
        np.testing.assert_allclose(w @ g, [0.5, 1.5], rtol=1e-6)
    # no conflict: the plain sum
    w, _ = _grad_weights(comb, _two_task_grads([1.0, 0.0], [1.0, 1.0]))
    np.testing.assert_allclose(w, [1.0, 1.0])


def test_pcgrad_order_comes_from_the_key_and_absent_tasks_are_excluded():
    g = np.array([[1.0, 0.0], [-0.8, 1.0], [-0.5, -1.0]])
    grads = {"w": jnp.array(g, jnp.float32)}
    comb = mtl.pcgrad()
    results = {
        tuple(
            np.round(_grad_weights(comb, grads, present=(True,) * 3, key=jax.random.key(s))[0], 5)
        )
        for s in range(12)
    }
    assert len(results) > 1  # with three tasks the projection order matters
    same = _grad_weights(comb, grads, present=(True,) * 3, key=jax.random.key(5))[0]
    np.testing.assert_array_equal(
        same, _grad_weights(comb, grads, present=(True,) * 3, key=jax.random.key(5))[0]
    )
    # an absent task is excluded, not fed a zero gradient: the other two behave as alone
    w, _ = _grad_weights(comb, grads, present=(True, True, False))
    alone, _ = _grad_weights(comb, {"w": grads["w"][:2]})
    np.testing.assert_allclose(w[:2], alone, rtol=1e-6)
    assert w[2] == 0.0


def test_mgda_min_norm_point_of_two_vectors():
    # min over gamma of |gamma v1 + (1 - gamma) v2|^2: gamma = (v2.v2 - v1.v2) / |v1 - v2|^2
    v1, v2 = np.array([1.0, 0.0]), np.array([0.0, 2.0])
    gamma = (v2 @ v2 - v1 @ v2) / ((v1 - v2) @ (v1 - v2))  # = 4 / 5
    w, _ = _grad_weights(mtl.mgda(), _two_task_grads(v1, v2))
    np.testing.assert_allclose(w, [gamma, 1 - gamma], rtol=1e-5)
    np.testing.assert_allclose(w @ np.stack([v1, v2]), [0.8, 0.4], rtol=1e-5)
    # one vector is the shorter end of the segment: all weight on it
    w, _ = _grad_weights(mtl.mgda(), _two_task_grads([1.0, 0.0], [2.0, 0.0]))
    np.testing.assert_allclose(w, [1.0, 0.0], atol=1e-6)


def test_mgda_three_tasks_reach_the_min_norm_point():
    # the origin is inside the hull of these three: min norm 0 at w = (1/3, 1/3, 1/3)
    g = np.array([[1.0, 0.0], [-0.5, math.sqrt(3) / 2], [-0.5, -math.sqrt(3) / 2]])
    w, _ = _grad_weights(mtl.mgda(steps=200), {"w": jnp.array(g, jnp.float32)}, present=(True,) * 3)
    assert np.linalg.norm(w @ g) < 1e-2 and abs(w.sum() - 1) < 1e-6


def test_cagrad_with_c_zero_is_the_mean_gradient():
    g = np.array([[1.0, 0.0], [-1.0, 1.0], [3.0, 2.0]])
    grads = {"w": jnp.array(g, jnp.float32)}
    w, _ = _grad_weights(mtl.cagrad(c=0.0), grads, present=(True,) * 3)
    np.testing.assert_allclose(w, [1 / 3] * 3, rtol=1e-6)
    w, _ = _grad_weights(mtl.cagrad(c=0.0), grads, present=(True, False, True))
    np.testing.assert_allclose(w, [0.5, 0.0, 0.5], rtol=1e-6)


def test_cagrad_minimises_its_objective_on_two_tasks():
    # g_w = w g1 + (1 - w) g2: compare with a fine grid over w, and check the update
    g = np.array([[1.0, 0.0], [-1.0, 3.0]])
    c = 0.5
    g0 = g.mean(0)
    root_phi = c * np.linalg.norm(g0)
    grid = np.linspace(0, 1, 100001)
    gw = grid[:, None] * g[0] + (1 - grid[:, None]) * g[1]
    objective = gw @ g0 + root_phi * np.linalg.norm(gw, axis=1)
    best = grid[objective.argmin()]
    d = (g0 + root_phi / np.linalg.norm(gw[objective.argmin()]) * gw[objective.argmin()]) / (
        1 + c**2
    )
    a, _ = _grad_weights(mtl.cagrad(c=c), _two_task_grads(*g))
    np.testing.assert_allclose(a @ g, d, atol=1e-3)
    # the recovered w is the grid's
    w = (a * (1 + c**2) - 0.5) / (a * (1 + c**2) - 0.5).sum()
    assert abs(w[0] - best) < 1e-3


def test_dwa_weights_by_hand():
    history = jnp.array([[1.0, 2.0], [0.5, 2.0]])  # epoch e-2, e-1
    # r = (0.5, 1.0); T = 2: w = 2 * softmax(0.25, 0.5)
    e1, e2 = math.exp(0.25), math.exp(0.5)
    np.testing.assert_allclose(
        mtl.dwa_weights(history, 2.0), [2 * e1 / (e1 + e2), 2 * e2 / (e1 + e2)], rtol=1e-6
    )
    np.testing.assert_allclose(mtl.dwa_weights(history, 2.0), [0.875647, 1.124353], rtol=1e-5)
    # an absent task is left out of the softmax and the count
    three = jnp.array([[1.0, 2.0, 1.0], [0.5, 2.0, 9.0]])
    np.testing.assert_allclose(
        mtl.dwa_weights(three, 2.0, present=jnp.array([True, True, False])),
        [0.875647, 1.124353, 0.0],
        rtol=1e-5,
    )


def test_dwa_rolls_epochs_over_and_weighs_by_loss_ratios():
    comb = mtl.dwa(temperature=2.0)
    state = comb.init(2)
    present = jnp.array([True, True])
    apply = jax.jit(
        jax.value_and_grad(
            lambda losses, state, epoch: comb.apply(losses, state, present=present, epoch=epoch),
            has_aux=True,
        )
    )
    # epoch 0: mean losses (1, 2); epoch 1: (0.5, 2) -> in epoch 2, r = (0.5, 1)
    batches = {0: [[0.5, 1.0], [1.5, 3.0]], 1: [[0.5, 2.0], [0.5, 2.0]], 2: [[9.0, 9.0]]}
    for epoch, steps in batches.items():
        for losses in steps:
            (_, state), w = apply(jnp.array(losses), state, jnp.int32(epoch))
            if epoch < 2:
                np.testing.assert_allclose(w, [1.0, 1.0])  # first two epochs: weights 1
    np.testing.assert_allclose(w, [0.875647, 1.124353], rtol=1e-5)
    np.testing.assert_allclose(state.history, [[1.0, 2.0], [0.5, 2.0]])
    assert int(state.epoch) == 2 and float(state.sums[0]) == 9.0


def test_uncertainty_weighting_formula_and_gradient():
    comb = mtl.uncertainty_weighting(init_log_var=0.0)
    params = mtl.UncertaintyParams(log_var=jnp.array([0.0, math.log(4.0), 1.0]))
    losses = jnp.array([2.0, 4.0, 7.0])
    present = jnp.array([True, True, False])

    def total(params, losses):
        return comb.apply(losses, comb.init(3), present=present, params=params)[0]

    # 0.5 exp(-s) L + 0.5 s: task 0: 0.5 * 2 = 1; task 1: 0.5 * 1 + 0.5 log 4
    np.testing.assert_allclose(total(params, losses), 1.0 + 0.5 + 0.5 * math.log(4.0), rtol=1e-6)
    # d/ds = 0.5 (1 - exp(-s) L): task 0: 0.5 (1 - 2) = -0.5; task 1: 0 (s = log L is optimal)
    d_params, d_losses = jax.grad(total, argnums=(0, 1))(params, losses)
    np.testing.assert_allclose(d_params.log_var, [-0.5, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(d_losses, [0.5, 0.125, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(comb.init_params(2).log_var, [0.0, 0.0])


def test_gradnorm_moves_weight_to_the_task_with_the_smaller_gradient():
    # equal losses (r = 1), ||g1|| = 1, ||g2|| = 3, w = (1, 1): mean w||g|| = 2, so
    # dL_grad/dw = (sign(1 - 2) * 1, sign(3 - 2) * 3) = (-1, 3);
    # w - 0.025 * (-1, 3) = (1.025, 0.925), renormalised to sum 2: * 2 / 1.95
    comb = mtl.gradnorm(alpha=1.5, lr=0.025)
    grads = _two_task_grads([1.0, 0.0], [0.0, 3.0])
    w, state = _grad_weights(comb, grads)
    np.testing.assert_allclose(w, [1.0, 1.0])  # this step uses the weights before the update
    np.testing.assert_allclose(state.weights, [1.025 * 2 / 1.95, 0.925 * 2 / 1.95], rtol=1e-6)
    np.testing.assert_allclose(state.initial, [1.0, 1.0])
    w, state2 = _grad_weights(comb, grads, state=state)
    np.testing.assert_allclose(w, state.weights, rtol=1e-6)
    assert state2.weights[0] > state.weights[0] > 1.0 > state.weights[1] > state2.weights[1]


def test_gradnorm_records_initial_loss_when_a_task_first_appears():
    comb = mtl.gradnorm()
    state = comb.init(2)
    grads = _two_task_grads([1.0, 0.0], [0.0, 0.0])

    def step(losses, present, state):
        return comb.apply(jnp.array(losses), state, present=jnp.array(present), grads=grads)[1]

    state = step([2.0, 0.0], [True, False], state)
    np.testing.assert_array_equal(state.initial, [2.0, 0.0])
    np.testing.assert_array_equal(state.has_initial, [True, False])
    np.testing.assert_array_equal(state.weights[1], 1.0)  # an absent task's weight is kept
    state = step([1.0, 5.0], [True, True], state)
    np.testing.assert_array_equal(state.initial, [2.0, 5.0])


def test_rlw_is_reproducible_from_the_key():
    comb = mtl.rlw()
    present = (True, True, False, True)

    def weights(seed):
        return _grad_weights(comb, None, present=present, key=jax.random.key(seed))[0]

    np.testing.assert_array_equal(weights(3), weights(3))
    assert not np.allclose(weights(3), weights(4))
    for seed in range(5):
        w = weights(seed)
        assert w[2] == 0.0 and (w[[0, 1, 3]] > 0).all()
        np.testing.assert_allclose(w.sum(), 3.0, rtol=1e-6)
    for distribution in ("uniform", "dirichlet"):
        w, _ = _grad_weights(mtl.rlw(distribution), None, present=present)
        assert w[2] == 0.0
        np.testing.assert_allclose(w.sum(), 3.0, rtol=1e-6)


def test_gram_and_flatten():
    grads = {"a": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones([2, 2, 2])}
    flat = mtl.flatten_task_grads(grads)
    assert flat.shape == (2, 7)
    np.testing.assert_allclose(mtl.gram(grads), flat @ flat.T)
    with pytest.raises(ValueError, match="leading task axis"):
        mtl.gram({"a": jnp.ones([2, 3]), "b": jnp.ones([3, 3])})
    with pytest.raises(ValueError, match="pcgrad needs grads="):
        mtl.pcgrad().apply(jnp.ones([2]), (), present=jnp.ones([2], bool), key=jax.random.key(0))


# ----------------------------------------------------------------------------------------
# User-written combiners


def test_plain_function_plugs_in_as_a_combiner():
    def geometric_mean(losses):
        """exp(mean log L) over the tasks with a loss (absent tasks' losses are 0)."""
        has = losses > 0
        logs = jnp.where(has, jnp.log(jnp.where(has, losses, 1.0)), 0.0)
        return jnp.exp(logs.sum() / jnp.maximum(has.sum(), 1))

    comb = mtl.as_combiner(geometric_mean)
    assert isinstance(comb, mtl.Combiner) and not comb.uses_grads
    total, state = jax.jit(
        lambda losses: comb.apply(
            losses, comb.init(3), present=losses > 0, key=jax.random.key(0), step=0, epoch=0
        )
    )(jnp.array([2.0, 0.0, 8.0]))
    np.testing.assert_allclose(total, 4.0, rtol=1e-6)
    assert state == mtl.EmptyState()


class PeakState(NamedTuple):
    peak: jax.Array  # float32 [K], the largest loss seen for each task


def scale_by_peak() -> mtl.Combiner:
    """Each task's loss divided by the largest it has been: an optax-style user combiner."""

    def init(n_tasks):
        return PeakState(peak=jnp.zeros([n_tasks]))

    def apply(losses, state, *, present, **extra):
        del extra
        peak = jnp.where(
            present, jnp.maximum(state.peak, jax.lax.stop_gradient(losses)), state.peak
        )
        scaled = jnp.where(present, losses / jnp.where(peak > 0, peak, 1.0), 0.0)
        return scaled.sum(), PeakState(peak=peak)

    return mtl.Combiner(init, apply)


def test_user_combiner_with_state_plugs_in():
    comb = mtl.as_combiner(scale_by_peak())
    present = jnp.array([True, False])
    state = comb.init(2)
    for losses, expected in [([4.0, 0.0], 1.0), ([2.0, 0.0], 0.5), ([8.0, 0.0], 1.0)]:
        total, state = jax.jit(comb.apply)(
            jnp.array(losses), state, present=present, key=jax.random.key(0), step=0, epoch=0
        )
        np.testing.assert_allclose(total, expected)
    np.testing.assert_array_equal(state.peak, [8.0, 0.0])

    class Duck(NamedTuple):  # any (init, apply) pair is accepted, not only mtl.Combiner
        init: object
        apply: object

    duck = mtl.as_combiner(Duck(comb.init, comb.apply))
    assert isinstance(duck, mtl.Combiner) and duck.apply is comb.apply
    assert mtl.as_combiner("mean").apply is not None
    with pytest.raises(TypeError, match="a loss combiner is"):
        mtl.as_combiner(3)


@pytest.mark.parametrize("name,kwargs", ALL, ids=[n for n, _ in ALL])
def test_no_two_fields_of_a_combiners_state_share_an_array(name, kwargs):
    # a jitted step that donates its state refuses one buffer given twice
    leaves = jax.tree.leaves(mtl.COMBINERS[name](**kwargs).init(3))
    assert len({id(leaf) for leaf in leaves}) == len(leaves)
