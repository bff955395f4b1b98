"""Gradient surgery acts on the shared parameters; each head trains on its own task's gradient.

The references are made by hand: one `jax.grad` per task of that task's masked mean loss,
split into the shared trunk (`shared_*`) and the heads (`head_*`). With plain SGD at rate 1
a step's update is minus the gradient it used, so the updates can be compared directly.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mtjax import losses, models
from mtjax.tasks import Task
from mtjax.train import state as states
from mtjax.train import step as steps
from mtjax.train.combiners import gradient

WORD = Task("word", ("go", "stop", "yes"))
LOUD = Task("loud", ("no", "yes"), "binary")
TAGS = Task("tags", ("bird", "car", "rain"), "multilabel")
TASKS = (WORD, LOUD, TAGS)
FNS = losses.loss_functions(TASKS)
HEADS = {"word": "head_word", "loud": "head_loud", "tags": "head_tags"}


def make_batch(has: np.ndarray) -> steps.Batch:
    """Eight rows of features and targets; `has` [8, 3] says which row carries which task."""
    b, t, f = 8, 3, 4
    rng = np.random.default_rng(0)
    x = rng.normal(size=(b, t, f)).astype(np.float32)
    y = np.zeros([b, 7], np.float32)
    y[np.arange(b), np.arange(b) % 3] = 1
    y[:, 3] = np.arange(b) % 2
    y[:, 4:] = rng.random((b, 3)) < 0.4
    weight = np.ones(b, np.float32)
    weight[-1] = 0.0  # a padding row
    return steps.Batch(x, y, has.astype(bool), weight)


EVERY_KIND = make_batch(
    np.array(
        [[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1], [1, 0, 0], [0, 1, 1], [1, 1, 0], [1, 1, 1]]
    )
)
NO_TAGS = make_batch(np.array([[1, 1, 0]] * 4 + [[1, 0, 0]] * 4))

MODEL = models.HardSharingDNN(TASKS, hidden=(16, 8), dropout=0.0)


def initial_state(combiner):
    return states.create_train_state(
        MODEL, optax.sgd(1.0), combiner, EVERY_KIND.x[:2], jax.random.key(0), tasks=TASKS
    )


def per_task_grads(params, batch):
    """float64 per-task gradients {name: [K, ...]}, one `jax.grad` per task, and the losses."""

    def loss(params, k):
        logits = MODEL.apply({"params": params}, batch.x, train=True)
        return losses.task_losses(logits, batch.y, batch.has_task, batch.weight, TASKS, FNS)[0][k]

    grads = [jax.grad(loss)(params, k) for k in range(len(TASKS))]
    return jax.tree.map(lambda *g: np.stack([np.asarray(a, np.float64) for a in g]), *grads)


def flat(tree) -> np.ndarray:
    """[K, P] of a per-task tree, leaves in tree order."""
    leaves = jax.tree.leaves(tree)
    return np.concatenate([leaf.reshape(leaf.shape[0], -1) for leaf in leaves], 1)


def shared_part(tree):
    return {name: sub for name, sub in tree.items() if not name.startswith("head_")}


def run_step(combiner, batch, **kwargs):
    state = initial_state(combiner)
    step = jax.jit(steps.make_train_step(MODEL, TASKS, FNS, combiner, **kwargs))
    new_state, out = step(state, batch, jax.random.key(1), jnp.int32(0))
    update = jax.tree.map(
        lambda new, old: np.asarray(new, np.float64) - np.asarray(old, np.float64),
        new_state.params["model"],
        state.params["model"],
    )
    return state, new_state, out, update


@pytest.mark.parametrize("name", ["pcgrad", "mgda", "cagrad", "gradnorm"])
@pytest.mark.parametrize("batch", [EVERY_KIND, NO_TAGS], ids=["every-kind", "no-tags"])
def test_heads_get_their_own_tasks_plain_gradient(name, batch):
    combiner = losses.combiner_from_config(name)
    state, _, out, update = run_step(combiner, batch)
    grads = per_task_grads(state.params["model"], batch)
    present = np.asarray(out["present"])
    np.testing.assert_array_equal(present, batch.has_task[batch.weight > 0].any(0))
    for k, task in enumerate(TASKS):
        head = HEADS[task.name]
        # d L_k / d head_k, unscaled by the task weight; an absent task's head stays put
        for leaf, expected in zip(jax.tree.leaves(update[head]), jax.tree.leaves(grads[head])):
            np.testing.assert_allclose(leaf, -expected[k], rtol=1e-5, atol=1e-6, err_msg=head)
        if not present[k]:
            assert all((leaf == 0).all() for leaf in jax.tree.leaves(update[head]))
    # the shared trunk moves by the combiner's weights over the shared gradients alone
    weights = np.asarray(out["weights"], np.float64)
    expected = np.tensordot(weights, flat(shared_part(grads)), 1)
    moved = np.concatenate([leaf.ravel() for leaf in jax.tree.leaves(shared_part(update))])
    np.testing.assert_allclose(moved, -expected, rtol=2e-5, atol=1e-6)


def test_mgda_weights_are_the_min_norm_point_of_the_shared_gradients_only():
    state, _, out, update = run_step(losses.mgda(), EVERY_KIND)
    grads = per_task_grads(state.params["model"], EVERY_KIND)
    present = jnp.ones(3, bool)
    shared = flat(shared_part(grads))
    on_shared = np.asarray(gradient.min_norm_weights(jnp.asarray(shared @ shared.T), present))
    np.testing.assert_allclose(out["weights"], on_shared, atol=1e-5)
    # with the heads in the geometry the answer is another one: the test can tell them apart
    everything = flat(grads)
    with_heads = np.asarray(
        gradient.min_norm_weights(jnp.asarray(everything @ everything.T), present)
    )
    assert np.abs(with_heads - on_shared).max() > 1e-2, (with_heads, on_shared)
    # and no head is scaled by its weight: every head moves by its full gradient
    for k, task in enumerate(TASKS):
        kernel = update[HEADS[task.name]]["kernel"]
        np.testing.assert_allclose(
            kernel, -grads[HEADS[task.name]]["kernel"][k], rtol=1e-5, atol=1e-6
        )
    assert (np.asarray(out["weights"]) < 0.9).all()  # so scaling would have shown


class GramSpy(NamedTuple):
    gram: jax.Array  # float32 [K, K], the Gram matrix of the gradients the combiner got


def gram_spy(seen_names: list):
    """A gradient-level combiner (the plain sum) that records what it is given."""

    def init(n_tasks):
        return GramSpy(gram=jnp.zeros([n_tasks, n_tasks]))

    def apply(losses_K, state, *, present, grads, **extra):
        del extra
        seen_names.append(sorted(grads))  # at trace time: the top-level entries
        return jnp.sum(jnp.where(present, losses_K, 0.0)), GramSpy(gram=gradient.gram(grads))

    return losses.Combiner(init, apply, uses_grads=True)


def test_the_gram_matrix_the_combiner_sees_has_no_head_terms():
    seen: list = []
    state, new_state, _, _ = run_step(gram_spy(seen), EVERY_KIND)
    grads = per_task_grads(state.params["model"], EVERY_KIND)
    assert seen and all(not any(n.startswith("head_") for n in names) for names in seen), seen
    assert seen[0] == sorted(shared_part(grads))
    shared = flat(shared_part(grads))
    np.testing.assert_allclose(new_state.comb_state.gram, shared @ shared.T, rtol=1e-5, atol=1e-7)
    everything = flat(grads)
    diag_gap = np.diagonal(everything @ everything.T) - np.diagonal(shared @ shared.T)
    assert (diag_gap > 1e-3 * np.diagonal(shared @ shared.T)).all()  # heads would have shown

    # shared="all": today's behaviour, heads in the geometry
    seen_all: list = []
    _, spied, _, _ = run_step(gram_spy(seen_all), EVERY_KIND, shared="all")
    assert any(n.startswith("head_") for n in seen_all[0])
    np.testing.assert_allclose(spied.comb_state.gram, everything @ everything.T, rtol=1e-5)


def test_shared_all_scales_each_head_by_its_task_weight():
    state, _, out, update = run_step(losses.mgda(), EVERY_KIND, shared="all")
    grads = per_task_grads(state.params["model"], EVERY_KIND)
    weights = np.asarray(out["weights"], np.float64)
    for k, task in enumerate(TASKS):
        head = HEADS[task.name]
        np.testing.assert_allclose(
            update[head]["kernel"], -weights[k] * grads[head]["kernel"][k], rtol=1e-5, atol=1e-7
        )


def test_a_custom_shared_predicate_picks_the_entries():
    seen: list = []
    only_first = lambda name: name == "shared_dense0"  # noqa: E731
    state, _, _, update = run_step(gram_spy(seen), EVERY_KIND, shared=only_first)
    assert seen[0] == ["shared_dense0"]
    # the spy is the plain sum, so every entry moves by the summed gradient either way
    grads = per_task_grads(state.params["model"], EVERY_KIND)
    for name in update:
        for leaf, g in zip(jax.tree.leaves(update[name]), jax.tree.leaves(grads[name])):
            np.testing.assert_allclose(leaf, -g.sum(0), rtol=1e-5, atol=1e-6, err_msg=name)


def test_loss_level_combiners_do_not_depend_on_shared():
    for combiner in (losses.sum(), losses.uncertainty_weighting()):
        _, a, out_a, _ = run_step(combiner, EVERY_KIND)
        _, b, out_b, _ = run_step(combiner, EVERY_KIND, shared="all")
        for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
            np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(out_a["weights"], out_b["weights"])


def test_bad_shared_is_refused_with_the_parameter_names():
    combiner = losses.pcgrad()
    with pytest.raises(ValueError, match="shared= is 'all' or a predicate"):
        steps.make_train_step(MODEL, TASKS, FNS, combiner, shared="heads")
    step = jax.jit(steps.make_train_step(MODEL, TASKS, FNS, combiner, shared=lambda name: False))
    with pytest.raises(ValueError, match=r"picks none of the model's top-level parameters \['head"):
        step(initial_state(combiner), EVERY_KIND, jax.random.key(1), jnp.int32(0))
