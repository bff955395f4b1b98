"""Flax Linen models: a shared trunk and one output head per task.

Every model maps features `x` float32 [B, T, F] to `{task name: logits [B, n_columns]}`
(`__call__(x, *, train=False)`); dropout draws from the "dropout" rng. Normalisation is
`norm="layer"` (no mutable state), `"batch"` (running averages in the `batch_stats`
collection: train with `mutable=["batch_stats"]`, evaluate with the stored averages) or None.

Parameter names are stable: shared layers are named `shared_*`, the output layer of task
`t` is `head_{t.name}` (with hidden layers `head_{t.name}_hidden{i}` where a head has them),
so a checkpoint restores into any model built with the same tasks and sizes.

Convolutions. `HardSharingCNN(conv=...)` picks how its convolutions run: "xla" (`nn.Conv`),
"im2col" (`conv_im2col`: a custom VJP whose kernel gradient is one im2col matmul),
"xla_stencil" (`conv_xla_stencil`: XLA's convolutions and gradients, except the first
layer's forward pass, Cin=1, as 9 shifted multiply-adds), "stencil_block" (xla_stencil, and
with norm=None the whole first block, conv -> relu -> max-pool, as one custom VJP,
`conv_relu_pool_stencil`, that keeps no [B, T, F, C] map for the backward pass) or "auto",
the fastest measured on the backend (`AUTO_CONV`). All have the same parameters, so a checkpoint moves between them.
Measured with `benchmarks/conv_bench.py` (jax 0.10.2, 2-core CPU, train step of the default
CNN, batch 32 x [101, 40]): `nn.Conv` 34.6 ms, im2col custom VJP 43.4 ms, im2col forward and
backward 45.5 ms. At batch 64, in one run on a loaded machine: `nn.Conv` 124 ms, im2col VJP
162 ms, xla_stencil 108 ms (the train_throughput CNN, norm=None: 97 / 132 / 78 ms). Alone,
XLA's forward convolution with one input channel took ~10x the stencil's time (7.6 vs
0.75 ms at [64, 101, 40] -> 16 channels). Fusing the first block (norm=None) took the
train_throughput CNN step from 55.0 to 44.6 ms (conv_bench --batch 64 --norm none
--dropout 0, same run; the block's own gradients 19.6 -> 4.5 ms). So "auto" is
"stencil_block" on CPU.
What did cost on CPU was around the convolutions: `nn.max_pool`'s gradient (select-and-
scatter; the step took 1.9x as long, hence `max_pool` here) and a layer norm over 16-64
channels at every position (hence `norm="layer"` normalises the whole map).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from mtjax.tasks import Task

NORMS = ("layer", "batch", None)
ACTIVATIONS: Mapping[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "gelu": nn.gelu,
    "elu": nn.elu,
    "silu": nn.silu,
    "tanh": jnp.tanh,
    "leaky_relu": nn.leaky_relu,
}

ConvFn = Callable[[jax.Array, jax.Array], jax.Array]  # (x [B,H,W,Cin], kernel) -> [B,H,W,Cout]
_DIMS = ("NHWC", "HWIO", "NHWC")


# --------------------------------------------------------------------------- convolutions


def _same_pads(size: int) -> tuple[int, int]:
    """'SAME' padding of a stride-1 window of `size`, as XLA splits it (less before)."""
    return (size - 1) // 2, size - 1 - (size - 1) // 2


def conv_xla(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """2-D convolution, 'SAME' padding, stride 1: `lax.conv_general_dilated` as it is.

    Args:
      x: float32 [B, H, W, Cin].
      kernel: float32 [kh, kw, Cin, Cout].

    Returns:
      float32 [B, H, W, Cout].
    """
    return lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=_DIMS)


def im2col(x: jax.Array, kh: int, kw: int) -> jax.Array:
    """The 'SAME', stride-1 patches of `x`, one row of kh*kw*Cin values per output pixel.

    Args:
      x: float32 [B, H, W, Cin].
      kh, kw: window height and width.

    Returns:
      float32 [B, H, W, kh*kw*Cin], ordered (i, j, c) like `kernel.reshape(-1, Cout)`
      of a [kh, kw, Cin, Cout] kernel.
    """
    _, h, w, _ = x.shape
    xp_BxHpxWpxC = jnp.pad(x, ((0, 0), _same_pads(kh), _same_pads(kw), (0, 0)))
    cols = [xp_BxHpxWpxC[:, i : i + h, j : j + w, :] for i in range(kh) for j in range(kw)]
    return jnp.concatenate(cols, axis=-1)


def _input_grad(g_BxHxWxO: jax.Array, kernel: jax.Array) -> jax.Array:
    """Gradient of `conv_xla` with respect to x: a forward convolution of the output
    gradient with the kernel turned 180 degrees and its in/out channels swapped."""
    kh, kw = kernel.shape[:2]
    flipped_HWOI = jnp.swapaxes(kernel[::-1, ::-1], 2, 3)
    pads = (_same_pads(kh)[::-1], _same_pads(kw)[::-1])
    return lax.conv_general_dilated(g_BxHxWxO, flipped_HWOI, (1, 1), pads, dimension_numbers=_DIMS)


def _weight_grad(x: jax.Array, g_BxHxWxO: jax.Array, kernel_shape: tuple[int, ...]) -> jax.Array:
    """Gradient with respect to the kernel as one matmul: patches^T @ output gradient."""
    kh, kw, cin, cout = kernel_shape
    patches_NxK = im2col(x, kh, kw).reshape(-1, kh * kw * cin)
    dk_KxO = patches_NxK.T @ g_BxHxWxO.reshape(-1, cout)
    return dk_KxO.reshape(kernel_shape)


@jax.custom_vjp
def conv_im2col(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`conv_xla` with a custom backward pass: the kernel gradient as one matmul.

    The forward pass is XLA's convolution; the backward pass computes the kernel gradient
    as one im2col matmul, patches [B*H*W, kh*kw*Cin]^T @ grad [B*H*W, Cout], and the input
    gradient as a forward convolution with the flipped kernel. Values and gradients equal
    `conv_xla`'s up to float32 rounding. (Written because XLA's CPU kernel gradients were
    once slow; with jax 0.10.2 `conv_xla` is as fast or faster, see the module docstring.)

    Args:
      x: float32 [B, H, W, Cin].
      kernel: float32 [kh, kw, Cin, Cout].

    Returns:
      float32 [B, H, W, Cout].
    """
    return conv_xla(x, kernel)


def _conv_im2col_fwd(x, kernel):
    return conv_xla(x, kernel), (x, kernel)


def _conv_im2col_bwd(residuals, g_BxHxWxO):
    x, kernel = residuals
    return _input_grad(g_BxHxWxO, kernel), _weight_grad(x, g_BxHxWxO, kernel.shape)


conv_im2col.defvjp(_conv_im2col_fwd, _conv_im2col_bwd)


def _conv_taps(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`conv_xla` for one input channel as kh*kw shifted multiply-adds (elementwise)."""
    kh, kw, _, _ = kernel.shape
    _, h, w, _ = x.shape
    xp_BxHpxWpx1 = jnp.pad(x, ((0, 0), _same_pads(kh), _same_pads(kw), (0, 0)))
    out = None
    for i in range(kh):
        for j in range(kw):
            term = xp_BxHpxWpx1[:, i : i + h, j : j + w, :] * kernel[i, j, 0].reshape(1, 1, 1, -1)
            out = term if out is None else out + term
    return out


@jax.custom_vjp
def _conv_taps_vjp(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return _conv_taps(x, kernel)


def _conv_taps_fwd(x, kernel):
    return _conv_taps(x, kernel), (x, kernel)


def _conv_taps_bwd(residuals, g_BxHxWxO):
    return jax.vjp(conv_xla, *residuals)[1](g_BxHxWxO)  # XLA's own gradients


_conv_taps_vjp.defvjp(_conv_taps_fwd, _conv_taps_bwd)


def conv_xla_stencil(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`conv_xla`, except that a one-channel input (the CNN's first layer, x [B, T, F, 1])
    runs forward as kh*kw shifted multiply-adds, an elementwise loop XLA fuses, instead of
    a convolution with Cin=1 (measured ~10x faster alone on a 2-core CPU at [64, 101, 40]).
    Its gradients are XLA's convolution gradients (a custom VJP), as are every gradient
    and forward pass of a layer with Cin > 1. Values equal `conv_xla`'s up to float32
    rounding (the same products summed in another order).

    Args:
      x: float32 [B, H, W, Cin].
      kernel: float32 [kh, kw, Cin, Cout].

    Returns:
      float32 [B, H, W, Cout].
    """
    if x.shape[-1] == 1:
        return _conv_taps_vjp(x, kernel)
    return conv_xla(x, kernel)


def _pool_geometry(h: int, w: int, pool: int) -> tuple[int, int, int, int]:
    """`max_pool`'s windows: (ph, pw, H // ph, W // pw), an axis shorter than `pool` unpooled."""
    ph, pw = (pool if n >= pool else 1 for n in (h, w))
    return ph, pw, h // ph, w // pw


def _phase_taps(x, kernel, bias, pool):
    """conv(x, kernel) + bias at each position of each pool window, one map per phase.

    Phase (u, v) is the window's row u, column v: [B, H // ph, W // pw, Cout] for the
    output pixels (ph*p + u, pw*q + v) of full windows. Each is kh*kw multiply-adds of a
    strided slice of the zero-padded one-channel x (the same sums, in the same order, as
    `_conv_taps`). Returns the ph*pw maps and, per phase, the kh*kw slices [B, P, Q].
    """
    _, h, w, _ = x.shape
    kh, kw = kernel.shape[:2]
    ph, pw, p, q = _pool_geometry(h, w, pool)
    xp_BxHpxWp = jnp.pad(x[..., 0], ((0, 0), _same_pads(kh), _same_pads(kw)))
    zs, taps = [], []
    for u in range(ph):
        for v in range(pw):
            z, cols = None, []
            for i in range(kh):
                for j in range(kw):
                    rows = slice(u + i, u + i + ph * (p - 1) + 1, ph)
                    col_BxPxQ = xp_BxHpxWp[:, rows, v + j : v + j + pw * (q - 1) + 1 : pw]
                    cols.append(col_BxPxQ)
                    term = col_BxPxQ[..., None] * kernel[i, j, 0].reshape(1, 1, 1, -1)
                    z = term if z is None else z + term
            zs.append(z + bias.reshape(1, 1, 1, -1))
            taps.append(cols)
    return zs, taps


def _max_of(zs):
    m = zs[0]
    for z in zs[1:]:
        m = jnp.maximum(m, z)
    return m


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def conv_relu_pool_stencil(
    x: jax.Array, kernel: jax.Array, bias: jax.Array, pool: int
) -> jax.Array:
    """`max_pool(relu(conv_xla(x, kernel) + bias), pool)` for a one-channel x, fused.

    The CNN's first block without normalisation. The forward pass computes the
    pre-activation once per pool phase (`_phase_taps`: all maps [B, T/ph, F/pw, Cout], no
    full-resolution map and no window reshape) and takes their maximum; relu commutes with
    it. Only x, kernel and bias are kept for the backward pass, which recomputes the
    phases and routes the output gradient as `max_pool`'s autodiff does (split equally
    among the tied maxima of relu's output; none where that maximum is 0, where relu's
    gradient is 0). The kernel gradient is, per tap, a contraction of the x slices with
    the phase gradients; the bias gradient a sum. The input gradient (XLA's convolution
    transpose) is dropped by XLA when x needs none, as for data. Values and gradients
    equal the unfused block's up to float32 rounding.

    Args:
      x: float32 [B, H, W, 1].
      kernel: float32 [kh, kw, 1, Cout].
      bias: float32 [Cout].
      pool: `max_pool`'s window and stride.

    Returns:
      float32 [B, H // ph, W // pw, Cout], as `max_pool`.
    """
    return jnp.maximum(_max_of(_phase_taps(x, kernel, bias, pool)[0]), 0.0)


def _crp_fwd(x, kernel, bias, pool):
    return conv_relu_pool_stencil(x, kernel, bias, pool), (x, kernel, bias)


def _crp_bwd(pool, residuals, g_BxPxQxO):
    x, kernel, bias = residuals
    b, h, w, _ = x.shape
    cout = kernel.shape[-1]
    ph, pw, p, q = _pool_geometry(h, w, pool)
    zs, taps = _phase_taps(x, kernel, bias, pool)
    m = _max_of(zs)
    hits = [z == m for z in zs]
    count = functools.reduce(jnp.add, [hit.astype(g_BxPxQxO.dtype) for hit in hits])
    g_at_max = jnp.where(m > 0, g_BxPxQxO / count, 0.0)
    dzs = [jnp.where(hit, g_at_max, 0.0) for hit in hits]
    # Per phase one matmul, x slices [kh*kw, B*P*Q] @ gradient [B*P*Q, Cout] (4.5 ms for
    # the block's gradients at [64, 101, 40] -> 16, 2-core CPU; one small contraction per
    # tap and phase: 10 ms). Not sums of products: XLA CPU (jax 0.10.2) miscompiled a fused
    # multiply-reduce of shifted x slices with the pooled gradient (one tap came out wrong).
    dk = functools.reduce(
        jnp.add, [jnp.einsum("kbpq,bpqc->kc", jnp.stack(cols), dz) for cols, dz in zip(taps, dzs)]
    ).reshape(kernel.shape)
    db = functools.reduce(jnp.add, [dz.sum(axis=(0, 1, 2)) for dz in dzs])
    dz_BxHxWxO = (
        jnp.stack(dzs)
        .reshape(ph, pw, b, p, q, cout)
        .transpose(2, 3, 0, 4, 1, 5)
        .reshape(b, p * ph, q * pw, cout)
    )
    dz_BxHxWxO = jnp.pad(dz_BxHxWxO, ((0, 0), (0, h - p * ph), (0, w - q * pw), (0, 0)))
    return _input_grad(dz_BxHxWxO, kernel), dk, db


conv_relu_pool_stencil.defvjp(_crp_fwd, _crp_bwd)


CONVS: Mapping[str, ConvFn] = {
    "xla": conv_xla,
    "im2col": conv_im2col,
    "xla_stencil": conv_xla_stencil,
    # xla_stencil, with a first block that has no norm as `conv_relu_pool_stencil`
    "stencil_block": conv_xla_stencil,
}


# The fastest formulation per backend, measured with benchmarks/conv_bench.py; re-measure
# when jax changes (jax 0.10.2, 2-core CPU, batch 64: xla_stencil 1.15-1.25x nn.Conv's speed,
# nn.Conv 1.3x the im2col VJP's; with norm=None stencil_block ~1.2x xla_stencil's). GPU and TPU not measured: XLA's own convolution there.
AUTO_CONV: Mapping[str, str] = {"cpu": "stencil_block", "gpu": "xla", "tpu": "xla"}


def resolve_conv(conv: str | ConvFn) -> str | ConvFn:
    """The convolution a model runs: a name in `CONVS`, or the function itself.

    "auto" is `AUTO_CONV[jax.default_backend()]` ("xla" for a backend not listed).
    """
    if callable(conv):
        return conv
    if conv == "auto":
        return AUTO_CONV.get(jax.default_backend(), "xla")
    if conv not in CONVS:
        raise ValueError(f"unknown conv {conv!r}; known: auto, {', '.join(sorted(CONVS))}")
    return conv


class Conv2D(nn.Module):
    """A 'SAME', stride-1 convolution whose parameters are exactly `nn.Conv`'s.

    `kernel` [kh, kw, Cin, Cout] (lecun normal) and `bias` [Cout] (zeros), so the same
    checkpoint serves this module and `nn.Conv(features, kernel_size, padding="SAME")`.

    Attributes:
      features: output channels.
      kernel_size: (kh, kw).
      conv: `(x [B, H, W, Cin], kernel) -> [B, H, W, Cout]`, e.g. `conv_im2col`.
    """

    features: int
    kernel_size: tuple[int, int]
    conv: ConvFn = conv_im2col

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (*self.kernel_size, x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        return self.conv(x, kernel) + bias.reshape(1, 1, 1, -1)


class ConvReluPool(nn.Module):
    """`Conv2D` -> relu -> `max_pool` of a one-channel input as `conv_relu_pool_stencil`.

    Its parameters are `Conv2D`'s (and `nn.Conv`'s): `kernel` [kh, kw, 1, Cout], `bias`
    [Cout], so it stands in for the first block's `shared_conv0` in any checkpoint.
    """

    features: int
    kernel_size: tuple[int, int]
    pool: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (*self.kernel_size, x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        return conv_relu_pool_stencil(x, kernel, bias, self.pool)


def max_pool(x: jax.Array, pool: int) -> jax.Array:
    """Non-overlapping max-pool of the two middle axes, each only while it is >= `pool`.

    Equals `nn.max_pool(x, window, strides=window)` ('VALID': a last partial window is
    dropped) with `window` = `pool`, or 1 on an axis shorter than `pool`. Written as a
    reshape and a max: its gradient is elementwise, where XLA's select-and-scatter (the
    gradient of `nn.max_pool`) takes about 8x longer on CPU.

    Args:
      x: float32 [B, H, W, C].
      pool: window and stride.

    Returns:
      float32 [B, H // ph, W // pw, C], ph = pool if H >= pool else 1 (pw likewise).
    """
    b, h, w, c = x.shape
    ph, pw = (pool if n >= pool else 1 for n in (h, w))
    if (ph, pw) == (1, 1):
        return x
    x_crop = x[:, : h - h % ph, : w - w % pw, :]
    return x_crop.reshape(b, h // ph, ph, w // pw, pw, c).max(axis=(2, 4))


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


def _normalize(h: jax.Array, norm: str | None, name: str, train: bool) -> jax.Array:
    """Normalise `h` [B, ..., C]; scale and bias are per channel C.

    "layer": over each sample's every axis but B (for a conv map [B, T, F, C]: the whole
    map, i.e. group norm with one group, as the layer-norm paper applies it to convolutions).
    "batch": over every axis but C, with running averages for evaluation. None: as is.
    """
    if norm == "layer":
        return nn.LayerNorm(reduction_axes=tuple(range(1, h.ndim)), feature_axes=-1, name=name)(h)
    if norm == "batch":
        return nn.BatchNorm(use_running_average=not train, momentum=0.9, name=name)(h)
    return h


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
    works (a 7-row LogbankSummary, a 1-frame input). The blocks' output is averaged over
    time (and over frequency too with `global_pool="all"`), flattened, passed through
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
    heads see 64 x F/16 features. Heads are linear (`head_hidden=()`): the shared trunk
    does the work and each task adds only n_columns x features parameters.

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
        (xla_stencil; with norm=None the first block as `ConvReluPool`) or a function `(x [B,H,W,Cin], kernel) -> [B,H,W,Cout]`
        ('SAME', stride 1). The parameters are the same whichever runs.
    """

    tasks: tuple[Task, ...]
    channels: tuple[int, ...] = (16, 32, 64, 64)
    kernel: int = 3
    pool: int = 2
    dropout: float = 0.1
    norm: str | None = "layer"
    head_hidden: tuple[int, ...] = ()
    global_pool: str = "time"
    conv: str | ConvFn = "auto"

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
        resolve_conv(self.conv)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
        """{task name: logits float32 [B, n_columns]} from x float32 [B, T, F]."""
        _check_x(type(self).__name__, x)
        conv = resolve_conv(self.conv)
        size = (self.kernel, self.kernel)
        h = x[..., None]  # [B, T, F, 1]
        for i, width in enumerate(self.channels):
            name = f"shared_conv{i}"
            if conv == "stencil_block" and self.norm is None and h.shape[-1] == 1:
                h = ConvReluPool(width, size, self.pool, name=name)(h)
                continue
            if conv == "xla":
                h = nn.Conv(width, size, padding="SAME", name=name)(h)
            else:
                h = Conv2D(width, size, CONVS.get(conv, conv), name=name)(h)
            h = nn.relu(_normalize(h, self.norm, f"shared_norm{i}", train))
            h = max_pool(h, self.pool)
        h = h.mean(axis=(1, 2)) if self.global_pool == "all" else h.mean(axis=1)
        h = h.reshape(h.shape[0], -1)
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return _heads(h, self.tasks, self.head_hidden, nn.relu, self.dropout, train)


# --------------------------------------------------------------------------- by name

MODELS: Mapping[str, type[nn.Module]] = {"dnn": HardSharingDNN, "cnn": HardSharingCNN}


def model_from_config(name: str, tasks: Sequence[Task], **kwargs: Any) -> nn.Module:
    """The model called `name` in `MODELS`, built for `tasks` with `kwargs`."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name](tuple(tasks), **kwargs)


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
