"""Features on the accelerator: the STFT extractions as one jitted JAX function over a batch.

`batch_features(ext, signals_BxS, lengths_B)` computes `MelSpectrogram`, `LogMel`, `Mfcc` or
`FilterBank` features of a zero-padded batch of clips with JAX (on whatever device JAX runs
on), equal to the librosa path `ext(signal, ext.sample_rate)` clip by clip:

    fn = on_device(LogMel(16000, n_mels=40))  # the per-extraction choice; raises if unsupported
    x_BxTxF, n_frames_B = fn(signals_BxS, lengths_B)

It is librosa's computation step by step: centre padding with `pad_mode` (each clip padded at
its own end), `get_window(window, win_length, fftbins=True)` centred in `n_fft`, an rfft of
every frame, `|X| ** power`, librosa's own mel filters (a constant), `power_to_db` with `ref`
("max": per clip), `amin` and `top_db` (relative to the clip's maximum over its valid frames),
the DCT as a matrix (scipy's `dct` of the identity, so any `dct_type`/`norm_dct`), the lifter,
and FilterBank's pre-emphasis and natural log floor. One compilation per (extraction, batch
shape, precision); no resampling: signals are at `ext.sample_rate`. Matrix products use full
float32 precision on every backend (no TF32).

Accuracy (tests/audio/test_device_features.py). librosa's STFT is exact to float32 rounding
in every bin (it transforms in float64), while a float32 FFT errs by about 1e-7 of the
frame's energy in every bin (XLA's CPU FFT; numpy's float32 one 3e-8), so a bin far below
its frame's energy carries a large relative error. The rule: powers agree within 1e-4
relative above a floor, `|a - b| <= 1e-4 * max(b, floor)`, `floor` = the clip's maximum
`FLOOR_DB` dB down (MelSpectrogram's values; LogMel's through `10 ** (dB / 10)`, FilterBank's
through `exp`); Mfcc per frame `||a_t - b_t||_2 <= sqrt(n_mels) * 10 * log10(1 + 1e-4)`,
what the orthonormal DCT makes of dB bands each within 1e-4 in power.
- precision="float32" (default): floor 60 dB down. Measured on the CPU on tones, noise, a
  chirp, speech-like and 30 s clips: at most 2.6e-5; 9e-5 with the floor 70 dB down, 2e-4 at
  80 dB (LogMel's default `top_db`, below which both sides floor the values). The error
  follows a frame's whole energy: where `fmin`/`fmax` leave most of it out of every band,
  count the floor from that energy, not from the bands' maximum.
- precision="float64": the STFT and all after it in float64 (inside `jax.enable_x64`;
  pre-emphasis rounded as numpy's float32, to the bit): at most 2e-6 with the floor 140 dB
  down, bands of a pure tone 140 dB under its peak included; outputs are float32 all the
  same. About twice float32's time; not for TPUs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import numpy.typing as npt
import scipy.fft

from mtjax.audio.features.spectral import FilterBank, LogMel, MelSpectrogram, Mfcc

SUPPORTED = (MelSpectrogram, LogMel, Mfcc, FilterBank)
PRECISIONS = ("float32", "float64")
FLOOR_DB = {"float32": 60.0, "float64": 140.0}  # where the 1e-4 relative agreement holds
_HIGHEST = jax.lax.Precision.HIGHEST


def supports(ext: Any) -> bool:
    """Whether `ext` is one of SUPPORTED with its own computation (not a subclass's)."""
    return any(type(ext)._compute is cls._compute for cls in SUPPORTED if isinstance(ext, cls))


def frame_counts(ext: Any, lengths: npt.ArrayLike) -> np.ndarray:
    """int32 `[B]` frames librosa gives clips of `lengths` samples (at `ext.sample_rate`).

    `1 + (L + 2 * (n_fft // 2) - n_fft) // hop` when centred, `1 + (L - n_fft) // hop` if not.
    """
    return _count(ext, np.asarray(lengths, dtype=np.int64)).astype(np.int32)


def _count(ext: Any, lengths: Any) -> Any:
    """The frame count formula, on numpy or traced lengths alike."""
    padded = lengths + 2 * (ext.n_fft // 2) if ext.center else lengths
    return 1 + (padded - ext.n_fft) // ext.hop_samples


def on_device(
    ext: Any, *, precision: str = "float32"
) -> Callable[..., tuple[jax.Array, jax.Array]]:
    """`batch_features` for one extraction: `fn(signals_BxS, lengths_B=None) -> (x, n_frames)`.

    Raises:
      ValueError: `ext` is not supported (see `supports`) or `precision` is unknown.
    """
    _check(ext, precision)
    return functools.partial(batch_features, ext, precision=precision)


def batch_features(
    ext: Any,
    signals: npt.ArrayLike,
    lengths: npt.ArrayLike | None = None,
    *,
    precision: str = "float32",
) -> tuple[jax.Array, jax.Array]:
    """Features of a batch of mono clips, each equal to `ext(clip, ext.sample_rate)`.

    Args:
      ext: a MelSpectrogram, LogMel, Mfcc or FilterBank.
      signals: float `[B, S]` at `ext.sample_rate`, clip b in `signals[b, :lengths[b]]`
        (what lies past it is never read).
      lengths: int `[B]` samples of each clip, each in `[ext.min_samples, S]`; default all S.
      precision: "float32", or "float64" for an STFT exact at every level (see the module).

    Returns:
      x: float32 `[B, T, F]`, `T = frame_counts(ext, [S])[0]`; row b's first `n_frames[b]`
        frames are librosa's features of clip b alone, the rest are 0.
      n_frames: int32 `[B]`, `frame_counts(ext, lengths)`.

    Raises:
      ValueError: an unsupported extraction or precision, signals not `[B, S]` or (numpy
        ones) not finite, or a length outside `[ext.min_samples, S]` (the clip is named).
    """
    _check(ext, precision)
    name = type(ext).__name__
    if isinstance(signals, jax.Array):
        if signals.ndim != 2:
            raise ValueError(f"{name}: expected signals [B, S], got shape {signals.shape}")
    else:
        signals = np.asarray(signals, dtype=np.float32)
        if signals.ndim != 2:
            raise ValueError(f"{name}: expected signals [B, S], got shape {signals.shape}")
        bad = np.flatnonzero(~np.isfinite(signals).all(axis=1))
        if bad.size:
            raise ValueError(f"{name}: clip {bad[0]} of the batch holds NaN or inf")
    n_clips, width = signals.shape
    lengths = np.full(n_clips, width) if lengths is None else np.asarray(lengths)
    if lengths.shape != (n_clips,) or not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(f"{name}: expected int lengths [{n_clips}], got {lengths!r}")
    for b, length in enumerate(lengths):
        if not ext.min_samples <= length <= width:
            raise ValueError(
                f"{name}: clip {b} has {length} samples; needs {ext.min_samples} (n_fft) to"
                f" {width} (the batch's width) at {ext.sample_rate} Hz"
            )
    lengths = lengths.astype(np.int32)
    if precision == "float64":
        with jax.enable_x64(True):
            x = _features(ext, "float64", jnp.asarray(signals, jnp.float32), lengths)
    else:
        x = _features(ext, "float32", jnp.asarray(signals, jnp.float32), lengths)
    return x, jnp.asarray(frame_counts(ext, lengths))


def _check(ext: Any, precision: str) -> None:
    if not supports(ext):
        names = ", ".join(cls.__name__ for cls in SUPPORTED)
        raise ValueError(f"{type(ext).__name__} has no JAX path; supported: {names}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


# ---------------------------------------------------------------------------------------------
# The jitted computation and its constants.


@functools.lru_cache(maxsize=64)
def _constants(ext: Any) -> dict[str, np.ndarray]:
    """float64 window [n_fft]; librosa's float32 mel filters [M, n_fft//2+1]; DCT [n_mfcc, M]."""
    window = librosa.filters.get_window(ext.window, ext.win_samples, fftbins=True)
    constants = {"window": librosa.util.pad_center(window, size=ext.n_fft)}
    bands = ext.n_filters if isinstance(ext, FilterBank) else ext.n_mels
    constants["mel"] = librosa.filters.mel(
        sr=ext.sample_rate,
        n_fft=ext.n_fft,
        n_mels=bands,
        fmin=ext.fmin,
        fmax=ext.fmax,
        htk=ext.htk,
        norm=ext.norm,
    )
    if isinstance(ext, Mfcc):
        dct = scipy.fft.dct(np.eye(bands), type=ext.dct_type, norm=ext.norm_dct, axis=0)
        constants["dct"] = dct[: ext.n_mfcc]
    return constants


@functools.partial(jax.jit, static_argnums=(0, 1))
def _features(ext: Any, dtype: str, y_BxS: jax.Array, lengths_B: jax.Array) -> jax.Array:
    """float32 [B, T, F] features, zero past each clip's frames; `dtype` of the STFT on."""
    constants = _constants(ext)
    y_BxS = y_BxS.astype(dtype)
    if isinstance(ext, FilterBank) and ext.preemphasis:
        y_BxS = _preemphasis(y_BxS, ext.preemphasis)
    n_fft, hop = ext.n_fft, ext.hop_samples
    if ext.center:
        y_BxS = _centre_pad(y_BxS, lengths_B, n_fft // 2, ext.pad_mode)
    n_frames = 1 + (y_BxS.shape[1] - n_fft) // hop
    index_TxN = jnp.arange(n_frames)[:, None] * hop + jnp.arange(n_fft)[None, :]
    frames_BxTxN = y_BxS[:, index_TxN] * jnp.asarray(constants["window"][None, None, :], dtype)
    spectrum_BxTxK = jnp.fft.rfft(frames_BxTxN, axis=-1)
    power = 2.0 if isinstance(ext, FilterBank) else ext.power
    if power == 2.0:
        power_BxTxK = spectrum_BxTxK.real**2 + spectrum_BxTxK.imag**2
    else:
        power_BxTxK = jnp.abs(spectrum_BxTxK) ** power
    mel_KxM = jnp.asarray(constants["mel"].T, dtype)
    mel_BxTxM = jnp.matmul(power_BxTxK, mel_KxM, precision=_HIGHEST)
    valid_BxT = jnp.arange(n_frames)[None, :] < _count(ext, lengths_B)[:, None]
    if isinstance(ext, FilterBank):
        out_BxTxF = jnp.log(jnp.maximum(mel_BxTxM, ext.log_floor))
    elif isinstance(ext, MelSpectrogram):
        out_BxTxF = mel_BxTxM
    else:
        out_BxTxF = _power_to_db(ext, mel_BxTxM, valid_BxT)
        if isinstance(ext, Mfcc):
            dct_MxC = jnp.asarray(constants["dct"].T, dtype)
            out_BxTxF = jnp.matmul(out_BxTxF, dct_MxC, precision=_HIGHEST)
            if ext.lifter > 0:
                lift = 1 + (ext.lifter / 2) * np.sin(
                    np.pi * np.arange(1, ext.n_mfcc + 1) / ext.lifter
                )
                out_BxTxF = out_BxTxF * jnp.asarray(lift[None, None, :], dtype)
    return jnp.where(valid_BxT[..., None], out_BxTxF, 0).astype(jnp.float32)


def _preemphasis(y_BxS: jax.Array, a: float) -> jax.Array:
    """`y[0], y[n] - a * y[n-1]` with numpy's float32 values; in float64 the same values.

    Each float32 rounding of numpy's (product, then difference) is done on a float64 value
    that is exact, so float64 reproduces them bit for bit; float32 may fuse the two (FMA).
    """

    def to_float32(x):  # a rounding XLA keeps (it may drop a convert pair)
        return jax.lax.reduce_precision(x, exponent_bits=8, mantissa_bits=23)

    product_BxS = to_float32(np.float32(a).astype(y_BxS.dtype) * y_BxS[:, :-1])
    diff_BxS = to_float32(y_BxS[:, 1:] - product_BxS)
    return jnp.concatenate([y_BxS[:, :1], diff_BxS], axis=1)


def _centre_pad(y_BxS: jax.Array, lengths_B: jax.Array, half: int, mode: str) -> jax.Array:
    """`[B, S + 2 * half]`: each clip `np.pad(clip, half, mode)`, at its own end; `half < L`."""
    i_P = (jnp.arange(y_BxS.shape[1] + 2 * half) - half)[None, :]  # [1, P]
    end_Bx1 = lengths_B[:, None]
    inside = (i_P >= 0) & (i_P < end_Bx1)
    if mode == "reflect":
        source = jnp.where(i_P < 0, -i_P, jnp.where(inside, i_P, 2 * (end_Bx1 - 1) - i_P))
    elif mode == "symmetric":
        source = jnp.where(i_P < 0, -i_P - 1, jnp.where(inside, i_P, 2 * end_Bx1 - 1 - i_P))
    else:  # constant, edge, linear_ramp: the nearest sample, scaled
        source = jnp.clip(i_P, 0, end_Bx1 - 1)
    source = jnp.clip(source, 0, y_BxS.shape[1] - 1)  # past a clip's frames: never used
    padded = jnp.take_along_axis(y_BxS, source, axis=1)
    if mode == "constant":
        padded = jnp.where(inside, padded, 0)
    elif mode == "linear_ramp":  # numpy's ramp from 0 at the outer end to the edge sample
        ramp = jnp.where(i_P < 0, (i_P + half) / half, (half - 1 - (i_P - end_Bx1)) / half)
        padded = jnp.where(inside, padded, padded * ramp.astype(padded.dtype))
    return padded


def _power_to_db(ext: Any, power_BxTxM: jax.Array, valid_BxT: jax.Array) -> jax.Array:
    """librosa.power_to_db per clip; "max" and top_db over each clip's valid frames."""
    db = 10.0 * jnp.log10(jnp.maximum(ext.amin, power_BxTxM))
    if ext.ref == "max":
        ref = jnp.where(valid_BxT[..., None], power_BxTxM, -jnp.inf).max(axis=(1, 2), keepdims=True)
        db = db - 10.0 * jnp.log10(jnp.maximum(ext.amin, ref))
    else:
        db = db - 10.0 * np.log10(max(ext.amin, abs(ext.ref)))
    if ext.top_db is not None:
        top = jnp.where(valid_BxT[..., None], db, -jnp.inf).max(axis=(1, 2), keepdims=True)
        db = jnp.maximum(db, top - ext.top_db)
    return db
