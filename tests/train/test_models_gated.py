"""CGC/PLE and DSelect-k: outputs per task, which parameters are shared, gates are
distributions, binary DSelect-k selectors pick k experts, padding never counts, bad settings
are refused by name, and both train (with PCGrad) and are rebuilt from a run's config."""

from __future__ import annotations

import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tiny_training import LOUD, WORD, dataset, three_datasets

import mtjax as mt
from mtjax.experiments import registry
from mtjax.runs import reevaluate
from mtjax.tasks import Task
from mtjax.train import settings
from mtjax.train import step as step_module
from mtjax.train.models import (
    CGC,
    MODELS,
    PLE,
    DSelectK,
    MMoE,
    experts,
    gate_outputs,
    gated,
    model_from_config,
    selector_entropy,
    selector_weights,
    smooth_step,
)

TASKS = (
    Task("word", ("go", "stop", "yes")),
    Task("loud", ("no", "yes"), "binary"),
    Task("tags", ("a", "b", "c", "d"), "multilabel"),
)
SMALL = {
    "ple": lambda tasks, **kw: PLE(
        tasks, shared_experts=2, task_experts=1, expert_hidden=(8,), **kw
    ),
    "cgc": lambda tasks, **kw: CGC(
        tasks, shared_experts=1, task_experts=2, expert_hidden=(8,), **kw
    ),
    "dselect_k": lambda tasks, **kw: DSelectK(tasks, n_experts=5, k=2, expert_hidden=(8,), **kw),
    "dselect_k_per_example": lambda tasks, **kw: DSelectK(
        tasks, n_experts=4, k=2, per_example=True, expert_hidden=(8,), **kw
    ),
}


def features(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def shapes(model, x):
    """The model's variables and outputs as shapes, traced but not compiled (fast)."""
    variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
    return variables, jax.eval_shape(model.apply, variables, x)


def random_params(model, x, seed=0) -> dict:
    """Parameters of the model's shapes drawn at random (no compile, unlike an init)."""
    rng = np.random.default_rng(seed)
    params = shapes(model, x)[0]["params"]
    return jax.tree.map(lambda s: jnp.asarray(0.5 * rng.standard_normal(s.shape), s.dtype), params)


@pytest.mark.parametrize("kind", sorted(SMALL))
@pytest.mark.parametrize("n_tasks", [1, 3])
def test_one_logit_matrix_per_task(kind, n_tasks):
    tasks = TASKS[:n_tasks]
    want = {"word": (4, 3), "loud": (4, 1), "tags": (4, 4)}
    for frames in (7, 1):  # any T: the clip vector's size does not depend on it
        variables, logits = shapes(SMALL[kind](tasks), features((4, frames, 6)))
        assert set(variables) == {"params"}  # DSelectK sows its entropy outside init only
        assert {k: v.shape for k, v in logits.items()} == {t.name: want[t.name] for t in tasks}
        assert {v.dtype for v in jax.tree.leaves((variables, logits))} == {np.dtype("float32")}


def test_shared_parameters_are_the_shared_experts_and_gates():
    x = features((2, 5, 6))
    split = {}
    for kind, make in SMALL.items():
        params = shapes(make(TASKS), x)[0]["params"]
        picked, own = step_module.split_shared(params, step_module.not_a_head)
        split[kind] = (sorted(picked), sorted(own))
    names = [t.name for t in TASKS]
    assert split["ple"] == (
        sorted(
            ["shared_level0_gate"]
            + [f"shared_level{lv}_expert{i}" for lv in (0, 1) for i in (0, 1)]
        ),
        sorted(
            [f"head_{t}" for t in names]
            + [
                f"head_{t}_level{lv}_{p}"
                for t in names
                for lv in (0, 1)
                for p in ("expert0", "gate")
            ]
        ),
    )
    assert split["cgc"] == (
        ["shared_level0_expert0"],
        sorted(
            f"head_{t}{s}"
            for t in names
            for s in ("", "_level0_expert0", "_level0_expert1", "_level0_gate")
        ),
    )
    for kind, n in (("dselect_k", 5), ("dselect_k_per_example", 4)):
        assert split[kind] == (
            [f"shared_expert{i}" for i in range(n)],
            sorted(f"head_{t}{s}" for t in names for s in ("", "_gate")),
        )
    params = shapes(SMALL["dselect_k"](TASKS), x)[0]["params"]
    gate = params["head_word_gate"]  # static: k selectors of ceil(log2 5) = 3 bits, k weights
    assert (gate["z"].shape, gate["w"].shape) == ((2, 3), (2,))
    params = shapes(SMALL["dselect_k_per_example"](TASKS), x)[0]["params"]
    assert params["head_word_gate"]["z_dense"]["kernel"].shape == (12, 2 * 2)  # 2F in, k*m out


def test_smooth_step_is_the_cubic_between_its_flat_ends():
    t = jnp.asarray([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
    np.testing.assert_allclose(
        smooth_step(t, 2.0), [0.0, 0.0, 0.15625, 0.5, 0.84375, 1.0, 1.0], rtol=1e-6
    )  # gamma=2: S(0.5) = -2/8 * 0.125 + 3/4 * 0.5 + 0.5
    grads = jax.vmap(jax.grad(lambda v: smooth_step(v, 2.0)))(t)
    np.testing.assert_allclose(grads, [0.0, 0.0, 0.5625, 0.75, 0.5625, 0.0, 0.0], rtol=1e-6)


def test_binary_selectors_pick_one_expert_each_and_codes_past_n_fold_onto_real_ones():
    bits, expert = gated.selector_codes(5)
    assert bits.shape == (8, 3) and expert.shape == (8, 5)
    np.testing.assert_array_equal(bits[6], [0, 1, 1])  # bit j of code l is (l >> j) & 1
    assert list(expert.argmax(1)) == [0, 1, 2, 3, 4, 0, 1, 2]
    # bits (1, 0, 0) -> code 1, (1, 1, 0) -> 3, (0, 1, 1) -> 6 -> expert 1; |z| >= gamma/2
    z = jnp.asarray([[0.6, -0.6, -0.6], [0.5, 0.7, -2.0], [-0.5, 0.9, 0.8]])
    picked = selector_weights(z, 1.0, 5)
    np.testing.assert_array_equal(picked, np.eye(5, dtype=np.float32)[[1, 3, 1]])
    soft = selector_weights(jnp.asarray(features((4, 2, 3))) * 0.2, 1.0, 5)
    assert bool((soft > 0).all())  # inside the smooth part every expert has weight
    np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=1e-6)


@pytest.fixture(scope="module")
def binary_dselect():
    """A static DSelect-k whose selectors are set by hand to binary codes."""
    model = SMALL["dselect_k"](TASKS, dropout=0.0)
    x = features((3, 5, 6), seed=2)
    params = dict(random_params(model, x))
    codes = {"word": (1, 3), "loud": (2, 2), "tags": (4, 7)}  # 7 -> expert 2 (of 5)
    for task, pair in codes.items():
        bits = np.array([[(c >> j) & 1 for j in range(3)] for c in pair], np.float32)
        z = jnp.asarray(np.where(bits == 1, 0.8, -0.8))
        params[f"head_{task}_gate"] = {"z": z, "w": jnp.asarray([0.3, -0.2])}
    return model, {"params": params}, x


def test_binary_dselect_gates_weigh_exactly_the_selected_experts(binary_dselect):
    model, variables, x = binary_dselect

    padded = jnp.concatenate([x, jnp.zeros((3, 4, 6))], axis=1)  # padding frames count nil

    @jax.jit
    def gates_and_word_gradient(params):
        word = jax.grad(lambda p: model.apply({"params": p}, x)["word"].sum())(params)
        both = [model.apply({"params": params}, a) for a in (x, padded)]
        return gate_outputs(model, {"params": params}, x), word, both

    gates, grads, (alone, with_padding) = gates_and_word_gradient(variables["params"])
    for name in alone:
        np.testing.assert_allclose(with_padding[name], alone[name], rtol=1e-5, atol=1e-6)
    assert sorted(gates) == ["head_loud_gate", "head_tags_gate", "head_word_gate"]
    s0, s1 = np.exp([0.3, -0.2]) / np.exp([0.3, -0.2]).sum()
    want = {"word": [0, s0, 0, s1, 0], "loud": [0, 0, 1, 0, 0], "tags": [0, 0, s1, 0, s0]}
    for task, row in want.items():
        gate = np.asarray(gates[f"head_{task}_gate"])
        assert gate.shape == (3, 5)
        np.testing.assert_allclose(gate, np.tile(row, (3, 1)), rtol=1e-6, atol=0)
    assert (np.asarray(gates["head_word_gate"]) > 0).sum(1).tolist() == [2, 2, 2]  # k = 2
    # only the selected experts get the task's gradient
    moved = {
        i
        for i in range(5)
        if any(np.abs(g).max() > 0 for g in jax.tree.leaves(grads[f"shared_expert{i}"]))
    }
    assert moved == {1, 3}


def test_the_entropy_regulariser_is_zero_for_binary_selectors_and_maximal_at_zero(binary_dselect):
    model, variables, x = binary_dselect
    entropy = jax.jit(functools.partial(selector_entropy, model))  # one compile, two calls
    assert float(entropy(variables, x)) == 0.0
    params = dict(variables["params"])
    for task in TASKS:
        params[f"head_{task.name}_gate"] = {"z": jnp.zeros((2, 3)), "w": jnp.zeros(2)}
    uniform = float(entropy({"params": params}, x))
    assert uniform == pytest.approx(3 * 2 * 3 * math.log(2), rel=1e-5)  # tasks, k, bits
    with pytest.raises(ValueError, match="selector_entropy: model must be a DSelectK, got PLE"):
        selector_entropy(SMALL["ple"](TASKS), variables, x)


def test_ple_gates_are_softmaxes_over_their_experts():
    model = SMALL["ple"](TASKS, dropout=0.0)
    x = features((4, 5, 6))
    variables = {"params": random_params(model, x)}
    gates = jax.jit(functools.partial(gate_outputs, model))(variables, x)
    widths = {"shared_level0_gate": 3 * 1 + 2} | {
        f"head_{t.name}_level{lv}_gate": 1 + 2 for t in TASKS for lv in (0, 1)
    }  # the shared gate weighs every expert of its level; a task's, its own and the shared
    assert {k: v.shape for k, v in gates.items()} == {k: (4, w) for k, w in widths.items()}
    for gate in gates.values():
        assert bool((gate >= 0).all())
        np.testing.assert_allclose(gate.sum(-1), 1.0, rtol=1e-6)
    h = np.concatenate([x.mean(1), np.sqrt(x.var(1) + experts.STD_EPS)], axis=-1)
    for name in ("shared_level0_gate", "head_loud_level0_gate"):  # level 0 reads h
        dense = variables["params"][name]["dense"]
        z = h @ np.asarray(dense["kernel"]) + np.asarray(dense["bias"])
        want = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        np.testing.assert_allclose(gates[name], want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="gate_outputs: model must be a PLE, CGC or DSelectK"):
        gate_outputs(MMoE(TASKS), variables, x)


def test_padding_frames_change_nothing_and_dropout_acts_in_training_only():
    model = SMALL["ple"](TASKS, dropout=0.5)  # DSelectK reads the same clip statistics

    @jax.jit  # one compile for every output the test looks at
    def outputs(variables, x, padded):
        train = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
        return model.apply(variables, x), model.apply(variables, padded), train

    x = features((3, 5, 6), seed=1)
    padded = np.concatenate([x, np.zeros((3, 8, 6), np.float32)], axis=1)
    variables = {"params": random_params(model, x, seed=1)}
    alone, with_padding, train = outputs(variables, x, padded)
    for name in alone:
        np.testing.assert_allclose(with_padding[name], alone[name], rtol=1e-5, atol=1e-6)
    assert not np.allclose(train["word"], alone["word"])
    padded[:, 5] = x[:, 0] + 3.0  # a real frame does change the output: the check can fail
    assert not np.allclose(outputs(variables, x, padded)[1]["word"], alone["word"], atol=1e-4)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: PLE(TASKS, levels=0), "PLE: levels must be a positive int, got 0"),
        (lambda: PLE(TASKS, shared_experts=0), "PLE: shared_experts must be a positive int"),
        (lambda: PLE(TASKS, task_experts=1.5), "PLE: task_experts must be a positive int, got 1.5"),
        (lambda: PLE(TASKS, expert_hidden=()), "PLE: expert_hidden must be a tuple"),
        (lambda: PLE((), levels=1), "PLE: tasks must be a non-empty tuple"),
        (lambda: CGC(TASKS, levels=2), r"CGC: levels must be 1 \(PLE stacks levels\), got 2"),
        (lambda: CGC(TASKS, dropout=1.0), r"CGC: dropout must be in \[0, 1\)"),
        (lambda: DSelectK(TASKS, k=0), "DSelectK: k must be a positive int, got 0"),
        (lambda: DSelectK(TASKS, n_experts=3, k=4), "DSelectK: k must be at most n_experts=3"),
        (lambda: DSelectK(TASKS, gamma=0.0), "DSelectK: gamma must be a positive number"),
        (lambda: DSelectK(TASKS, per_example="yes"), "DSelectK: per_example must be True or"),
        (lambda: DSelectK(TASKS, activation="swish"), "unknown activation 'swish'"),
    ],
)
def test_bad_settings_are_refused_by_name(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_named_in_experiment_files_and_rebuilt_from_a_run_config():
    data = three_datasets(n=8)
    for name, cls in (("ple", PLE), ("cgc", CGC), ("dselect_k", DSelectK)):
        assert MODELS[name] is cls and registry.lookup("model", name) is cls
        assert registry.lookup("model", cls.__name__) is cls
        model = model_from_config(name, list(data.tasks), expert_hidden=[8], tower_hidden=[4])
        assert model.expert_hidden == (8,) and model.tower_hidden == (4,)  # lists from a file
        config = json.loads(json.dumps(settings.run_config(model, data)))
        assert reevaluate.model_from_run_config(config) == model
    assert model_from_config("cgc", data.tasks).levels == 1


def two_tasks(n: int, seed: int = 0) -> mt.MultiTaskData:
    return mt.concat([dataset(n, WORD, "words", seed), dataset(n, LOUD, "loudness", seed + 1)])


@pytest.mark.parametrize("kind", ["ple", "dselect_k"])
def test_trains_with_pcgrad_on_every_task_batches(kind):
    trn, tst = two_tasks(32), two_tasks(4, seed=10)
    model = {
        "ple": PLE(trn.tasks, shared_experts=1, task_experts=1, expert_hidden=(8,)),
        "dselect_k": DSelectK(trn.tasks, n_experts=4, k=2, expert_hidden=(8,)),
    }[kind]
    trained = mt.fit(
        model,
        trn,
        epochs=2,
        batch_size=16,
        optimizer=optax.adam(1e-2),
        combine=mt.losses.pcgrad(),
        batches=mt.batching.every_task(),
        early_stop=None,
        progress=False,
    )
    losses = [h["train/loss"] for h in trained.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    gates = gate_outputs(trained.model, {"params": trained.params}, jnp.asarray(tst.x[:4]))
    for gate in gates.values():
        np.testing.assert_allclose(gate.sum(-1), 1.0, rtol=1e-5)
