"""MoCo: a multi-objective gradient built from tracked task gradients (`Combiner.aggregate`).

Its update is a combination of the *tracked* gradient estimates y_k, not of this step's
task gradients g_k, so, as the coordinate-wise aggregators do, it gives the shared
gradient itself. Its state holds the y_k, a pytree shaped like the shared parameters with
a leading task axis K: `init(n_tasks, shared=...)` needs those parameters (or zeros like
them) to build it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from mtjax.train.combiners import aggregators_sampled, gradient
from mtjax.train.combiners.base import Combiner


class MoCoState(NamedTuple):
    """MoCo's memory: the tracked task gradients and the task weights on the simplex."""

    tracked: Any  # pytree like the shared parameters with a leading K axis: y_k; 0 at first
    weights: jax.Array  # float32 [K], lambda; 1/K each at the start


def _task_axis(g: jax.Array, present: jax.Array) -> jax.Array:
    """`present` [K] shaped to broadcast against a leaf `g` [K, ...]."""
    return present.reshape((-1,) + (1,) * (g.ndim - 1))


def moco_step(
    grads: Any, state: MoCoState, present: jax.Array, *, beta: float, gamma: float, rho: float
) -> tuple[Any, MoCoState, jax.Array]:
    """One MoCo step: (shared gradient Y^T lambda, new state, lambda [K]).

    y_k <- y_k - beta (y_k - g_k) for the present tasks (the absent keep theirs), then
    lambda <- Proj_simplex(lambda - gamma (Y Y^T + rho I) lambda) over the present tasks,
    their stored weights renormalised first and absent tasks left out of Y Y^T
    (`aggregators_sampled.modo_step`); the gradient is sum_k lambda_k y_k with the new
    y and lambda. With no task present it is 0 and the state does not change.

    Args:
      grads: pytree whose leaves have a leading task axis K, the task gradients g_k.
      state: the `MoCoState` before the step.
      present: bool [K].
      beta: the tracking rate, in (0, 1].
      gamma: the weights' step size.
      rho: the ridge on the weights.
    """
    present = present.astype(bool)
    tracked = jax.tree.map(
        lambda y, g: jnp.where(_task_axis(y, present), y - beta * (y - g.astype(y.dtype)), y),
        state.tracked,
        jax.lax.stop_gradient(grads),
    )
    y_KxK = gradient.gram(tracked)
    lambda_K = aggregators_sampled.modo_step(y_KxK, state.weights, present, gamma=gamma, rho=rho)
    update = jax.tree.map(
        lambda y: jnp.tensordot(lambda_K.astype(y.dtype), y, axes=1, precision="highest"),
        tracked,
    )
    weights = jnp.where(present, lambda_K, state.weights)
    return update, MoCoState(tracked=tracked, weights=weights), lambda_K


def _sum_apply(losses, state, *, present, **extra):
    del extra
    return jnp.sum(jnp.where(present, losses, 0.0)), state


def moco(beta: float = 0.5, gamma: float = 0.1, rho: float = 0.0) -> Combiner:
    """MoCo, multi-objective gradient correction (Fernando et al., ICLR 2023).

    "Mitigating gradient bias in multi-objective learning: a provably convergent approach".
    Each step tracks every task's gradient, y_k <- y_k - beta (y_k - g_k) (y_k = 0 at
    first), moves the weights one projected step toward the min-norm point of the tracked
    gradients, lambda <- Proj_simplex(lambda - gamma (Y Y^T + rho I) lambda) (uniform at
    first), and updates the shared parameters along Y^T lambda = sum_k lambda_k y_k
    (`moco_step`). Absent tasks weigh exactly 0, keep their y_k and stay out of Y Y^T; with
    no task present the gradient is 0. The objective the run records is the plain sum of
    the present losses; the weights it records are lambda.

    Defaults are LibMTL's (beta 0.5, gamma 0.1, rho 0). Differences from LibMTL's MoCo,
    which follows the authors' code: there each g_k is first rescaled to
    g_k / ||g_k|| * L_k, beta and gamma decay as beta / t^0.5 and gamma / t^0.5 at step t,
    and lambda is the softmax of that step instead of its projection on the simplex. Here
    the step sizes are constant and the projection is the paper's (Algorithm 1).

    The state holds K copies of the shared parameters: `init(n_tasks, shared=...)` takes a
    pytree like them (one task's slice of `grads`), whose zeros start y.

    Args:
      beta: the tracking rate, in (0, 1].
      gamma: the weights' step size, > 0.
      rho: the ridge on the weights, >= 0.
    """
    if not 0 < beta <= 1 or not gamma > 0 or not rho >= 0:
        raise ValueError(
            f"moco: beta must be in (0, 1], gamma > 0 and rho >= 0; got beta={beta},"
            f" gamma={gamma}, rho={rho}"
        )

    def init(n_tasks: int, shared: Any = None) -> MoCoState:
        if shared is None:
            raise ValueError(
                "moco: its state tracks each task's gradient, so init needs shared= (the"
                " shared parameters, or zeros like them)"
            )
        tracked = jax.tree.map(
            lambda p: jnp.zeros((n_tasks, *jnp.shape(p)), jnp.result_type(p)), shared
        )
        return MoCoState(tracked=tracked, weights=jnp.full([n_tasks], 1.0 / n_tasks, jnp.float32))

    def aggregate(grads, state, *, present, **extra):
        del extra
        if str(jax.tree.structure(grads)) != str(jax.tree.structure(state.tracked)):
            raise ValueError(
                "moco: grads do not match the state's tracked gradients; build the state with"
                " init(n_tasks, shared=...) from the same shared parameters"
            )
        return moco_step(grads, state, present, beta=beta, gamma=gamma, rho=rho)

    return Combiner(init, _sum_apply, uses_grads=True, aggregate=aggregate)
