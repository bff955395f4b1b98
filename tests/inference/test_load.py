"""`mt.load(run)`: a run folder predicts on new audio with only what it recorded."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import tiny_run

import mtjax as mt
from mtjax.audio.loading import AudioError
from mtjax.data import prepare


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_run.train(tmp_path_factory.mktemp("load"), [mt.frame("median"), mt.standardize()])


@pytest.fixture(scope="module")
def windowed(tmp_path_factory):
    steps = [mt.windows(4, 2), mt.standardize(per="cell")]
    return tiny_run.train(tmp_path_factory.mktemp("windows"), steps)


def test_the_run_records_its_extraction_and_fitted_steps(tiny):
    config = mt.runs.read_config(tiny.run)
    assert config["features"] == json.loads(json.dumps(tiny_run.LOGMEL.to_config()))
    frame, scale = config["preparation"]
    train = tiny.split.train
    assert frame == {"step": "frame", "length": train.x.shape[1], "start": "begin"}
    assert frame["length"] == int(np.rint(np.median(tiny.split.train.lengths)))
    scaler = mt.data.fit_scaler(mt.data.frame(tiny.raw.train, frame["length"]))
    assert scale["per"] == "feature" and "by_dataset" not in scale
    np.testing.assert_array_equal(np.asarray(scale["mean"], np.float32), scaler.mean)
    np.testing.assert_array_equal(np.asarray(scale["std"], np.float32), scaler.std)
    assert "preparation" not in config["resume_key"] and "features" not in config["resume_key"]
    assert train.preparation == tiny.split.test.preparation == tiny.split.validation.preparation
    again = prepare.replay(tiny.raw.test, config["preparation"])  # the JSON record, replayed
    np.testing.assert_array_equal(np.asarray(again.x), np.asarray(tiny.split.test.x))


def test_a_wav_a_folder_and_a_signal_give_what_predict_gives_on_the_test_rows(tiny, tmp_path):
    expected = mt.predict(tiny.trained, tiny.split.test)["pitch"]
    files = tiny_run.clip_files(tiny)
    predictor = mt.load(tiny.run)
    assert predictor.epoch == mt.runs.read_config(tiny.run)["chosen_epoch"]
    assert [t.name for t in predictor.tasks] == ["pitch"] and predictor.frames > 1

    one = predictor(files[0])
    np.testing.assert_allclose(one["pitch"]["probabilities"], expected[0], atol=1e-5)
    labels = predictor.tasks[0].labels
    assert one["pitch"]["label"] == labels[int(np.argmax(expected[0]))]

    folder = tmp_path / "new"
    (folder / "sub").mkdir(parents=True)
    for k, f in enumerate(files):  # at two depths, sorted by path
        shutil.copy(f, folder / ("sub" if k % 2 else "") / f"{k:02d}.wav")
    (folder / "notes.txt").write_text("not audio")
    by_file = predictor(folder, batch_size=2)  # batches of 2 files, a last partial one
    names = [str(folder / ("sub" if k % 2 else "") / f"{k:02d}.wav") for k in range(len(files))]
    assert sorted(by_file) == list(by_file) == sorted(names)
    got = np.array([by_file[n]["pitch"]["probabilities"] for n in names])
    np.testing.assert_allclose(got, expected, atol=1e-5)

    signal, rate = sf.read(files[1], dtype="float32")
    from_signal = predictor((signal, rate))
    np.testing.assert_allclose(from_signal["pitch"]["probabilities"], expected[1], atol=1e-5)
    stereo = predictor((np.stack([signal, signal], axis=1), rate))
    np.testing.assert_allclose(stereo["pitch"]["probabilities"], expected[1], atol=1e-5)


def test_windows_are_predicted_and_averaged_per_file(windowed):
    test = windowed.split.test
    assert len(test) > len(np.unique(test.clip))  # some clips gave several windows
    per_window = mt.predict(windowed.trained, test)["pitch"]
    expected = mt.metrics.pool_clips(per_window, test.clip)[0]
    predictor = mt.load(windowed.run)
    assert predictor.frames == 4
    assert [r["step"] for r in predictor.preparation] == ["windows", "standardize"]
    files = tiny_run.clip_files(windowed)
    got = predictor(files, batch_size=3)  # 3 files, then their windows, at a time
    probs = np.array([got[str(f)]["pitch"]["probabilities"] for f in files])
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_the_predictor_agrees_with_evaluate_on_the_test_files(tiny):
    report = mt.evaluate(tiny.trained, tiny.split.test)["pitch"]
    predictions = mt.load(tiny.run)(tiny_run.clip_files(tiny))
    task = tiny.split.test.tasks[0]
    truth = [task.labels[c] for c in task.class_ids(np.asarray(tiny.split.test.y))]
    guessed = [p["pitch"]["label"] for p in predictions.values()]
    assert np.mean(np.array(truth) == np.array(guessed)) == pytest.approx(report["accuracy"])


def test_predictions_as_csv(tiny, tmp_path):
    files = tiny_run.clip_files(tiny)[:3]
    predictor = mt.load(str(tiny.run.path))  # a run folder's path does as well
    out = mt.inference.predict_to_csv(predictor, files, tmp_path / "out" / "predictions.csv")
    rows = list(csv.reader(out.open()))
    labels = predictor.tasks[0].labels
    assert rows[0] == ["path", "pitch", *(f"pitch:{label}" for label in labels)]
    expected = predictor(files)
    for row, f in zip(rows[1:], files):
        assert row[0] == str(f) and row[1] == expected[str(f)]["pitch"]["label"]
        np.testing.assert_allclose(
            [float(v) for v in row[2:]], expected[str(f)]["pitch"]["probabilities"], atol=1e-5
        )
    assert len(rows) == 4


def test_mtjax_predict_writes_the_csv_from_the_run_folder_alone(tiny, tmp_path, capsys):
    from mtjax import cli

    files = tiny_run.clip_files(tiny)[:2]
    out = tmp_path / "p.csv"
    assert cli.main(["predict", str(tiny.run.path), *map(str, files), "--out", str(out)]) == 0
    rows = list(csv.reader(out.open()))
    assert [r[0] for r in rows[1:]] == [str(f) for f in files]
    assert f"predictions written to {out}" in capsys.readouterr().out
    assert cli.main(["predict", str(tiny.run.path), str(tmp_path / "none.wav")]) == 2
    assert capsys.readouterr().err.startswith("mtjax: ")


def test_clear_errors(tiny, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wav file")
    predictor = mt.load(tiny.run)
    with pytest.raises(AudioError, match=f"^{bad}: "):
        predictor(bad)
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("no audio here")
    with pytest.raises(ValueError, match=r"texts: no audio files \(\.wav"):
        predictor(tmp_path / "texts")
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        predictor([tiny_run.clip_files(tiny)[0], tmp_path / "missing.wav"])
    empty = mt.Run(tmp_path / "runs", "untrained")
    empty.path.mkdir(parents=True)
    shutil.copy(tiny.run.path / "config.json", empty.path / "config.json")
    with pytest.raises(FileNotFoundError, match="has no checkpoints to predict with"):
        mt.load(empty)
    copy = mt.Run(tmp_path / "runs", "copy")
    shutil.copytree(tiny.run.path, copy.path)
    config = json.loads((copy.path / "config.json").read_text())
    config["features"]["name"] = "MyFeatures"
    (copy.path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="extraction 'MyFeatures', which mtjax does not know"):
        mt.load(copy)


def test_a_run_without_its_records_is_refused_naming_what_is_missing(tiny, tmp_path):
    for key, message in [
        ("features", "records no extraction it can be rebuilt from"),
        ("preparation", "records no preparation"),
    ]:
        copy = mt.Run(tmp_path, key)
        shutil.copytree(tiny.run.path, copy.path)
        config = json.loads((copy.path / "config.json").read_text())
        del config[key]
        (copy.path / "config.json").write_text(json.dumps(config))
        with pytest.raises(ValueError, match=message):
            mt.load(copy)


def _two_datasets():
    rng = np.random.default_rng(1)
    task = mt.Task("k", ("a", "b"))

    def rows(name, offset):
        x = rng.normal(offset, 1.0 + offset, (8, 5, 2))
        return mt.TaskDataset.from_arrays(x, task.encode_many(["a", "b"] * 4), [task], name=name)

    return rows("near", 0.0), rows("far", 5.0)


def test_statistics_per_dataset_are_replayed_per_dataset_or_for_the_one_chosen():
    near, far = _two_datasets()
    both = mt.concat([near, far])
    done = mt.standardize(by_dataset=True)(mt.Split(both, both)).train
    (record,) = done.preparation
    assert record["per"] == "feature" and sorted(record["by_dataset"]) == ["far", "near"]
    np.testing.assert_array_equal(prepare.replay(both, done.preparation).x, done.x)
    with pytest.raises(ValueError, match=r"values per dataset \(near, far\); pass dataset="):
        prepare.replay(near.replace(name="new"), done.preparation)  # whose statistics?
    for alone in (
        prepare.replay(far, done.preparation),  # by its name
        prepare.replay(far.replace(name="new"), done.preparation, dataset="far"),
    ):
        np.testing.assert_allclose(alone.x, np.asarray(done.x)[8:], atol=1e-6)
    with pytest.raises(ValueError, match="dataset 'other' has no recorded values"):
        prepare.replay(far, done.preparation, dataset="other")


def test_datasets_prepared_apart_keep_each_ones_steps_through_concat():
    near, far = _two_datasets()
    joined = mt.concat([mt.data.frame(near, 3), far])
    (record,) = joined.preparation
    assert record == {
        "step": "per_dataset",
        "datasets": {"near": [{"step": "frame", "length": 3, "start": "begin"}], "far": []},
    }
    assert mt.concat([mt.data.frame(near, 3), mt.data.frame(far, 3)]).preparation == (
        {"step": "frame", "length": 3, "start": "begin"},
    )
    assert prepare.replay(near, joined.preparation, dataset="near").x.shape == (8, 3, 2)
    with pytest.raises(ValueError, match=r"preparation\[0\]: unknown step 'resample'"):
        prepare.replay(near, [{"step": "resample"}])


def test_labels_follow_each_kind():
    from mtjax.inference.predictor import _decision

    binary = mt.Task("loud", ("no", "yes"), "binary")
    assert _decision(binary, np.array([0.7])) == {"probabilities": [1 - 0.7, 0.7], "label": "yes"}
    assert _decision(binary, np.array([0.5]))["label"] == "no"  # above 0.5 only, as evaluate
    tags = mt.Task("tags", ("bird", "car", "rain"), "multilabel")
    got = _decision(tags, np.array([0.9, 0.2, 0.6]))
    assert got == {"probabilities": [0.9, 0.2, 0.6], "labels": ["bird", "rain"]}
    word = mt.Task("word", ("go", "stop"))
    assert _decision(word, np.array([0.3, 0.7]))["label"] == "stop"
