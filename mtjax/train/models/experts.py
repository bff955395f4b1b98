"""Soft-sharing models on a pooled clip vector: Multi-gate Mixture-of-Experts and cross-stitch.

Both map features x float32 [B, T, F] (any extraction, any T) to
`{task name: logits [B, n_columns]}` (`__call__(x, *, train=False)`; dropout draws from the
"dropout" rng). Each clip is first summarised by `clip_statistics`: the mean and standard
deviation of every feature over its valid frames (`architectures.valid_frames`), so a clip
padded with zero frames gives what it gives alone, and T need not match the one at `init`.

What is shared follows the trainer's default `shared=` predicate (`step.not_a_head`: every
top-level parameter entry but `head_*`), so the names say it:

  MMoE         shared: the experts `shared_expert{i}`. Per task (`head_*`): the gate
               `head_{t}_gate`, the tower `head_{t}_hidden{i}`, the output `head_{t}`.
  CrossStitch  shared: the cross-stitch units `shared_stitch{i}` (one K x K matrix each).
               Per task (`head_*`): the column layers `head_{t}_layer{i}`, the output
               `head_{t}`.

A gradient combiner (pcgrad, mgda, ...) thus acts on the experts, or on the cross-stitch
matrices only; every `head_*` parameter gets its own task's gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtjax.tasks import Task
from mtjax.train.models import architectures

STD_EPS = 1e-6  # inside the square root: a constant feature has a finite gradient


def clip_statistics(x: jax.Array) -> jax.Array:
    """Per-clip mean and standard deviation of each feature over the valid frames.

    Args:
      x: float32 [B, T, F]; frames whose features are all exactly 0 are padding
        (`architectures.valid_frames`) and never count.

    Returns:
      float32 [B, 2F]: the F means, then the F standard deviations
      `sqrt(var + STD_EPS)` (population variance over the valid frames).
    """
    w_BxTx1 = architectures.valid_frames(x).astype(x.dtype)[:, :, None]
    frames_Bx1 = jnp.maximum(w_BxTx1.sum(axis=1), 1.0)
    mean_BxF = (x * w_BxTx1).sum(axis=1) / frames_Bx1
    var_BxF = (((x - mean_BxF[:, None, :]) * w_BxTx1) ** 2).sum(axis=1) / frames_Bx1
    return jnp.concatenate([mean_BxF, jnp.sqrt(var_BxF + STD_EPS)], axis=-1)


class _MLP(nn.Module):
    """Dense `dense{i}` -> activation -> dropout, per width."""

    hidden: tuple[int, ...]
    activation: str | Callable[[jax.Array], jax.Array]
    dropout: float

    @nn.compact
    def __call__(self, h: jax.Array, train: bool) -> jax.Array:
        act = architectures._activation(self.activation)
        for i, width in enumerate(self.hidden):
            h = act(nn.Dense(width, name=f"dense{i}")(h))
            h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return h


class _Gate(nn.Module):
    """A softmax over the experts: float32 [B, n_experts], each row sums to 1."""

    n_experts: int

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        return nn.softmax(nn.Dense(self.n_experts, name="dense")(h), axis=-1)


class _Stitch(nn.Module):
    """A cross-stitch unit: column k becomes sum_j alpha[k, j] * column j."""

    n_tasks: int
    alpha_same: float

    @nn.compact
    def __call__(self, h_KxBxH: jax.Array) -> jax.Array:
        alpha_KxK = self.param("alpha", _stitch_init(self.alpha_same), (self.n_tasks,) * 2)
        return jnp.einsum("kj,jbh->kbh", alpha_KxK, h_KxBxH)


def _stitch_init(alpha_same: float) -> Callable[..., jax.Array]:
    """alpha_same on the diagonal, (1 - alpha_same) / (K - 1) elsewhere; [[1]] for K = 1."""

    def init(key: jax.Array, shape: tuple[int, int], dtype: Any = jnp.float32) -> jax.Array:
        k = shape[0]
        if k == 1:
            return jnp.ones(shape, dtype)
        other = (1.0 - alpha_same) / (k - 1)
        return jnp.full(shape, other, dtype) + (alpha_same - other) * jnp.eye(k, dtype=dtype)

    return init


def _check_positive(model: str, what: str, value: Any) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        raise ValueError(f"{model}: {what} must be a positive int, got {value!r}")


def check_expert_model(model: nn.Module, positive: tuple[str, ...], check: Any = None) -> None:
    """The checks of an expert model's settings, one-line errors naming the model.

    Its tasks; the counts named in `positive` (> 0); then `check(name)` for its own rules;
    its `expert_hidden` and `tower_hidden` widths, dropout and activation.
    """
    name = type(model).__name__
    architectures._as_tuples(model, "tasks", "expert_hidden", "tower_hidden")
    architectures._check_tasks(name, model.tasks)
    for what in positive:
        _check_positive(name, what, getattr(model, what))
    if check is not None:
        check(name)
    architectures._check_sizes(name, "expert_hidden", model.expert_hidden, allow_empty=False)
    architectures._check_sizes(name, "tower_hidden", model.tower_hidden, allow_empty=True)
    architectures._check_common(name, model.dropout, None)
    architectures._activation(model.activation)


class MMoE(nn.Module):
    """Multi-gate Mixture-of-Experts: soft-gated shared experts, one gate per task.

    Ma et al., "Modeling Task Relationships in Multi-task Learning with Multi-gate
    Mixture-of-Experts", KDD 2018.

    x [B, T, F] -> `clip_statistics` h [B, 2F] -> experts e_i(h) [B, H] (MLPs
    `shared_expert{i}` of widths `expert_hidden`, H its last) -> per task t a gate
    g_t(h) = softmax(W_t h) [B, n_experts] (`head_{t}_gate`) and the mixture
    f_t = sum_i g_t,i e_i(h) [B, H] -> tower hidden layers `head_{t}_hidden{i}` (relu-like,
    dropout) -> `head_{t}` logits [B, n_columns].

    Shared parameters (trainer default `shared=`): the experts only. Gates, towers and
    outputs are the task's own (`head_*`). `gate_weights` gives the gates' outputs.

    Attributes:
      tasks: the tasks (a tuple of Task; static).
      n_experts: number of experts.
      expert_hidden: widths of each expert's layers (non-empty).
      tower_hidden: widths of each task's tower layers (may be empty: a linear head).
      dropout: rate after each expert and tower layer (train only).
      activation: a name in `ACTIVATIONS` or a function.
    """

    tasks: tuple[Task, ...]
    n_experts: int = 4
    expert_hidden: tuple[int, ...] = (128,)
    tower_hidden: tuple[int, ...] = ()
    dropout: float = 0.1
    activation: str | Callable[[jax.Array], jax.Array] = "relu"

    def __post_init__(self):
        check_expert_model(self, ("n_experts",))
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
        """{task name: logits float32 [B, n_columns]} from x float32 [B, T, F]."""
        architectures._check_x(type(self).__name__, x)
        h_BxD = clip_statistics(x)
        experts_BxExH = jnp.stack(
            [
                _MLP(self.expert_hidden, self.activation, self.dropout, name=f"shared_expert{i}")(
                    h_BxD, train
                )
                for i in range(self.n_experts)
            ],
            axis=1,
        )
        act = architectures._activation(self.activation)
        out: dict[str, jax.Array] = {}
        for task in self.tasks:
            gate_BxE = _Gate(self.n_experts, name=f"head_{task.name}_gate")(h_BxD)
            mixed_BxH = jnp.einsum("be,beh->bh", gate_BxE, experts_BxExH)
            out |= architectures._heads(
                mixed_BxH, (task,), self.tower_hidden, act, self.dropout, train
            )
        return out


def gate_weights(model: MMoE, variables: Any, x: jax.Array) -> dict[str, jax.Array]:
    """{task name: float32 [B, n_experts]}: each task's gate over the experts, rows sum to 1.

    Args:
      model: an MMoE.
      variables: its variables ({"params": ...}, as `init_variables` or a fit gives them).
      x: float32 [B, T, F].
    """
    if not isinstance(model, MMoE):
        raise ValueError(f"gate_weights: model must be an MMoE, got {type(model).__name__}")
    _, state = model.apply(
        variables,
        x,
        capture_intermediates=lambda module, _: isinstance(module, _Gate),
        mutable=["intermediates"],
    )
    captured = state["intermediates"]
    return {t.name: captured[f"head_{t.name}_gate"]["__call__"][0] for t in model.tasks}


class CrossStitch(nn.Module):
    """Cross-stitch network: one MLP column per task, mixed after each layer.

    Misra et al., "Cross-stitch Networks for Multi-task Learning", CVPR 2016; here for K
    tasks on a pooled clip vector.

    x [B, T, F] -> `clip_statistics` h [B, 2F], copied into K columns. At layer i each
    column k is Dense `head_{t_k}_layer{i}` -> activation -> dropout, then the cross-stitch
    unit `shared_stitch{i}` (a K x K matrix alpha) mixes the columns:
    h_k <- sum_j alpha[k, j] h_j [B, hidden[i]]. Column k ends in `head_{t_k}` logits
    [B, n_columns]. alpha starts at `alpha_same` on the diagonal and (1 - alpha_same) / (K - 1)
    elsewhere (rows sum to 1; K = 1: [[1]]); alpha_same=1 gives K independent MLPs.

    Shared parameters (trainer default `shared=`): the cross-stitch matrices only, so a
    gradient combiner acts on them; each column (`head_*`) is its task's own.

    Attributes:
      tasks: the tasks (a tuple of Task; static).
      hidden: widths of the column layers (non-empty: one cross-stitch unit after each).
      dropout: rate after each column layer (train only).
      alpha_same: initial weight of a column on itself, in [0, 1].
      activation: a name in `ACTIVATIONS` or a function.
    """

    tasks: tuple[Task, ...]
    hidden: tuple[int, ...] = (128, 128)
    dropout: float = 0.1
    alpha_same: float = 0.9
    activation: str | Callable[[jax.Array], jax.Array] = "relu"

    def __post_init__(self):
        name = type(self).__name__
        architectures._as_tuples(self, "tasks", "hidden")
        architectures._check_tasks(name, self.tasks)
        architectures._check_sizes(name, "hidden", self.hidden, allow_empty=False)
        architectures._check_common(name, self.dropout, None)
        ok = isinstance(self.alpha_same, int | float) and 0.0 <= self.alpha_same <= 1.0
        if not ok or isinstance(self.alpha_same, bool):
            raise ValueError(f"{name}: alpha_same must be in [0, 1], got {self.alpha_same!r}")
        architectures._activation(self.activation)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
        """{task name: logits float32 [B, n_columns]} from x float32 [B, T, F]."""
        architectures._check_x(type(self).__name__, x)
        act = architectures._activation(self.activation)
        h_BxD = clip_statistics(x)
        columns = [h_BxD] * len(self.tasks)
        for i, width in enumerate(self.hidden):
            columns = [
                nn.Dropout(self.dropout, deterministic=not train)(
                    act(nn.Dense(width, name=f"head_{task.name}_layer{i}")(h))
                )
                for task, h in zip(self.tasks, columns)
            ]
            stitch = _Stitch(len(self.tasks), float(self.alpha_same), name=f"shared_stitch{i}")
            columns = list(stitch(jnp.stack(columns)))
        return {
            task.name: nn.Dense(task.n_columns, name=f"head_{task.name}")(h)
            for task, h in zip(self.tasks, columns)
        }
