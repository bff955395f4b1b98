"""Models: output shapes per task, dropout and batch-norm state, the im2col convolution's
exactness against XLA's, one parameter tree for every convolution, and a toy that trains."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mtjax import models
from mtjax.models import (
    CONVS,
    MODELS,
    HardSharingCNN,
    HardSharingDNN,
    conv_im2col,
    init_variables,
    max_pool,
    model_from_config,
)
from mtjax.tasks import Task

TASKS = (
    Task("word", ("go", "stop", "yes")),
    Task("loud", ("no", "yes"), "binary"),
    Task("tags", ("a", "b", "c", "d"), "multilabel"),
)
SMALL_CNN = {"channels": (8, 16, 16)}


def features(shape, seed=0) -> np.ndarray:
    """Standard normal float32 (numpy: every jax.random shape would be one more compile)."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def variable_shapes(model, x) -> dict:
    """The model's variables as shapes, traced but not compiled (fast)."""
    init = functools.partial(model.init, train=False)
    return jax.eval_shape(init, {"params": jax.random.key(0)}, x)


def both_models(**cnn):
    return [HardSharingDNN(TASKS, hidden=(32, 32)), HardSharingCNN(TASKS, **(SMALL_CNN | cnn))]


# --------------------------------------------------------------------------- outputs


@pytest.mark.parametrize(
    "make, frames",
    [
        (HardSharingCNN, 7),
        (HardSharingCNN, 1),
        (HardSharingDNN, 7),
        (HardSharingDNN, 1),
    ],
)
def test_one_logit_matrix_per_task(make, frames):
    model = make(TASKS)
    x = features((3, frames, 40))  # T=7: a LogbankSummary; T=1: one frame
    variables = init_variables(model, jax.random.key(0), x)
    logits = jax.jit(model.apply)(variables, x)
    assert set(logits) == {t.name for t in TASKS}  # jit returns dicts key-sorted
    assert {k: v.shape for k, v in logits.items()} == {
        "word": (3, 3),
        "loud": (3, 1),
        "tags": (3, 4),
    }
    assert all(bool(jnp.isfinite(v).all()) for v in logits.values())


def test_parameter_names_are_predictable():
    for model in both_models():
        params = variable_shapes(model, features((2, 9, 12)))["params"]
        heads = {name for name in params if name.startswith("head_")}
        outputs = {"head_word", "head_loud", "head_tags"}
        hidden = {f"{n}_hidden0" for n in outputs} if isinstance(model, HardSharingCNN) else set()
        assert heads == outputs | hidden  # the CNN's heads have one hidden layer by default
        assert all(name.startswith("shared") for name in set(params) - heads), list(params)
        assert params["head_loud"]["kernel"].shape[-1] == 1


def test_cnn_pools_only_while_the_axis_allows():
    np.testing.assert_array_equal(max_pool(jnp.ones((2, 1, 1, 3)), 2), jnp.ones((2, 1, 1, 3)))
    for shape in [(2, 13, 40, 3), (2, 7, 5, 3), (2, 1, 6, 3), (2, 3, 1, 2)]:
        x = features(shape)
        window = tuple(2 if n >= 2 else 1 for n in shape[1:3])
        np.testing.assert_array_equal(max_pool(x, 2), nn.max_pool(x, window, strides=window))


def test_cnn_head_width_follows_global_pool():
    x = features((2, 50, 40))
    for pool, width in [("time", 16 * 5), ("all", 16)]:
        linear = HardSharingCNN(TASKS, global_pool=pool, head_hidden=(), **SMALL_CNN)
        assert variable_shapes(linear, x)["params"]["head_word"]["kernel"].shape == (width, 3)
        default = variable_shapes(HardSharingCNN(TASKS, global_pool=pool, **SMALL_CNN), x)
        assert default["params"]["head_word_hidden0"]["kernel"].shape == (width, 128)
    hidden = HardSharingCNN(TASKS, head_hidden=(8,), **SMALL_CNN)
    params = variable_shapes(hidden, x)["params"]
    assert params["head_word_hidden0"]["kernel"].shape == (80, 8)
    assert params["head_word"]["kernel"].shape == (8, 3)


# --------------------------------------------------------------------------- dropout, norms


@pytest.mark.parametrize("model", both_models(), ids=["dnn", "cnn"])
def test_dropout_only_in_training(model):
    x = features((4, 16, 12))
    variables = init_variables(model, jax.random.key(0), x)
    apply = jax.jit(model.apply, static_argnames="train")
    a = apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
    b = apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
    assert not np.allclose(a["word"], b["word"])
    e1 = apply(variables, x, rngs={"dropout": jax.random.key(1)})
    e2 = apply(variables, x, rngs={"dropout": jax.random.key(2)})
    e3 = apply(variables, x)
    for name in e1:
        np.testing.assert_array_equal(e1[name], e2[name])
        np.testing.assert_array_equal(e1[name], e3[name])


@pytest.mark.parametrize("model", both_models(norm="batch"), ids=["dnn", "cnn"])
def test_batch_norm_trains_running_averages_and_evaluates_with_them(model):
    model = model.clone(norm="batch")
    x = 3.0 + 2.0 * features((8, 16, 12))
    variables = init_variables(model, jax.random.key(0), x)
    assert set(variables) == {"params", "batch_stats"}
    train = jax.jit(functools.partial(model.apply, train=True, mutable=["batch_stats"]))
    evaluate = jax.jit(model.apply)
    logits, updates = train(variables, x, rngs={"dropout": jax.random.key(1)})
    assert set(logits) == {t.name for t in TASKS}
    changed = jax.tree.map(
        lambda a, b: not np.allclose(a, b), variables["batch_stats"], updates["batch_stats"]
    )
    assert all(jax.tree.leaves(changed))
    trained = {"params": variables["params"], "batch_stats": updates["batch_stats"]}
    before, after = evaluate(variables, x), evaluate(trained, x)
    assert not np.allclose(before["word"], after["word"])  # eval reads the stored averages
    np.testing.assert_array_equal(after["word"], evaluate(trained, x)["word"])
    with pytest.raises(Exception, match="batch_stats"):
        model.apply(trained, x, train=True, rngs={"dropout": jax.random.key(1)})


@pytest.mark.parametrize("norm", ["layer", None])
def test_layer_norm_and_no_norm_keep_no_state(norm):
    for model in both_models(norm=norm):
        model = model.clone(norm=norm)
        variables = variable_shapes(model, features((2, 9, 12)))
        assert set(variables) == {"params"}
        has_norm = any("norm" in name for name in variables["params"])
        assert has_norm == (norm == "layer")


# --------------------------------------------------------------------------- convolutions


def lax_conv(x, kernel):
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def value_and_grads(conv, x, kernel, r):
    """conv(x, kernel) and the gradients of sum(conv(x, kernel) * r) for x and kernel."""
    return conv(x, kernel), jax.grad(lambda x, k: jnp.sum(conv(x, k) * r), (0, 1))(x, kernel)


@pytest.mark.parametrize("kernel_shape", [(3, 3, 1, 8), (3, 3, 5, 7), (2, 4, 3, 2)])
def test_im2col_conv_equals_lax_conv_and_its_gradients(kernel_shape):
    x = features((2, 11, 7, kernel_shape[2]), seed=1)
    kernel = features(kernel_shape, seed=2)
    r = features((2, 11, 7, kernel_shape[3]), seed=3)  # a random output cotangent
    want = jax.jit(functools.partial(value_and_grads, lax_conv))(x, kernel, r)
    got = jax.jit(functools.partial(value_and_grads, conv_im2col))(x, kernel, r)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), got, want)
    if kernel_shape == (3, 3, 5, 7):  # and op by op, as without jit
        eager = value_and_grads(conv_im2col, x, kernel, r)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), eager, want
        )


def test_every_conv_has_the_same_parameters_and_outputs():
    x = features((4, 21, 16))
    built = {conv: HardSharingCNN(TASKS, conv=conv, **SMALL_CNN) for conv in ["auto", *CONVS]}
    trees = {c: jax.tree.map(jnp.shape, variable_shapes(m, x)) for c, m in built.items()}
    assert trees["xla"] == trees["im2col"] == trees["auto"]  # names and shapes

    params = init_variables(built["xla"], jax.random.key(0), x)["params"]

    def outputs_and_grads(model):  # a checkpoint from one runs in the other
        def loss(p):
            logits = model.apply({"params": p}, x)
            return sum(jnp.sum(v**2) for v in logits.values()), logits

        return jax.jit(jax.grad(loss, has_aux=True))(params)

    g_xla, want = outputs_and_grads(built["xla"])
    g_im2col, got = outputs_and_grads(built["im2col"])
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), g_im2col, g_xla
    )


def unfused_block(x, kernel, bias, pool):
    return max_pool(nn.relu(lax_conv(x, kernel) + bias.reshape(1, 1, 1, -1)), pool)


@pytest.mark.parametrize(
    "x_shape, kernel_shape, pool",
    [
        ((2, 11, 7, 1), (3, 3, 1, 8), 2),  # T and F not divisible by the pool
        ((3, 9, 10, 1), (3, 3, 1, 5), 3),
        ((2, 1, 5, 1), (3, 3, 1, 4), 2),  # T shorter than the pool: only F pooled
        ((2, 6, 1, 1), (2, 4, 1, 3), 2),  # F shorter; an even, non-square kernel
        ((1, 1, 1, 1), (3, 3, 1, 2), 2),  # nothing pooled
        ((2, 8, 8, 1), (3, 3, 1, 4), 1),
    ],
)
def test_fused_first_block_equals_conv_relu_pool_and_its_gradients(x_shape, kernel_shape, pool):
    x = features(x_shape, seed=1)
    kernel = features(kernel_shape, seed=2)
    bias = 0.3 * features(kernel_shape[3:], seed=3)
    r = features(unfused_block(x, kernel, bias, pool).shape, seed=4)

    def value_and_grads(block, x, kernel, bias):
        def loss(*a):
            return jnp.sum(block(*a, pool) * r)

        return block(x, kernel, bias, pool), jax.grad(loss, (0, 1, 2))(x, kernel, bias)

    want = jax.jit(functools.partial(value_and_grads, unfused_block))(x, kernel, bias)
    got = jax.jit(functools.partial(value_and_grads, models.conv_relu_pool_stencil))(
        x, kernel, bias
    )
    eager = value_and_grads(models.conv_relu_pool_stencil, x, kernel, bias)
    for result in (got, eager):
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), result, want
        )


@pytest.mark.parametrize("bias_value", [0.5, 0.0, -0.5])
def test_fused_first_block_splits_tied_maxima_as_max_pool_does(bias_value):
    x = np.zeros((2, 6, 8, 1), np.float32)  # every window ties: conv + bias = bias
    x[0, 2:4, 2:4, 0] = 1.0
    kernel = np.zeros((3, 3, 1, 3), np.float32)
    kernel[1, 1, 0] = (1.0, 0.0, -1.0)
    bias = np.full(3, bias_value, np.float32)
    r = features((2, 3, 4, 3), seed=5)

    def grads(block):
        return jax.grad(lambda *a: jnp.sum(block(*a, 2) * r), (0, 1, 2))(x, kernel, bias)

    want = jax.jit(lambda: grads(unfused_block))()
    got = jax.jit(lambda: grads(models.conv_relu_pool_stencil))()
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, want)


def test_stencil_block_model_equals_unfused_model():
    x = features((4, 21, 17))
    fused = HardSharingCNN(TASKS, conv="stencil_block", norm=None, **SMALL_CNN)
    unfused = HardSharingCNN(TASKS, conv="xla_stencil", norm=None, **SMALL_CNN)
    plain = HardSharingCNN(TASKS, conv="xla", norm=None, **SMALL_CNN)
    trees = [jax.tree.map(jnp.shape, variable_shapes(m, x)) for m in (fused, unfused, plain)]
    assert trees[0] == trees[1] == trees[2]
    params = init_variables(plain, jax.random.key(0), x)["params"]
    params = jax.tree.map(lambda p: p + 0.05, params)  # non-zero biases

    def outputs_and_grads(model):
        def loss(p, x):
            logits = model.apply({"params": p}, x)
            return sum(jnp.sum(v**2) for v in logits.values()), logits

        return jax.jit(jax.grad(loss, (0, 1), has_aux=True))(params, x)

    (g_fused, gx_fused), got = outputs_and_grads(fused)
    (g_unfused, gx_unfused), want = outputs_and_grads(unfused)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), g_fused, g_unfused
    )
    np.testing.assert_allclose(gx_fused, gx_unfused, rtol=1e-4, atol=1e-5)
    jaxpr = str(jax.make_jaxpr(lambda p: fused.apply({"params": p}, x))(params))
    assert "custom_vjp_call" in jaxpr  # the fused block ran


def test_auto_conv_is_the_backends_measured_choice():
    assert models.resolve_conv("auto") == models.AUTO_CONV.get(jax.default_backend(), "xla")
    assert models.resolve_conv("auto") in CONVS
    with pytest.raises(ValueError, match="known: auto, im2col, stencil_block, xla"):
        HardSharingCNN(TASKS, conv="winograd")


# --------------------------------------------------------------------------- config, errors


def test_model_from_config_by_name():
    assert set(MODELS) == {"dnn", "cnn", "mmoe", "cross_stitch", "cgc", "ple", "dselect_k", "mtan"}
    cnn = model_from_config("cnn", list(TASKS), channels=[8, 8])
    assert isinstance(cnn, HardSharingCNN) and cnn.channels == (8, 8) and cnn.tasks == TASKS
    assert isinstance(model_from_config("dnn", TASKS), HardSharingDNN)
    assert isinstance(model_from_config("mmoe", TASKS, n_experts=2), models.MMoE)
    with pytest.raises(
        ValueError,
        match="unknown model 'rnn'; known: cgc, cnn, cross_stitch, dnn, dselect_k, mmoe, mtan, ple",
    ):
        model_from_config("rnn", TASKS)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="non-empty tuple of Task"):
        HardSharingDNN(())
    with pytest.raises(ValueError, match="Task values"):
        HardSharingCNN(("word",))
    with pytest.raises(ValueError, match=r"repeated: \['word'\]"):
        HardSharingDNN((TASKS[0], TASKS[0]))
    with pytest.raises(ValueError, match="norm must be one of"):
        HardSharingCNN(TASKS, norm="group")
    with pytest.raises(ValueError, match="dropout"):
        HardSharingDNN(TASKS, dropout=1.0)
    with pytest.raises(ValueError, match="unknown activation 'swish2'"):
        HardSharingDNN(TASKS, activation="swish2")
    with pytest.raises(ValueError, match="channels must be a tuple of positive ints"):
        HardSharingCNN(TASKS, channels=())
    model = HardSharingCNN(TASKS)
    with pytest.raises(ValueError, match=r"x must be \[B, T, F\]"):
        init_variables(model, jax.random.key(0), jnp.zeros((2, 9, 12, 1)))


# --------------------------------------------------------------------------- training


def toy_problem(n=64, frames=16, bands=12):
    """Task "pitch": which of 3 bands carries a tone; task "hum": a low band on or off."""
    rng = np.random.default_rng(0)
    pitch = rng.integers(0, 3, n)
    hum = rng.integers(0, 2, n)
    x = 0.5 * rng.standard_normal((n, frames, bands)).astype(np.float32)
    x[np.arange(n), :, 3 + 3 * pitch] += 2.0
    x[:, :, 0] += 2.0 * hum[:, None]
    tasks = (Task("pitch", ("low", "mid", "high")), Task("hum", ("off", "on"), "binary"))
    return tasks, jnp.asarray(x), jnp.asarray(pitch), jnp.asarray(hum, jnp.float32)


@pytest.mark.parametrize("name", ["dnn", "cnn"])
def test_short_training_learns_a_separable_toy(name):
    tasks, x, pitch, hum = toy_problem()
    sizes = {"dnn": {"hidden": (64, 64)}, "cnn": {"channels": (8, 16, 16)}}[name]
    model = model_from_config(name, tasks, **sizes)
    params = init_variables(model, jax.random.key(0), x)["params"]
    optimizer = optax.adam(3e-3)

    def loss_fn(params, key):
        logits = model.apply({"params": params}, x, train=True, rngs={"dropout": key})
        word = optax.softmax_cross_entropy_with_integer_labels(logits["pitch"], pitch).mean()
        on = optax.sigmoid_binary_cross_entropy(logits["hum"][:, 0], hum).mean()
        return word + on

    @jax.jit
    def step(params, opt_state, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = optimizer.init(params)
    losses = []
    for i in range(50):
        params, opt_state, loss = step(params, opt_state, jax.random.fold_in(jax.random.key(1), i))
        losses.append(float(loss))
    assert losses[-1] < 0.2 * losses[0], losses[::10]
    logits = model.apply({"params": params}, x)
    assert float((logits["pitch"].argmax(-1) == pitch).mean()) == 1.0
    assert float(((logits["hum"][:, 0] > 0) == (hum > 0.5)).mean()) == 1.0


@pytest.mark.parametrize("norm", ["layer", "batch", None])
def test_cnn_padding_never_dilutes_a_short_clip(norm):
    """A 9-frame clip zero-padded to 16 or to 40 frames gives the same logits."""
    tasks = (Task("word", ("a", "b", "c")),)
    model = HardSharingCNN(tasks, channels=(4, 8), norm=norm)
    clip = np.random.default_rng(0).normal(size=(9, 12)).astype(np.float32)
    short = np.zeros((2, 16, 12), np.float32)
    long = np.zeros((2, 40, 12), np.float32)
    short[0, :9], long[0, :9] = clip, clip
    short[1], long[1, :16] = 1.0, 1.0  # a second, full-length row in the short batch
    variables = model.init(jax.random.key(0), jnp.asarray(long))
    out_short = model.apply(variables, jnp.asarray(short))["word"][0]
    out_long = model.apply(variables, jnp.asarray(long))["word"][0]
    np.testing.assert_allclose(out_short, out_long, rtol=1e-5, atol=1e-5)
    # The mean over all frames (the old pooling) would have moved with the padding.
    valid = models.architectures.valid_frames(jnp.asarray(long))
    assert valid[0].sum() == 9 and valid[1].sum() == 16


def test_valid_frames_of_an_all_padding_row_counts_every_frame():
    x = np.zeros((2, 5, 3), np.float32)
    x[0, :2] = 1.0
    valid = np.asarray(models.architectures.valid_frames(jnp.asarray(x)))
    np.testing.assert_array_equal(valid, [[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])
