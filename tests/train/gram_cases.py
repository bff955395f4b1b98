"""What the Gram-matrix combiner tests share: task weights of a combiner on given gradients."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def weights_of(factories: dict, slots: int, width: int):
    """`weights(name, g, present, ...)`: the task weights `factories[name](**kwargs)` gives.

    g [k, p] fills the first k of `slots` task slots (p <= `width`); the other slots are
    absent and hold huge gradients that must not count (their weight is checked to be
    exactly 0). Each combiner and its options are jitted once.
    """

    @functools.cache
    def jitted(name, kwargs=()):
        comb = factories[name](**dict(kwargs))

        @jax.jit
        def run(present, grads, key, state):
            def total(losses):
                return comb.apply(losses, state, present=present, key=key, grads=grads)

            ones = jnp.ones([slots], jnp.float32)
            (t, new_state), w = jax.value_and_grad(total, has_aux=True)(ones)
            return t, w, new_state

        return comb, run

    def weights(name, g, present, *, key=0, state=None, full=False, **kwargs):
        comb, run = jitted(name, tuple(sorted(kwargs.items())))
        padded = np.zeros([slots, width], np.float32)
        padded[: len(g), : g.shape[1]] = g
        padded[len(g) :] = 1e3
        mask = np.zeros(slots, bool)
        mask[: len(g)] = present
        state = comb.init(slots) if state is None else state
        grads = {"w": jnp.asarray(padded)}
        t, w, new_state = run(jnp.asarray(mask), grads, jax.random.key(key), state)
        assert (np.asarray(w)[~mask] == 0.0).all(), (name, w)  # absent: exactly 0
        out = np.asarray(w, np.float64)[: len(g)]
        return (out, new_state, t) if full else out

    return weights


def random_gradients(k: int, p: int, seed: int) -> np.ndarray:
    """float64 [k, p] normal gradients with norms spread over a factor e^2."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(k, p)) * np.exp(rng.uniform(-1.0, 1.0, size=(k, 1)))
