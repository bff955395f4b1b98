"""LogbankSummary: statistics over time of a log filter bank, one row per statistic."""

from __future__ import annotations

import dataclasses

import numpy as np

from mtjax.audio.features.base import set_field
from mtjax.audio.features.spectral import FilterBank

STATS = ("mean", "std", "min", "max", "median", "skew", "kurtosis")


@dataclasses.dataclass(frozen=True)
class LogbankSummary(FilterBank):
    """FilterBank features summarised over time, one row per statistic (Georgiev et al.).

    Statistics over frames, per band: "mean", "std" (population), "min", "max", "median",
    "skew" and "kurtosis" (biased moments, Fisher's excess kurtosis, as scipy.stats' defaults).
    A band that is constant over time has skew and kurtosis 0 (scipy gives NaN).

    Returns (on call): float32 `[len(stats), n_filters]`.
    """

    _: dataclasses.KW_ONLY
    stats: tuple[str, ...] = STATS

    def __post_init__(self):
        super().__post_init__()
        name = type(self).__name__
        if isinstance(self.stats, str):
            raise ValueError(f"{name}: stats must be a sequence of names, got {self.stats!r}")
        set_field(self, "stats", tuple(self.stats))
        unknown = [s for s in self.stats if s not in STATS]
        if unknown or not self.stats or len(set(self.stats)) != len(self.stats):
            raise ValueError(
                f"{name}: stats must be distinct names from {STATS}, got {self.stats!r}"
            )

    def _compute(self, signal: np.ndarray) -> np.ndarray:
        return summarise(self._filterbank(signal), self.stats)


def summarise(x: np.ndarray, stats: tuple[str, ...] = STATS) -> np.ndarray:
    """Statistics of each column over rows.

    Args:
      x: float `[T, F]`, T >= 1.
      stats: names from `STATS`.

    Returns:
      float32 `[len(stats), F]`; skew and kurtosis are 0 for a constant column.
    """
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    m2 = np.mean(centred**2, axis=0)
    # scipy.stats' test for a constant column: its variance is lost in rounding.
    constant = m2 <= (np.finfo(np.float64).resolution * 10 * mean) ** 2
    safe_m2 = np.where(constant, 1.0, m2)
    moments = {
        "mean": lambda: mean,
        "std": lambda: np.sqrt(m2),
        "min": lambda: x.min(axis=0),
        "max": lambda: x.max(axis=0),
        "median": lambda: np.median(x, axis=0),
        "skew": lambda: np.where(constant, 0.0, np.mean(centred**3, axis=0) / safe_m2**1.5),
        "kurtosis": lambda: np.where(constant, 0.0, np.mean(centred**4, axis=0) / safe_m2**2 - 3),
    }
    unknown = [s for s in stats if s not in moments]
    if unknown:
        raise ValueError(f"unknown statistics {unknown}; known: {', '.join(STATS)}")
    return np.stack([moments[s]() for s in stats]).astype(np.float32)
