"""`per_task_grads="gramian"`: the Gram matrix without the K x P Jacobian, the same step.

One step of a small model (batch norm and dropout, so one forward pass must serve every
pass) in Gram mode must give the parameters, metrics and combiner state of the Jacobian
mode; every combiner's `gramian` rule must give the weights its `apply` gives.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mtjax import losses, models
from mtjax.tasks import Task
from mtjax.train import combiners
from mtjax.train import state as states
from mtjax.train import step as steps

TASKS = (
    Task("word", ("go", "stop", "yes")),
    Task("loud", ("no", "yes"), "binary"),
    Task("tags", ("bird", "car", "rain"), "multilabel"),
)
FNS = losses.loss_functions(TASKS)
MODEL = models.HardSharingDNN(TASKS, hidden=(16, 8), dropout=0.25, norm="batch")
TX = optax.sgd(0.5)  # one object: the train state holds it as a static field
WITH_GRAMIAN = sorted(
    name
    for name, factory in combiners.COMBINERS.items()
    if steps._has_gramian(factory)  # every built-in one whose weights come from G
)


def make_batch(has: np.ndarray) -> steps.Batch:
    """Eight rows; `has` [8, 3] says which row carries which task; the last row pads."""
    b, t, f = 8, 3, 4
    rng = np.random.default_rng(0)
    x = rng.normal(size=(b, t, f)).astype(np.float32)
    y = np.zeros([b, 7], np.float32)
    y[np.arange(b), np.arange(b) % 3] = 1
    y[:, 3] = np.arange(b) % 2
    y[:, 4:] = rng.random((b, 3)) < 0.4
    weight = np.ones(b, np.float32)
    weight[-1] = 0.0
    return steps.Batch(x, y, has.astype(bool), weight)


NO_TAGS = make_batch(np.array([[1, 1, 0]] * 4 + [[1, 0, 0]] * 4))  # "tags" absent
NO_TASK = make_batch(np.zeros([8, 3]))


@functools.cache
def compiled(name: str, mode: str, shared) -> Callable:
    """The jitted step, built once per setting (compiling dominates these tests)."""
    comb = combiners.combiner_from_config(name)
    return jax.jit(
        steps.make_train_step(MODEL, TASKS, FNS, comb, shared=shared, per_task_grads=mode)
    )


def run(name, batch, mode, shared=steps.not_a_head, steps_=1):
    combiner = combiners.combiner_from_config(name)
    state = states.create_train_state(
        MODEL, TX, combiner, batch.x[:2], jax.random.key(0), tasks=TASKS
    )
    step = compiled(name, mode, shared)
    for _ in range(steps_):
        state, metrics = step(state, batch, jax.random.key(3), jnp.int32(0))
    return state, metrics


def assert_trees_close(a, b, atol=1e-5):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=atol)


def assert_modes_agree(name, shared):
    jac, jac_m = run(name, NO_TAGS, "jacobian", shared, steps_=2)
    gram, gram_m = run(name, NO_TAGS, "gramian", shared, steps_=2)
    assert_trees_close(gram.params, jac.params)
    assert_trees_close(gram.batch_stats, jac.batch_stats)
    assert_trees_close(gram.comb_state, jac.comb_state)
    for key in ("loss", "tasks", "present", "weights", "cosines"):
        np.testing.assert_allclose(gram_m[key], jac_m[key], rtol=1e-5, atol=1e-5, err_msg=key)
    assert gram_m["weights"][2] == 0.0  # the absent task
    assert np.abs(gram.params["model"]["head_word"]["kernel"]).max() > 0
    return gram, gram_m


def test_two_steps_in_gram_mode_equal_the_jacobian_mode_and_repeat_exactly():
    # pcgrad: G and the key, each head on its own gradient
    gram, gram_m = assert_modes_agree("pcgrad", steps.not_a_head)
    again, again_m = run("pcgrad", NO_TAGS, "gramian", steps.not_a_head, steps_=2)
    for x, y in zip(jax.tree.leaves(gram.params), jax.tree.leaves(again.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    np.testing.assert_array_equal(gram_m["weights"], again_m["weights"])
    # no task present: a finite zero update
    before = states.create_train_state(
        MODEL, TX, combiners.pcgrad(), NO_TASK.x[:2], jax.random.key(0), tasks=TASKS
    )
    after, metrics = run("pcgrad", NO_TASK, "gramian")
    assert float(metrics["loss"]) == 0.0
    np.testing.assert_array_equal(metrics["weights"], np.zeros(3))
    for x, y in zip(jax.tree.leaves(after.params), jax.tree.leaves(before.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert np.isfinite(np.asarray(metrics["cosines"])).all()


def test_gram_mode_with_a_state_the_losses_and_every_parameter_shared():
    assert_modes_agree("gradnorm", "all")  # G's diagonal, the losses and a state


def test_a_combiner_without_a_gramian_rule_is_refused_by_name():
    with pytest.raises(ValueError, match=r"combiner excess_mtl has no gramian rule.*mgda"):
        steps.make_train_step(MODEL, TASKS, FNS, combiners.excess_mtl(), per_task_grads="gramian")
    with pytest.raises(ValueError, match=r"combiner graddrop has no gramian rule"):
        steps.make_train_step(MODEL, TASKS, FNS, combiners.graddrop(), per_task_grads="gramian")
    with pytest.raises(ValueError, match=r"per_task_grads must be one of .*'hessian'"):
        steps.make_train_step(MODEL, TASKS, FNS, combiners.mgda(), per_task_grads="hessian")
    # loss-level combiners have no per-task gradients: the mode changes nothing
    assert callable(
        steps.make_train_step(MODEL, TASKS, FNS, losses.sum(), per_task_grads="gramian")
    )


def test_every_gradient_combiner_of_gram_matrices_has_a_gramian_rule():
    assert {
        "mgda", "pcgrad", "cagrad", "gradnorm", "imtl_g", "gradvac", "config", "aligned_mtl",
        "krum", "upgrad", "dualproj", "nash_mtl", "fairgrad", "sdmgrad",
    } <= set(WITH_GRAMIAN)  # fmt: skip


@pytest.mark.parametrize("name", ["imtl_g", "gradnorm", "pcgrad", "mgda", "gradvac", "cagrad"])
def test_the_gramian_rule_gives_the_weights_of_apply(name):
    # one of `gram_weighting`'s (every other built-in rule is one of those) and each own rule
    rng = np.random.default_rng(1)
    grads = {"a": jnp.asarray(rng.normal(size=(4, 6, 3)), jnp.float32)}
    grads["a"] = grads["a"].at[1].set(-0.8 * grads["a"][0])  # a conflict
    grads["a"] = grads["a"].at[3].set(0.0)  # absent
    present = jnp.array([True, True, True, False])
    losses_K = jnp.array([0.5, 1.2, 0.9, 0.0])
    comb = combiners.combiner_from_config(name)
    state = comb.init(4)
    extra = dict(present=present, key=jax.random.key(5), step=jnp.int32(0), epoch=jnp.int32(0))

    @jax.jit
    def both(l_K):
        def total(l_K):
            return comb.apply(l_K, state, grads=grads, **extra)

        by_rule = comb.gramian(combiners.gram(grads), state, losses=l_K, **extra)
        return jax.grad(lambda l_K: total(l_K)[0])(l_K), total(l_K)[1], by_rule

    weights_K, jac_state, (gram_w, gram_state) = both(losses_K)
    np.testing.assert_allclose(np.where(present, gram_w, 0.0), weights_K, rtol=1e-4, atol=1e-5)
    assert_trees_close(gram_state, jac_state)
    assert float(gram_w[3]) == 0.0


def test_the_gram_by_passes_is_the_gram_of_the_jacobian():
    # f(s, o) = (A s + B o)-ish losses: J over s is A's rows, so G = A A^T
    a_KxP = jnp.asarray(np.random.default_rng(2).normal(size=(3, 5)), jnp.float32)

    def fn(s, o):
        return a_KxP @ s["w"] + o["h"] * jnp.array([1.0, 2.0, 3.0]), (jnp.array([1, 1, 0], bool),)

    out = combiners.base.gram_by_passes(fn, {"w": jnp.ones(5)}, {"h": jnp.float32(2.0)})
    _, _, g_KxK, heads, vjp = out
    present = np.array([1.0, 1.0, 0.0])
    expected = np.asarray(a_KxP) * present[:, None]
    np.testing.assert_allclose(g_KxK, expected @ expected.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(heads["h"], 1.0 + 2.0)  # tasks 0 and 1's d/dh
    np.testing.assert_allclose(vjp(jnp.array([1.0, 0.5, 0.0]))[0]["w"], a_KxP[0] + 0.5 * a_KxP[1])


def test_fit_threads_the_mode_to_the_step(monkeypatch):
    from tiny_training import SmallNet, three_datasets

    import mtjax as mt

    data = three_datasets(n=24)
    with pytest.raises(ValueError, match=r"combiner excess_mtl has no gramian rule"):
        mt.train.fit(None, data, combine=combiners.excess_mtl(), per_task_grads="gramian")
    seen = {}

    def make(*args, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt  # stop before compiling

    monkeypatch.setattr(steps, "make_train_step", make)
    with pytest.raises(KeyboardInterrupt):
        mt.train.fit(SmallNet(data.tasks), data, combine="mgda", per_task_grads="gramian")
    assert seen["per_task_grads"] == "gramian"
