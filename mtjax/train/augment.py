"""On-device augmentation of a training batch: mixup, time shift and SpecAugment masks.

`apply(augment, key, batch)` is pure and keeps every shape, so it runs inside the jitted
train step with the `Augment` value static (it is frozen and hashable). The parts run in
this order, each only when its fields are set:

1. mixup (Zhang et al. 2018), of rows that have the same tasks (see `_mixup`);
2. a circular time shift of each row within its valid frames;
3. SpecAugment time and frequency masks (Park et al. 2019).

Mixup comes first so the shift and the masks act on the clip the model sees, and a row's
partner is never shifted or masked in a different place from it; the masks come last so
the frames they zero are never taken for padding by the shift.

Valid frames are those of `architectures.valid_frames`: padding is frames whose features
are all exactly 0, written past a clip's end. A row's length `v` is one past its last valid
frame (its count of valid frames, for end-padded clips); shift and time masks leave rows
with `v <= 1` as they are (the DNN's summary rows, T = 1).

A time mask sets whole frames to 0, so the pooled models then read masked frames as
padding and leave them out of their statistics. That is deliberate: SpecAugment sets
masked values to the mean, which is 0 for standardised features, and a frame of means
carries nothing a pooled statistic should count. Masks can cover a row's every frame
only when `time_masks * time_width >= 1`.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from mtjax.train.models.architectures import valid_frames

if TYPE_CHECKING:  # step.py applies augmentations: importing it here would be a cycle
    from mtjax.train.step import Batch

_FRACTIONS = ("shift", "time_width")
_COUNTS = ("time_masks", "freq_masks", "freq_width")
_PAIRS = (("time_masks", "time_width"), ("freq_masks", "freq_width"))


@dataclasses.dataclass(frozen=True)
class Augment:
    """On-device augmentation of a training batch; every field 0 is off.

    Attributes:
      shift: random circular time shift of each row within its valid frames, by an integer
        drawn uniformly from [-floor(shift * v), floor(shift * v)] for a row of v frames;
        in [0, 1).
      time_masks: SpecAugment time masks per row.
      time_width: the most frames each time mask covers, as a fraction of the row's valid
        frames (width uniform in [0, floor(time_width * v)]); in [0, 1).
      freq_masks: SpecAugment frequency masks per row.
      freq_width: the most bands each frequency mask covers (width uniform in
        [0, freq_width], at most F).
      mixup: mixup alpha; each row's weight is max(lam, 1 - lam), lam ~ Beta(alpha, alpha).
    """

    shift: float = 0.0
    time_masks: int = 0
    time_width: float = 0.0
    freq_masks: int = 0
    freq_width: int = 0
    mixup: float = 0.0

    def __post_init__(self) -> None:
        for name in (*_FRACTIONS, "mixup"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"Augment {name} must be a number, got {value!r}")
            value = float(value)
            if not math.isfinite(value) or value < 0 or (name in _FRACTIONS and value >= 1):
                wanted = ">= 0" if name == "mixup" else "in [0, 1)"
                raise ValueError(f"Augment {name} must be {wanted}, got {value!r}")
            object.__setattr__(self, name, value)
        for name in _COUNTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"Augment {name} must be an int >= 0, got {value!r}")
            object.__setattr__(self, name, int(value))
        for count, width in _PAIRS:
            if (getattr(self, count) > 0) != (getattr(self, width) > 0):
                raise ValueError(
                    f"Augment {count}={getattr(self, count)!r} and {width}="
                    f"{getattr(self, width)!r}: set both above 0 or neither"
                )

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) != 0 for f in dataclasses.fields(self))

    def to_json(self) -> dict:
        """Every field, plus `"type": "Augment"`; `from_json` turns it back."""
        return {"type": "Augment", **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Augment:
        """The `Augment` a `to_json` dict describes; missing fields take their defaults."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields - {"type"})
        if unknown:
            raise ValueError(f"Augment: unknown keys {unknown}; known: {sorted(fields)}")
        if d.get("type", "Augment") != "Augment":
            raise ValueError(f"Augment: type must be 'Augment', got {d['type']!r}")
        return cls(**{k: v for k, v in d.items() if k != "type"})


def apply(augment: Augment, key: jax.Array, batch: Batch) -> Batch:
    """The batch, augmented as `augment` says; the same batch when every field is 0.

    Args:
      augment: what to do (static under `jax.jit`).
      key: a PRNG key; the same key gives the same batch.
      batch: x float32 [B, T, F], y float32 [B, C], has_task bool [B, K], weight [B].

    Returns:
      A batch of the same shapes and dtypes; has_task and weight unchanged.
    """
    if not augment:
        return batch
    mix_key, shift_key, time_key, freq_key = jax.random.split(key, 4)
    x, y = batch.x, batch.y
    if augment.mixup > 0:
        x, y = _mixup(mix_key, x, y, batch.has_task, batch.weight, alpha=augment.mixup)
    length_B = _lengths(x)
    if augment.shift > 0:
        x = _shift(shift_key, x, length_B, fraction=augment.shift)
    if augment.time_masks > 0:
        x = _time_masks(time_key, x, length_B, augment.time_masks, augment.time_width)
    if augment.freq_masks > 0:
        x = _freq_masks(freq_key, x, augment.freq_masks, augment.freq_width)
    return batch._replace(x=x, y=y)


def _lengths(x_BxTxF: jax.Array) -> jax.Array:
    """Int32 [B]: one past each row's last valid frame (T for a row of zeros)."""
    t = x_BxTxF.shape[1]
    valid_BxT = valid_frames(x_BxTxF)
    return t - jnp.argmax(valid_BxT[:, ::-1], axis=1).astype(jnp.int32)


def mixup_partners(key: jax.Array, has_task: jax.Array, weight: jax.Array) -> jax.Array:
    """Int32 [B]: each row's mixup partner, another row with its tasks, or itself.

    Rows with weight > 0 are grouped by their `has_task` pattern; within a group, in a
    random order, each row's partner is the next row (the last's is the first), so every
    row is a partner exactly once. Rows alone in their group and padding rows (weight 0)
    get themselves.

    Args:
      key: a PRNG key.
      has_task: bool [B, K].
      weight: float32 [B].
    """
    b, k = has_task.shape
    live_B = weight > 0
    # lexsort's last key leads: live rows first, then by pattern, then in random order
    keys = (jax.random.uniform(key, (b,)), *(has_task[:, i] for i in reversed(range(k))))
    order_B = jnp.lexsort((*keys, ~live_B))
    pattern_BxK, live_sorted_B = has_task[order_B], live_B[order_B]
    changes_B = jnp.any(pattern_BxK[1:] != pattern_BxK[:-1], axis=1)
    changes_B = changes_B | (live_sorted_B[1:] != live_sorted_B[:-1])
    starts_B = jnp.concatenate([jnp.ones([1], bool), changes_B])
    position_B = jnp.arange(b, dtype=jnp.int32)
    group_start_B = jax.lax.cummax(jnp.where(starts_B, position_B, 0), axis=0)
    group_last_B = jnp.concatenate([starts_B[1:], jnp.ones([1], bool)])
    next_B = jnp.where(group_last_B, group_start_B, position_B + 1)
    next_B = jnp.where(live_sorted_B, next_B, position_B)
    return jnp.zeros([b], jnp.int32).at[order_B].set(order_B[next_B].astype(jnp.int32))


def _mixup(
    key: jax.Array,
    x_BxTxF: jax.Array,
    y_BxC: jax.Array,
    has_task_BxK: jax.Array,
    weight_B: jax.Array,
    *,
    alpha: float,
) -> tuple[jax.Array, jax.Array]:
    """Mixup of each row with its partner (`mixup_partners`), one lam per row.

    x_i' = lam_i x_i + (1 - lam_i) x_j(i), and y likewise, with lam_i = max(l, 1 - l),
    l ~ Beta(alpha, alpha), so a row stays dominant. A row whose partner is itself is
    returned exactly. A partner longer than the row lengthens it: its frames past the
    row's end are the partner's, scaled by 1 - lam.
    """
    partner_key, lam_key = jax.random.split(key)
    partner_B = mixup_partners(partner_key, has_task_BxK, weight_B)
    lam_B = jax.random.beta(lam_key, alpha, alpha, partner_B.shape)
    lam_B = jnp.maximum(lam_B, 1.0 - lam_B)
    keep_B = partner_B == jnp.arange(partner_B.shape[0])
    lam_x, lam_y = lam_B.astype(x_BxTxF.dtype)[:, None, None], lam_B.astype(y_BxC.dtype)[:, None]
    x_mixed = lam_x * x_BxTxF + (1 - lam_x) * x_BxTxF[partner_B]
    y_mixed = lam_y * y_BxC + (1 - lam_y) * y_BxC[partner_B]
    x_out = jnp.where(keep_B[:, None, None], x_BxTxF, x_mixed)
    return x_out, jnp.where(keep_B[:, None], y_BxC, y_mixed)


def _shift(key: jax.Array, x_BxTxF: jax.Array, length_B: jax.Array, *, fraction: float):
    """Rolls each row's first v frames by s: new[t] = x[(t - s) mod v] for t < v."""
    b, t, _ = x_BxTxF.shape
    most_B = jnp.floor(fraction * length_B).astype(jnp.int32)
    s_B = jax.random.randint(key, (b,), -most_B, most_B + 1)
    t_1xT = jnp.arange(t, dtype=jnp.int32)[None, :]
    v_Bx1 = length_B[:, None]
    source_BxT = jnp.where(t_1xT < v_Bx1, jnp.mod(t_1xT - s_B[:, None], v_Bx1), t_1xT)
    return jnp.take_along_axis(x_BxTxF, source_BxT[:, :, None], axis=1)


def _time_masks(key, x_BxTxF: jax.Array, length_B: jax.Array, n: int, fraction: float):
    """Zeroes `n` spans [t0, t0 + w) of each row's valid frames, w <= floor(fraction * v)."""
    b, t, _ = x_BxTxF.shape
    width_key, start_key = jax.random.split(key)
    most_Bx1 = jnp.floor(fraction * length_B).astype(jnp.int32)[:, None]
    w_BxN = jax.random.randint(width_key, (b, n), 0, most_Bx1 + 1)
    t0_BxN = jax.random.randint(start_key, (b, n), 0, length_B[:, None] - w_BxN + 1)
    t_1x1xT = jnp.arange(t, dtype=jnp.int32)[None, None, :]
    inside = (t_1x1xT >= t0_BxN[:, :, None]) & (t_1x1xT < (t0_BxN + w_BxN)[:, :, None])
    return jnp.where(jnp.any(inside, axis=1)[:, :, None], 0.0, x_BxTxF).astype(x_BxTxF.dtype)


def _freq_masks(key: jax.Array, x_BxTxF: jax.Array, n: int, most: int):
    """Zeroes `n` band spans [f0, f0 + w) of each row, w uniform in [0, min(most, F)].

    Padding frames are 0 already, so only valid frames change.
    """
    b, _, f = x_BxTxF.shape
    width_key, start_key = jax.random.split(key)
    w_BxN = jax.random.randint(width_key, (b, n), 0, min(most, f) + 1)
    f0_BxN = jax.random.randint(start_key, (b, n), 0, f - w_BxN + 1)
    f_1x1xF = jnp.arange(f, dtype=jnp.int32)[None, None, :]
    inside = (f_1x1xF >= f0_BxN[:, :, None]) & (f_1x1xF < (f0_BxN + w_BxN)[:, :, None])
    return jnp.where(jnp.any(inside, axis=1)[:, None, :], 0.0, x_BxTxF).astype(x_BxTxF.dtype)
