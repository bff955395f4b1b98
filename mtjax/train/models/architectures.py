"""Flax Linen models: a shared trunk and one output head per task.

Every model maps features `x` float32 [B, T, F] to `{task name: logits [B, n_columns]}`
(`__call__(x, *, train=False)`); dropout draws from the "dropout" rng. Normalisation is
`norm="layer"` (no mutable state), `"batch"` (running averages in the `batch_stats`
collection: train with `mutable=["batch_stats"]`, evaluate with the stored averages) or None.

Parameter names are stable: shared layers are named `shared_*`, the output layer of task
`t` is `head_{t.name}` (with hidden layers `head_{t.name}_hidden{i}` where a head has them),
so a checkpoint restores into any model built with the same tasks and sizes.

Convolutions: `HardSharingCNN(conv=...)` picks a formulation from `mtjax.train.models.kernels`
("auto": the fastest measured on the backend); all have the same parameters.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtjax.tasks import Task
from mtjax.train.models import fused, kernels

NORMS = ("layer", "batch", None)
ACTIVATIONS: Mapping[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "gelu": nn.gelu,
    "elu": nn.elu,
    "silu": nn.silu,
    "tanh": jnp.tanh,
    "leaky_relu": nn.leaky_relu,
}

# --------------------------------------------------------------------------- shared parts


def _as_tuples(module: nn.Module, *fields: str) -> None:
    """Lists (as a JSON config gives them) become tuples, so the module stays hashable."""
    for field in fields:
        if isinstance(getattr(module, field), list):
            object.__setattr__(module, field, tuple(getattr(module, field)))


def _check_tasks(model: str, tasks: Any) -> None:
    if not isinstance(tasks, tuple) or not tasks:
        raise ValueError(f"{model}: tasks must be a non-empty tuple of Task, got {tasks!r}")
    bad = [t for t in tasks if not isinstance(t, Task)]
    if bad:
        raise ValueError(f"{model}: tasks must be Task values, got {bad[0]!r}")
    names = [t.name for t in tasks]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{model}: task names must be unique, repeated: {repeated}")


def _check_common(model: str, dropout: float, norm: str | None) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{model}: dropout must be in [0, 1), got {dropout!r}")
    if norm not in NORMS:
        raise ValueError(f"{model}: norm must be one of {NORMS}, got {norm!r}")


def _check_sizes(model: str, what: str, sizes: Any, *, allow_empty: bool) -> None:
    ok = isinstance(sizes, tuple) and all(isinstance(s, int) and s > 0 for s in sizes)
    if not ok or (not sizes and not allow_empty):
        raise ValueError(f"{model}: {what} must be a tuple of positive ints, got {sizes!r}")


def _check_x(model: str, x: jax.Array) -> None:
    if x.ndim != 3:
        raise ValueError(f"{model}: x must be [B, T, F] (features per clip), got shape {x.shape}")


def _activation(activation: str | Callable) -> Callable[[jax.Array], jax.Array]:
    if callable(activation):
        return activation
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; known: {', '.join(sorted(ACTIVATIONS))}"
        )
    return ACTIVATIONS[activation]


def _normalize(
    h: jax.Array, norm: str | None, name: str, train: bool, valid_BxT: jax.Array | None = None
) -> jax.Array:
    """Normalise `h` [B, ..., C]; scale and bias are per channel C.

    "layer": over each sample's every axis but B (for a conv map [B, T, F, C]: the whole
    map, i.e. group norm with one group, as the layer-norm paper applies it to convolutions).
    "batch": over every axis but C, with running averages for evaluation. None: as is.
    With `valid_BxT` (bool [B, T], for a conv map), statistics cover the valid frames only.
    """
    mask = None if valid_BxT is None else jnp.broadcast_to(valid_BxT[:, :, None, None], h.shape)
    if norm == "layer":
        layer = nn.LayerNorm(reduction_axes=tuple(range(1, h.ndim)), feature_axes=-1, name=name)
        return layer(h, mask=mask)
    if norm == "batch":
        return nn.BatchNorm(use_running_average=not train, momentum=0.9, name=name)(h, mask=mask)
    return h


def valid_frames(x: jax.Array) -> jax.Array:
    """Bool [B, T]: the frames of x [B, T, F] that are not padding.

    Padding is what mtjax writes past a clip's length: frames whose features are all exactly
    0 (zero-padded, and kept 0 by scaling). A row with no such frame counts every frame as
    valid, so no statistic is taken over nothing.
    """
    valid_BxT = jnp.any(x != 0, axis=-1)
    return valid_BxT | ~jnp.any(valid_BxT, axis=1, keepdims=True)


def _pooled_valid(valid_BxT: jax.Array, pool: int) -> jax.Array:
    """The valid frames after `kernels.max_pool` over time: a window is valid if any frame is."""
    b, t = valid_BxT.shape
    if t < pool or pool == 1:
        return valid_BxT
    return valid_BxT[:, : t - t % pool].reshape(b, t // pool, pool).any(axis=2)


def valid_mean(h: jax.Array, valid_BxT: jax.Array, global_pool: str) -> jax.Array:
    """The mean of h [B, T, F, C] over its valid frames: [B, F*C] ("time") or [B, C] ("all").

    Padding never dilutes a short clip; "all" averages over F too.
    """
    w_BxTx1x1 = valid_BxT.astype(h.dtype)[:, :, None, None]
    frames_B = jnp.maximum(valid_BxT.sum(axis=1).astype(h.dtype), 1.0)
    h = (h * w_BxTx1x1).sum(axis=1) / frames_B[:, None, None]  # [B, F, C]
    if global_pool == "all":
        h = h.mean(axis=1)
    return h.reshape(h.shape[0], -1)


def _heads(
    h_BxD: jax.Array,
    tasks: tuple[Task, ...],
    hidden: tuple[int, ...],
    activation: Callable[[jax.Array], jax.Array],
    dropout: float,
    train: bool,
) -> dict[str, jax.Array]:
    """{task name: logits}: per task, hidden layers then `Dense(n_columns)`.

    Called inside a compact `__call__`, so the layers belong to the calling model.
    """
    out = {}
    for task in tasks:
        z = h_BxD
        for i, width in enumerate(hidden):
            z = activation(nn.Dense(width, name=f"head_{task.name}_hidden{i}")(z))
            z = nn.Dropout(dropout, deterministic=not train)(z)
        out[task.name] = nn.Dense(task.n_columns, name=f"head_{task.name}")(z)
    return out


# --------------------------------------------------------------------------- models


class HardSharingDNN(nn.Module):
    """Hard parameter sharing with dense layers: a shared trunk, one linear head per task.

    x [B, T, F] is flattened to [B, T*F], so T and F must match those at `init`.
    Each shared layer is Dense -> norm -> activation -> dropout.

    Attributes:
      tasks: the tasks (a tuple of Task; static).
      hidden: widths of the shared layers `shared_dense{i}`.
      dropout: dropout rate after each shared layer (train only).
      norm: "layer", "batch" or None (`shared_norm{i}`).
      activation: a name in `ACTIVATIONS` or a function.
    """

    tasks: tuple[Task, ...]
    hidden: tuple[int, ...] = (512, 512, 512)
    dropout: float = 0.1
    norm: str | None = "layer"
    activation: str | Callable[[jax.Array], jax.Array] = "relu"

    def __post_init__(self):
        name = type(self).__name__
        _as_tuples(self, "tasks", "hidden")
        _check_tasks(name, self.tasks)
        _check_sizes(name, "hidden", self.hidden, allow_empty=True)
        _check_common(name, self.dropout, self.norm)
        _activation(self.activation)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
        """{task name: logits float32 [B, n_columns]} from x float32 [B, T, F]."""
        _check_x(type(self).__name__, x)
        act = _activation(self.activation)
        h = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.hidden):
            h = nn.Dense(width, name=f"shared_dense{i}")(h)
            h = act(_normalize(h, self.norm, f"shared_norm{i}", train))
            h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return _heads(h, self.tasks, (), act, self.dropout, train)


class HardSharingCNN(nn.Module):
    """Hard parameter sharing with 2-D convolutions over the [T, F] feature matrix.

    x [B, T, F] is an image with one channel. Each shared block `i` is
    `shared_conv{i}` (kernel x kernel, 'SAME') -> norm `shared_norm{i}` -> relu ->
    max-pool. A block pools an axis only while it is at least `pool` long, so any T >= 1
    works (a 7-row LogbankSummary, a 1-frame input). Padding frames (all features exactly
    0, `valid_frames`) are left out of the norms' statistics and of the average, so a short
    clip padded to a long one's length gives what it gives alone. The blocks' output is
    averaged over the valid frames (and over frequency too with `global_pool="all"`),
    flattened, passed through
    dropout, then each task's head: hidden layers `head_{name}_hidden{i}` (relu, dropout)
    and `head_{name}` with n_columns outputs.

    Defaults, for small audio datasets (1-5 s clips, 40-128 mel bands) on a small CPU:
    four blocks of (16, 32, 64, 64) channels, 3x3 kernels, 2x2 pools. The channels grow
    as the map shrinks, so no block dominates the cost: at [101, 40] the network does 40%
    of the multiply-adds of (32, 64, 64, 64) and a batch-32 train step took half the time
    (~35 vs ~70 ms on 2 CPU cores), with ~60k conv parameters, few enough for a few
    thousand clips. Four pools give each output a receptive field of 46 frames x 46 bands.
    Averaging over time only (`global_pool="time"`) keeps the frequency position (pitch,
    timbre) that averaging over both axes throws away, and is still robust to T; the
    heads see 64 x F/16 features. Each head has one hidden layer of 128 (`head_hidden`):
    on the real-audio benchmark (`benchmarks/real_audio.py`, five tasks, two seeds) it
    raised the multi-task run on four of five tasks (word +0.033, drums mAP +0.033, family
    +0.046, sex +0.011, rate -0.017 against linear heads) and narrowed its gap to the
    single-task runs (word -0.034 -> -0.019, drums -0.059 -> -0.025), at 128 x (features
    + 128 + n_columns) parameters a task.

    Attributes:
      tasks: the tasks (a tuple of Task; static).
      channels: output channels of each conv block.
      kernel: square kernel size.
      pool: max-pool window and stride, per axis.
      dropout: rate on the pooled features and after each head hidden layer (train only).
      norm: "layer" (each sample's whole [T, F, C] map; per-channel scale and bias),
        "batch" or None.
      head_hidden: widths of each task's hidden layers.
      global_pool: "time" (mean over time, frequency kept) or "all" (mean over both).
      conv: "auto" (the fastest measured on the backend, `AUTO_CONV`), "xla" (`nn.Conv`),
        "im2col" (`conv_im2col`), "xla_stencil" (`conv_xla_stencil`), "stencil_block"
        (xla_stencil; with norm=None the first block as `kernels.ConvReluPool`) or a function
        `(x [B,H,W,Cin], kernel) -> [B,H,W,Cout]` ('SAME', stride 1). The parameters are the
        same whichever runs.
    """

    tasks: tuple[Task, ...]
    channels: tuple[int, ...] = (16, 32, 64, 64)
    kernel: int = 3
    pool: int = 2
    dropout: float = 0.1
    norm: str | None = "layer"
    head_hidden: tuple[int, ...] = (128,)
    global_pool: str = "time"
    conv: str | kernels.ConvFn = "auto"

    def __post_init__(self):
        name = type(self).__name__
        _as_tuples(self, "tasks", "channels", "head_hidden")
        _check_tasks(name, self.tasks)
        _check_sizes(name, "channels", self.channels, allow_empty=False)
        _check_sizes(name, "head_hidden", self.head_hidden, allow_empty=True)
        _check_common(name, self.dropout, self.norm)
        if not (isinstance(self.kernel, int) and self.kernel > 0):
            raise ValueError(f"{name}: kernel must be a positive int, got {self.kernel!r}")
        if not (isinstance(self.pool, int) and self.pool > 0):
            raise ValueError(f"{name}: pool must be a positive int, got {self.pool!r}")
        if self.global_pool not in ("time", "all"):
            raise ValueError(
                f"{name}: global_pool must be 'time' or 'all', got {self.global_pool!r}"
            )
        kernels.resolve_conv(self.conv)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
        """{task name: logits float32 [B, n_columns]} from x float32 [B, T, F]."""
        _check_x(type(self).__name__, x)
        conv = kernels.resolve_conv(self.conv)
        size = (self.kernel, self.kernel)
        valid_BxT = valid_frames(x)
        h = x[..., None]  # [B, T, F, 1]
        if self.is_initializing():  # same variables whichever runs: compile the plainest
            conv = "xla"
        for i, width in enumerate(self.channels):
            name = f"shared_conv{i}"
            if conv == "stencil_block" and h.shape[-1] == 1 and self.norm is None:
                h = kernels.ConvReluPool(width, size, self.pool, name=name)(h)
            elif conv == "stencil_block" and h.shape[-1] == 1 and self.norm is not None:
                h = fused.first_block(h, valid_BxT, width, size, self.pool, self.norm, train, i)
            else:
                if conv == "xla":
                    h = nn.Conv(width, size, padding="SAME", name=name)(h)
                else:
                    fn = kernels.CONVS[conv] if isinstance(conv, str) else conv
                    h = kernels.Conv2D(width, size, fn, name=name)(h)
                if self.norm is None:
                    h = kernels.max_pool(nn.relu(h), self.pool)
                else:  # the norm and relu on the pooled map: `fused.pooled_norm_relu`
                    h = fused.norm_relu_pool(
                        h, valid_BxT, self.norm, train, self.pool, f"shared_norm{i}"
                    )
            valid_BxT = _pooled_valid(valid_BxT, self.pool)
        h = valid_mean(h, valid_BxT, self.global_pool)
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return _heads(h, self.tasks, self.head_hidden, nn.relu, self.dropout, train)


# --------------------------------------------------------------------------- by name

MODELS: Mapping[str, type[nn.Module]] = {"dnn": HardSharingDNN, "cnn": HardSharingCNN}


def init_variables(model: nn.Module, key: jax.Array, x_example: jax.Array) -> dict[str, Any]:
    """The model's variables ({"params": ..., and "batch_stats" with norm="batch"}).

    Args:
      model: a model returning {task name: logits}.
      key: PRNG key; split into the "params" and "dropout" rngs.
      x_example: float32 [B, T, F]; only its shape and dtype matter.
    """
    params_key, dropout_key = jax.random.split(key)
    init = jax.jit(functools.partial(model.init, train=False))  # one compile, not op by op
    return dict(init({"params": params_key, "dropout": dropout_key}, x_example))
