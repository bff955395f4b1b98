"""Audio to features: load and resample, extractions as values, the worker side, the cache.

loading (decode, mono, resample, signal checks) -> features/ (the `Extraction` base and
the built-in extractions) -> worker (one batch of files, in a worker process)
-> cache (`read`, the on-disk feature cache).

Names are imported on first use: a worker process imports `mtjax.audio.worker`, which
needs neither JAX nor the cache.
"""

from __future__ import annotations

from typing import Any

from mtjax import _lazy

_NAMES = {
    "AudioError": "mtjax.audio.loading",
    "load": "mtjax.audio.loading",
    "resample": "mtjax.audio.loading",
    "to_mono": "mtjax.audio.loading",
    "split_in_time": "mtjax.audio.loading",
    "check_signal": "mtjax.audio.loading",
    "Extraction": "mtjax.audio.features.base",
    "Raw": "mtjax.audio.features.raw",
    "Mfcc": "mtjax.audio.features.spectral",
    "MelSpectrogram": "mtjax.audio.features.spectral",
    "LogMel": "mtjax.audio.features.spectral",
    "FilterBank": "mtjax.audio.features.spectral",
    "LogbankSummary": "mtjax.audio.features.summary",
    "read": "mtjax.audio.cache",
    "CacheError": "mtjax.audio.cache",
    "ExtractionError": "mtjax.audio.cache",
}

__all__ = [
    "AudioError",
    "CacheError",
    "Extraction",
    "ExtractionError",
    "FilterBank",
    "LogMel",
    "LogbankSummary",
    "MelSpectrogram",
    "Mfcc",
    "Raw",
    "check_signal",
    "load",
    "read",
    "resample",
    "split_in_time",
    "to_mono",
]


def __getattr__(name: str) -> Any:
    return _lazy.attribute(globals(), name, _NAMES)


def __dir__() -> list[str]:
    return _lazy.names(globals(), __all__)
