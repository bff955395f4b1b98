"""CPU-minded convolution kernels behind `HardSharingCNN`, all with `nn.Conv`'s parameters.

Convolutions. `HardSharingCNN(conv=...)` picks how its convolutions run: "xla" (`nn.Conv`),
"im2col" (`conv_im2col`: a custom VJP whose kernel gradient is one im2col matmul),
"xla_stencil" (`conv_xla_stencil`: XLA's convolutions and gradients, except the first
layer's forward pass, Cin=1, as 9 shifted multiply-adds), "stencil_block" (xla_stencil, and
with norm=None the whole first block, conv -> relu -> max-pool, as one custom VJP,
`conv_relu_pool_stencil`, that keeps no [B, T, F, C] map for the backward pass) or "auto",
the fastest measured on the backend (`AUTO_CONV`). All have the same parameters, so a
checkpoint moves between them.
Timings of each formulation are in benchmarks/README.md (`benchmarks/conv_bench.py`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

ConvFn = Callable[[jax.Array, jax.Array], jax.Array]  # (x [B,H,W,Cin], kernel) -> [B,H,W,Cout]
_DIMS = ("NHWC", "HWIO", "NHWC")


# --------------------------------------------------------------------------- convolutions


def same_pads(size: int) -> tuple[int, int]:
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
      kh: window height.
      kw: window width.

    Returns:
      float32 [B, H, W, kh*kw*Cin], ordered (i, j, c) like `kernel.reshape(-1, Cout)`
      of a [kh, kw, Cin, Cout] kernel.
    """
    _, h, w, _ = x.shape
    xp_BxHpxWpxC = jnp.pad(x, ((0, 0), same_pads(kh), same_pads(kw), (0, 0)))
    cols = [xp_BxHpxWpxC[:, i : i + h, j : j + w, :] for i in range(kh) for j in range(kw)]
    return jnp.concatenate(cols, axis=-1)


def _input_grad(g_BxHxWxO: jax.Array, kernel: jax.Array) -> jax.Array:
    """Gradient of `conv_xla` with respect to x.

    A forward convolution of the output gradient with the kernel turned 180 degrees and
    its in/out channels swapped.
    """
    kh, kw = kernel.shape[:2]
    flipped_HWOI = jnp.swapaxes(kernel[::-1, ::-1], 2, 3)
    pads = (same_pads(kh)[::-1], same_pads(kw)[::-1])
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
    xp_BxHpxWpx1 = jnp.pad(x, ((0, 0), same_pads(kh), same_pads(kw), (0, 0)))
    terms = [
        xp_BxHpxWpx1[:, i : i + h, j : j + w, :] * kernel[i, j, 0].reshape(1, 1, 1, -1)
        for i in range(kh)
        for j in range(kw)
    ]
    out = terms[0]
    for term in terms[1:]:
        out = out + term
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
    """`conv_xla`, with a one-channel input's forward pass as shifted multiply-adds.

    A one-channel input (the CNN's first layer, x [B, T, F, 1]) runs forward as kh*kw
    shifted multiply-adds, an elementwise loop XLA fuses, instead of a convolution with
    Cin=1 (about 10x faster on a 2-core CPU; benchmarks/README.md). Its gradients are XLA's
    convolution gradients (a custom VJP), as are every gradient and forward pass of a layer
    with Cin > 1. Values equal `conv_xla`'s up to float32 rounding (the same products
    summed in another order).

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
    xp_BxHpxWp = jnp.pad(x[..., 0], ((0, 0), same_pads(kh), same_pads(kw)))
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
    return _conv_pool(x, kernel, bias, pool, True)


def conv_pool_stencil(x: jax.Array, kernel: jax.Array, bias: jax.Array, pool: int) -> jax.Array:
    """`max_pool(conv_xla(x, kernel) + bias, pool)` for a one-channel x, fused.

    As `conv_relu_pool_stencil` without the relu, for a norm applied after the pool.
    """
    return _conv_pool(x, kernel, bias, pool, False)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _conv_pool(x, kernel, bias, pool: int, relu: bool):
    m = _max_of(_phase_taps(x, kernel, bias, pool)[0])
    return jnp.maximum(m, 0.0) if relu else m


def _crp_fwd(x, kernel, bias, pool, relu):
    return _conv_pool(x, kernel, bias, pool, relu), (x, kernel, bias)


def _crp_bwd(pool, relu, residuals, g_BxPxQxO):
    x, kernel, bias = residuals
    b, h, w, _ = x.shape
    cout = kernel.shape[-1]
    ph, pw, p, q = _pool_geometry(h, w, pool)
    zs, taps = _phase_taps(x, kernel, bias, pool)
    m = _max_of(zs)
    hits = [z == m for z in zs]
    count = functools.reduce(jnp.add, [hit.astype(g_BxPxQxO.dtype) for hit in hits])
    g_at_max = g_BxPxQxO / count
    if relu:
        g_at_max = jnp.where(m > 0, g_at_max, 0.0)
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


_conv_pool.defvjp(_crp_fwd, _crp_bwd)


CONVS: Mapping[str, ConvFn] = {
    "xla": conv_xla,
    "im2col": conv_im2col,
    "xla_stencil": conv_xla_stencil,
    # xla_stencil, with a first block that has no norm as `conv_relu_pool_stencil`
    "stencil_block": conv_xla_stencil,
}


# The fastest formulation per backend, measured with benchmarks/conv_bench.py (figures in
# benchmarks/README.md; re-measure when jax changes). GPU and TPU: XLA's own convolution.
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
        """float32 [B, H, W, features] of x [B, H, W, Cin]."""
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
        """float32 [B, H // pool, W // pool, features] of x [B, H, W, 1]."""
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
