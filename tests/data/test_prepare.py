"""pipeline: prepare steps fit on train alone; `splits` assembles folds of several datasets."""

from __future__ import annotations

import numpy as np
import pytest

from mtjax import arrays, data, pipeline
from mtjax.data import MultiTaskData, Split, TaskDataset
from mtjax.tasks import Task

SOUND = Task("sound", ("dog", "cat", "bird"), "multiclass")
WORD = Task("word", ("yes", "no"), "multiclass")


def dataset(n, *, task=SOUND, name="esc", t=8, f=2, lengths=None, loc=0.0, seed=0, **kw):
    rng = np.random.default_rng(seed)
    x = rng.normal(loc, 1.0, size=(n, t, f))
    y = np.eye(len(task.labels))[np.arange(n) % len(task.labels)]
    return TaskDataset.from_arrays(x, y, [task], lengths=lengths, name=name, **kw)


def valid_frames(ds) -> np.ndarray:
    x = arrays.to_numpy(ds.x)
    return np.concatenate([x[n, :length] for n, length in enumerate(ds.lengths)]).astype(np.float64)


# prepare steps


def test_frame_median_is_fitted_on_train_only():
    train = dataset(5, lengths=[2, 3, 4, 5, 6])  # median 4
    test = dataset(3, lengths=[8, 8, 8], seed=1)  # median 8
    out = pipeline.frame("median")(Split(train=train, test=test))
    assert out.train.x.shape == (5, 4, 2) and out.test.x.shape == (3, 4, 2)
    np.testing.assert_array_equal(out.test.lengths, [4, 4, 4])
    np.testing.assert_array_equal(out.test.x, np.asarray(test.x)[:, :4])
    np.testing.assert_array_equal(out.train.lengths, [2, 3, 4, 4, 4])
    assert out.validation is None
    with pytest.raises(ValueError, match="'mean'"):
        pipeline.frame("mean")


def test_windows_step_defaults_hop_to_half_the_window():
    train = dataset(2, lengths=[8, 4])
    out = pipeline.windows("max")(Split(train=train, test=dataset(1, lengths=[8], seed=1)))
    assert out.train.x.shape == (2, 8, 2)  # max length 8, one window per row
    out = pipeline.windows(4)(Split(train=train))
    np.testing.assert_array_equal(out.train.clip, [0, 0, 0, 1])  # starts 0, 2, 4 and 0
    np.testing.assert_array_equal(out.train.x[1], np.asarray(train.x)[0, 2:6])


def test_standardize_ignores_test_rows():
    train = dataset(20, lengths=np.arange(20) % 7 + 1)
    test = dataset(5, loc=1e6, seed=1)  # huge: any leak would wreck train's statistics
    out = pipeline.standardize()(Split(train=train, test=test))
    frames = valid_frames(out.train)
    np.testing.assert_allclose(frames.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(frames.std(0), 1, atol=1e-5)
    scaler = data.fit_scaler(train)
    expected = (np.asarray(test.x) - scaler.mean) / scaler.std
    np.testing.assert_allclose(out.test.x, expected, rtol=1e-5)
    padding = np.arange(8)[None, :] >= train.lengths[:, None]
    assert np.all(np.asarray(out.train.x)[padding] == 0)


def test_standardize_by_dataset():
    a = dataset(12, name="a", loc=10.0)
    b = dataset(8, task=WORD, name="b", loc=-5.0, seed=1)
    train = data.concat([a, b])
    test = data.concat(
        [dataset(3, name="a", loc=10.0, seed=2), dataset(2, task=WORD, name="b", seed=3)]
    )
    out = pipeline.standardize(by_dataset=True)(Split(train=train, test=test))
    for d in (0, 1):
        frames = valid_frames(data.subset(out.train, out.train.dataset_id == d))
        np.testing.assert_allclose(frames.mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(frames.std(0), 1, atol=1e-5)
    b_scaler = data.fit_scaler(b)
    b_test = data.subset(test, test.dataset_id == 1)
    expected = data.scale(b_test, b_scaler).x
    b_out = data.subset(out.test, out.test.dataset_id == 1)
    np.testing.assert_allclose(b_out.x, expected, rtol=1e-6)
    pooled = pipeline.standardize()(Split(train=train))  # one scaler: datasets stay apart
    assert abs(valid_frames(data.subset(pooled.train, pooled.train.dataset_id == 0)).mean()) > 0.5


def test_limit_touches_train_only():
    split = Split(train=dataset(30), test=dataset(9, seed=1))
    out = pipeline.limit(4)(split)
    np.testing.assert_array_equal(out.train.y.sum(0), [4, 4, 4])
    assert len(out.test) == 9


# splits


def test_splits_mix_a_predefined_split_with_k_fold():
    sounds = dataset(24, name="esc")
    words = Split(
        train=dataset(6, task=WORD, name="words", seed=1),
        test=dataset(4, task=WORD, name="words", seed=2),
    )
    folds = list(pipeline.splits([sounds, words], folds=4, seed=0))
    assert len(folds) == 4
    esc_tests = []
    for split in folds:
        assert isinstance(split.train, MultiTaskData) and isinstance(split.test, MultiTaskData)
        assert split.train.tasks == split.test.tasks == (SOUND, WORD)
        assert split.train.datasets == split.test.datasets == ("esc", "words")
        assert split.validation is None
        words_test = data.subset(split.test, split.test.dataset_id == 1)
        np.testing.assert_array_equal(words_test.ids, ["words/0", "words/1", "words/2", "words/3"])
        np.testing.assert_array_equal(words_test.x, words.test.x)  # the same in every fold
        assert np.sum(split.train.dataset_id == 1) == 6
        esc_test = split.test.ids[split.test.dataset_id == 0]
        assert not set(esc_test) & set(split.train.ids)
        esc_tests.extend(esc_test)
    assert sorted(esc_tests) == sorted(f"esc/{i}" for i in range(24))  # each row tested once


def test_splits_fit_the_scaler_on_train_only():
    normal = dataset(20, name="normal")
    huge = Split(
        train=dataset(4, name="huge", seed=1), test=dataset(4, name="huge", loc=1e6, seed=2)
    )
    for split in pipeline.splits([normal, huge], folds=5, prepare=[pipeline.standardize()]):
        frames = valid_frames(split.train)
        np.testing.assert_allclose(frames.mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(frames.std(0), 1, atol=1e-5)
        assert valid_frames(split.test).max() > 1e5  # the huge test rows stayed huge


def test_splits_apply_prepare_steps_in_order():
    ds = dataset(10, lengths=np.arange(10) % 8 + 1)
    prepare = [pipeline.frame(3), pipeline.standardize(per="cell")]
    for split in pipeline.splits([ds], folds=2, prepare=prepare):
        assert split.train.x.shape[1:] == split.test.x.shape[1:] == (3, 2)
        x = np.asarray(split.train.x)
        np.testing.assert_allclose(x[:, 0].mean(0), 0, atol=1e-5)  # every row has frame 0


def test_splits_with_only_predefined_splits_yield_one():
    a = Split(train=dataset(6, name="a"), test=dataset(3, name="a", seed=1))
    b = Split(
        train=dataset(4, task=WORD, name="b"),
        test=dataset(2, task=WORD, name="b", seed=1),
        validation=dataset(2, task=WORD, name="b", seed=2),
    )
    out = list(pipeline.splits([a, b], folds=5))
    assert len(out) == 1
    (split,) = out
    assert len(split.train) == 10 and len(split.test) == 5
    # a has no validation part: it adds zero rows, so the columns match train's
    assert split.validation.tasks == split.train.tasks and len(split.validation) == 2
    np.testing.assert_array_equal(split.validation.dataset_id, [1, 1])


def test_splits_use_a_datasets_own_folds():
    ds = dataset(9, folds=np.arange(9) % 3)
    out = list(pipeline.splits([ds], folds=3))
    for f, split in enumerate(out):
        np.testing.assert_array_equal(split.test.ids, [f"esc/{i}" for i in range(f, 9, 3)])
    wrong_count = r"splits\(\.\.\., folds=5\): .* has 3 predefined folds but the run has 5 folds"
    with pytest.raises(ValueError, match=wrong_count):
        pipeline.splits([ds], folds=5)


def test_splits_work_the_same_out_of_core(tmp_path):
    ds = dataset(12, lengths=np.arange(12) % 8 + 1, loc=3.0)
    x = np.asarray(ds.x)
    flat = np.concatenate([x[n, :length] for n, length in enumerate(ds.lengths)])
    path = tmp_path / "flat.f32"
    np.asarray(flat, np.float32).tofile(path)
    offsets = np.concatenate([[0], np.cumsum(ds.lengths)]).astype(np.int64)
    memmap = np.memmap(path, np.float32, "r", shape=flat.shape)
    disk = arrays.DiskArray.from_source(arrays.RaggedSource(memmap, offsets), 8)
    lazy = TaskDataset.from_arrays(disk, ds.y, ds.tasks, name=ds.name)
    prepare = [pipeline.windows(4, 2), pipeline.standardize(per="cell")]
    pairs = zip(
        pipeline.splits([ds], folds=3, prepare=prepare),
        pipeline.splits([lazy], folds=3, prepare=prepare),
    )
    for (train, test), (lazy_train, lazy_test) in pairs:
        assert isinstance(lazy_train.x, arrays.DiskArray)
        np.testing.assert_allclose(np.asarray(lazy_train.x), train.x, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(lazy_test.x), test.x, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(lazy_test.clip, test.clip)


def test_splits_are_lazy_and_seeded():
    ds = dataset(20)
    iterator = pipeline.splits([ds], folds=4, seed=7)
    assert iter(iterator) is iterator
    first = [s.test.ids for s in iterator]
    again = [s.test.ids for s in pipeline.splits([ds], folds=4, seed=7)]
    other = [s.test.ids for s in pipeline.splits([ds], folds=4, seed=8)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
