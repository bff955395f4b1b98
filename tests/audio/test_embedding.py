"""`Embedding`, `hear_embedding`: a user's callable or a HEAR-API module as a cached extraction."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

import mtjax as mt
from mtjax.audio import ExtractionError, loading
from mtjax.audio.features.base import config_from_key

RATE = 16000
HOP = 400  # the tiny HEAR module's hop: 25 ms at 16 kHz


def frame_stats(signal: np.ndarray) -> np.ndarray:
    """[T, 2]: mean and RMS of each 400-sample frame, a stand-in for a model."""
    frames = signal[: len(signal) // HOP * HOP].reshape(-1, HOP)
    return np.stack([frames.mean(1), np.sqrt((frames**2).mean(1))], axis=1)


class Counting:
    """`frame_stats`, counting its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, signal):
        self.calls += 1
        return frame_stats(signal)


def rows(data, root):
    """[(features [T, F] as read, the file's mono signal at RATE)] per clip."""
    return [
        (np.asarray(data.x[i, : data.lengths[i]]), loading.load(root / clip_id, RATE)[0])
        for i, clip_id in enumerate(np.asarray(data.ids))
    ]


def test_the_key_covers_the_plain_fields_never_fn():
    emb = mt.features.Embedding(frame_stats, "stats", RATE, version="1", min_samples=HOP)
    assert emb.key == (
        "Embedding(model='stats',sample_rate=16000,version='1',min_samples=400,"
        "hop_seconds=None,dims=None)"
    )
    other_fn = mt.features.Embedding(lambda s: s, "stats", RATE, version="1", min_samples=HOP)
    assert other_fn == emb and hash(other_fn) == hash(emb) and other_fn.key == emb.key
    assert mt.features.Embedding(frame_stats, "stats", RATE, version="2").key != emb.key
    assert config_from_key(emb.key) == emb.to_config() and "fn" not in emb.to_config()
    assert emb.to_config()["name"] == "Embedding" and emb.min_seconds == HOP / RATE
    with pytest.raises(ValueError, match=r"Embedding 'stats': version must be a non-empty"):
        mt.features.Embedding(frame_stats, "stats", RATE, version="")
    with pytest.raises(ValueError, match="fn must be callable"):
        mt.features.Embedding("not a function", "stats", RATE, version="1")
    with pytest.raises(ValueError, match="unknown extraction 'Embedding'"):
        mt.features.from_config(emb.to_config())  # fn cannot come back from a config


def test_a_second_read_hits_the_cache_and_a_new_version_extracts_again(tone_folder, tmp_path):
    reader = mt.readers.FolderReader(tone_folder, task="pitch")
    cache = tmp_path / "cache"
    fn = Counting()
    emb = mt.features.Embedding(fn, "stats", RATE, version="1", min_samples=HOP)
    data = mt.read(reader, emb, cache=cache, n_jobs=2, progress=False)  # in this process
    assert fn.calls == 18 and data.extraction == emb.key and data.x.shape[2] == 2
    for got, signal in rows(data, tone_folder):
        np.testing.assert_array_equal(got, frame_stats(signal).astype(np.float32))

    again_fn = Counting()
    again = mt.features.Embedding(again_fn, "stats", RATE, version="1", min_samples=HOP)
    second = mt.read(reader, again, cache=cache, n_jobs=2, progress=False)
    assert again_fn.calls == 0
    np.testing.assert_array_equal(np.asarray(second.x), np.asarray(data.x))

    newer_fn = Counting()
    newer = mt.features.Embedding(newer_fn, "stats", RATE, version="2", min_samples=HOP)
    mt.read(reader, newer, cache=cache, n_jobs=1, progress=False)
    assert newer_fn.calls == 18
    assert len(list((cache / reader.name).glob("Embedding-*[!k]"))) == 2  # two entries


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (lambda s: s, r"Embedding 'bad' \(version '1'\): fn must return real frames x dims"),
        (lambda s: np.full([3, 2], np.nan), r"Embedding 'bad' \(version '1'\): fn returned NaN"),
        (lambda s: np.zeros([0, 2]), r"Embedding 'bad' .*got float64 \(0, 2\)"),
        (lambda s: np.zeros([3, 2], complex), r"Embedding 'bad' .*got complex128"),
        (lambda s: np.zeros([3, 5]), r"Embedding 'bad' .*fn returned 5 dims, dims=2"),
    ],
)
def test_a_bad_output_is_an_error_naming_the_embedding(output, message):
    emb = mt.features.Embedding(output, "bad", RATE, version="1", dims=2)
    with pytest.raises(ValueError, match=message):
        emb(np.ones(800, np.float32), RATE)


def test_read_names_the_file_and_the_embedding(tone_folder):
    reader = mt.readers.FolderReader(tone_folder, task="pitch")
    emb = mt.features.Embedding(lambda s: np.full([2, 2], np.inf), "bad", RATE, version="1")
    with pytest.raises(ExtractionError, match=r"\.wav: Embedding 'bad' .*NaN or inf"):
        mt.read(reader, emb, n_jobs=1, progress=False)


MODEL = types.SimpleNamespace(sample_rate=RATE, scene_embedding_size=3, timestamp_embedding_size=3)


class Tensor:
    """A framework tensor stand-in: only `.detach().cpu().numpy()` gives its values."""

    def __init__(self, values):
        self.values = np.asarray(values)

    def detach(self):
        return self

    def cpu(self):
        return self

    def numpy(self):
        return self.values


def tiny_hear_module(log: list) -> types.ModuleType:
    """A HEAR-API module in numpy: 25 ms frames of (mean, RMS, peak), their mean per scene."""
    module = types.ModuleType("tiny_hear")

    def load_model(model_file_path: str = ""):
        log.append(model_file_path)
        return MODEL

    def get_timestamp_embeddings(audio, model):
        assert model.sample_rate == RATE
        audio = audio.values if isinstance(audio, Tensor) else audio
        n, s = audio.shape
        frames = audio[:, : s // HOP * HOP].reshape(n, -1, HOP)
        rms = np.sqrt((frames**2).mean(2))
        embeddings = np.stack([frames.mean(2), rms, np.abs(frames).max(2)], axis=2)
        centres = (np.arange(frames.shape[1]) + 0.5) * HOP / RATE * 1000
        times = np.broadcast_to(centres, frames.shape[:2])
        return Tensor(embeddings), Tensor(times)

    def get_scene_embeddings(audio, model):
        return Tensor(get_timestamp_embeddings(audio, model)[0].values.mean(1))

    module.load_model = load_model
    module.get_timestamp_embeddings = get_timestamp_embeddings
    module.get_scene_embeddings = get_scene_embeddings
    return module


def test_a_hear_module_plugs_in_and_its_outputs_are_the_features(tone_folder):
    log: list = []
    module = tiny_hear_module(log)
    reader = mt.readers.FolderReader(tone_folder, task="pitch")
    emb = mt.features.hear_embedding(
        module, name="tiny", version="1", model_file="weights.npy", to_tensor=Tensor
    )
    assert log == ["weights.npy"] and emb.sample_rate == RATE and emb.dims == 3
    assert emb.model == "tiny:timestamp" and emb.in_process
    data = mt.read(reader, emb, n_jobs=1, progress=False)
    for got, signal in rows(data, tone_folder):
        expected = module.get_timestamp_embeddings(signal[None, :], MODEL)[0].values[0]
        np.testing.assert_array_equal(got, expected.astype(np.float32))

    scene = mt.features.hear_embedding(module, name="tiny", version="1", kind="scene")
    assert log[-1] == "" and scene.key != emb.key  # load_model() with its default
    data = mt.read(reader, scene, n_jobs=1, progress=False)
    assert data.x.shape == (18, 1, 3)
    for got, signal in rows(data, tone_folder):
        expected = module.get_scene_embeddings(signal[None, :], MODEL).values
        np.testing.assert_array_equal(got, expected.astype(np.float32))


def test_a_hear_module_by_name_and_the_errors(monkeypatch):
    module = tiny_hear_module([])
    monkeypatch.setitem(sys.modules, "tiny_hear_by_name", module)
    emb = mt.features.hear_embedding("tiny_hear_by_name", name="tiny", version="1")
    signal = np.sin(np.arange(4000) / 7.0).astype(np.float32)
    expected = module.get_timestamp_embeddings(signal[None, :], MODEL)[0].values[0]
    np.testing.assert_array_equal(emb(signal, RATE), expected.astype(np.float32))
    with pytest.raises(ValueError, match="kind must be one of"):
        mt.features.hear_embedding(module, name="tiny", version="1", kind="frames")
    rateless = types.SimpleNamespace(**{**vars(module), "load_model": lambda: object()})
    with pytest.raises(ValueError, match="'tiny': load_model gave <object .*, no sample_rate"):
        mt.features.hear_embedding(rateless, name="tiny", version="1")
    partial = types.SimpleNamespace(load_model=module.load_model)
    with pytest.raises(ValueError, match="'tiny'.* has no HEAR function get_scene_embeddings"):
        mt.features.hear_embedding(partial, name="tiny", version="1", kind="scene")
