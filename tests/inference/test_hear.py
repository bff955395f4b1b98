"""A run trained on an `Embedding`: `mt.load` with it, and the run as a HEAR-API module."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tiny_run

import mtjax as mt
from mtjax.audio import loading
from mtjax.inference import hear

RATE = 16000
HOP_SECONDS = 1024 / RATE  # tiny_run.LOGMEL's hop


def logmel(signal):
    return tiny_run.LOGMEL(signal, RATE)


EMB = mt.features.Embedding(logmel, "logmel-fn", RATE, version="1", hop_seconds=HOP_SECONDS)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """tiny_run.train's run on `EMB`, with a small DNN for one epoch (a quarter of the time)."""
    tmp = tmp_path_factory.mktemp("hear")
    audio = tiny_run.write_tones(tmp / "tones")
    data = mt.read(mt.readers.FolderReader(audio, task="pitch"), EMB, progress=False)
    split = next(iter(mt.splits([data], folds=3, prepare=[mt.frame("median"), mt.standardize()])))
    run = mt.Run(tmp / "runs", "r")
    model = mt.models.HardSharingDNN(split.train.tasks, hidden=(32,))
    trained = mt.fit(
        model, split.train, epochs=1, batch_size=8, early_stop=None, run=run, progress=False
    )
    return tiny_run.TinyRun(run, audio, split, split, trained)


@pytest.fixture(scope="module")
def model(tiny):
    return mt.hear_module(tiny.run, extraction=EMB).load_model()


def sounds(tiny, n: int = 2, samples: int = 8000) -> np.ndarray:
    """[n, samples]: the first test clips, cut or zero-padded to one length."""
    audio = np.zeros([n, samples], np.float32)
    for i, path in enumerate(tiny_run.clip_files(tiny)[:n]):
        signal = loading.load(path, RATE)[0][:samples]
        audio[i, : len(signal)] = signal
    return audio


def shared_output(trained, x) -> np.ndarray:
    """[B, D]: relu of the DNN's last shared norm, read with Flax's capture_intermediates."""
    _, state = trained.model.apply(
        {"params": trained.params}, x, capture_intermediates=True, mutable=["intermediates"]
    )
    norms = sorted(k for k in state["intermediates"] if k.startswith("shared_norm"))
    return np.maximum(np.asarray(state["intermediates"][norms[-1]]["__call__"][0]), 0.0)


def test_a_run_on_an_embedding_loads_with_it_and_predicts(tiny):
    with pytest.raises(ValueError, match=r"trained on extraction 'Embedding'.*extraction=") as err:
        mt.load(tiny.run)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"extraction= is Embedding\(.*version='2'"):
        mt.load(tiny.run, extraction=dataclasses.replace(EMB, version="2"))
    again = mt.features.Embedding(logmel, "logmel-fn", RATE, version="1", hop_seconds=HOP_SECONDS)
    predictor = mt.load(tiny.run, extraction=again)
    expected = mt.predict(tiny.trained, tiny.split.test)["pitch"]
    got = predictor(tiny_run.clip_files(tiny)[:3])
    probabilities = [g["pitch"]["probabilities"] for g in got.values()]
    np.testing.assert_allclose(probabilities, expected[:3], atol=1e-5)


def test_scene_embeddings_are_the_trunk_output(tiny, model):
    trained = model.predictor.trained
    head = trained.params["head_pitch"]
    assert model.sample_rate == RATE
    assert model.scene_embedding_size == model.timestamp_embedding_size == head["kernel"].shape[0]
    audio = sounds(tiny)
    scene = mt.hear_module(tiny.run).get_scene_embeddings(audio, model)
    assert scene.shape == (2, model.scene_embedding_size) and scene.dtype == np.float32
    rows = model.predictor.prepared([model.predictor.features((a, RATE)) for a in audio])
    x = np.asarray(rows.x)
    np.testing.assert_allclose(scene, shared_output(trained, x), rtol=1e-5, atol=1e-5)
    logits = trained.model.apply({"params": trained.params}, x)["pitch"]
    through_head = scene @ np.asarray(head["kernel"]) + np.asarray(head["bias"])
    np.testing.assert_allclose(through_head, logits, rtol=1e-4, atol=1e-4)


def test_timestamp_embeddings_are_windows_stamped_at_their_centres(tiny, model):
    audio = sounds(tiny)
    embeddings, times = hear.get_timestamp_embeddings(audio, model)
    length, frames = model.predictor.frames, 1 + 8000 // 1024  # centred STFT frames
    n = frames - length + 1
    assert embeddings.shape == (2, n, model.timestamp_embedding_size) and times.shape == (2, n)
    expected_ms = (np.arange(n) + (length - 1) / 2) * 1024 / RATE * 1000
    np.testing.assert_allclose(times, np.broadcast_to(expected_ms, (2, n)), rtol=1e-6)
    np.testing.assert_allclose(np.diff(times[0]), 64.0, rtol=1e-6)  # one hop: 1024 / 16 kHz

    scale = model.predictor.preparation[-1]
    mean, std = np.asarray(scale["mean"], np.float32), np.asarray(scale["std"], np.float32)
    for s, sound in enumerate(audio):
        features = logmel(sound)  # the Embedding's frames, computed here
        windows = np.stack([(features[k : k + length] - mean) / std for k in range(n)])
        trunk = shared_output(model.predictor.trained, windows)
        np.testing.assert_allclose(embeddings[s], trunk, rtol=1e-4, atol=1e-4)
    assert np.abs(embeddings[0, 0] - embeddings[0, -1]).max() > 0  # windows differ


def test_hop_frames_tensors_and_the_reverse_module_as_a_feature(tiny, model):
    module = mt.hear_module(tiny.run, extraction=EMB, hop_frames=2, to_tensor=list)
    strided = module.load_model()
    sound = sounds(tiny, n=1)
    embeddings, times = module.get_timestamp_embeddings(sound, strided)
    assert isinstance(embeddings, list) and isinstance(times, list)
    np.testing.assert_allclose(np.diff(times[0]), 128.0, rtol=1e-6)
    every_frame = hear.get_timestamp_embeddings(sound, model)
    np.testing.assert_allclose(np.asarray(embeddings), every_frame[0][:, ::2], atol=1e-6)

    plain = mt.hear_module(tiny.run, extraction=EMB)
    feature = mt.features.hear_embedding(plain, name="run", version="1", kind="scene")
    assert feature.sample_rate == RATE and feature.dims == model.scene_embedding_size
    expected = plain.get_scene_embeddings(sound, model)
    np.testing.assert_allclose(feature(sound[0], RATE), expected, atol=1e-6)


def test_the_errors_name_what_is_missing(tiny, model):
    with pytest.raises(ValueError, match="trained on extraction 'Embedding'"):
        hear.load_model(str(tiny.run.path))  # the module-level API: mt.load without extraction=
    with pytest.raises(ValueError, match="give the run folder"):
        hear.load_model()
    with pytest.raises(ValueError, match="hop_frames must be an int >= 1"):
        mt.hear_module(tiny.run, extraction=EMB, hop_frames=0).load_model()
    no_hop = dataclasses.replace(model.predictor, extraction=mt.features.LogbankSummary())
    with pytest.raises(ValueError, match=r"time between frames of LogbankSummary\("):
        hear.get_timestamp_embeddings(sounds(tiny), dataclasses.replace(model, predictor=no_hop))
    with pytest.raises(ValueError, match=r"HEAR audio must be \[n_sounds, n_samples\]"):
        hear.get_scene_embeddings(np.zeros(800, np.float32), model)
    assert hear.frame_seconds(tiny_run.LOGMEL) == 1024 / RATE
    assert hear.frame_seconds(mt.features.Raw(RATE, frame_length=400, hop_length=160)) == 0.01
    assert hear.frame_seconds(mt.features.Raw(RATE)) == 1 / RATE
    assert hear.frame_seconds(EMB) == HOP_SECONDS
    assert hear.frame_seconds(mt.features.LogbankSummary()) is None
