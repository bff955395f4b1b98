"""Coordinate-wise gradient aggregators, which give the shared gradient itself.

Their updates are no combination of whole task gradients (`Combiner.aggregate`): graddrop
(a random sign per coordinate, kept where it agrees) and trimmed_mean (per coordinate, the
mean of the task gradients without the largest and smallest). Their `apply` is the plain
sum of the present losses, which the run records as its objective; the weights they
record are each task's share of the coordinates it enters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtjax.train.combiners import base
from mtjax.train.combiners.base import Combiner


def _sum_apply(losses, state, *, present, **extra):
    del extra
    return jnp.sum(jnp.where(present, losses, 0.0)), state


def _task_axis(g: jax.Array, present: jax.Array) -> jax.Array:
    """`present` [K] shaped to broadcast against a leaf `g` [K, ...]."""
    return present.reshape((-1,) + (1,) * (g.ndim - 1))


def _shares(kept: list[jax.Array], present: jax.Array) -> jax.Array:
    """float32 [K]: the share of all coordinates where each task's gradient is kept."""
    total = sum(k.reshape(k.shape[0], -1).sum(1) for k in kept)
    size = sum(k[0].size for k in kept)
    return jnp.where(present, total / max(size, 1), 0.0).astype(jnp.float32)


def graddrop(leak: float = 0.0) -> Combiner:
    """GradDrop, gradient sign dropout (Chen et al., NeurIPS 2020).

    "Just pick a sign: optimizing deep multitask models with gradient sign dropout". Per
    coordinate i of the shared parameters, with g_ki task k's gradient:
    P_i = (1 + sum_k g_ki / sum_k |g_ki|) / 2, the purity of the positive sign; a draw
    U_i ~ U(0, 1) (from `key`) keeps the positive parts where P_i > U_i, else the negative
    ones, and the update is sum_k (leak + (1 - leak) M_ki) g_ki with M the kept mask.
    Absent tasks have zero gradients and enter nothing; with no task present the update is
    0. Difference from the paper: it drops signs at a layer's activations (before the
    shared parameters' backward pass); here the mask acts on the shared parameters'
    gradients, as when GradDrop sits at the last shared layer of a network with a single
    shared layer.

    Cost: one random draw per shared parameter each step: 3.4x `sum`'s step on the
    default CNN, 24x on a 3x512 DNN of 0.8 M shared parameters (`benchmarks/combiner_cost.py`,
    2-core CPU).

    Args:
      leak: in [0, 1]; the share of every gradient passed whatever the sign.
    """
    if not 0 <= leak <= 1:
        raise ValueError(f"graddrop: leak must be in [0, 1], got {leak}")

    def aggregate(grads, state, *, present, key, **extra):
        del extra
        leaves, tree = jax.tree.flatten(grads)
        keys = jax.random.split(key, max(len(leaves), 1))
        out, kept = [], []
        for g, k in zip(leaves, keys):
            g = jnp.where(_task_axis(g, present), g, 0.0)
            purity = 0.5 * (1.0 + g.sum(0) / jnp.maximum(jnp.abs(g).sum(0), 1e-30))
            positive = purity > jax.random.uniform(k, purity.shape, purity.dtype)
            mask = jnp.where(positive, g > 0, g < 0) & _task_axis(g, present)
            out.append(((leak + (1.0 - leak) * mask) * g).sum(0))
            kept.append(mask.astype(jnp.float32))
        return jax.tree.unflatten(tree, out), state, _shares(kept, present)

    return Combiner(base.no_state, _sum_apply, uses_grads=True, aggregate=aggregate)


def _extremes(g: jax.Array, inside: jax.Array) -> jax.Array:
    """Per coordinate, the tasks of the largest and the smallest present value: bool [K, ...].

    Two distinct tasks wherever two are present, even when the values tie.
    """
    tasks = jnp.arange(g.shape[0]).reshape((-1,) + (1,) * (g.ndim - 1))
    top = jnp.argmax(jnp.where(inside, g, -jnp.inf), axis=0, keepdims=True)
    lows = jnp.where(inside & (tasks != top), g, jnp.inf)
    return (tasks == top) | (tasks == jnp.argmin(lows, axis=0, keepdims=True))


def trimmed_mean(trim: int = 1) -> Combiner:
    """The coordinate-wise trimmed mean of the task gradients (Yin et al., ICML 2018).

    "Byzantine-robust distributed learning: towards optimal statistical rates". Per
    coordinate of the shared parameters, the `trim` largest and `trim` smallest values over
    the n present tasks are dropped and the rest averaged. With n <= 2 trim nothing would
    remain: the plain mean of the present tasks is taken instead. The update is a mean, as
    `mean`'s is (torchjd's TrimmedMean likewise); absent tasks enter nothing.

    Args:
      trim: values dropped at each end, >= 0 (0 is the mean).
    """
    if int(trim) != trim or trim < 0:
        raise ValueError(f"trimmed_mean: trim must be an integer >= 0, got {trim}")

    def aggregate(grads, state, *, present, **extra):
        del extra
        n = base.count_present(present)
        cut = jnp.where(n > 2 * trim, float(trim), 0.0)
        out, kept = [], []
        for g in jax.tree.leaves(grads):
            inside = _task_axis(g, present)
            if trim == 1:  # the default: one arg-max and one arg-min, no sort
                mask = inside & ~(_extremes(g, inside) & (cut > 0))
                out.append(jnp.where(mask, g, 0.0).sum(0) / jnp.maximum(n - 2 * cut, 1))
                kept.append(mask.astype(jnp.float32) / jnp.maximum(n - 2 * cut, 1.0))
                continue
            order = jnp.argsort(jnp.where(inside, g, jnp.inf), axis=0)  # absent ones last
            place = jnp.arange(g.shape[0], dtype=jnp.float32).reshape(inside.shape)
            kept_place = (place >= cut) & (place < n - cut)  # [K, 1, ...]: sorted positions
            in_order = jnp.take_along_axis(g, order, axis=0)
            out.append(jnp.where(kept_place, in_order, 0.0).sum(0) / jnp.maximum(n - 2 * cut, 1))
            mask = jnp.put_along_axis(  # back to the tasks: whose value was kept, per coordinate
                jnp.zeros(g.shape, bool),
                order,
                jnp.broadcast_to(kept_place, g.shape),
                0,
                inplace=False,
            )
            kept.append(mask.astype(jnp.float32) / jnp.maximum(n - 2 * cut, 1.0))
        return jax.tree.unflatten(jax.tree.structure(grads), out), state, _shares(kept, present)

    return Combiner(base.no_state, _sum_apply, uses_grads=True, aggregate=aggregate)
