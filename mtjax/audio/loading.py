"""Audio in: read a file into a float32 signal, resample, downmix, cut, check.

Signals follow soundfile's layout: a mono signal is float32 `[S]`, a multichannel one
`[S, C]` (samples first). `load` is the only function here that touches the disk.
"""

from __future__ import annotations

import errno
import numbers
import os
import warnings

import librosa
import numpy as np
import soundfile as sf

RESAMPLE_TYPE = "soxr_hq"


class AudioError(ValueError):
    """A file that cannot be used as audio; the message starts with the file's path."""


def load(
    path: str | os.PathLike, sample_rate: int | None = None, *, mono: bool = True
) -> tuple[np.ndarray, int]:
    """Reads an audio file as float32 samples.

    Any format soundfile (libsndfile) reads is read by soundfile (wav, flac, ogg, mp3 with
    libsndfile >= 1.1); anything else falls back to `librosa.load` (audioread). The file is
    only checked for being non-empty: use `check_signal` for NaN, silence or length.

    Args:
      path: the audio file.
      sample_rate: rate to return the signal at, resampled with soxr ("soxr_hq") when the
        file's rate differs; None keeps the file's rate.
      mono: average the channels into one.

    Returns:
      `(signal, rate)`: signal float32 `[S]` when `mono`, else `[S, C]` (C >= 1, soundfile's
      layout); rate is `sample_rate` when given, else the file's rate.

    Raises:
      FileNotFoundError: `path` does not exist.
      AudioError: the file cannot be decoded (message gives the decoder's reason) or holds
        no samples ("<path>: empty (0 samples)").
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "no such audio file", path)
    if os.path.isdir(path):
        raise AudioError(f"{path}: is a directory, not an audio file")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: empty (0 samples; the file has 0 bytes)")
    if sample_rate is not None:
        sample_rate = _check_rate(sample_rate, "sample_rate")
    signal_SxC, file_rate = _decode(path)
    if signal_SxC.shape[0] == 0:
        raise AudioError(f"{path}: empty (0 samples)")
    signal = to_mono(signal_SxC) if mono else signal_SxC
    if sample_rate is None or sample_rate == file_rate:
        return signal, file_rate
    return resample(signal, file_rate, sample_rate), sample_rate


def _decode(path: str) -> tuple[np.ndarray, int]:
    """Decodes `path` to float32 `[S, C]` and its rate: soundfile first, then librosa."""
    try:
        signal_SxC, rate = sf.read(path, dtype="float32", always_2d=True)
        return signal_SxC, int(rate)
    except (RuntimeError, ValueError, TypeError, EOFError) as error:
        sf_reason = getattr(error, "error_string", None) or str(error)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa warns that it falls back to audioread
            signal, rate = librosa.load(path, sr=None, mono=False)
    except Exception as error:  # any decoder failure is reported with its reason
        fallback_reason = str(error) or "no installed backend could decode it"
        reason = f"soundfile: {sf_reason}; librosa.load: {type(error).__name__}: {fallback_reason}"
        raise AudioError(f"{path}: cannot decode audio ({reason})") from error
    signal = np.asarray(signal, dtype=np.float32)
    signal_SxC = signal[:, None] if signal.ndim == 1 else signal.T
    return np.ascontiguousarray(signal_SxC), int(rate)


def _check_rate(rate: int, name: str) -> int:
    """Returns `rate` as an int; raises ValueError naming `name` unless it is a positive integer."""
    if not isinstance(rate, numbers.Real) or isinstance(rate, bool):
        raise ValueError(f"{name} must be a positive integer (Hz), got {rate!r}")
    if not float(rate).is_integer() or rate <= 0:
        raise ValueError(f"{name} must be a positive integer (Hz), got {rate!r}")
    return int(rate)


def resample(signal: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resamples along time with soxr ("soxr_hq", librosa's default).

    Args:
      signal: float `[S]` or `[S, C]`.
      orig_sr: the signal's rate in Hz.
      target_sr: the rate wanted in Hz.

    Returns:
      float32 `[S']` or `[S', C]`, `S' = ceil(S * target_sr / orig_sr)`; the input (as float32)
      when the rates are equal.
    """
    orig_sr = _check_rate(orig_sr, "orig_sr")
    target_sr = _check_rate(target_sr, "target_sr")
    signal = np.asarray(signal, dtype=np.float32)
    if orig_sr == target_sr:
        return signal
    out = librosa.resample(
        signal, orig_sr=orig_sr, target_sr=target_sr, res_type=RESAMPLE_TYPE, axis=0
    )
    return np.ascontiguousarray(out, dtype=np.float32)


def to_mono(signal: np.ndarray) -> np.ndarray:
    """Downmixes to one channel by averaging the channels.

    Args:
      signal: float `[S]` (returned as is) or `[S, C]` (soundfile's layout).

    Returns:
      float32 `[S]`.
    """
    signal = np.asarray(signal, dtype=np.float32)
    if signal.ndim == 1:
        return signal
    if signal.ndim != 2:
        raise ValueError(f"signal must be [S] or [S, channels], got shape {signal.shape}")
    return signal.mean(axis=1, dtype=np.float32)


def split_in_time(
    signal: np.ndarray, sample_rate: int, seconds: float, hop_seconds: float | None = None
) -> np.ndarray:
    """Cuts a long signal into equal pieces.

    Piece length and hop are `round(seconds * sample_rate)` and `round(hop_seconds *
    sample_rate)`. The last, partial piece is dropped, so a signal shorter than one piece
    gives none.

    Args:
      signal: float `[S]` or `[S, C]`.
      sample_rate: the signal's rate in Hz.
      seconds: length of a piece.
      hop_seconds: start-to-start distance of pieces; None means `seconds` (no overlap).

    Returns:
      float32 `[n, L]` (or `[n, L, C]`), `n = 1 + (S - L) // hop` when `S >= L`, else 0.
    """
    sample_rate = _check_rate(sample_rate, "sample_rate")
    length = round(seconds * sample_rate)
    hop = length if hop_seconds is None else round(hop_seconds * sample_rate)
    if length < 1:
        raise ValueError(f"seconds={seconds!r} is less than one sample at {sample_rate} Hz")
    if hop < 1:
        raise ValueError(f"hop_seconds={hop_seconds!r} is less than one sample at {sample_rate} Hz")
    signal = np.asarray(signal, dtype=np.float32)
    if signal.ndim not in (1, 2):
        raise ValueError(f"signal must be [S] or [S, channels], got shape {signal.shape}")
    n = 0 if signal.shape[0] < length else 1 + (signal.shape[0] - length) // hop
    starts = np.arange(n) * hop
    return signal[starts[:, None] + np.arange(length)[None, :]]


def check_signal(
    signal: np.ndarray, sample_rate: int, path: str | os.PathLike, *, min_samples: int = 1
) -> None:
    """Raises AudioError, naming `path`, unless the signal is usable.

    Args:
      signal: float `[S]` or `[S, C]`.
      sample_rate: its rate in Hz (for the message about length).
      path: the file it came from, named first in any error.
      min_samples: the fewest samples accepted (an extraction's `min_samples`).

    Raises:
      AudioError: the signal is empty, shorter than `min_samples`, holds NaN or inf, or is
        digitally silent (every sample exactly 0).
    """
    path = os.fspath(path)
    signal = np.asarray(signal)
    n = signal.shape[0] if signal.ndim else 0
    if n == 0:
        raise AudioError(f"{path}: empty (0 samples)")
    if n < min_samples:
        raise AudioError(
            f"{path}: too short: {n} samples, needs at least {min_samples}"
            f" ({n / sample_rate:.4g} s vs {min_samples / sample_rate:.4g} s at {sample_rate} Hz)"
        )
    finite = np.isfinite(signal)
    if not finite.all():
        bad = np.flatnonzero(~finite.reshape(n, -1).all(axis=1))
        raise AudioError(
            f"{path}: contains NaN or inf ({bad.size} of {n} samples, first at sample {bad[0]})"
        )
    if not np.any(signal):
        raise AudioError(f"{path}: silent (all samples are zero)")
