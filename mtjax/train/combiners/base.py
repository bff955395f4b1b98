"""Loss combiners: task losses [K] -> one scalar, as optax-style pure functions.

A combiner is built like `optax.GradientTransformation`: a factory returns a `Combiner`,
a NamedTuple of pure functions, and all memory sits in an explicit state NamedTuple:

    comb = mt.losses.dwa(temperature=2.0)
    state = comb.init(n_tasks)
    total, state = comb.apply(losses_K, state, present=present_K, key=key, step=step,
                              epoch=epoch)

Every `apply` accepts the keywords `present, key, step, epoch, grads, params` (and
swallows what it does not use). Combiners with `uses_grads` get `grads`: per-task
gradients of the shared parameters (the trainer's `shared=`, by default every parameter
but the `head_*` ones), a pytree whose leaves have a leading task axis K. Combiners with
`init_params` get `params`, which the trainer optimises with the model.

Contract with the trainer: the shared parameters' gradient is
`sum_k (d total / d losses_k) * g_k`, so a gradient-based combiner returns
`total = sum_k stop_gradient(a_k) * losses_k` with the task weights `a` it computed; each
head trains on its own task's plain gradient, whatever the weights. Every combiner gives
absent tasks weight exactly 0, normalises over present tasks only, and returns 0 (never
NaN) when no task is present.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class Combiner(NamedTuple):
    """A loss combiner: `init(n_tasks) -> state`, `apply(losses, state, **kw) -> (total, state)`.

    Attributes:
      init: n_tasks -> state, a NamedTuple of arrays.
      apply: (losses float32 [K], state, *, present, key, step, epoch, grads, params)
        -> (total float32 [], new state).
      uses_grads: whether `apply` needs `grads=`, per-task gradients (of the shared
        parameters) with a leading K axis.
      init_params: n_tasks -> trainable parameters, given to `apply` as `params=` and
        optimised with the model; None for combiners without any.
      aggregate: for aggregators whose update is no combination of the task gradients
        with one weight per task (GradDrop, a coordinate-wise trimmed mean):
        `(grads, state, *, losses, present, key, step, epoch) -> (shared gradient,
        state, weights [K])`, the gradient of the shared parameters itself (a pytree like one
        task's slice of `grads`) and each task's share in it, for the record. With it,
        `apply` gives only the objective that is logged (its state is not kept) and
        needs `uses_grads`.
      gramian: for methods whose weights depend on the gradients only through their Gram
        matrix G = J J^T: `(gram float32 [K, K], state, *, losses, present, key, step,
        epoch) -> (weights float32 [K], state)`, the same rule as `apply` (which then
        returns `sum_k stop_gradient(a_k) L_k`). With it the trainer can run
        `per_task_grads="gramian"`, which never holds the K x P Jacobian; None: no such
        rule.
    """

    init: Callable[[int], Any]
    apply: Callable[..., tuple[jax.Array, Any]]
    uses_grads: bool = False
    init_params: Callable[[int], Any] | None = None
    aggregate: Callable[..., tuple[Any, Any, jax.Array]] | None = None
    gramian: Callable[..., tuple[jax.Array, Any]] | None = None


class EmptyState(NamedTuple):
    """The state of a combiner without memory."""


def count_present(present: jax.Array) -> jax.Array:
    """float32 [], number of present tasks."""
    return present.sum().astype(jnp.float32)


def uniform(present: jax.Array) -> jax.Array:
    """float32 [K], 1/n on the n present tasks, 0 elsewhere (all 0 when none is)."""
    return jnp.where(present, 1.0 / jnp.maximum(count_present(present), 1.0), 0.0)


def masked_softmax(z: jax.Array, present: jax.Array) -> jax.Array:
    """float32 [K], softmax of `z` over the present tasks, 0 elsewhere."""
    z = jnp.where(present, z, -jnp.inf)
    top = jnp.max(z)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    e = jnp.where(present, jnp.exp(z - top), 0.0)
    return e / jnp.maximum(e.sum(), jnp.finfo(e.dtype).tiny)


def weighted_total(weights: jax.Array, losses: jax.Array, present: jax.Array) -> jax.Array:
    """sum_k stop_gradient(w_k) * L_k over present tasks: d total / d L_k is exactly w_k."""
    w = jax.lax.stop_gradient(weights).astype(losses.dtype)
    return jnp.sum(jnp.where(present, w * losses, 0.0))


def no_state(n_tasks: int) -> EmptyState:
    """The `init` of a combiner without memory: `EmptyState()` for any task count."""
    del n_tasks
    return EmptyState()


def stateless(fn: Callable[[jax.Array], jax.Array]) -> Combiner:
    """A Combiner from a plain function `losses [K] -> scalar` (absent tasks' losses are 0)."""

    def apply(losses, state, **extra):
        del extra
        return fn(losses), state

    return Combiner(no_state, apply)


def gram_by_passes(fn: Callable, shared: Any, own: Any) -> tuple:
    """The Gram matrix of the task gradients of `shared`, without their K x P Jacobian J.

    `fn(shared, own) -> (losses [K], aux)`, aux[0] present bool [K], runs forward once
    (`jax.vjp`: one set of batch statistics and dropout masks); in a scan over the tasks,
    g_i = J^T (e_i present_i) by its VJP and G[:, i] = J g_i by that VJP's transpose (a
    forward-mode product that works through `custom_vjp` rules as well), one gradient
    alive at a time, the gradients of `own` (the heads) summed.

    Returns:
      (losses [K], aux, G float32 [K, K] (symmetrised; 0 on absent tasks' rows and
      columns), the sum of the tasks' gradients of `own`, `vjp(a [K]) -> (J^T a of
      shared, _)`).
    """
    losses_K, vjp, aux = jax.vjp(fn, shared, own, has_aux=True)
    jvp = jax.linear_transpose(vjp, losses_K)
    mask_K = aux[0].astype(losses_K.dtype)
    no_own = jax.tree.map(jnp.zeros_like, own)

    def column(heads, i):
        g_shared, g_own = vjp(jax.nn.one_hot(i, losses_K.shape[0], dtype=losses_K.dtype) * mask_K)
        return jax.tree.map(jnp.add, heads, g_own), jvp((g_shared, no_own))[0]

    heads, columns_KxK = jax.lax.scan(column, no_own, jnp.arange(losses_K.shape[0]))
    columns_KxK = columns_KxK * mask_K[None, :]  # row i: g_j . g_i over present j
    g_KxK = jax.lax.stop_gradient(0.5 * (columns_KxK + columns_KxK.T).astype(jnp.float32))
    return losses_K, aux, g_KxK, heads, vjp
