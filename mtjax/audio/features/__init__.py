"""Feature extractions as frozen values.

An extraction is a frozen dataclass holding every parameter a user sets. Calling it computes
features of one mono signal on the CPU with librosa:

    logmel = LogMel(16000, n_mels=40)
    x = logmel(signal, sample_rate)  # float32 [T, F], time-major (librosa's [F, T] transposed)

A signal at another rate than the extraction's `sample_rate` is resampled first (soxr, via
`mtjax.audio.resample`), so `sample_rate` is the rate features are computed at. Its default
is librosa's 22050 Hz (16000 Hz for the speech-style `FilterBank` and `LogbankSummary`).

Window and hop may be given in samples (`win_length`, `hop_length`) or in seconds
(`win_seconds`, `hop_seconds`, resolved as `round(seconds * sample_rate)`), not both. Every
field reaches the computation and a bad value raises ValueError naming the field.

`ext.key` is a stable string naming the class and every field (e.g. for cache keys);
`ext.to_config()` and `from_config(config)` turn an extraction into a plain dict and back.
Extractions are hashable and picklable.

`Embedding(fn, model, sample_rate, version=...)` makes any callable from waveform to
frames x dims (a JAX, ONNX or torch model) an extraction keyed by its name and version;
`hear_embedding(module, ...)` does so for a HEAR-API module. Neither is in `EXTRACTIONS`
(a config cannot rebuild `fn`): pass the value to `mt.load(run, extraction=...)`. An
Embedding is hashable, and picklable when its `fn` is.
"""

import dataclasses
from typing import Any

from mtjax import _lazy
from mtjax.audio.features.base import Extraction
from mtjax.audio.features.embedding import Embedding, hear_embedding
from mtjax.audio.features.raw import Raw
from mtjax.audio.features.spectral import FilterBank, LogMel, MelSpectrogram, Mfcc
from mtjax.audio.features.summary import STATS, LogbankSummary, summarise

# The JAX path (mtjax.audio.features.device) is imported on first use: workers never import JAX.
_DEVICE = {name: "mtjax.audio.features.device" for name in ("batch_features", "on_device")}


def __getattr__(name: str) -> Any:
    return _lazy.attribute(globals(), name, _DEVICE)


EXTRACTIONS: dict[str, type] = {
    cls.__name__: cls for cls in (Raw, MelSpectrogram, LogMel, Mfcc, FilterBank, LogbankSummary)
}


def from_config(config: dict[str, Any]) -> Any:
    """Builds an extraction from `{"name": class name, field: value, ...}` (`ext.to_config()`).

    Raises:
      ValueError: no or unknown "name" (the known ones are listed), or unknown field names.
    """
    config = dict(config)
    name = config.pop("name", None)
    if not isinstance(name, str) or name not in EXTRACTIONS:
        raise ValueError(f"unknown extraction {name!r}; known: {', '.join(sorted(EXTRACTIONS))}")
    cls = EXTRACTIONS[name]
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(config) - set(fields))
    if unknown:
        raise ValueError(f"{name}: unknown parameters {unknown}; known: {', '.join(fields)}")
    return cls(**config)


__all__ = [
    "EXTRACTIONS",
    "STATS",
    "Embedding",
    "Extraction",
    "FilterBank",
    "LogMel",
    "LogbankSummary",
    "MelSpectrogram",
    "Mfcc",
    "Raw",
    "batch_features",
    "from_config",
    "hear_embedding",
    "on_device",
    "summarise",
]
