"""Standardization: statistics streamed over the valid frames, applied as one affine map."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import struct

from mtjax.data import arrays, ops, values
from mtjax.data.arrays import Affine
from mtjax.data.values import Data

STD_FLOOR = 1e-8  # a standard deviation below this scales by 1 (a constant feature stays put)


# Scaling


@struct.dataclass
class Scaler:
    """Standardization statistics over the valid frames of a dataset (see `fit_scaler`).

    Attributes:
      mean: float32 [1, F] (per feature) or [T, F] (per cell).
      std: float32, shaped as `mean`; population std, 1 where below `STD_FLOOR`.
      count: int64 [1] or [T], valid frames behind each row of statistics.
    """

    mean: np.ndarray
    std: np.ndarray
    count: np.ndarray


def fit_scaler(ds: Data, *, per: str = "feature") -> Scaler:
    """Mean and standard deviation of the valid frames, streamed chunk by chunk.

    Padding (frames at or past `lengths`) is left out. Chunks are merged in float64
    with the parallel-variance update of Chan, Golub & LeVeque (1979), so a DiskArray
    is read once and never held whole.

    Args:
      ds: x float32 [N, T, F], lengths int [N].
      per: "feature" (one statistic per feature, over all valid frames) or "cell" (one
        per (t, f), over the rows with t < length; a cell no row reaches gets mean 0,
        std 1).

    Raises:
      ValueError on NaN or inf features (naming the dataset and row ids), or when
      there is no valid frame.
    """
    if per not in ("feature", "cell"):
        raise ValueError(f"fit_scaler: per must be 'feature' or 'cell', got {per!r}")
    _, n_frames, n_features = ds.x.shape
    axes = (0, 1) if per == "feature" else (0,)
    cells = 1 if per == "feature" else n_frames
    count = np.zeros([cells, 1])
    mean = np.zeros([cells, n_features])
    m2 = np.zeros([cells, n_features])
    lengths = np.asarray(ds.lengths)
    for begin, chunk in arrays.chunks(ds.x, arrays.chunk_rows(ds.x)):
        bad = np.nonzero(~np.isfinite(chunk).all(axis=(1, 2)))[0]
        if bad.size:
            ops.raise_nonfinite(ds, begin + bad)
        valid = np.arange(n_frames)[None, :, None] < lengths[begin : begin + len(chunk), None, None]
        x_BxTxF = np.where(valid, chunk, 0.0).astype(np.float64)
        count_b = valid.sum(axes).reshape(cells, 1)
        mean_b = x_BxTxF.sum(axes).reshape(cells, n_features) / np.maximum(count_b, 1)
        m2_b = (np.where(valid, x_BxTxF - mean_b[None], 0.0) ** 2).sum(axes)
        total = count + count_b
        delta = mean_b - mean
        mean = mean + delta * count_b / np.maximum(total, 1)
        m2_b = m2_b.reshape(cells, n_features)
        m2 = m2 + m2_b + delta**2 * count * count_b / np.maximum(total, 1)
        count = total
    if not count.sum():
        raise ValueError(f"fit_scaler: {values.describe(ds)} has no valid frames")
    std = np.sqrt(m2 / np.maximum(count, 1))
    std = np.where(std < STD_FLOOR, 1.0, std)
    return Scaler(mean.astype(np.float32), std.astype(np.float32), count[:, 0].astype(np.int64))


def scale(ds: Data, scaler: Scaler) -> Data:
    """`(x - mean) / std` on the valid frames; padding stays zero.

    A per-cell scaler needs T to match; on a DiskArray, frame or window before scaling.
    The result's `preparation` ends with the scaler's record (`scaler_record`).
    """
    mean = np.asarray(scaler.mean, np.float32)
    _, n_frames, n_features = ds.x.shape
    if mean.shape[1] != n_features or mean.shape[0] not in (1, n_frames):
        raise ValueError(
            f"scale: a scaler of shape {mean.shape} does not fit {values.describe(ds)} with "
            f"{n_frames} frames of {n_features} features"
        )
    x = arrays.affine(ds.x, ds.lengths, scaler_affine(scaler))
    return ds.replace(x=x, preparation=(*ds.preparation, scaler_record(scaler)))


def scaler_affine(scaler: Scaler) -> Affine:
    """The map `scale` applies, `x * (1 / std) + (-mean / std)`, float32 [1, F] or [T, F]."""
    mean = np.asarray(scaler.mean, np.float32)
    std = np.asarray(scaler.std, np.float32)
    return Affine(mult=1 / std, add=-mean / std)


def scaler_record(scaler: Scaler) -> dict:
    """`{"step": "standardize", "per", "mean", "std"}`, the statistics as float32 lists.

    "per" is "cell" for statistics of several frames ([T, F]), else "feature".
    """
    mean = np.asarray(scaler.mean, np.float32)
    return {
        "step": "standardize",
        "per": "cell" if mean.shape[0] > 1 else "feature",
        "mean": mean.tolist(),
        "std": np.asarray(scaler.std, np.float32).tolist(),
    }


def record_scaler(record: Mapping[str, Any], what: str = "standardize") -> Scaler:
    """The Scaler of a record's "mean" and "std" (`scaler_record`), checked.

    Raises:
      ValueError naming `what` when they are not two equal-shaped [rows, F] lists of
      finite numbers with std > 0.
    """
    try:
        mean = np.asarray(record["mean"], np.float32)
        std = np.asarray(record["std"], np.float32)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{what}: the record holds no mean and std lists ({err})") from None
    if mean.ndim != 2 or mean.shape != std.shape or not mean.size:
        raise ValueError(f"{what}: mean {mean.shape} and std {std.shape} must both be [rows, F]")
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise ValueError(f"{what}: mean and std must be finite and std > 0")
    return Scaler(mean, std, np.zeros(mean.shape[0], np.int64))
