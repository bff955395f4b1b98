"""Tests for mtjax.audio: reading files, resampling, downmixing, cutting, checking."""

import numpy as np
import pytest
import soundfile as sf

from mtjax import audio
from mtjax.audio import AudioError


def tone(freq: float, sample_rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(signal: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.argmax(spectrum) * sample_rate / len(signal))


@pytest.fixture
def signal():
    return tone(440.0, 16000, 0.5)


@pytest.mark.parametrize(
    "name, subtype, atol",
    [
        ("a.wav", "FLOAT", 0.0),
        ("a.wav", "PCM_16", 1 / 2**15),
        ("a.flac", "PCM_16", 1 / 2**15),
        ("a.flac", "PCM_24", 1 / 2**23),
    ],
)
def test_load_lossless_equals_what_was_written(tmp_path, signal, name, subtype, atol):
    path = tmp_path / name
    sf.write(path, signal, 16000, subtype=subtype)
    loaded, rate = audio.load(path)
    assert rate == 16000
    assert loaded.dtype == np.float32 and loaded.shape == signal.shape
    np.testing.assert_allclose(loaded, signal, rtol=0, atol=atol)


def test_load_ogg_within_codec_tolerance(tmp_path, signal):
    path = tmp_path / "a.ogg"
    sf.write(path, signal, 16000)
    loaded, rate = audio.load(str(path))
    assert rate == 16000 and loaded.dtype == np.float32 and loaded.shape == signal.shape
    assert np.max(np.abs(loaded - signal)) < 0.05
    assert peak_frequency(loaded, rate) == pytest.approx(440.0, abs=2.0)


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="libsndfile without mp3")
def test_load_mp3(tmp_path, signal):
    path = tmp_path / "a.mp3"
    sf.write(path, signal, 16000)
    loaded, rate = audio.load(path)
    assert rate == 16000 and loaded.dtype == np.float32
    n = min(len(loaded), len(signal))
    assert abs(len(loaded) - len(signal)) < 2000
    assert np.max(np.abs(loaded[:n] - signal[:n])) < 0.1


def test_load_stereo_is_mean_of_channels(tmp_path, signal):
    stereo = np.stack([signal, 0.5 * signal], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, 16000, subtype="FLOAT")
    mono, _ = audio.load(path)
    np.testing.assert_allclose(mono, 0.75 * signal, rtol=1e-6, atol=1e-7)
    both, _ = audio.load(path, mono=False)
    assert both.shape == (len(signal), 2) and both.dtype == np.float32
    np.testing.assert_array_equal(both, stereo)


def test_load_mono_file_without_downmix_keeps_channel_axis(tmp_path, signal):
    path = tmp_path / "a.wav"
    sf.write(path, signal, 16000, subtype="FLOAT")
    loaded, _ = audio.load(path, mono=False)
    assert loaded.shape == (len(signal), 1)


def test_load_resamples_44100_to_16000_keeping_the_tone(tmp_path):
    path = tmp_path / "cd.wav"
    sf.write(path, tone(440.0, 44100, 1.0), 44100, subtype="FLOAT")
    loaded, rate = audio.load(path, 16000)
    assert rate == 16000
    assert loaded.shape == (16000,) and loaded.dtype == np.float32
    assert peak_frequency(loaded, rate) == pytest.approx(440.0, abs=1.0)
    same, rate = audio.load(path, 44100)
    assert rate == 44100 and same.shape == (44100,)


def test_load_missing_file_names_path(tmp_path):
    path = tmp_path / "missing.wav"
    with pytest.raises(FileNotFoundError, match="missing.wav") as info:
        audio.load(path)
    assert info.value.filename == str(path)


def test_load_corrupt_file_names_path_and_reason(tmp_path):
    path = tmp_path / "x.wav"
    path.write_bytes(b"this is not audio " * 64)
    with pytest.raises(AudioError) as info:
        audio.load(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "cannot decode" in message and "soundfile:" in message


def test_load_zero_byte_file_is_empty(tmp_path):
    path = tmp_path / "zero.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match="empty") as info:
        audio.load(path)
    assert str(info.value).startswith(str(path))


def test_load_file_with_no_samples_is_empty(tmp_path):
    path = tmp_path / "header_only.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError) as info:
        audio.load(path)
    assert str(info.value) == f"{path}: empty (0 samples)"


def test_audio_error_is_value_error():
    assert issubclass(AudioError, ValueError)


def test_resample_length_and_layout():
    mono = tone(440.0, 22050, 1.0)
    out = audio.resample(mono, 22050, 16000)
    assert out.shape == (16000,) and out.dtype == np.float32
    assert peak_frequency(out, 16000) == pytest.approx(440.0, abs=1.0)
    stereo = np.stack([mono, -mono], axis=1)
    out2 = audio.resample(stereo, 22050, 8000)
    assert out2.shape == (8000, 2)
    np.testing.assert_allclose(out2[:, 1], -out2[:, 0], atol=1e-6)
    assert audio.resample(mono[:101], 3, 2).shape == (68,)  # ceil(101 * 2 / 3)
    np.testing.assert_array_equal(audio.resample(mono, 22050, 22050), mono)
    with pytest.raises(ValueError, match="target_sr"):
        audio.resample(mono, 22050, 0)


def test_to_mono():
    x = np.arange(6, dtype=np.float64).reshape(3, 2)
    out = audio.to_mono(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [0.5, 2.5, 4.5])
    np.testing.assert_array_equal(audio.to_mono(out), out)
    with pytest.raises(ValueError, match="shape"):
        audio.to_mono(np.zeros((2, 2, 2)))


def test_split_in_time_shapes_and_content():
    signal = np.arange(100, dtype=np.float32)  # 10 s at 10 Hz
    pieces = audio.split_in_time(signal, 10, 3.0)
    assert pieces.shape == (3, 30) and pieces.dtype == np.float32  # last 10 samples dropped
    np.testing.assert_array_equal(pieces[1], np.arange(30, 60))
    overlapping = audio.split_in_time(signal, 10, 3.0, hop_seconds=1.0)
    assert overlapping.shape == (8, 30)
    np.testing.assert_array_equal(overlapping[:, 0], np.arange(0, 80, 10))
    assert audio.split_in_time(signal, 10, 20.0).shape == (0, 200)
    assert audio.split_in_time(np.zeros((100, 2)), 10, 5.0).shape == (2, 50, 2)
    with pytest.raises(ValueError, match="seconds"):
        audio.split_in_time(signal, 10, 0.01)


def test_check_signal_accepts_a_good_signal(signal):
    assert audio.check_signal(signal, 16000, "ok.wav", min_samples=400) is None


@pytest.mark.parametrize(
    "bad, min_samples, message",
    [
        (np.zeros(0, np.float32), 1, "clip.wav: empty (0 samples)"),
        (
            np.full(120, 0.1, np.float32),
            400,
            "clip.wav: too short: 120 samples, needs at least 400",
        ),
        (np.zeros(1000, np.float32), 1, "clip.wav: silent (all samples are zero)"),
        (np.array([0.1, np.nan, 0.2], np.float32), 1, "clip.wav: contains NaN or inf"),
        (np.array([[0.1, 0.1], [np.inf, 0.0]]), 1, "clip.wav: contains NaN or inf"),
    ],
)
def test_check_signal_errors_name_the_path(bad, min_samples, message):
    with pytest.raises(AudioError) as info:
        audio.check_signal(bad, 16000, "clip.wav", min_samples=min_samples)
    assert str(info.value).startswith(message)


def test_check_signal_on_a_loaded_nan_file(tmp_path, signal):
    path = tmp_path / "nan.wav"
    broken = signal.copy()
    broken[10] = np.nan
    sf.write(path, broken, 16000, subtype="FLOAT")
    loaded, rate = audio.load(path)
    with pytest.raises(AudioError, match="NaN") as info:
        audio.check_signal(loaded, rate, path)
    assert str(info.value).startswith(str(path))
