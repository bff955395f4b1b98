"""The CNN's first block with its norm, fused: conv -> norm -> relu -> max-pool in one pass.

`HardSharingCNN`'s first block on the CPU (`conv="stencil_block"`, the default there) runs
`normed_block`, which equals the unfused `max_pool(relu(norm(conv(x) + bias)))` up to float32
rounding and never builds the full-resolution map for the norm:

- The norm's statistics come from x: conv(x) at a position is `sum_i X_i k_i + bias`, over
  the kh*kw shifted copies X_i of the one-channel x, so per channel the mean is `m . k + bias`
  and the variance `k' C k`, from the mean `m` [kh*kw] and covariance `C` [kh*kw, kh*kw] of
  the shifted copies over the valid frames (per sample for the layer norm, over the batch
  for the batch norm). x is data, so `m` and `C` need no gradient.
- The norm is `a z + d` per channel, with `a = scale / std`; relu is monotone, so the
  window maximum of `relu(a z + d)` is `relu(|a| max(s z) + d)`, s the sign of `scale`:
  the maximum of `s z` is `kernels.conv_pool_stencil` with the kernel and bias times s.

So the norm and relu run on the pooled map, a quarter of the size, and the backward pass
keeps no map at all. The parameters are the unfused block's: `shared_conv{i}` {kernel,
bias} and `shared_norm{i}` {scale, bias} (and, for the batch norm, `batch_stats` {mean,
var}), with flax's epsilons (1e-6 layer, 1e-5 batch) and momentum.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtjax.train.models import kernels

LAYER_EPSILON = 1e-6  # nn.LayerNorm's
BATCH_EPSILON = 1e-5  # nn.BatchNorm's


def patch_moments(
    x_BxHxW: jax.Array, valid_BxH: jax.Array, kernel_size: tuple[int, int], per_sample: bool
) -> tuple[jax.Array, jax.Array]:
    """Mean and covariance of the 'SAME' shifted copies of x over the valid rows.

    Args:
      x_BxHxW: float [B, H, W], one channel.
      valid_BxH: bool [B, H], the rows (frames) the statistics cover.
      kernel_size: (kh, kw): the copies are x shifted by each tap, zero-padded as 'SAME'.
      per_sample: one mean and covariance per sample (layer norm), else one for the batch.

    Returns:
      mean float32 [B, kh*kw] and covariance [B, kh*kw, kh*kw] (per sample), or [kh*kw]
      and [kh*kw, kh*kw], in the order of `kernel.reshape(kh*kw, Cout)`'s rows.
    """
    kh, kw = kernel_size
    _, h, w = x_BxHxW.shape
    pads = (kernels.same_pads(kh), kernels.same_pads(kw))
    xp = jnp.pad(x_BxHxW.astype(jnp.float32), ((0, 0), *pads))
    taps_IxBxHxW = jnp.stack([xp[:, i : i + h, j : j + w] for i in range(kh) for j in range(kw)])
    weight_BxH = valid_BxH.astype(jnp.float32)
    if per_sample:
        count_B = jnp.maximum(weight_BxH.sum(axis=1) * w, 1.0)
        mean_BxI = jnp.einsum("ibhw,bh->bi", taps_IxBxHxW, weight_BxH) / count_B[:, None]
        centred = (taps_IxBxHxW - mean_BxI.T[:, :, None, None]) * weight_BxH[None, :, :, None]
        cov = jnp.einsum("ibhw,jbhw->bij", centred, centred) / count_B[:, None, None]
        return mean_BxI, cov
    count = jnp.maximum(weight_BxH.sum() * w, 1.0)
    mean_I = jnp.einsum("ibhw,bh->i", taps_IxBxHxW, weight_BxH) / count
    centred = (taps_IxBxHxW - mean_I[:, None, None, None]) * weight_BxH[None, :, :, None]
    cov = jnp.einsum("ibhw,jbhw->ij", centred, centred) / count
    return mean_I, cov


def conv_statistics(
    mean_I: jax.Array, cov_IxI: jax.Array, kernel: jax.Array, bias: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Per channel, the mean and variance of conv(x, kernel) + bias from `patch_moments`.

    Shapes: mean [..., I] and cov [..., I, I] give mean and variance [..., Cout]
    (kernel [kh, kw, 1, Cout], I = kh*kw).
    """
    k_IxO = kernel.reshape(-1, kernel.shape[-1]).astype(jnp.float32)
    mean = mean_I @ k_IxO
    mean = mean + bias.astype(jnp.float32).reshape((1,) * (mean.ndim - 1) + (-1,))
    var = jnp.einsum("...ij,io,jo->...o", cov_IxI, k_IxO, k_IxO)
    return mean, jnp.maximum(var, 0.0)


def pooled_norm_relu(
    pooled_signed: jax.Array,
    mean: jax.Array,
    var: jax.Array,
    scale: jax.Array,
    shift: jax.Array,
    epsilon: float,
) -> jax.Array:
    """`relu(|a| P + d)`: the block's output from P = max_pool(sign(scale) z).

    With a = scale / sqrt(var + eps) and d = shift - mean a, this is
    `max_pool(relu(a z + d))` (relu and the affine map are monotone in z, increasing or
    decreasing with the sign of a, which is the sign of scale).

    Args:
      pooled_signed: [B, H', W', C], the window maxima of sign(scale) * z.
      mean: the mean of z, [B, C] or [B, 1] (per sample) or [C] (over the batch).
      var: its variance, shaped as `mean`.
      scale: the norm's scale [C].
      shift: the norm's bias [C].
      epsilon: added to the variance.
    """
    lead = (1,) * (var.ndim - 1) + (-1,)
    a = scale.astype(jnp.float32).reshape(lead) * jax.lax.rsqrt(var + epsilon)  # [B, C] or [C]
    d = shift.astype(jnp.float32).reshape(lead) - mean * a
    a, d = (
        v.reshape(-1, 1, 1, v.shape[-1]) if v.ndim == 2 else v.reshape(1, 1, 1, -1) for v in (a, d)
    )
    out = jnp.abs(a) * pooled_signed.astype(jnp.float32) + d
    return jnp.maximum(out, 0.0).astype(pooled_signed.dtype)


def scale_sign(scale: jax.Array, dtype) -> jax.Array:
    """+1 where scale >= 0, else -1: [C], in `dtype`."""
    return jnp.where(scale >= 0, 1.0, -1.0).astype(dtype)


def normed_block(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array,
    mean: jax.Array,
    var: jax.Array,
    scale: jax.Array,
    shift: jax.Array,
    epsilon: float,
    pool: int,
) -> jax.Array:
    """`max_pool(relu((conv(x) + bias - mean) / sqrt(var + eps) * scale + shift), pool)`.

    Args:
      x: float [B, H, W, 1].
      kernel: [kh, kw, 1, Cout].
      bias: the conv's bias [Cout].
      mean: the mean of conv(x) + bias, [B, Cout] or [B, 1] (per sample) or [Cout].
      var: its variance, shaped as `mean`.
      scale: the norm's scale [Cout].
      shift: the norm's bias [Cout].
      epsilon: added to the variance.
      pool: `kernels.max_pool`'s window and stride.

    Returns:
      [B, H // ph, W // pw, Cout], as the unfused block.
    """
    sign = scale_sign(scale, kernel.dtype)
    pooled = kernels.conv_pool_stencil(x, kernel * sign.reshape(1, 1, 1, -1), bias * sign, pool)
    return pooled_norm_relu(pooled, mean, var, scale, shift, epsilon)


def masked_moments(
    z: jax.Array, valid_BxT: jax.Array, per_sample: bool
) -> tuple[jax.Array, jax.Array]:
    """Mean and variance of a map z [B, T, F, C] over its valid frames.

    Per sample over the whole map ([B, 1] each: the layer norm's), or per channel over
    the batch ([C]: the batch norm's). Two passes (the variance of the centred map).
    """
    b, _, f, c = z.shape
    w = valid_BxT.astype(jnp.float32)[:, :, None, None]
    z = z.astype(jnp.float32)
    if per_sample:
        count = jnp.maximum(valid_BxT.sum(axis=1).astype(jnp.float32) * (f * c), 1.0)
        mean = (z * w).sum(axis=(1, 2, 3)) / count
        centred = (z - mean.reshape(b, 1, 1, 1)) * w
        var = (centred * centred).sum(axis=(1, 2, 3)) / count
        return mean[:, None], var[:, None]
    count = jnp.maximum(valid_BxT.sum().astype(jnp.float32) * f, 1.0)
    mean = (z * w).sum(axis=(0, 1, 2)) / count
    centred = (z - mean.reshape(1, 1, 1, c)) * w
    return mean, (centred * centred).sum(axis=(0, 1, 2)) / count


def norm_relu_pool(
    z: jax.Array, valid_BxT: jax.Array, norm: str, train: bool, pool: int, name: str
) -> jax.Array:
    """`max_pool(relu(norm(z)), pool)` of a conv map z [B, T, F, C], normalised after the pool.

    (`pooled_norm_relu`.) Call it inside a compact `__call__`: the variables are the
    caller's `name`, as `nn.LayerNorm` / `nn.BatchNorm` would have them.
    """
    c = z.shape[-1]
    if norm == "layer" or train:
        mean, var = masked_moments(z, valid_BxT, per_sample=norm == "layer")
    else:  # evaluation with batch norm: the running averages, not this batch
        mean = var = jnp.zeros((c,), jnp.float32)
    scale, shift, mean, var, epsilon = NormParams(c, norm, name=name)(mean, var, train)
    sign = scale_sign(scale, z.dtype).reshape(1, 1, 1, c)
    return pooled_norm_relu(kernels.max_pool(z * sign, pool), mean, var, scale, shift, epsilon)


class ConvParams(nn.Module):
    """The parameters of `kernels.Conv2D` (and `nn.Conv`): kernel [kh, kw, Cin, Cout], bias."""

    features: int
    kernel_size: tuple[int, int]

    @nn.compact
    def __call__(self, cin: int) -> tuple[jax.Array, jax.Array]:
        """(kernel, bias) for `cin` input channels."""
        shape = (*self.kernel_size, cin, self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        return kernel, bias


class NormParams(nn.Module):
    """The variables of `nn.LayerNorm` / `nn.BatchNorm` over C channels.

    scale and bias, and for "batch" the running `mean` and `var` (updated here from a
    training batch's).
    """

    features: int
    norm: str

    @nn.compact
    def __call__(
        self, mean: jax.Array, var: jax.Array, train: bool
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, float]:
        """(scale, shift, mean, var, epsilon): the statistics to normalise with."""
        c = self.features
        scale = self.param("scale", nn.initializers.ones_init(), (c,), jnp.float32)
        shift = self.param("bias", nn.initializers.zeros_init(), (c,), jnp.float32)
        if self.norm == "layer":
            return scale, shift, mean, var, LAYER_EPSILON
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        if not train:
            return scale, shift, ra_mean.value, ra_var.value, BATCH_EPSILON
        if not self.is_initializing():
            momentum = 0.9  # as `architectures._normalize`'s nn.BatchNorm
            mean_, var_ = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var)
            ra_mean.value = momentum * ra_mean.value + (1 - momentum) * mean_
            ra_var.value = momentum * ra_var.value + (1 - momentum) * var_
        return scale, shift, mean, var, BATCH_EPSILON


def map_statistics(mean_BxO: jax.Array, var_BxO: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Each sample's mean and variance over its whole map [B, 1]: the layer norm's.

    From the per-channel ones [B, Cout]; every channel covers the same positions.
    """
    mean_B = mean_BxO.mean(axis=1, keepdims=True)
    second_B = (var_BxO + mean_BxO**2).mean(axis=1, keepdims=True)
    return mean_B, jnp.maximum(second_B - mean_B**2, 0.0)


def first_block(
    x: jax.Array,
    valid_BxT: jax.Array,
    features: int,
    kernel_size: tuple[int, int],
    pool: int,
    norm: str,
    train: bool,
    index: int = 0,
) -> jax.Array:
    """The fused block on x [B, T, F, 1] -> [B, T', F', features].

    Call it inside a compact `__call__`: the variables are the caller's
    `shared_conv{index}` and `shared_norm{index}`.
    """
    kernel, bias = ConvParams(features, kernel_size, name=f"shared_conv{index}")(x.shape[-1])
    per_sample = norm == "layer"
    use_batch = per_sample or train
    if use_batch:
        m, cov = patch_moments(x[..., 0], valid_BxT, kernel_size, per_sample)
        mean, var = conv_statistics(m, cov, kernel, bias)
        if per_sample:
            mean, var = map_statistics(mean, var)
    else:  # evaluation with batch norm: the running averages, not this batch
        mean = var = jnp.zeros((features,), jnp.float32)
    norm_params = NormParams(features, norm, name=f"shared_norm{index}")
    scale, shift, mean, var, epsilon = norm_params(mean, var, train)
    return normed_block(x, kernel, bias, mean, var, scale, shift, epsilon, pool)
