"""The training step: masked per-task losses, a loss combiner and an Optax update.

The step computes every task's masked mean loss on one fixed-shape batch (rows of
several datasets and tasks mixed; rows lacking a task and weight-0 padding rows count
nothing), combines them with a loss combiner and applies an Optax update. Combiners that
work on per-task gradients (`uses_grads`) get them from one `vmap` over the tasks of a VJP,
of the *shared* parameters only (as Sener & Koltun 2018, Alg. 2, and the reference
libraries apply them): the shared parameters' gradient is the chain rule through
the combined loss, `sum_k d total / d loss_k * grad_k`, and every other parameter (a task's
head) gets the plain sum's gradient, `sum_k grad_k`, which for task k's own head is
d L_k / d head_k. Loss-level combiners differentiate the combined loss directly.
`per_task_grads="gramian"` gets their Gram matrix alone (`combiners.base.gram_by_passes`).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.training import train_state

from mtjax.tasks import Task
from mtjax.train import augment as augmentation
from mtjax.train import combiners, losses
from mtjax.train.augment import Augment


class Batch(NamedTuple):
    """One step's rows.

    x float32 [B, T, F], y float32 [B, C], has_task bool [B, K], weight float32 [B] (0 on
    padding rows).
    """

    x: jax.Array
    y: jax.Array
    has_task: jax.Array
    weight: jax.Array


class TrainState(train_state.TrainState):
    """flax's TrainState; `params` holds {"model": ..., "combiner": ...} (both optimized)."""

    batch_stats: Any
    comb_state: Any


@dataclasses.dataclass(frozen=True)
class Trained:
    """What `fit` returns; `evaluate` and `predict` accept it.

    Attributes:
      model: the Flax module.
      tasks: the tasks, in column order.
      params: the model's parameters (those of `best_epoch`).
      batch_stats: the model's batch statistics ({} without batch normalisation).
      opt_state: the optimizer's state after the last epoch trained.
      comb_state: the loss combiner's state after the last epoch trained.
      comb_params: the combiner's trainable parameters ({} when it has none).
      history: one record per epoch (see `fit`).
      best_epoch: the epoch whose parameters are kept.
      loss_fns: each task's per-row loss function.
    """

    model: nn.Module
    tasks: tuple[Task, ...]
    params: Any
    batch_stats: Any
    opt_state: Any
    comb_state: Any
    comb_params: Any
    history: tuple[dict, ...]
    best_epoch: int
    loss_fns: tuple[Callable, ...]

    @property
    def variables(self) -> dict:
        """The Flax variables of the model: {"params"} and, where it has them, batch stats."""
        out = {"params": self.params}
        if self.batch_stats:
            out["batch_stats"] = self.batch_stats
        return out


class TrainingError(FloatingPointError):
    """A non-finite loss; `.trained` holds the last good state."""

    def __init__(self, message: str, trained: Trained | None):
        super().__init__(message)
        self.trained = trained


# The step

Shared = Callable[[str], bool] | Literal["all"]


def not_a_head(name: str) -> bool:
    """The default `shared=`: a top-level parameter entry is shared unless named `head_*`.

    The built-in models name task t's layers `head_{t}` and `head_{t}_hidden{i}`.
    """
    return not name.startswith("head_")


def split_shared(params: Any, shared: Shared) -> tuple[Any, dict]:
    """The model's parameters as (shared, own): top-level entries picked by `shared`.

    Args:
      params: the model's parameters, a mapping of top-level names to subtrees (a pytree
        whose leaves may carry a leading task axis).
      shared: "all", or a predicate on a top-level name.

    Returns:
      (shared, own): for "all", `params` itself and {}; else two dicts whose union is
      `params`.
    """
    _check_shared(shared)
    if shared == "all":
        return params, {}
    if not isinstance(params, Mapping):
        raise ValueError(
            f"shared=: the model's parameters are a {type(params).__name__}, not a mapping of"
            " top-level names; pass shared='all' to use every parameter"
        )
    picked = {name: bool(shared(name)) for name in params}
    if not any(picked.values()):
        raise ValueError(
            f"shared= picks none of the model's top-level parameters {sorted(params)}; a"
            " gradient-level combiner works on shared parameters (shared='all' uses all)"
        )
    return (
        {name: sub for name, sub in params.items() if picked[name]},
        {name: sub for name, sub in params.items() if not picked[name]},
    )


def _check_shared(shared: Any) -> None:
    if shared != "all" and not callable(shared):
        raise ValueError(f"shared= is 'all' or a predicate on a parameter name, got {shared!r}")


def _accepts_train(model: nn.Module) -> bool:
    try:
        return "train" in inspect.signature(type(model).__call__).parameters
    except (TypeError, ValueError):
        return False


PRECISIONS = ("float32", "bfloat16")
PER_TASK_GRADS = ("jacobian", "gramian")


def _cast_floats(tree: Any, dtype: Any) -> Any:
    """Every floating leaf of `tree` as `dtype`; other leaves as they are."""
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(jnp.result_type(a), jnp.floating) else a, tree
    )


def make_forward(model: nn.Module, precision: str = "float32") -> Callable:
    """`forward(params, batch_stats, x, train, dropout_key) -> (logits, batch_stats)`.

    With `precision="bfloat16"` the model computes in bfloat16: the parameters (kept in
    float32 by the caller, which differentiates through the cast) and `x` are cast to it,
    the logits and the updated batch statistics come back as float32, so losses, combiner
    and optimizer work in float32 (mixed precision).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    takes_train = _accepts_train(model)
    if precision == "bfloat16":
        full = make_forward(model)

        def low(params, batch_stats, x, train: bool, dropout_key):
            logits, stats = full(
                _cast_floats(params, jnp.bfloat16),
                batch_stats,
                jnp.asarray(x).astype(jnp.bfloat16),
                train,
                dropout_key,
            )
            return _cast_floats(logits, jnp.float32), _cast_floats(stats, jnp.float32)

        return low

    def forward(params, batch_stats, x, train: bool, dropout_key):
        variables = {"params": params}
        if batch_stats:
            variables["batch_stats"] = batch_stats
        kwargs: dict[str, Any] = {"train": train} if takes_train else {}
        if train and batch_stats:
            logits, updates = model.apply(
                variables, x, rngs={"dropout": dropout_key}, mutable=["batch_stats"], **kwargs
            )
            return logits, updates["batch_stats"]
        logits = model.apply(variables, x, rngs={"dropout": dropout_key}, **kwargs)
        return logits, batch_stats

    return forward


def make_train_step(
    model: nn.Module,
    tasks: Sequence[Task],
    loss_fns: Sequence[Callable],
    combiner: losses.Combiner,
    *,
    shared: Shared = not_a_head,
    augment: Augment | None = None,
    precision: str = "float32",
    per_task_grads: str = "jacobian",
) -> Callable:
    """`step(state, batch, run_key, epoch) -> (state, metrics)`, pure and jittable.

    Args:
      model: the Flax module.
      tasks: the tasks, in column order.
      loss_fns: each task's per-row loss.
      combiner: the loss combiner.
      shared: for combiners with `uses_grads` only: which top-level parameter entries are
        shared, a predicate on the name (default `not_a_head`: all but `head_*`). The
        combiner sees per-task gradients of these alone; every other entry gets the plain
        sum's gradient (a head, its own task's). "all" gives the combiner every parameter
        (heads included, each head's gradient then scaled by its task weight).
      augment: on-device augmentation of each batch before the forward pass
        (`mtjax.train.augment`), keyed by the run key and the step number; None: none.
      precision: "float32", or "bfloat16" for the model's forward and backward pass in
        bfloat16 (`make_forward`); parameters, losses, combiner and update stay float32.
      per_task_grads: "jacobian" (every task's gradient at once, K x P floats) or "gramian"
        (their Gram matrix alone, one gradient alive at a time: `combiners.base.gram_by_passes`)
        for combiners with a `gramian` rule (else ValueError); loss-level ones ignore it.

    Returns:
      The step; metrics: loss (combined, scalar), tasks float32 [K] (each task's masked
      mean), present bool [K], weights float32 [K] (d total / d loss_k), and for combiners
      with `uses_grads` cosines float32 [K, K], the task gradients' cosine similarities
      over the shared parameters (`task_cosines`).
    """
    _check_shared(shared)
    forward = make_forward(model, precision)
    n_tasks = len(tasks)
    gramian = gramian_rule(per_task_grads, combiner)

    def step(state: TrainState, batch: Batch, run_key: jax.Array, epoch: jax.Array):
        step_key = jax.random.fold_in(run_key, state.step)
        dropout_key, combine_key = jax.random.split(step_key)
        extra = dict(key=combine_key, step=state.step, epoch=epoch)
        if augment:
            batch = augmentation.apply(augment, jax.random.fold_in(step_key, 2), batch)

        def task_losses(model_params):
            logits, batch_stats = forward(
                model_params, state.batch_stats, batch.x, True, dropout_key
            )
            losses_K, present_K = losses.task_losses(
                logits, batch.y, batch.has_task, batch.weight, tasks, loss_fns
            )
            return losses_K, (present_K, batch_stats)

        def combined(losses_K, comb_params, present_K, grads):
            total, comb_state = combiner.apply(
                losses_K,
                state.comb_state,
                present=present_K,
                grads=grads,
                params=comb_params,
                **extra,
            )
            if jnp.shape(total) != ():
                raise ValueError(
                    f"the loss combiner returned shape {jnp.shape(total)}; it must return a scalar"
                )
            return total, comb_state

        model_params, comb_params = state.params["model"], state.params["combiner"]
        if gramian is not None:
            losses_K, (present_K, batch_stats), g_KxK, heads, vjp = combiners.base.gram_by_passes(
                lambda s, o: task_losses(joined(model_params, s, o)),
                *split_shared(model_params, shared),
            )
            weights_K, comb_state = gramian(
                g_KxK, state.comb_state, losses=losses_K, present=present_K, **extra
            )
            weights_K = jnp.where(present_K, weights_K, 0.0).astype(losses_K.dtype)
            total = combiners.base.weighted_total(weights_K, losses_K, present_K)
            model_grads = joined(model_params, vjp(weights_K)[0], heads)
            comb_grads = jax.tree.map(jnp.zeros_like, comb_params)
            cosines_KxK = task_cosines(g_KxK)
        elif combiner.uses_grads:
            losses_K, vjp, (present_K, batch_stats) = jax.vjp(
                task_losses, model_params, has_aux=True
            )
            (grads_K,) = jax.vmap(vjp)(jnp.eye(n_tasks, dtype=losses_K.dtype))
            grads_K = jax.tree.map(
                lambda g: g * present_K.reshape((-1,) + (1,) * (g.ndim - 1)), grads_K
            )
            shared_K, own_K = split_shared(grads_K, shared)
            (total, comb_state), (weights_K, comb_grads) = jax.value_and_grad(
                combined, argnums=(0, 1), has_aux=True
            )(losses_K, comb_params, present_K, shared_K)
            cosines_KxK = task_cosines(losses.gram(shared_K))
            if combiner.aggregate is not None:  # the shared gradient itself, not weights
                model_grads, comb_state, weights_K = combiner.aggregate(
                    shared_K, state.comb_state, losses=losses_K, present=present_K, **extra
                )
            else:
                model_grads = jax.tree.map(lambda g: jnp.tensordot(weights_K, g, axes=1), shared_K)
            # a head's gradient: the plain sum over tasks (absent tasks' rows are 0)
            model_grads = joined(model_params, model_grads, jax.tree.map(lambda g: g.sum(0), own_K))
        else:

            def objective(model_params, comb_params):
                losses_K, (present_K, batch_stats) = task_losses(model_params)
                total, comb_state = combined(losses_K, comb_params, present_K, None)
                return total, (losses_K, present_K, batch_stats, comb_state)

            (total, aux), (model_grads, comb_grads) = jax.value_and_grad(
                objective, argnums=(0, 1), has_aux=True
            )(model_params, comb_params)
            losses_K, present_K, batch_stats, comb_state = aux
            weights_K = jax.grad(lambda seen_K: combined(seen_K, comb_params, present_K, None)[0])(
                jax.lax.stop_gradient(losses_K)
            )
            cosines_KxK = None
        state = state.apply_gradients(
            grads={"model": model_grads, "combiner": comb_grads},
            batch_stats=batch_stats,
            comb_state=comb_state,
        )
        metrics = {"loss": total, "tasks": losses_K, "present": present_K, "weights": weights_K}
        if cosines_KxK is not None:  # free where the combiner has per-task gradients
            metrics["cosines"] = cosines_KxK
        return state, metrics

    return step


def gramian_rule(mode: str, combiner: losses.Combiner) -> Callable | None:
    """The `gramian` rule the step runs on, None for none (ValueError: unknown mode, or none)."""
    if mode not in PER_TASK_GRADS:
        raise ValueError(f"per_task_grads must be one of {PER_TASK_GRADS}, got {mode!r}")
    if mode == "jacobian" or not combiner.uses_grads:
        return None
    if combiner.gramian is None:
        local = [getattr(f, "__qualname__", "?") for f in (combiner.apply, combiner.aggregate)]
        name = next((q.split(".<locals>")[0] for q in local if ".<locals>" in q), local[0])
        able = sorted(n for n, f in combiners.COMBINERS.items() if _has_gramian(f))
        raise ValueError(
            f"per_task_grads='gramian': the combiner {name} has no gramian rule; use"
            f" per_task_grads='jacobian' or one of: {', '.join(able)}"
        )
    return combiner.gramian


def _has_gramian(factory: Callable) -> bool:
    try:  # a factory without defaults: no
        return factory().gramian is not None
    except (TypeError, ValueError):
        return False


def joined(model_params: Any, shared_part: Any, own_part: Any) -> Any:
    """A pytree like `model_params` from its `split_shared` parts ({} own: `shared_part`)."""
    if not own_part:
        return shared_part
    both = {**shared_part, **own_part}
    leaves = jax.tree.leaves({name: both[name] for name in model_params})
    return jax.tree.unflatten(jax.tree.structure(model_params), leaves)


def make_epoch(step: Callable) -> Callable:
    """A scan of `step` over an epoch's batches, gathering rows on the device.

    Returns:
      `epoch(state, x, y, has_task, index [S, B], weight [S, B], run_key, epoch) ->
      (state, metrics stacked over the S steps)`.
    """

    def run(state, x, y, has_task, index, weight, run_key, epoch):
        def body(state, rows):
            return indexed_step(step)(state, x, y, has_task, *rows, run_key, epoch)

        return jax.lax.scan(body, state, (index, weight))

    return run


def indexed_step(step: Callable) -> Callable:
    """`step` on rows `index` [B] (weights `weight` [B]) of device-resident arrays."""

    def run(state, x, y, has_task, index, weight, run_key, epoch):
        return step(state, Batch(x[index], y[index], has_task[index], weight), run_key, epoch)

    return run


def scan_is_slow(step: Callable, *example) -> bool:
    """Whether to dispatch steps one by one instead of scanning them.

    Measured here (jax 0.10, 2-core CPU): a CNN step inside `lax.scan` ran ~10x slower
    than the same step dispatched alone (XLA's CPU convolutions lose their fast path
    inside a loop), while a dense step ran ~2x faster in a scan. So: scan, unless the
    backend is the CPU and the step holds a convolution.
    """
    if jax.default_backend() != "cpu":
        return False
    jaxpr = jax.make_jaxpr(step)(*example)
    return "conv_general_dilated" in str(jaxpr)


def make_conflicts(
    model: nn.Module,
    tasks: Sequence[Task],
    loss_fns: Sequence[Callable],
    *,
    shared: Shared = not_a_head,
):
    """The cosine similarity between every pair of task gradients on one batch.

    Over the shared parameters (`shared`, as in `make_train_step`): a head's gradient
    belongs to one task and would only pull every cosine towards 0.

    Returns:
      `conflicts(params, batch_stats, batch) -> [K, K]` (1 on the diagonal; 0 for absent
      tasks).
    """
    forward = make_forward(model)

    def run(params, batch_stats, batch: Batch):
        def task_losses(params):
            logits, _ = forward(params, batch_stats, batch.x, False, jax.random.key(0))
            return losses.task_losses(
                logits, batch.y, batch.has_task, batch.weight, tasks, loss_fns
            )[0]

        losses_K, vjp = jax.vjp(task_losses, params)
        (grads_K,) = jax.vmap(vjp)(jnp.eye(len(tasks), dtype=losses_K.dtype))
        return task_cosines(losses.gram(split_shared(grads_K, shared)[0]))

    return run


def task_cosines(gram_KxK: jax.Array) -> jax.Array:
    """float32 [K, K] cosine similarities from a Gram matrix of task gradients.

    A task without gradient (absent from the batch) has cosine 0 with every other task.
    """
    norms_K = jnp.sqrt(jnp.maximum(jnp.diagonal(gram_KxK), 1e-30))
    return gram_KxK / (norms_K[:, None] * norms_K[None, :])
