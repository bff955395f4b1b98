"""Any gradient combiner applied per group of shared parameters (`per_group`).

GradVac (Wang et al., ICLR 2021) showed that gradient similarities differ from layer to
layer and applied its correction per layer or per parameter matrix; `per_group` does that
for any gradient combiner: the shared parameters are split into groups, the combiner
computes its task weights (or, for a coordinate-wise one, its update) from each group's
gradients alone, and each group moves by its own combination.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from mtjax.train.combiners.base import Combiner

GROUPINGS = ("trunk", "layer", "matrix")


def parts_of(grads: Any, by: str) -> tuple[list[Any], Any]:
    """(the groups' gradient pytrees, a function joining their updates back into one).

    "trunk": all shared parameters as one group; "layer": each top-level entry of the
    shared parameters (a Flax submodule: `shared_conv0`, `shared_norm0`, ...); "matrix":
    each array.
    """
    if by == "trunk":
        return [grads], lambda updates: updates[0]
    if by == "layer" and isinstance(grads, dict):
        names = sorted(grads)
        return [{n: grads[n]} for n in names], lambda ups: {n: u[n] for n, u in zip(names, ups)}
    leaves, tree = jax.tree.flatten(grads)
    return leaves, lambda updates: jax.tree.unflatten(tree, updates)


def per_group(combiner: Combiner, by: str = "layer", groups: int | None = None) -> Combiner:
    """`combiner` applied to each group of shared parameters on its own.

    Each group's update is `sum_k w_k^group g_k^group` with the weights the combiner gives
    on that group's gradients (d total / d L_k of its `apply`), or the combiner's own
    update for a coordinate-wise one (`Combiner.aggregate`). The run records the weights
    averaged over the groups and the plain sum of the losses as its objective. With
    `by="trunk"` it equals `combiner` itself.

    Args:
      combiner: a combiner with `uses_grads` and without trainable parameters.
      by: "trunk", "layer" (each top-level entry of the shared parameters) or "matrix"
        (each array).
      groups: the number of groups, needed when the combiner has state (one state per
        group is kept in the checkpoint); checked against the parameters at the first step.
    """
    if by not in GROUPINGS:
        raise ValueError(f"per_group: by must be one of {GROUPINGS}, got {by!r}")
    if not combiner.uses_grads or combiner.init_params is not None:
        raise ValueError(
            "per_group: the combiner must work on per-task gradients (uses_grads) and have"
            " no trainable parameters"
        )
    stateful = bool(jax.tree.leaves(combiner.init(2)))
    if stateful and (groups is None or groups < 1):
        raise ValueError("per_group: a combiner with state needs groups= (how many groups)")

    count = groups or 0

    def init(n_tasks: int) -> Any:
        return tuple(combiner.init(n_tasks) for _ in range(count)) if stateful else ()

    def one_group(part, state, losses, present, extra):
        if combiner.aggregate is not None:
            return combiner.aggregate(part, state, losses=losses, present=present, **extra)

        def total(losses_K):
            return combiner.apply(losses_K, state, present=present, grads=part, **extra)

        (_, state), w_K = jax.value_and_grad(total, has_aux=True)(losses)
        w_K = jax.lax.stop_gradient(w_K)
        return jax.tree.map(lambda g: jnp.tensordot(w_K, g, axes=1), part), state, w_K

    def aggregate(grads, state, *, losses, present, **extra):
        parts, join = parts_of(grads, by)
        if stateful and len(parts) != count:
            raise ValueError(
                f"per_group: the shared parameters make {len(parts)} groups by {by!r},"
                f" but groups={groups}"
            )
        updates, states, weights = [], [], []
        for i, part in enumerate(parts):
            own = state[i] if stateful else combiner.init(losses.shape[0])
            update, own, w_K = one_group(part, own, losses, present, extra)
            updates.append(update)
            states.append(own)
            weights.append(w_K)
        mean_K = jnp.mean(jnp.stack(weights), axis=0).astype(jnp.float32)
        return join(updates), tuple(states) if stateful else state, mean_K

    def apply(losses, state, *, present, **extra):
        del extra
        return jnp.sum(jnp.where(present, losses, 0.0)), state

    return Combiner(init, apply, uses_grads=True, aggregate=aggregate)
