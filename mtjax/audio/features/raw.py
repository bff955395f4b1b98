"""Raw: the signal itself, framed, as features."""

from __future__ import annotations

import dataclasses

import librosa
import numpy as np

from mtjax.audio.features.base import Extraction, integer, optional, set_field


@dataclasses.dataclass(frozen=True)
class Raw(Extraction):
    """The samples themselves, whole or cut into frames.

    With `frame_length` None: `[S, 1]`. Otherwise `librosa.util.frame` frames without padding
    (a last partial frame is dropped): `[T, frame_length]`, `T = 1 + (S - frame_length) //
    hop_length`, `hop_length` defaulting to `frame_length` (no overlap).
    """

    sample_rate: int = 22050
    _: dataclasses.KW_ONLY
    frame_length: int | None = None
    hop_length: int | None = None

    def __post_init__(self):
        name = type(self).__name__
        set_field(self, "sample_rate", integer(name, "sample_rate", self.sample_rate))
        set_field(self, "frame_length", optional(integer, name, "frame_length", self.frame_length))
        set_field(self, "hop_length", optional(integer, name, "hop_length", self.hop_length))
        if self.frame_length is None and self.hop_length is not None:
            raise ValueError(f"{name}: hop_length={self.hop_length} needs a frame_length")

    @property
    def min_samples(self) -> int:
        """1, or one frame when framing."""
        return 1 if self.frame_length is None else self.frame_length

    @property
    def n_features(self) -> int:
        """F: 1, or `frame_length`."""
        return 1 if self.frame_length is None else self.frame_length

    def _compute(self, signal: np.ndarray) -> np.ndarray:
        if self.frame_length is None:
            return signal[:, None]
        hop = self.frame_length if self.hop_length is None else self.hop_length
        return librosa.util.frame(signal, frame_length=self.frame_length, hop_length=hop, axis=0)
