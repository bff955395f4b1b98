"""Audio on disk -> cached features -> leak-free folds, through the public API only."""

from __future__ import annotations

import json

import numpy as np

import mtjax as mt
from mtjax import arrays, cli, demo


def valid_frames(ds) -> np.ndarray:
    x = arrays.to_numpy(ds.x)
    return np.concatenate([x[n, :length] for n, length in enumerate(ds.lengths)])


def test_speech_folder_to_standardised_folds(tmp_path):
    paths = demo.make_demo(tmp_path / "data", seed=3, scale=0.5)
    reader = mt.readers.FolderReader(paths["commands"], task="word")
    logmel = mt.features.LogMel(sample_rate=16000, n_mels=40)
    ds = mt.read(reader, logmel, cache=tmp_path / "cache", n_jobs=2, progress=False)
    again = mt.read(reader, logmel, cache=tmp_path / "cache", n_jobs=2, progress=False)
    np.testing.assert_array_equal(ds.x, again.x)
    n = len(ds)
    assert ds.x.shape == (n, int(ds.lengths.max()), 40) and ds.y.shape == (n, 6)

    folds = list(mt.splits([ds], folds=5, prepare=[mt.frame("median"), mt.standardize()], seed=0))
    assert len(folds) == 5
    tested = np.concatenate([fold.test.ids for fold in folds])
    assert sorted(tested) == sorted(f"{ds.name}/{i}" for i in ds.ids)  # each clip once
    for fold in folds:
        train_ids, test_ids = set(fold.train.ids), set(fold.test.ids)
        # validation is carved from the fold's 96 train clips (16 of each word): a tenth of
        # each word, 1.6, rounds to 2 by stratification, so 12 clips
        val_ids = set(fold.validation.ids)
        assert not train_ids & test_ids and not val_ids & (train_ids | test_ids)
        assert (len(train_ids), len(val_ids), len(test_ids)) == (84, 12, 24) and n == 120
        np.testing.assert_array_equal(fold.validation.y.sum(0), [2] * 6)
        # framed to the median length of this fold's train clips
        raw_train = mt.data.subset(
            ds, [list(ds.ids).index(i.split("/", 1)[1]) for i in fold.train.ids]
        )
        raw_test = mt.data.subset(
            ds, [list(ds.ids).index(i.split("/", 1)[1]) for i in fold.test.ids]
        )
        median = round(np.median(raw_train.lengths))
        assert fold.train.x.shape == (len(train_ids), median, 40)
        assert fold.test.x.shape == (len(test_ids), median, 40)
        # train standardised: mean 0, std 1 per feature over valid frames
        frames = valid_frames(fold.train).astype(np.float64)
        np.testing.assert_allclose(frames.mean(0), 0, atol=1e-4)
        np.testing.assert_allclose(frames.std(0), 1, atol=1e-3)
        # test scaled with the train statistics, not its own
        framed_train = mt.data.frame(raw_train, median)
        scaler = mt.data.fit_scaler(framed_train)
        expected = (mt.data.frame(raw_test, median).x - scaler.mean) / scaler.std
        valid = np.arange(median)[None, :] < fold.test.lengths[:, None]
        np.testing.assert_allclose(fold.test.x[valid], expected[valid], rtol=1e-4, atol=1e-4)
        assert not np.allclose(valid_frames(fold.test).mean(0), 0, atol=1e-4)


def test_index_mode_gives_the_same_folds(tmp_path):
    paths = demo.make_demo(tmp_path / "data", seed=1, scale=0.3)
    reader = demo.demo_readers(paths)[1]  # ESC-50 layout, 5 predefined folds
    logmel = mt.features.LogMel(sample_rate=16000, n_fft=512, hop_length=256, n_mels=24)
    dense = mt.read(reader, logmel, cache=tmp_path / "c", n_jobs=1, progress=False)
    lazy = mt.read(reader, logmel, cache=tmp_path / "c", in_memory=False, progress=False)
    prepare = [mt.frame("median"), mt.standardize(per="cell")]
    for a, b in zip(mt.splits([dense], prepare=prepare), mt.splits([lazy], prepare=prepare)):
        assert isinstance(b.train.x, mt.DiskArray)
        np.testing.assert_allclose(arrays.to_numpy(b.train.x), a.train.x, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(arrays.to_numpy(b.test.x), a.test.x, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(a.test.ids, b.test.ids)


def test_demo_command_prints_the_summary_and_reuses_the_cache(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path), "--epochs", "2"]) == 0
    first = capsys.readouterr()
    for expected in [
        "commands",
        "sounds",
        "tagged",
        "word (multiclass, 6)",
        "tags (multilabel, 5), loud (binary, 2)",
        "5 predefined folds",
        "predefined split",
        "train 192 / validation 24 / test 24",
    ]:
        assert expected in first.out, expected
    assert first.out.count("101x40") == 15  # 5 folds x 3 datasets, framed to the median
    assert "extract commands" in first.err and "fit" in first.err  # progress bars
    table = first.out[first.out.index("test metrics of fold 0") :]
    for task in ["word", "category", "tags", "loud"]:
        assert task in table
    run = tmp_path / "runs" / "demo-epochs2" / "fold0"
    assert f"tensorboard --logdir {run / 'events'}" in first.out
    assert list((run / "events").glob("events.out.tfevents.*"))
    chosen = json.loads((run / "config.json").read_text())["chosen_epoch"]
    kept = sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    assert kept == sorted({chosen, 1})  # the chosen epoch and the last
    assert (run / "reports" / "epoch_001" / "test" / "word.json").exists()
    assert (run / "plots" / "learning_curves.png").exists()
    assert cli.main(["demo", "--out", str(tmp_path), "--epochs", "2"]) == 0
    second = capsys.readouterr()
    assert "extract" not in second.err  # everything came from the cache
    assert first.out.splitlines()[:20] == second.out.splitlines()[:20]
