"""The CNN's fused blocks equal the blocks written plainly (conv, flax's norm, relu, max-pool):
values, gradients and running averages, with padding frames, negative norm scales and odd
map sizes. The first block (one input channel) is the stencil one, the second the pooled
norm of any convolution."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtjax.tasks import Task
from mtjax.train import models
from mtjax.train.models import architectures, fused, kernels

TASKS = (Task("word", tuple(f"w{i}" for i in range(5))), Task("loud", ("no", "yes"), "binary"))
KEYS = {"params": jax.random.key(0), "dropout": jax.random.key(1)}


def features(shape: tuple[int, int, int], padded_from: int | None = None) -> jax.Array:
    """Features with an offset (so the map's mean matters) and one padded clip."""
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32) * 3 + 2
    if padded_from is not None:
        x[1, padded_from:] = 0.0
    return jnp.asarray(x)


def perturbed(params: dict, channels: int) -> dict:
    """The first block's norm with mixed-sign scales and a conv bias: every branch runs."""
    rng = np.random.default_rng(1)
    params = jax.tree.map(lambda a: a, params)
    params["shared_norm0"] = {
        "scale": jnp.asarray(rng.standard_normal(channels).astype(np.float32)),
        "bias": jnp.asarray(0.3 * rng.standard_normal(channels).astype(np.float32)),
    }
    params["shared_conv0"]["bias"] = jnp.asarray(rng.standard_normal(channels), jnp.float32)
    params["shared_norm1"] = {  # the second block: another sign pattern
        "scale": -params["shared_norm0"]["scale"][::-1],
        "bias": params["shared_norm0"]["bias"][::-1],
    }
    return params


class UnfusedCNN(nn.Module):
    """HardSharingCNN's blocks as written plainly: conv, flax's norm, relu, max-pool."""

    tasks: tuple
    channels: tuple
    norm: str

    @nn.compact
    def __call__(self, x, *, train=False):
        valid_BxT = architectures.valid_frames(x)
        h = x[..., None]
        for i, width in enumerate(self.channels):
            h = nn.Conv(width, (3, 3), padding="SAME", name=f"shared_conv{i}")(h)
            h = architectures._normalize(h, self.norm, f"shared_norm{i}", train, valid_BxT)
            h = kernels.max_pool(nn.relu(h), 2)
            valid_BxT = architectures._pooled_valid(valid_BxT, 2)
        h = architectures.valid_mean(h, valid_BxT, "time")
        return {t.name: nn.Dense(t.n_columns, name=f"head_{t.name}")(h) for t in self.tasks}


def outputs_and_grads(model, variables, x, train: bool):
    def loss(params):
        v = dict(variables, params=params)
        rngs = {"dropout": jax.random.key(3)}
        if "batch_stats" in variables and train:
            out, new = model.apply(v, x, train=True, rngs=rngs, mutable=["batch_stats"])
        else:
            out, new = model.apply(v, x, train=train, rngs=rngs), {}
        return sum((o**2).sum() for o in out.values()), (out, new)

    value_and_grad = jax.jit(jax.value_and_grad(loss, has_aux=True))
    (_, (out, new)), grads = value_and_grad(variables["params"])
    return out, new, grads


def close(a, b, tol: float) -> bool:
    return float(jnp.max(jnp.abs(a - b))) <= tol * float(jnp.max(jnp.abs(a)) + 1e-30)


CASES = [  # norm, train, x's shape, the padded clip's first padding frame
    ("layer", True, (3, 13, 9), 10),
    ("layer", False, (3, 3, 5), None),  # a map too short to pool one axis
    ("batch", True, (3, 13, 9), 10),
    ("batch", False, (3, 13, 9), 10),  # evaluation: the running averages
]


@pytest.mark.parametrize("norm, train, shape, padded_from", CASES)
def test_fused_first_block_equals_the_unfused_one(norm, train, shape, padded_from):
    x = features(shape, padded_from)
    kw = {"channels": (8, 8), "head_hidden": (), "dropout": 0.0, "norm": norm}
    plain = UnfusedCNN(TASKS, (8, 8), norm)
    block = models.HardSharingCNN(TASKS, conv="stencil_block", **kw)
    variables = plain.init(KEYS, x)
    assert jax.tree.structure(block.init(KEYS, x)) == jax.tree.structure(variables)
    variables = dict(variables, params=perturbed(variables["params"], 8))

    out_a, new_a, grads_a = outputs_and_grads(plain, variables, x, train)
    out_b, new_b, grads_b = outputs_and_grads(block, variables, x, train)
    for task in out_a:
        assert close(out_a[task], out_b[task], 1e-5), task
    for a, b in zip(jax.tree.leaves(new_a), jax.tree.leaves(new_b)):
        assert close(a, b, 1e-5)
    flat_a = jax.tree_util.tree_leaves_with_path(grads_a)
    for (path, a), b in zip(flat_a, jax.tree.leaves(grads_b)):
        name = jax.tree_util.keystr(path)
        if norm == "batch" and train and "conv" in name and "bias" in name:
            # a bias before a batch norm has gradient 0: both are float32 noise
            assert float(jnp.abs(a).max()) < 1e-4 and float(jnp.abs(b).max()) < 1e-4
            continue
        assert close(a, b, 1e-4), name


def test_the_fused_block_keeps_padding_out_of_the_statistics():
    """A short clip padded to a long one's length gives what it gives alone."""
    model = models.HardSharingCNN(TASKS, channels=(8,), head_hidden=(), conv="stencil_block")
    x = features((2, 24, 10))
    variables = model.init(KEYS, x)
    apply = jax.jit(model.apply)
    alone = apply(variables, x[:, :16])
    padded = apply(variables, x.at[:, 16:].set(0.0))
    for task in alone:
        np.testing.assert_allclose(padded[task], alone[task], rtol=2e-5, atol=2e-6)


def test_patch_moments_are_the_shifted_copies_mean_and_covariance():
    x = features((2, 6, 5))
    valid = jnp.asarray([[True] * 6, [True] * 4 + [False] * 2])
    mean, cov = fused.patch_moments(x, valid, (3, 3), per_sample=True)
    xp = np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1)))
    for b, rows in enumerate((6, 4)):
        copies = np.stack(
            [xp[b, i : i + rows, j : j + 5].ravel() for i in range(3) for j in range(3)]
        )
        np.testing.assert_allclose(mean[b], copies.mean(axis=1), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(cov[b], np.cov(copies, bias=True), rtol=1e-4, atol=1e-5)
