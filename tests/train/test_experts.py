"""MMoE and CrossStitch: outputs per task, which parameters are shared, padding never counts,
gates are distributions, an identity cross-stitch is K independent MLPs, and MMoE trains."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tiny_training import three_datasets

import mtjax as mt
from mtjax.models import init_variables
from mtjax.tasks import Task
from mtjax.train import step as step_module
from mtjax.train.models import experts
from mtjax.train.models.experts import CrossStitch, MMoE, clip_statistics, gate_weights

TASKS = (
    Task("word", ("go", "stop", "yes")),
    Task("loud", ("no", "yes"), "binary"),
    Task("tags", ("a", "b", "c", "d"), "multilabel"),
)
SMALL = {
    "mmoe": lambda tasks, **kw: MMoE(tasks, n_experts=3, expert_hidden=(16,), **kw),
    "cross_stitch": lambda tasks, **kw: CrossStitch(tasks, hidden=(16, 8), **kw),
}


def features(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def shapes(model, x, **kw):
    """The model's variables and outputs as shapes, traced but not compiled (fast)."""
    variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
    return variables, jax.eval_shape(functools.partial(model.apply, **kw), variables, x)


@pytest.mark.parametrize("kind", sorted(SMALL))
@pytest.mark.parametrize("n_tasks", [1, 3])
def test_one_logit_matrix_per_task(kind, n_tasks):
    tasks = TASKS[:n_tasks]
    model = SMALL[kind](tasks)
    want = {"word": (4, 3), "loud": (4, 1), "tags": (4, 4)}
    for frames in (7, 1):  # any T: the clip vector's size does not depend on it
        variables, logits = shapes(model, features((4, frames, 6)))
        assert {k: v.shape for k, v in logits.items()} == {t.name: want[t.name] for t in tasks}
        assert {v.dtype for v in jax.tree.leaves((variables, logits))} == {np.dtype("float32")}


def test_shared_parameters_are_the_experts_and_the_cross_stitch_units():
    x = features((2, 5, 6))
    shared = {}
    for kind, make in SMALL.items():
        params = shapes(make(TASKS), x)[0]["params"]
        picked, own = step_module.split_shared(params, step_module.not_a_head)
        shared[kind] = (sorted(picked), sorted(own))
    assert shared["mmoe"] == (
        ["shared_expert0", "shared_expert1", "shared_expert2"],
        sorted(f"head_{t.name}{s}" for t in TASKS for s in ("", "_gate")),
    )
    assert shared["cross_stitch"] == (
        ["shared_stitch0", "shared_stitch1"],
        sorted(f"head_{t.name}{s}" for t in TASKS for s in ("", "_layer0", "_layer1")),
    )


def test_clip_statistics_are_over_valid_frames_only():
    x = features((2, 6, 3))
    x[0, 4:] = 0.0  # clip 0 has 4 frames, clip 1 all 6
    stats = np.asarray(clip_statistics(jnp.asarray(x)))
    assert stats.shape == (2, 6)
    for row, frames in ((0, 4), (1, 6)):
        valid = x[row, :frames]
        np.testing.assert_allclose(stats[row, :3], valid.mean(0), rtol=1e-5, atol=1e-6)
        want_std = np.sqrt(valid.var(0) + experts.STD_EPS)
        np.testing.assert_allclose(stats[row, 3:], want_std, rtol=1e-5)


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_padding_frames_change_nothing_and_dropout_acts_in_training_only(kind):
    model = SMALL[kind](TASKS, dropout=0.5)

    @jax.jit  # one compile for every output the test looks at
    def outputs(variables, x, padded):
        train = [
            model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(seed)})
            for seed in (1, 2)
        ]
        return model.apply(variables, x), model.apply(variables, padded), train

    x = features((3, 5, 6), seed=1)
    padded = np.concatenate([x, np.zeros((3, 8, 6), np.float32)], axis=1)
    variables = init_variables(model, jax.random.key(1), x)
    alone, with_padding, (a, b) = outputs(variables, x, padded)
    for name in alone:
        np.testing.assert_allclose(with_padding[name], alone[name], rtol=1e-5, atol=1e-6)
    assert not np.allclose(a["word"], b["word"]) and not np.allclose(a["word"], alone["word"])
    padded[:, 5] = x[:, 0] + 3.0  # a real frame does change the output: the check can fail
    assert not np.allclose(outputs(variables, x, padded)[1]["word"], alone["word"], atol=1e-4)


def test_each_gate_is_a_softmax_of_its_own_parameters():
    model = SMALL["mmoe"](TASKS)
    x = features((4, 5, 6))
    variables = init_variables(model, jax.random.key(0), x)
    gates = jax.jit(functools.partial(gate_weights, model))(variables, x)
    assert set(gates) == {"word", "loud", "tags"}
    h = np.concatenate([x.mean(1), np.sqrt(x.var(1) + experts.STD_EPS)], axis=-1)
    for name, gate in gates.items():
        assert gate.shape == (4, 3) and bool((gate >= 0).all())
        np.testing.assert_allclose(gate.sum(-1), 1.0, rtol=1e-6)
        dense = variables["params"][f"head_{name}_gate"]["dense"]
        z = h @ np.asarray(dense["kernel"]) + np.asarray(dense["bias"])
        want = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        np.testing.assert_allclose(gate, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(gates["word"], gates["loud"])  # one gate per task
    with pytest.raises(ValueError, match="gate_weights: model must be an MMoE, got CrossStitch"):
        gate_weights(SMALL["cross_stitch"](TASKS), variables, x)


def test_cross_stitch_starts_near_identity():
    init = experts._stitch_init(0.9)
    want = [[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9]]
    np.testing.assert_allclose(init(jax.random.key(0), (3, 3)), want, rtol=1e-6)
    np.testing.assert_allclose(init(jax.random.key(0), (2, 2)), [[0.9, 0.1], [0.1, 0.9]])
    np.testing.assert_array_equal(init(jax.random.key(0), (1, 1)), [[1.0]])


def test_identity_cross_stitch_is_independent_columns():
    model = SMALL["cross_stitch"](TASKS, alpha_same=1.0)
    x = features((3, 5, 6))
    variables = init_variables(model, jax.random.key(0), x)
    np.testing.assert_array_equal(variables["params"]["shared_stitch1"]["alpha"], np.eye(3))
    apply = jax.jit(model.apply)
    before = apply(variables, x)
    others = ("head_loud_layer0", "head_tags_layer1")  # other tasks' columns
    params = variables["params"]
    changed = params | {n: jax.tree.map(lambda p: p + 0.5, params[n]) for n in others}
    after = apply({"params": changed}, x)
    np.testing.assert_array_equal(after["word"], before["word"])
    assert not np.allclose(before["loud"], after["loud"])
    assert not np.allclose(before["tags"], after["tags"])
    # once the units mix the columns, the word logits move with the other columns too
    mixing = {"alpha": jnp.asarray(experts._stitch_init(0.9)(None, (3, 3)))}
    stitched = {"shared_stitch0": mixing, "shared_stitch1": mixing}
    moved = apply({"params": changed | stitched}, x)["word"]
    assert not np.allclose(moved, apply({"params": params | stitched}, x)["word"])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: MMoE(TASKS, n_experts=0), "MMoE: n_experts must be a positive int, got 0"),
        (lambda: MMoE(TASKS, expert_hidden=()), "MMoE: expert_hidden must be a tuple"),
        (lambda: MMoE(TASKS, dropout=1.0), r"MMoE: dropout must be in \[0, 1\)"),
        (lambda: MMoE(()), "MMoE: tasks must be a non-empty tuple"),
        (lambda: CrossStitch(TASKS, hidden=()), "CrossStitch: hidden must be a tuple"),
        (lambda: CrossStitch(TASKS, alpha_same=1.5), r"CrossStitch: alpha_same must be in"),
    ],
)
def test_bad_settings_are_refused_by_name(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_lists_from_a_config_become_tuples():
    model = MMoE(list(TASKS), expert_hidden=[8], tower_hidden=[4])
    assert model.tasks == TASKS and model.expert_hidden == (8,) and model.tower_hidden == (4,)
    params = shapes(model, features((2, 3, 4)))[0]["params"]
    assert params["head_word_hidden0"]["kernel"].shape == (8, 4)
    assert params["shared_expert0"]["dense0"]["kernel"].shape == (8, 8)  # 2F = 8 inputs


@pytest.fixture(scope="module")
def data():
    return three_datasets(), three_datasets(n=60, seed=10)


@pytest.mark.parametrize("combined", [False, True])
def test_mmoe_trains_alone_and_with_pcgrad_on_every_task_batches(data, combined):
    trn, tst = data
    options = {"combine": mt.losses.pcgrad(), "batches": mt.batching.every_task()}
    trained = mt.fit(
        MMoE(trn.tasks, expert_hidden=(32,)),
        trn,
        epochs=3,
        optimizer=optax.adam(5e-3),
        early_stop=None,
        progress=False,
        **(options if combined else {}),
    )
    history = trained.history
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    reports = mt.train.evaluate(trained, tst)
    assert reports["word"]["accuracy"] > 0.6  # chance 1/3
    assert reports["loud"]["accuracy"] > 0.6  # chance 1/2
