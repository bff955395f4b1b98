"""fit(precision="bfloat16"): the model computes in bfloat16, everything else in float32."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tiny_training import three_datasets

import mtjax as mt
from mtjax.train import step as step_module


@pytest.mark.parametrize("norm, combine", [("batch", "pcgrad"), ("layer", "uncertainty_weighting")])
def test_bfloat16_trains_with_float32_parameters_and_a_falling_loss(norm, combine):
    data = three_datasets(n=48)
    model = mt.models.HardSharingCNN(data.tasks, channels=(8, 16), norm=norm)
    trained = mt.fit(
        model,
        data,
        epochs=4,
        batch_size=16,
        combine=combine,
        batches=mt.batching.every_task(),
        optimizer=optax.adam(3e-3),
        early_stop=None,
        precision="bfloat16",
        progress=False,
    )
    losses = [r["train/loss"] for r in trained.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    leaves = jax.tree.leaves((trained.params, trained.batch_stats, trained.opt_state))
    floats = [a for a in leaves if jnp.issubdtype(jnp.result_type(a), jnp.floating)]
    assert floats and all(a.dtype == jnp.float32 for a in floats)


def test_the_bfloat16_forward_computes_in_bfloat16_and_returns_float32():
    data = three_datasets(n=8)
    model = mt.models.HardSharingCNN(data.tasks, channels=(8,), norm="batch")
    x = jnp.asarray(data.x[:4], jnp.float32)
    variables = model.init(jax.random.key(0), x)
    low = step_module.make_forward(model, "bfloat16")
    full = step_module.make_forward(model)
    logits, stats = low(variables["params"], variables["batch_stats"], x, True, jax.random.key(1))
    reference, _ = full(variables["params"], variables["batch_stats"], x, True, jax.random.key(1))
    for name, value in logits.items():
        assert value.dtype == jnp.float32
        difference = np.abs(np.asarray(value) - np.asarray(reference[name]))
        assert 0 < difference.max() < 0.1  # bfloat16 rounding: not float32's result, close
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(stats))
    jaxpr = str(
        jax.make_jaxpr(lambda p, s: low(p, s, x, True, jax.random.key(1)))(
            variables["params"], variables["batch_stats"]
        )
    )
    assert "bf16" in jaxpr
    with pytest.raises(ValueError, match="precision must be one of"):
        step_module.make_forward(model, "float16")
