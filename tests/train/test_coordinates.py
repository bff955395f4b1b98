"""graddrop and trimmed_mean: the shared gradient itself, checked coordinate by coordinate."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtjax.train import losses

# Four task slots, slot 3 absent with a huge gradient: it must change nothing.
G = np.array(
    [
        [[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]],
        [[2.0, 1.0, -0.5], [-1.0, 4.0, -2.0]],
        [[-4.0, 3.0, 0.25], [0.5, 2.0, -3.0]],
        [[1e6, -1e6, 1e6], [1e6, 1e6, -1e6]],
    ],
    np.float32,
)
PRESENT = np.array([True, True, True, False])


def _aggregate(combiner, grads, present, key=0):
    fn = jax.jit(lambda g, p, k: combiner.aggregate(g, combiner.init(4), present=p, key=k))
    return fn(grads, jnp.asarray(present), jax.random.key(key))


def test_trimmed_mean_drops_each_coordinates_extremes_over_present_tasks():
    grads = {"w": jnp.asarray(G), "b": jnp.asarray(G[:, 0, :2])}
    out, _, weights = _aggregate(losses.trimmed_mean(1), grads, PRESENT)
    # three present values per coordinate, one dropped at each end: the median
    np.testing.assert_array_equal(out["w"], np.median(G[:3], axis=0))
    np.testing.assert_array_equal(out["b"], np.median(G[:3, 0, :2], axis=0))
    assert weights[3] == 0.0
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-6)  # one kept value in three
    two = np.array([True, False, True, False])  # 2 <= 2 trim: the mean of the two
    out, _, _ = _aggregate(losses.trimmed_mean(1), grads, two)
    np.testing.assert_allclose(out["w"], (G[0] + G[2]) / 2, rtol=1e-6)
    out, _, _ = _aggregate(losses.trimmed_mean(0), grads, PRESENT)
    np.testing.assert_allclose(out["w"], G[:3].mean(0), rtol=1e-6)
    none, _, weights = _aggregate(losses.trimmed_mean(1), grads, np.zeros(4, bool))
    assert not np.any(np.asarray(none["w"])) and not np.any(np.asarray(weights))


def test_trimmed_mean_of_tied_values_drops_two_of_them():
    tied = np.zeros((4, 2, 3), np.float32)
    tied[:3] = 2.5  # three present tasks agree everywhere; the absent one is huge
    tied[3] = 1e6
    out, _, weights = _aggregate(losses.trimmed_mean(1), {"w": jnp.asarray(tied)}, PRESENT)
    np.testing.assert_array_equal(out["w"], np.full((2, 3), 2.5, np.float32))
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-6)  # one value kept of three
    rng = np.random.default_rng(1)
    g = rng.normal(size=(6, 50)).astype(np.float32)
    present = np.array([True, False, True, True, True, True])
    out, _, _ = _aggregate(losses.trimmed_mean(1), {"w": jnp.asarray(g)}, present)
    np.testing.assert_allclose(out["w"], np.sort(g[present], axis=0)[1:4].mean(0), rtol=1e-5)


def test_trimmed_mean_of_five_drops_two_at_each_end_against_a_sort():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(6, 40)).astype(np.float32)
    present = np.array([True, True, False, True, True, True])
    out, _, _ = _aggregate(losses.trimmed_mean(2), {"w": jnp.asarray(g)}, present)
    expected = np.sort(g[present], axis=0)[2:3].mean(0)  # 5 values: 2 + 1 + 2
    np.testing.assert_allclose(out["w"], expected, rtol=1e-6)


def test_graddrop_keeps_one_sign_per_coordinate_drawn_from_its_purity():
    grads = {"w": jnp.asarray(G)}
    out, _, weights = _aggregate(losses.graddrop(), grads, PRESENT, key=3)
    g = G[:3].reshape(3, -1).astype(np.float64)
    purity = 0.5 * (1 + g.sum(0) / np.abs(g).sum(0))
    draws = np.asarray(jax.random.uniform(jax.random.split(jax.random.key(3), 1)[0], (2, 3)))
    positive = purity > draws.reshape(-1)
    expected = np.where(positive, np.where(g > 0, g, 0).sum(0), np.where(g < 0, g, 0).sum(0))
    np.testing.assert_allclose(np.asarray(out["w"]).reshape(-1), expected, rtol=1e-6)
    assert weights[3] == 0.0 and 0 < float(weights[:3].sum()) <= 3
    # one sign everywhere: every gradient passes, whatever the draw
    same = np.abs(G)
    out, _, _ = _aggregate(losses.graddrop(), {"w": jnp.asarray(same)}, PRESENT, key=5)
    np.testing.assert_allclose(out["w"], same[:3].sum(0), rtol=1e-6)
    leaky, _, _ = _aggregate(losses.graddrop(leak=1.0), grads, PRESENT, key=3)
    np.testing.assert_allclose(leaky["w"], G[:3].sum(0), rtol=1e-6)  # leak 1: the sum
    again, _, _ = _aggregate(losses.graddrop(), grads, PRESENT, key=3)
    np.testing.assert_array_equal(
        again["w"], _aggregate(losses.graddrop(), grads, PRESENT, 3)[0]["w"]
    )
    with pytest.raises(ValueError, match="leak"):
        losses.graddrop(leak=2.0)
    with pytest.raises(ValueError, match="trim"):
        losses.trimmed_mean(-1)


def _step_update(combiner, grads, losses_K, present):
    fn = jax.jit(
        lambda g, losses_, p: combiner.aggregate(
            g, combiner.init(4), losses=losses_, present=p, key=jax.random.key(0), step=0, epoch=0
        )
    )
    return fn(grads, jnp.asarray(losses_K), jnp.asarray(present))


def test_per_group_weighs_each_layer_by_its_own_gradients():
    grads = {"a": jnp.asarray(G[:, 0]), "b": jnp.asarray(G[:, 1])}  # two layers, [K, 3] each
    losses_K = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    mgda = losses.mgda()
    out, _, mean_w = _step_update(losses.per_group(mgda, by="layer"), grads, losses_K, PRESENT)
    for name in ("a", "b"):  # each layer: MGDA's min-norm point of its own gradients
        alone = _step_update(
            losses.per_group(mgda, by="trunk"), {name: grads[name]}, losses_K, PRESENT
        )
        np.testing.assert_allclose(out[name], alone[0][name], rtol=1e-5, atol=1e-7)
    whole, _, _ = _step_update(losses.per_group(mgda, by="trunk"), grads, losses_K, PRESENT)
    assert not np.allclose(np.asarray(whole["a"]), np.asarray(out["a"]))  # layers differ
    assert mean_w[3] == 0.0
    by_matrix = losses.per_group(losses.trimmed_mean(1), by="matrix")
    out, _, _ = _step_update(by_matrix, grads, losses_K, PRESENT)
    np.testing.assert_array_equal(out["a"], np.median(G[:3, 0], axis=0))


def test_per_group_keeps_one_state_per_group_and_checks_the_count():
    grads = {"a": jnp.asarray(G[:, 0]), "b": jnp.asarray(G[:, 1])}
    losses_K = np.ones(4, np.float32)
    two = losses.per_group(losses.gradvac(), by="layer", groups=2)
    _, state, _ = _step_update(two, grads, losses_K, PRESENT)
    assert len(state) == 2 and not np.array_equal(state[0].target, state[1].target)
    with pytest.raises(ValueError, match="make 2 groups by 'layer', but groups=3"):
        _step_update(
            losses.per_group(losses.gradvac(), by="layer", groups=3), grads, losses_K, PRESENT
        )
    with pytest.raises(ValueError, match="needs groups="):
        losses.per_group(losses.gradvac())
    with pytest.raises(ValueError, match="per-task gradients"):
        losses.per_group(losses.dwa())
