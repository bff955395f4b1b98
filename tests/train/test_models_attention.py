"""MTAN: outputs per task, the backbone is HardSharingCNN's and the only shared part, masks
are per-task sigmoids applied elementwise (all-ones masks give HardSharingCNN itself),
padding never counts, bad settings are refused by name, and it trains with PCGrad."""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tiny_training import LOUD, WORD, dataset

import mtjax as mt
from mtjax.experiments import registry
from mtjax.runs import reevaluate
from mtjax.tasks import Task
from mtjax.train import settings
from mtjax.train import step as step_module
from mtjax.train.models import MODELS, MTAN, HardSharingCNN, attention_masks, model_from_config

TASKS = (
    Task("word", ("go", "stop", "yes")),
    Task("loud", ("no", "yes"), "binary"),
    Task("tags", ("a", "b", "c", "d"), "multilabel"),
)


def features(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def shapes(model, x):
    """The model's variables and outputs as shapes, traced but not compiled (fast)."""
    variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
    return variables, jax.eval_shape(model.apply, variables, x)


def random_params(model, x, seed=0, scale=0.5) -> dict:
    """Parameters of the model's shapes drawn at random (no compile, unlike an init)."""
    rng = np.random.default_rng(seed)
    params = shapes(model, x)[0]["params"]
    return jax.tree.map(
        lambda s: jnp.asarray(scale * rng.standard_normal(s.shape), s.dtype), params
    )


@pytest.mark.parametrize("n_tasks", [1, 3])
@pytest.mark.parametrize("global_pool", ["time", "all"])
def test_one_logit_matrix_per_task(n_tasks, global_pool):
    tasks = TASKS[:n_tasks]
    model = MTAN(tasks, channels=(4, 8), head_hidden=(5,), global_pool=global_pool)
    want = {"word": (2, 3), "loud": (2, 1), "tags": (2, 4)}
    for frames in (9, 1):  # a block pools an axis only while it is long enough
        variables, logits = shapes(model, features((2, frames, 12)))
        assert {k: v.shape for k, v in logits.items()} == {t.name: want[t.name] for t in tasks}
        assert {v.dtype for v in jax.tree.leaves((variables, logits))} == {np.dtype("float32")}
    head = variables["params"]["head_word_hidden0"]["kernel"]
    assert head.shape == ((8 * 3, 5) if global_pool == "time" else (8, 5))  # F 12 -> 6 -> 3


def test_the_backbone_is_hard_sharing_cnns_and_the_only_shared_part():
    x = features((2, 9, 12))
    mtan = shapes(MTAN(TASKS, channels=(4, 8), head_hidden=(5,)), x)[0]["params"]
    cnn = shapes(HardSharingCNN(TASKS, channels=(4, 8), head_hidden=(5,)), x)[0]["params"]
    picked, own = step_module.split_shared(mtan, step_module.not_a_head)
    assert sorted(picked) == ["shared_conv0", "shared_conv1", "shared_norm0", "shared_norm1"]
    assert sorted(own) == sorted(
        f"head_{t.name}{s}" for t in TASKS for s in ("", "_hidden0", "_attention0", "_attention1")
    )
    as_shapes = functools.partial(jax.tree.map, lambda a: a.shape)
    assert as_shapes(picked) == as_shapes(step_module.split_shared(cnn, step_module.not_a_head)[0])
    attention = as_shapes(mtan["head_word_attention1"])  # block 1 also reads block 0's output
    assert attention == {
        "previous": {"kernel": (3, 3, 4, 8), "bias": (8,)},
        "previous_norm": {"scale": (8,), "bias": (8,)},
        "gate_in": {"kernel": (16, 8), "bias": (8,)},
        "gate_norm": {"scale": (8,), "bias": (8,)},
        "gate_out": {"kernel": (8, 8), "bias": (8,)},
    }
    assert "previous" not in mtan["head_word_attention0"]


def test_masks_are_sigmoids_and_all_ones_masks_give_hard_sharing_cnn():
    x = features((3, 9, 12), seed=3)
    kw = dict(channels=(4, 8), head_hidden=(5,), norm=None, conv="xla")
    mtan, cnn = MTAN(TASKS, **kw), HardSharingCNN(TASKS, **kw)
    params = random_params(mtan, x, scale=0.2)  # small: no mask saturates to 0 or 1
    ones = dict(params)  # gate_out = 0 x + 30: sigmoid is 1.0 in float32
    for t in TASKS:
        for i in (0, 1):
            block = dict(ones[f"head_{t.name}_attention{i}"])
            out = block["gate_out"]
            block["gate_out"] = {"kernel": 0 * out["kernel"], "bias": 30 + 0 * out["bias"]}
            ones[f"head_{t.name}_attention{i}"] = block
    others = dict(params)  # another task's attention changed: word's logits stay
    others["head_loud_attention1"] = jax.tree.map(lambda p: p + 1.0, params["head_loud_attention1"])

    @jax.jit
    def run(params, ones, others):
        mtan_out = [mtan.apply({"params": p}, x) for p in (params, ones, others)]
        shared = {
            k: v for k, v in params.items() if not k.startswith("head_") or "attention" not in k
        }
        return (
            mtan_out,
            cnn.apply({"params": shared}, x),
            attention_masks(mtan, {"params": params}, x),
        )

    (soft, full, moved), plain, masks = run(params, ones, others)
    assert {k: [m.shape for m in v] for k, v in masks.items()} == {
        t.name: [(3, 9, 12, 4), (3, 4, 6, 8)] for t in TASKS
    }
    for mask in jax.tree.leaves(masks):
        assert bool(((mask > 0) & (mask < 1)).all())
    assert not np.allclose(masks["word"][0], masks["loud"][0])  # one set of masks per task
    for t in TASKS:
        np.testing.assert_allclose(full[t.name], plain[t.name], rtol=1e-5, atol=1e-5)
        assert not np.allclose(soft[t.name], plain[t.name], atol=1e-3)  # the masks act
    np.testing.assert_array_equal(moved["word"], soft["word"])
    assert not np.allclose(moved["loud"], soft["loud"])


@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_padding_never_dilutes_a_short_clip(norm):
    """Clips of 9 and 12 frames zero-padded to 16 or to 40 frames give the same logits, in
    training too (the batch norms' statistics are over the valid frames)."""
    model = MTAN(TASKS[:1], channels=(4, 8), head_hidden=(), norm=norm, dropout=0.0)
    clip = features((9, 12))
    short, long = np.zeros((2, 16, 12), np.float32), np.zeros((2, 40, 12), np.float32)
    short[0, :9], long[0, :9] = clip, clip
    short[1, :12], long[1, :12] = features((12, 12), seed=1), features((12, 12), seed=1)
    zeros = functools.partial(jax.tree.map, lambda s: jnp.zeros(s.shape, s.dtype))
    variables = zeros(shapes(model, long)[0]) | {"params": random_params(model, long)}
    mutable = ["batch_stats"] if norm == "batch" else False

    @jax.jit
    def both(variables, long):
        return [
            jax.tree.leaves(model.apply(variables, a, train=True, mutable=mutable))[0][0]
            for a in (short, long)
        ]

    out_short, out_long = both(variables, long)
    np.testing.assert_allclose(out_short, out_long, rtol=1e-5, atol=1e-5)
    long[0, 12] = 3.0  # a real frame does change the output: the check can fail
    assert not np.allclose(both(variables, long)[1], out_long, atol=1e-4)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: MTAN(TASKS, channels=()), "MTAN: channels must be a tuple of positive ints"),
        (lambda: MTAN(TASKS, kernel=0), "MTAN: kernel must be a positive int, got 0"),
        (lambda: MTAN(TASKS, global_pool="max"), "MTAN: global_pool must be 'time' or 'all'"),
        (lambda: MTAN(TASKS, norm="group"), "MTAN: norm must be one of"),
        (lambda: MTAN(TASKS, dropout=1.0), r"MTAN: dropout must be in \[0, 1\)"),
        (lambda: MTAN(()), "MTAN: tasks must be a non-empty tuple"),
        (lambda: MTAN(TASKS, conv="fft"), "unknown conv 'fft'; known: auto, im2col"),
    ],
)
def test_bad_settings_are_refused_by_name(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_trains_with_pcgrad_and_is_rebuilt_from_its_run_config():
    trn = mt.concat([dataset(32, WORD, "words", 0), dataset(32, LOUD, "loudness", 1)])
    assert MODELS["mtan"] is MTAN and registry.lookup("model", "mtan") is MTAN
    assert registry.lookup("model", "MTAN") is MTAN
    model = model_from_config("mtan", list(trn.tasks), channels=[4], head_hidden=[], norm=None)
    assert model.channels == (4,) and model.head_hidden == ()
    config = json.loads(json.dumps(settings.run_config(model, trn)))
    assert reevaluate.model_from_run_config(config) == model
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
