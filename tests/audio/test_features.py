"""Tests for mtjax.features: parity with librosa, resolution of windows, keys, configs."""

import dataclasses
import json
import pickle

import librosa
import numpy as np
import pytest
import scipy.stats

from mtjax import features
from mtjax.features import FilterBank, LogbankSummary, LogMel, MelSpectrogram, Mfcc, Raw

SR = 22050
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture
def rng():
    return np.random.default_rng(20240501)


@pytest.fixture
def chirp(rng):
    """float32 [SR] one second: a 110 Hz -> 4 kHz chirp plus a little white noise."""
    y = librosa.chirp(fmin=110.0, fmax=4000.0, sr=SR, duration=1.0)
    return (0.5 * y + 0.01 * rng.standard_normal(len(y))).astype(np.float32)


def mel_kwargs(ext):
    """librosa.feature.melspectrogram's keyword arguments for a mel extraction."""
    return dict(
        sr=ext.sample_rate,
        n_fft=ext.n_fft,
        hop_length=ext.hop_samples,
        win_length=ext.win_samples,
        window=ext.window,
        center=ext.center,
        pad_mode=ext.pad_mode,
        power=ext.power,
        n_mels=ext.n_mels,
        fmin=ext.fmin,
        fmax=ext.fmax,
        htk=ext.htk,
    )


CUSTOM_MEL = dict(
    n_fft=1024,
    hop_length=200,
    win_length=800,
    window="hamming",
    center=False,
    power=1.0,
    n_mels=40,
    fmin=50.0,
    fmax=8000.0,
    htk=True,
    norm=None,
)


# ---------------------------------------------------------------------------------------------
# Parity with librosa.


@pytest.mark.parametrize("kwargs", [{}, CUSTOM_MEL], ids=["defaults", "custom"])
def test_melspectrogram_equals_librosa(chirp, kwargs):
    ext = MelSpectrogram(SR, **kwargs)
    out = ext(chirp, SR)
    expected = librosa.feature.melspectrogram(y=chirp, norm=ext.norm, **mel_kwargs(ext)).T
    assert out.dtype == np.float32 and out.shape == expected.shape
    assert out.shape[1] == ext.n_features
    np.testing.assert_allclose(out, expected, **TOL)


def test_melspectrogram_defaults_equal_plain_librosa_call(chirp):
    out = MelSpectrogram(SR)(chirp, SR)
    np.testing.assert_allclose(out, librosa.feature.melspectrogram(y=chirp, sr=SR).T, **TOL)
    assert out.shape == (1 + SR // 512, 128)


@pytest.mark.parametrize(
    "kwargs",
    [{}, dict(CUSTOM_MEL, ref="max", amin=1e-5, top_db=60.0)],
    ids=["defaults", "custom"],
)
def test_logmel_equals_librosa(chirp, kwargs):
    ext = LogMel(SR, **kwargs)
    out = ext(chirp, SR)
    mel = librosa.feature.melspectrogram(y=chirp, norm=ext.norm, **mel_kwargs(ext))
    ref = np.max if ext.ref == "max" else ext.ref
    expected = librosa.power_to_db(mel, ref=ref, amin=ext.amin, top_db=ext.top_db).T
    assert out.dtype == np.float32 and out.shape == expected.shape == (len(out), ext.n_mels)
    np.testing.assert_allclose(out, expected, **TOL)


def test_mfcc_defaults_equal_plain_librosa_call(chirp):
    out = Mfcc(SR)(chirp, SR)
    expected = librosa.feature.mfcc(y=chirp, sr=SR).T
    assert out.dtype == np.float32 and out.shape == expected.shape == (1 + SR // 512, 20)
    np.testing.assert_allclose(out, expected, **TOL)


def test_mfcc_custom_equals_librosa(chirp):
    ext = Mfcc(SR, **CUSTOM_MEL, n_mfcc=13, dct_type=3, norm_dct=None, lifter=22.0)
    out = ext(chirp, SR)
    expected = librosa.feature.mfcc(
        y=chirp,
        n_mfcc=13,
        dct_type=3,
        norm=None,
        lifter=22.0,
        mel_norm=ext.norm,
        **mel_kwargs(ext),
    ).T
    assert out.shape == expected.shape and out.shape[1] == ext.n_features == 13
    np.testing.assert_allclose(out, expected, **TOL)


def test_mfcc_db_fields_reach_power_to_db(chirp):
    ext = Mfcc(SR, ref=2.0, amin=1e-4, top_db=50.0)
    mel = librosa.feature.melspectrogram(y=chirp, sr=SR)
    log_mel = librosa.power_to_db(mel, ref=2.0, amin=1e-4, top_db=50.0)
    expected = librosa.feature.mfcc(S=log_mel, n_mfcc=20).T
    np.testing.assert_allclose(ext(chirp, SR), expected, **TOL)


def filterbank_by_hand(y, sr, n_fft, win, hop, n_filters, a, floor, htk=True, norm=None):
    y = np.concatenate([y[:1], y[1:] - a * y[:-1]]) if a else y
    spectrum = librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=win, window="hann")
    filters = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_filters, htk=htk, norm=norm)
    return np.log(np.maximum(filters @ np.abs(spectrum) ** 2, floor)).T


def test_filterbank_equals_hand_computation(chirp):
    y = librosa.resample(chirp, orig_sr=SR, target_sr=16000)
    out = FilterBank()(y, 16000)
    expected = filterbank_by_hand(y, 16000, 512, 400, 160, 26, 0.97, 1e-10)
    assert out.dtype == np.float32 and out.shape == expected.shape == (101, 26)
    np.testing.assert_allclose(out, expected, **TOL)


def test_filterbank_without_preemphasis_and_with_floor(chirp):
    ext = FilterBank(SR, n_fft=1024, preemphasis=0.0, n_filters=40, log_floor=1e-2)
    out = ext(chirp, SR)
    expected = filterbank_by_hand(chirp, SR, 1024, 551, 220, 40, 0.0, 1e-2)
    np.testing.assert_allclose(out, expected, **TOL)
    assert out.min() == pytest.approx(np.log(1e-2))


def test_logbank_summary_equals_numpy_and_scipy(chirp):
    ext = LogbankSummary()
    out = ext(chirp, SR)
    fb = FilterBank()(chirp, SR).astype(np.float64)
    expected = np.stack(
        [
            fb.mean(0),
            fb.std(0),
            fb.min(0),
            fb.max(0),
            np.median(fb, 0),
            scipy.stats.skew(fb, axis=0),
            scipy.stats.kurtosis(fb, axis=0),
        ]
    )
    assert out.dtype == np.float32 and out.shape == (7, 26) and ext.n_features == 26
    np.testing.assert_allclose(out, expected, **TOL)


def test_logbank_summary_stat_subset_in_given_order(chirp):
    out = LogbankSummary(stats=("max", "mean"))(chirp, SR)
    fb = FilterBank()(chirp, SR)
    np.testing.assert_allclose(out, np.stack([fb.max(0), fb.mean(0)]), **TOL)


def test_summarise_constant_band_has_zero_skew_and_kurtosis():
    x = np.stack([np.full(9, -23.0), np.arange(9.0)], axis=1)
    out = features.summarise(x, ("std", "skew", "kurtosis"))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[:, 0], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(out[1:, 1], [0.0, scipy.stats.kurtosis(np.arange(9.0))], **TOL)


def test_raw_whole_signal_and_frames(chirp):
    out = Raw(SR)(chirp, SR)
    assert out.shape == (SR, 1) and out.dtype == np.float32 and Raw().n_features == 1
    np.testing.assert_array_equal(out[:, 0], chirp)
    x = np.arange(10, dtype=np.float32)
    framed = Raw(10, frame_length=4, hop_length=2)(x, 10)
    np.testing.assert_array_equal(framed, [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9]])
    np.testing.assert_array_equal(Raw(10, frame_length=4)(x, 10), [[0, 1, 2, 3], [4, 5, 6, 7]])
    expected = librosa.util.frame(chirp, frame_length=256, hop_length=100, axis=0)
    np.testing.assert_array_equal(Raw(SR, frame_length=256, hop_length=100)(chirp, SR), expected)


# ---------------------------------------------------------------------------------------------
# Rates, windows in seconds.


@pytest.mark.parametrize("cls", list(features.EXTRACTIONS.values()))
def test_call_resamples_to_the_extraction_rate(chirp, cls):
    ext = cls(16000)
    resampled = librosa.resample(chirp, orig_sr=SR, target_sr=16000)
    np.testing.assert_allclose(ext(chirp, SR), ext(resampled, 16000), **TOL)


def test_seconds_and_samples_give_the_same_features(chirp):
    in_seconds = MelSpectrogram(16000, n_fft=512, win_seconds=0.025, hop_seconds=0.01)
    in_samples = MelSpectrogram(16000, n_fft=512, win_length=400, hop_length=160)
    assert (in_seconds.win_samples, in_seconds.hop_samples) == (400, 160)
    np.testing.assert_array_equal(in_seconds(chirp, SR), in_samples(chirp, SR))
    fb_samples = FilterBank(win_length=400, hop_length=160, win_seconds=None, hop_seconds=None)
    np.testing.assert_array_equal(FilterBank()(chirp, SR), fb_samples(chirp, SR))


def test_seconds_resolve_with_round():
    ext = LogMel(22050, win_seconds=0.025, hop_seconds=0.01)
    assert (ext.win_samples, ext.hop_samples) == (round(551.25), round(220.5))


def test_default_hop_is_a_quarter_window_as_librosa():
    assert MelSpectrogram().hop_samples == 512
    assert MelSpectrogram(win_length=1000).hop_samples == 250


@pytest.mark.parametrize(
    "cls, kwargs, field",
    [
        (MelSpectrogram, dict(win_length=400, win_seconds=0.02), "win_length"),
        (MelSpectrogram, dict(hop_length=100, hop_seconds=0.01), "hop_length"),
        (FilterBank, dict(win_length=400), "win_seconds"),
        (FilterBank, dict(hop_length=160), "hop_seconds"),
        (MelSpectrogram, dict(sample_rate=0), "sample_rate"),
        (MelSpectrogram, dict(sample_rate=16000.5), "sample_rate"),
        (MelSpectrogram, dict(n_fft=0), "n_fft"),
        (MelSpectrogram, dict(win_length=4096), "n_fft"),
        (MelSpectrogram, dict(win_seconds=0.5), "n_fft"),
        (MelSpectrogram, dict(hop_length=0), "hop_length"),
        (MelSpectrogram, dict(hop_seconds=1e-6), "hop_seconds"),
        (MelSpectrogram, dict(window="no-such-window"), "window"),
        (MelSpectrogram, dict(center="yes"), "center"),
        (MelSpectrogram, dict(pad_mode="wrap"), "pad_mode"),
        (MelSpectrogram, dict(power=0.0), "power"),
        (MelSpectrogram, dict(n_mels=0), "n_mels"),
        (MelSpectrogram, dict(fmin=-1.0), "fmin"),
        (MelSpectrogram, dict(fmax=12000.0), "fmax"),
        (MelSpectrogram, dict(fmin=5000.0, fmax=4000.0), "fmin"),
        (MelSpectrogram, dict(htk=1), "htk"),
        (MelSpectrogram, dict(norm="l2"), "norm"),
        (LogMel, dict(ref=0.0), "ref"),
        (LogMel, dict(ref="min"), "ref"),
        (LogMel, dict(amin=0.0), "amin"),
        (LogMel, dict(top_db=-1.0), "top_db"),
        (Mfcc, dict(n_mfcc=0), "n_mfcc"),
        (Mfcc, dict(n_mels=20, n_mfcc=40), "n_mfcc"),
        (Mfcc, dict(dct_type=4), "dct_type"),
        (Mfcc, dict(norm_dct="forward"), "norm_dct"),
        (Mfcc, dict(lifter=-1.0), "lifter"),
        (FilterBank, dict(sample_rate=44100), "n_fft"),
        (FilterBank, dict(preemphasis=1.0), "preemphasis"),
        (FilterBank, dict(n_filters=0), "n_filters"),
        (FilterBank, dict(fmax=9000.0), "fmax"),
        (FilterBank, dict(log_floor=0.0), "log_floor"),
        (LogbankSummary, dict(stats=("mean", "mode")), "stats"),
        (LogbankSummary, dict(stats=()), "stats"),
        (LogbankSummary, dict(stats="mean"), "stats"),
        (Raw, dict(frame_length=0), "frame_length"),
        (Raw, dict(hop_length=10), "frame_length"),
    ],
)
def test_invalid_fields_raise_naming_the_field(cls, kwargs, field):
    with pytest.raises(ValueError, match=field):
        cls(**kwargs)


def test_call_rejects_bad_signals(chirp):
    ext = MelSpectrogram(SR, n_fft=1024)
    with pytest.raises(ValueError, match="mono"):
        ext(np.stack([chirp, chirp], 1), SR)
    with pytest.raises(ValueError, match="NaN"):
        ext(np.full(2048, np.nan, np.float32), SR)
    with pytest.raises(ValueError, match="too short"):
        ext(chirp[:1023], SR)


@pytest.mark.parametrize(
    "ext, expected",
    [
        (MelSpectrogram(), 2048),
        (LogMel(16000, n_fft=1024, win_length=400), 1024),
        (Mfcc(center=False, n_fft=512), 512),
        (FilterBank(), 512),
        (LogbankSummary(n_fft=1024), 1024),
        (Raw(), 1),
        (Raw(frame_length=400), 400),
    ],
)
def test_min_samples_is_enough_and_one_less_is_not(chirp, ext, expected):
    assert ext.min_samples == expected
    assert ext.min_seconds == expected / ext.sample_rate
    out = ext(chirp[:expected], ext.sample_rate)
    assert out.shape[0] >= 1 and np.isfinite(out).all()
    if expected > 1:
        with pytest.raises(ValueError, match="too short"):
            ext(chirp[: expected - 1], ext.sample_rate)


# ---------------------------------------------------------------------------------------------
# Values: keys, configs, pickling.

STFT_CHANGES = dict(
    sample_rate=dict(sample_rate=16000),
    n_fft=dict(n_fft=1024),
    hop_length=dict(hop_length=300),
    win_length=dict(win_length=1000),
    win_seconds=dict(win_seconds=0.04),
    hop_seconds=dict(hop_seconds=0.02),
    window=dict(window="hamming"),
    center=dict(center=False),
    pad_mode=dict(pad_mode="reflect"),
)
MEL_CHANGES = dict(
    STFT_CHANGES,
    power=dict(power=1.0),
    n_mels=dict(n_mels=64),
    fmin=dict(fmin=100.0),
    fmax=dict(fmax=8000.0),
    htk=dict(htk=True),
    norm=dict(norm=None),
)
DB_CHANGES = dict(ref=dict(ref=2.0), amin=dict(amin=1.0), top_db=dict(top_db=20.0))
FILTERBANK_CHANGES = dict(
    STFT_CHANGES,
    sample_rate=dict(sample_rate=8000),
    n_fft=dict(n_fft=1024),
    hop_length=dict(hop_length=80, hop_seconds=None),
    win_length=dict(win_length=256, win_seconds=None),
    win_seconds=dict(win_seconds=0.02),
    hop_seconds=dict(hop_seconds=0.02),
    preemphasis=dict(preemphasis=0.5),
    n_filters=dict(n_filters=40),
    fmin=dict(fmin=100.0),
    fmax=dict(fmax=4000.0),
    htk=dict(htk=False),
    norm=dict(norm="slaney"),
    log_floor=dict(log_floor=1.0),
)
# Per class: a base value and, for each field, a change to it (other fields only where the
# change needs them). The tests below check that every field is listed.
CHANGES = {
    MelSpectrogram: (MelSpectrogram(), MEL_CHANGES),
    LogMel: (LogMel(), dict(MEL_CHANGES, **DB_CHANGES)),
    Mfcc: (
        Mfcc(),
        dict(
            MEL_CHANGES,
            **DB_CHANGES,
            n_mfcc=dict(n_mfcc=13),
            dct_type=dict(dct_type=3),
            norm_dct=dict(norm_dct=None),
            lifter=dict(lifter=22.0),
        ),
    ),
    FilterBank: (FilterBank(), FILTERBANK_CHANGES),
    LogbankSummary: (
        LogbankSummary(),
        dict(FILTERBANK_CHANGES, stats=dict(stats=("mean", "std"))),
    ),
    Raw: (
        Raw(frame_length=256, hop_length=128),
        dict(
            sample_rate=dict(sample_rate=16000),
            frame_length=dict(frame_length=512),
            hop_length=dict(hop_length=64),
        ),
    ),
}


def test_every_extraction_is_covered():
    assert set(CHANGES) == set(features.EXTRACTIONS.values())


@pytest.mark.parametrize("cls", list(CHANGES), ids=lambda c: c.__name__)
def test_key_names_every_field_and_changes_with_each(cls):
    base, changes = CHANGES[cls]
    names = [f.name for f in dataclasses.fields(cls)]
    assert sorted(changes) == sorted(names), "add the new field to CHANGES"
    assert base.key.startswith(f"{cls.__name__}(")
    for name in names:
        assert f"{name}={getattr(base, name)!r}" in base.key
    keys = {base.key}
    for name in names:
        changed = dataclasses.replace(base, **changes[name])
        assert getattr(changed, name) != getattr(base, name)
        assert changed.key != base.key, name
        keys.add(changed.key)
    assert len(keys) == len(names) + 1


@pytest.mark.parametrize("cls", list(CHANGES), ids=lambda c: c.__name__)
def test_every_field_reaches_the_computation(chirp, cls):
    base, changes = CHANGES[cls]
    signal = chirp[: SR // 2]
    before = base(signal, SR)
    for name, change in changes.items():
        after = dataclasses.replace(base, **change)(signal, SR)
        same = after.shape == before.shape and np.allclose(after, before, rtol=1e-6, atol=1e-6)
        assert not same, f"{cls.__name__}.{name} did not change the features"


def test_key_is_stable_and_canonical():
    assert LogMel(16000, n_mels=40).key == (
        "LogMel(sample_rate=16000,n_fft=2048,hop_length=None,win_length=None,win_seconds=None,"
        "hop_seconds=None,window='hann',center=True,pad_mode='constant',power=2.0,n_mels=40,"
        "fmin=0.0,fmax=None,htk=False,norm='slaney',ref=1.0,amin=1e-10,top_db=80.0)"
    )
    assert LogMel(16000.0, fmin=0, power=2, n_mels=np.int64(40)) == LogMel(16000, n_mels=40)
    assert LogMel(16000.0, fmin=0, n_mels=np.int64(40)).key == LogMel(16000, n_mels=40).key
    assert LogbankSummary(stats=["mean"]).key == LogbankSummary(stats=("mean",)).key


@pytest.mark.parametrize("cls", list(CHANGES), ids=lambda c: c.__name__)
def test_config_round_trip(cls):
    base, changes = CHANGES[cls]
    ext = dataclasses.replace(base, **next(iter(changes.values())))
    config = ext.to_config()
    assert config["name"] == cls.__name__
    assert features.from_config(config) == ext
    assert features.from_config(json.loads(json.dumps(config))) == ext
    assert features.from_config({"name": cls.__name__}) == cls()


def test_from_config_errors():
    with pytest.raises(ValueError, match="known: .*LogMel.*Mfcc"):
        features.from_config({"name": "Spectrogram"})
    with pytest.raises(ValueError, match="known: "):
        features.from_config({"n_mels": 40})
    with pytest.raises(ValueError, match=r"\['n_mel', 'nfft'\]"):
        features.from_config({"name": "LogMel", "n_mel": 40, "nfft": 512})
    with pytest.raises(ValueError, match="n_mels"):
        features.from_config({"name": "LogMel", "n_mels": -1})


@pytest.mark.parametrize("cls", list(CHANGES), ids=lambda c: c.__name__)
def test_pickle_round_trip_and_hash(chirp, cls):
    ext = CHANGES[cls][0]
    back = pickle.loads(pickle.dumps(ext))
    assert back == ext and hash(back) == hash(ext) and back.key == ext.key
    assert {ext: 1}[back] == 1
    np.testing.assert_array_equal(back(chirp, SR), ext(chirp, SR))
    with pytest.raises(dataclasses.FrozenInstanceError):
        ext.sample_rate = 8000
