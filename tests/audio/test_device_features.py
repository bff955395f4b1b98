"""The JAX path of the STFT extractions (`batch_features`) against the librosa path.

The comparison rule (the module's docstring gives the reasons): powers agree within 1e-4
relative above a floor `device.FLOOR_DB` below the clip's maximum (60 dB with precision="float32",
140 with "float64"), `|a - b| <= 1e-4 * max(b, floor)` (for power=1: magnitudes, same floor);
dB (LogMel) and natural-log (FilterBank) features are compared as the powers they encode;
Mfcc per frame as `||a_t - b_t||_2 <= sqrt(n_mels) * 10 * log10(1 + 1e-4)`, what the
orthonormal DCT makes of dB bands each within 1e-4 in power. `error` returns the largest
error in these units (1e-4 is the limit) so a failure shows by how much.
"""

import dataclasses
import functools

import librosa
import numpy as np
import pytest

from mtjax.audio.features import FilterBank, LogMel, MelSpectrogram, Mfcc, Raw, device

SPEECH = dict(win_seconds=0.025, hop_seconds=0.010)
EXTRACTIONS = [
    MelSpectrogram(),
    LogMel(),
    Mfcc(),
    FilterBank(),
    MelSpectrogram(16000, **SPEECH),
    LogMel(16000, **SPEECH),
    Mfcc(16000, **SPEECH),
    FilterBank(16000, n_fft=1024, n_filters=40, **SPEECH),
]
IDS = [f"{type(e).__name__}-{e.sample_rate}-{e.win_samples}-{e.n_fft}" for e in EXTRACTIONS]


def error(ext, ours, theirs, precision="float32"):
    """The largest error of `ours` against librosa's `theirs` [T, F], by the module's rule."""
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert a.shape == b.shape
    if isinstance(ext, Mfcc):
        limit = np.sqrt(ext.n_mels) * 10 * np.log10(1 + 1e-4)
        if ext.lifter:  # scales coefficient k by lift[k]
            k = np.arange(1, ext.n_mfcc + 1)
            limit *= (1 + ext.lifter / 2 * np.sin(np.pi * k / ext.lifter)).max()
        return 1e-4 * np.linalg.norm(a - b, axis=1).max() / limit
    if isinstance(ext, LogMel):
        a, b = 10 ** (a / 10), 10 ** (b / 10)
    elif isinstance(ext, FilterBank):
        a, b = np.exp(a), np.exp(b)
    exponent = getattr(ext, "power", 2.0) / 2  # the values are energies ** exponent
    floor = b.max() * 10 ** (-device.FLOOR_DB[precision] / 10 * exponent)
    return (np.abs(a - b) / np.maximum(b, floor)).max()


def speech_like(seconds, sample_rate, seed):
    """float32: voiced syllables (a 100-180 Hz harmonic source) in noise, 4 Hz, exact silences."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20) if k * f0.max() < sample_rate / 2)
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    y = envelope * (0.3 * voiced + 0.05 * rng.standard_normal(t.shape))
    y[(t % 1.0) > 0.9] = 0.0  # a 100 ms pause each second: all-zero frames
    return y.astype(np.float32)


def clips(sample_rate):
    """float32 [4, sample_rate]: a tone, white noise, a chirp and a speech-like second."""
    t = np.arange(sample_rate) / sample_rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 1320 * t)
    noise = 0.1 * np.random.default_rng(1).standard_normal(sample_rate)
    chirp = librosa.chirp(fmin=110, fmax=sample_rate / 3, sr=sample_rate, duration=1.0)
    return np.stack([tone, noise, chirp, speech_like(1.0, sample_rate, 2)]).astype(np.float32)


@functools.lru_cache
def thirty_seconds(sample_rate):
    """float32 [30 * sample_rate]: speech-like syllables over a 60 Hz -> rate/3 chirp."""
    chirp = librosa.chirp(fmin=60, fmax=sample_rate / 3, sr=sample_rate, duration=30.0)
    return speech_like(30.0, sample_rate, 3) + (0.3 * chirp).astype(np.float32)


@pytest.mark.parametrize("ext", EXTRACTIONS, ids=IDS)
def test_equals_librosa_on_tones_noise_a_chirp_speech_and_30_seconds(ext):
    """One batch: four 1 s clips zero-padded to the 30 s one."""
    long = thirty_seconds(ext.sample_rate)
    signals = np.zeros((5, len(long)), np.float32)
    signals[:4, : ext.sample_rate], signals[4] = clips(ext.sample_rate), long
    lengths = np.array([ext.sample_rate] * 4 + [len(long)])
    x, n_frames = device.batch_features(ext, signals, lengths)
    for b, name in enumerate(["tone", "noise", "chirp", "speech", "30 s"]):
        theirs = ext(signals[b, : lengths[b]], ext.sample_rate)
        assert n_frames[b] == len(theirs), name
        assert error(ext, x[b, : len(theirs)], theirs) < 1e-4, name
        assert not np.asarray(x[b, len(theirs) :]).any(), name


@pytest.mark.parametrize(
    "ext",
    [
        LogMel(16000, n_fft=512, n_mels=40, ref="max", top_db=50.0, pad_mode="reflect"),
        Mfcc(16000, n_fft=400, n_mels=40, n_mfcc=13, lifter=22.0, pad_mode="symmetric"),
        MelSpectrogram(16000, n_fft=512, win_length=300, hop_length=100, pad_mode="edge"),
        MelSpectrogram(
            16000, n_fft=256, power=1.0, window="hamming", n_mels=40, pad_mode="linear_ramp"
        ),
        FilterBank(center=False, preemphasis=0.5, norm="slaney", log_floor=1e-3),
    ],
    ids=["logmel-max-reflect", "mfcc-lifter-symmetric", "mel-edge", "mel-ramp", "fbank-uncentred"],
)
def test_a_padded_batch_gives_each_clip_its_own_features(ext):
    signals = clips(16000)
    lengths = np.array([16000, 512, 9000, 4321])
    noisy = signals.copy()
    for b, length in enumerate(lengths):
        noisy[b, length:] = 1e3  # past the clip: never read
    x, n_frames = device.batch_features(ext, noisy, lengths)
    x = np.asarray(x)
    for b, length in enumerate(lengths):
        theirs = ext(signals[b, :length], 16000)
        assert n_frames[b] == len(theirs) == device.frame_counts(ext, [length])[0]
        assert error(ext, x[b, : len(theirs)], theirs) < 1e-4, b
        assert not x[b, len(theirs) :].any()
    assert x.shape == (4, device.frame_counts(ext, [16000])[0], ext.n_features)


@pytest.mark.parametrize(
    "ext",
    [MelSpectrogram(), LogMel(top_db=None), Mfcc(), FilterBank(22050, n_fft=2048, log_floor=1e-30)],
    ids=["mel", "logmel-no-top-db", "mfcc", "fbank"],
)
def test_float64_is_within_1e_5_at_every_level(ext):
    """A tone's bands 140 dB down match too, where float32 cannot (FLOOR_DB 140).

    1e-5 is about the float32 rounding of a log near -69 (FilterBank's floor 1e-30).
    FilterBank's pre-emphasis is numpy's to the bit: its rounding noise lies ~140 dB down.
    """
    signal = clips(22050)[0]
    x, _ = device.batch_features(ext, signal[None], precision="float64")
    theirs = ext(signal, 22050)
    assert x.dtype == np.float32
    assert error(ext, x[0], theirs, "float64") < 1e-5
    if isinstance(ext, MelSpectrogram):
        assert theirs.min() < theirs.max() * 1e-14


def test_on_device_and_the_errors_name_what_is_wrong():
    ext = LogMel(16000, n_fft=512)
    x, n = device.on_device(ext)(clips(16000)[:2])
    assert x.shape == (2, 126, 128) and list(np.asarray(n)) == [126, 126]
    with pytest.raises(ValueError, match="Raw has no JAX path; supported: MelSpectrogram"):
        device.on_device(Raw())

    @dataclasses.dataclass(frozen=True)
    class Louder(LogMel):
        def _compute(self, signal):
            return super()._compute(2 * signal)

    assert device.supports(ext) and not device.supports(Louder())
    with pytest.raises(ValueError, match="Louder has no JAX path"):
        device.batch_features(Louder(), clips(22050))
    with pytest.raises(ValueError, match="precision must be one of"):
        device.on_device(ext, precision="bfloat16")
    with pytest.raises(
        ValueError, match=r"LogMel: expected signals \[B, S\], got shape \(16000,\)"
    ):
        device.batch_features(ext, clips(16000)[0])
    with pytest.raises(ValueError, match="clip 1 has 511 samples; needs 512"):
        device.batch_features(ext, clips(16000), [16000, 511, 16000, 16000])
    bad = clips(16000)
    bad[2, 5] = np.nan
    with pytest.raises(ValueError, match="clip 2 of the batch holds NaN or inf"):
        device.batch_features(ext, bad)
