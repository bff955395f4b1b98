"""STFT-based extractions: MelSpectrogram, LogMel, Mfcc and FilterBank (librosa's numbers)."""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Literal

import librosa
import numpy as np

from mtjax.audio.features.base import Extraction, boolean, integer, optional, real, set_field

STFT_PAD_MODES = ("constant", "edge", "linear_ramp", "reflect", "symmetric")
STATS = ("mean", "std", "min", "max", "median", "skew", "kurtosis")


# ---------------------------------------------------------------------------------------------
# Spectral extractions.


@dataclasses.dataclass(frozen=True)
class _Stft(Extraction):
    """Short-time Fourier transform parameters (librosa.stft's) and their resolution."""

    sample_rate: int = 22050
    _: dataclasses.KW_ONLY
    n_fft: int = 2048
    hop_length: int | None = None
    win_length: int | None = None
    win_seconds: float | None = None
    hop_seconds: float | None = None
    window: str | tuple = "hann"
    center: bool = True
    pad_mode: str = "constant"

    def __post_init__(self):
        name = type(self).__name__
        set_field(self, "sample_rate", integer(name, "sample_rate", self.sample_rate))
        set_field(self, "n_fft", integer(name, "n_fft", self.n_fft))
        set_field(self, "hop_length", optional(integer, name, "hop_length", self.hop_length))
        set_field(self, "win_length", optional(integer, name, "win_length", self.win_length))
        set_field(self, "win_seconds", optional(real, name, "win_seconds", self.win_seconds))
        set_field(self, "hop_seconds", optional(real, name, "hop_seconds", self.hop_seconds))
        set_field(self, "center", boolean(name, "center", self.center))
        for samples, seconds in (("win_length", "win_seconds"), ("hop_length", "hop_seconds")):
            if getattr(self, samples) is not None and getattr(self, seconds) is not None:
                raise ValueError(
                    f"{name}: give {samples} (samples) or {seconds} (seconds), not both; got"
                    f" {samples}={getattr(self, samples)!r}, {seconds}={getattr(self, seconds)!r}"
                    f" (pass {seconds}=None to give it in samples)"
                )
        if self.win_seconds is not None and self.win_samples < 1:
            raise ValueError(f"{name}: win_seconds={self.win_seconds} is under one sample")
        if self.hop_seconds is not None and self.hop_samples < 1:
            raise ValueError(f"{name}: hop_seconds={self.hop_seconds} is under one sample")
        if self.win_samples > self.n_fft:
            raise ValueError(
                f"{name}: the window ({self.win_samples} samples from win_length/win_seconds at"
                f" {self.sample_rate} Hz) is longer than n_fft={self.n_fft}; raise n_fft"
            )
        if isinstance(self.window, list):
            set_field(self, "window", tuple(self.window))
        if not isinstance(self.window, (str, tuple)):
            raise ValueError(
                f"{name}: window must be a name or (name, *params), got {self.window!r}"
            )
        try:
            librosa.filters.get_window(self.window, self.win_samples)
        except Exception as error:
            raise ValueError(f"{name}: unknown window {self.window!r} ({error})") from error
        if self.pad_mode not in STFT_PAD_MODES:
            raise ValueError(
                f"{name}: pad_mode must be one of {STFT_PAD_MODES}, got {self.pad_mode!r}"
            )

    @property
    def win_samples(self) -> int:
        """Window length in samples: win_length, or round(win_seconds * sample_rate), or n_fft."""
        if self.win_seconds is not None:
            return round(self.win_seconds * self.sample_rate)
        return self.n_fft if self.win_length is None else self.win_length

    @property
    def hop_samples(self) -> int:
        """Hop in samples: hop_length, or round(hop_seconds * sample_rate), or win_samples // 4.

        The last is librosa's default.
        """
        if self.hop_seconds is not None:
            return round(self.hop_seconds * self.sample_rate)
        return self.win_samples // 4 if self.hop_length is None else self.hop_length

    @property
    def min_samples(self) -> int:
        """Shortest usable signal: one full FFT frame, `n_fft` samples at `sample_rate`.

        librosa needs it uncentred and warns below it when centred.
        """
        return self.n_fft

    def _stft_kwargs(self) -> dict[str, Any]:
        return dict(
            n_fft=self.n_fft,
            hop_length=self.hop_samples,
            win_length=self.win_samples,
            window=self.window,
            center=self.center,
            pad_mode=self.pad_mode,
        )


@dataclasses.dataclass(frozen=True)
class _Mel(_Stft):
    """Mel spectrogram parameters (librosa.feature.melspectrogram's)."""

    _: dataclasses.KW_ONLY
    power: float = 2.0
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    htk: bool = False
    norm: Literal["slaney"] | float | None = "slaney"

    def __post_init__(self):
        super().__post_init__()
        name = type(self).__name__
        set_field(self, "power", real(name, "power", self.power))
        set_field(self, "n_mels", integer(name, "n_mels", self.n_mels))
        _check_mel_range(self)
        set_field(self, "htk", boolean(name, "htk", self.htk))
        set_field(self, "norm", _check_norm(name, self.norm))

    @property
    def n_features(self) -> int:
        """F, the number of mel bands."""
        return self.n_mels

    def _mel_power(self, signal: np.ndarray) -> np.ndarray:
        """float32 `[n_mels, T]` mel spectrogram, exactly librosa's."""
        return librosa.feature.melspectrogram(
            y=signal,
            sr=self.sample_rate,
            **self._stft_kwargs(),
            power=self.power,
            n_mels=self.n_mels,
            fmin=self.fmin,
            fmax=self.fmax,
            htk=self.htk,
            norm=self.norm,
        )


def _check_mel_range(ext: Any) -> None:
    """Checks and canonicalises `fmin` and `fmax` against the Nyquist rate."""
    name = type(ext).__name__
    nyquist = ext.sample_rate / 2
    set_field(ext, "fmin", real(name, "fmin", ext.fmin, strict=False))
    set_field(ext, "fmax", optional(real, name, "fmax", ext.fmax))
    if ext.fmax is not None and ext.fmax > nyquist:
        raise ValueError(
            f"{name}: fmax={ext.fmax} is above the Nyquist rate sample_rate/2={nyquist}"
        )
    top = nyquist if ext.fmax is None else ext.fmax
    if ext.fmin >= top:
        raise ValueError(f"{name}: fmin={ext.fmin} must be below fmax (or sample_rate/2)={top}")


def _check_norm(name: str, norm: Any) -> Literal["slaney"] | float | None:
    if norm is None or norm == "slaney":
        return norm
    if isinstance(norm, numbers.Real) and not isinstance(norm, bool):
        return float(norm)
    raise ValueError(f"{name}: norm must be None, 'slaney' or a number (p-norm), got {norm!r}")


def _check_db(ext: Any) -> None:
    """Checks and canonicalises the power_to_db fields `ref`, `amin`, `top_db`."""
    name = type(ext).__name__
    if ext.ref != "max":
        set_field(ext, "ref", real(name, "ref", ext.ref))
    set_field(ext, "amin", real(name, "amin", ext.amin))
    set_field(ext, "top_db", optional(real, name, "top_db", ext.top_db, strict=False))


def _power_to_db(ext: Any, power: np.ndarray) -> np.ndarray:
    ref = np.max if ext.ref == "max" else ext.ref
    return librosa.power_to_db(power, ref=ref, amin=ext.amin, top_db=ext.top_db)


@dataclasses.dataclass(frozen=True)
class MelSpectrogram(_Mel):
    """Mel power spectrogram: `librosa.feature.melspectrogram(y, sr, ...).T`.

    Fields and defaults are librosa's (`sample_rate` is its `sr`); window and hop may be given
    in seconds instead (`win_seconds`, `hop_seconds`). Default hop: `win_length // 4`.

    Window and hop default to librosa's music settings, 2048 and 512 samples: 93 / 23 ms at
    22050 Hz, 128 / 32 ms at 16 kHz. For speech give `win_seconds=0.025, hop_seconds=0.010`
    (25 ms / 10 ms; `n_fft=512` at 16 kHz), as `FilterBank` does by default.

    Returns (on call): float32 `[T, n_mels]`.
    """

    def _compute(self, signal: np.ndarray) -> np.ndarray:
        return self._mel_power(signal).T


@dataclasses.dataclass(frozen=True)
class LogMel(_Mel):
    """Log mel spectrogram in dB: `librosa.power_to_db(melspectrogram, ref, amin, top_db).T`.

    `ref` is a positive number or "max" (librosa's `ref=np.max`, per clip).

    Window and hop default to librosa's music settings, 2048 and 512 samples: 93 / 23 ms at
    22050 Hz, 128 / 32 ms at 16 kHz. For speech give `win_seconds=0.025, hop_seconds=0.010`
    (25 ms / 10 ms; `n_fft=512` at 16 kHz), as `FilterBank` does by default.

    Returns (on call): float32 `[T, n_mels]`.
    """

    _: dataclasses.KW_ONLY
    ref: float | str = 1.0
    amin: float = 1e-10
    top_db: float | None = 80.0

    def __post_init__(self):
        super().__post_init__()
        _check_db(self)

    def _compute(self, signal: np.ndarray) -> np.ndarray:
        return _power_to_db(self, self._mel_power(signal)).T


@dataclasses.dataclass(frozen=True)
class Mfcc(_Mel):
    """Mel-frequency cepstral coefficients: `librosa.feature.mfcc(y, sr, ...).T`.

    The mel spectrogram (every mel field) goes to `power_to_db(ref, amin, top_db)`, then a DCT
    (`dct_type`, `norm_dct`, librosa's `norm`) keeps `n_mfcc` coefficients, then `lifter`.
    librosa's `mfcc(y=...)` uses power_to_db's defaults (ref=1.0, amin=1e-10, top_db=80.0),
    which are these fields' defaults, so with them it equals librosa exactly.

    Window and hop default to librosa's music settings, 2048 and 512 samples: 93 / 23 ms at
    22050 Hz, 128 / 32 ms at 16 kHz. For speech give `win_seconds=0.025, hop_seconds=0.010`
    (25 ms / 10 ms; `n_fft=512` at 16 kHz), as `FilterBank` does by default.

    Returns (on call): float32 `[T, n_mfcc]`.
    """

    _: dataclasses.KW_ONLY
    n_mfcc: int = 20
    dct_type: int = 2
    norm_dct: str | None = "ortho"
    lifter: float = 0.0
    ref: float | str = 1.0
    amin: float = 1e-10
    top_db: float | None = 80.0

    def __post_init__(self):
        super().__post_init__()
        name = type(self).__name__
        set_field(self, "n_mfcc", integer(name, "n_mfcc", self.n_mfcc))
        if self.n_mfcc > self.n_mels:
            raise ValueError(f"{name}: n_mfcc={self.n_mfcc} exceeds n_mels={self.n_mels}")
        if self.dct_type not in (1, 2, 3) or isinstance(self.dct_type, bool):
            raise ValueError(f"{name}: dct_type must be 1, 2 or 3, got {self.dct_type!r}")
        set_field(self, "dct_type", int(self.dct_type))
        if self.norm_dct not in (None, "ortho"):
            raise ValueError(f"{name}: norm_dct must be None or 'ortho', got {self.norm_dct!r}")
        set_field(self, "lifter", real(name, "lifter", self.lifter, strict=False))
        _check_db(self)

    @property
    def n_features(self) -> int:
        """F, the number of coefficients."""
        return self.n_mfcc

    def _compute(self, signal: np.ndarray) -> np.ndarray:
        log_power = _power_to_db(self, self._mel_power(signal))
        coefficients = librosa.feature.mfcc(
            S=log_power,
            n_mfcc=self.n_mfcc,
            dct_type=self.dct_type,
            norm=self.norm_dct,
            lifter=self.lifter,
        )
        return coefficients.T


@dataclasses.dataclass(frozen=True)
class FilterBank(_Stft):
    """Log mel filter-bank energies, speech style.

    With `a = preemphasis`, `y[0]` is kept and `y[n] - a * y[n-1]` follows (0 disables it);
    then `E = mel_filters @ |stft(y)|**2` over `n_filters` bands (power spectrum, not divided
    by n_fft) and `features = log(max(E, log_floor))` (natural log). Defaults are speech
    front-end ones: 16000 Hz, 25 ms window (`win_seconds=0.025`), 10 ms hop
    (`hop_seconds=0.010`), n_fft 512, HTK mel scale with unnormalised (peak 1) triangles. To
    give window or hop in samples, also pass `win_seconds=None` / `hop_seconds=None`.

    Returns (on call): float32 `[T, n_filters]`.
    """

    sample_rate: int = 16000
    _: dataclasses.KW_ONLY
    n_fft: int = 512
    win_seconds: float | None = 0.025
    hop_seconds: float | None = 0.010
    preemphasis: float = 0.97
    n_filters: int = 26
    fmin: float = 0.0
    fmax: float | None = None
    htk: bool = True
    norm: Literal["slaney"] | float | None = None
    log_floor: float = 1e-10

    def __post_init__(self):
        super().__post_init__()
        name = type(self).__name__
        set_field(self, "preemphasis", real(name, "preemphasis", self.preemphasis, strict=False))
        if self.preemphasis >= 1.0:
            raise ValueError(f"{name}: preemphasis must be in [0, 1), got {self.preemphasis}")
        set_field(self, "n_filters", integer(name, "n_filters", self.n_filters))
        _check_mel_range(self)
        set_field(self, "htk", boolean(name, "htk", self.htk))
        set_field(self, "norm", _check_norm(name, self.norm))
        set_field(self, "log_floor", real(name, "log_floor", self.log_floor))

    @property
    def n_features(self) -> int:
        """F, the number of filters."""
        return self.n_filters

    def _filterbank(self, signal: np.ndarray) -> np.ndarray:
        """float32 `[T, n_filters]` log energies."""
        if self.preemphasis:
            signal = np.concatenate([signal[:1], signal[1:] - self.preemphasis * signal[:-1]])
        power = np.abs(librosa.stft(signal, **self._stft_kwargs())) ** 2
        filters = librosa.filters.mel(
            sr=self.sample_rate,
            n_fft=self.n_fft,
            n_mels=self.n_filters,
            fmin=self.fmin,
            fmax=self.fmax,
            htk=self.htk,
            norm=self.norm,
        )
        return np.log(np.maximum(filters @ power, self.log_floor)).T

    def _compute(self, signal: np.ndarray) -> np.ndarray:
        return self._filterbank(signal)
