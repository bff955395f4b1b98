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
        assert split.train.tasks == split.test.tasks == split.validation.tasks == (SOUND, WORD)
        assert split.train.datasets == split.test.datasets == ("esc", "words")
        words_test = data.subset(split.test, split.test.dataset_id == 1)
        np.testing.assert_array_equal(words_test.ids, ["words/0", "words/1", "words/2", "words/3"])
        np.testing.assert_array_equal(words_test.x, words.test.x)  # the same in every fold
        # validation is carved from each dataset's train part: words' 6 train rows (3 of
        # each word) give one of each word, esc's 18 fold-train rows one of each sound
        np.testing.assert_array_equal(np.bincount(split.validation.dataset_id), [3, 2])
        assert (
            np.sum(split.train.dataset_id == 1) == 4 and np.sum(split.train.dataset_id == 0) == 15
        )
        words_seen = set(split.train.ids) | set(split.validation.ids)
        assert {i for i in words_seen if i.startswith("words/")} == {f"words/{i}" for i in range(6)}
        esc_test = split.test.ids[split.test.dataset_id == 0]
        assert not set(esc_test) & (set(split.train.ids) | set(split.validation.ids))
        assert not set(split.train.ids) & set(split.validation.ids)
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
    # a's validation is carved from its train part (one row of each of its 3 sounds), b's
    # is its own: b's train is left whole
    assert len(split.train) == 7 and len(split.test) == 5
    assert split.validation.tasks == split.train.tasks and len(split.validation) == 5
    np.testing.assert_array_equal(split.validation.dataset_id, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(split.validation.ids[3:], ["b/0", "b/1"])
    np.testing.assert_array_equal(split.validation.x[3:], b.validation.x)
    # carving none: a has no validation part and adds zero rows, the columns match train's
    (uncarved,) = pipeline.splits([a, b], folds=5, validation=None)
    assert len(uncarved.train) == 10 and uncarved.validation.tasks == uncarved.train.tasks
    np.testing.assert_array_equal(uncarved.validation.dataset_id, [1, 1])


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


# validation for every task (issue 9, findings 1 and 2)

CATEGORY = Task("category", ("car", "bird", "rain", "siren", "tick", "knock"), "multiclass")
TAGS = Task("tags", ("chirp", "noise", "voice"), "multilabel")
LOUD = Task("loud", ("no", "yes"), "binary")


def three_kinds_of_dataset():
    """The three kinds of finding 1: predefined folds, a Split with its own validation, and
    a Split with train and test only, whose dataset has two tasks."""
    groups = np.repeat(np.arange(30), 2)  # 30 source clips of 2 rows each
    sounds = TaskDataset.from_arrays(
        np.random.default_rng(0).normal(size=(60, 4, 2)),
        np.eye(6)[groups % 6],
        [CATEGORY],
        groups=groups,
        folds=groups % 5,  # each fold tests one source clip of each category
        name="sounds",
    )
    commands = Split(
        **{
            side: dataset(
                n, task=WORD, name="commands", seed=seed, ids=[f"{side}{i}" for i in range(n)]
            )
            for side, n, seed in (("train", 30, 1), ("test", 6, 2), ("validation", 6, 3))
        }
    )

    def tagged(n, side, seed):
        rng = np.random.default_rng(seed)
        sessions = np.repeat(np.arange(n // 4), 4)  # sessions of 4 rows share their labels
        tags = rng.random((n // 4, 3)) < 0.5
        loud = np.arange(n // 4) % 3 == 0
        y = np.concatenate([tags, loud[:, None]], 1)[sessions].astype(np.float32)
        x = rng.normal(size=(n, 4, 2))
        ids = [f"{side}{i}" for i in range(n)]
        return TaskDataset.from_arrays(x, y, [TAGS, LOUD], groups=sessions, ids=ids, name="tagged")

    return sounds, commands, Split(train=tagged(48, "train", 4), test=tagged(12, "test", 5))


def label_counts(ds, task):
    k = [t.name for t in ds.tasks].index(task.name)
    y = ds.y[ds.has_task[:, k]][:, ds.task_slices[task.name]]
    if task.kind == "multilabel":
        return y.sum(0).astype(int).tolist()
    return np.bincount(task.class_ids(y), minlength=len(task.labels)).tolist()


def test_splits_give_every_dataset_and_every_task_validation_rows():
    sounds, commands, tagged = three_kinds_of_dataset()
    folds = list(pipeline.splits([sounds, commands, tagged], folds=5, seed=0))
    assert len(folds) == 5
    for split in folds:
        val, train, test = split.validation, split.train, split.test
        assert val.tasks == train.tasks == (CATEGORY, WORD, TAGS, LOUD)
        # rows of every dataset and task: sounds carved from the fold's 48 train rows (24
        # source clips, one of each category: 12 rows), commands its own 6, tagged carved
        # from its 12 train sessions (2 sessions of 4 rows hold every tag and both "loud")
        np.testing.assert_array_equal(np.bincount(val.dataset_id, minlength=3), [12, 6, 8])
        np.testing.assert_array_equal(np.bincount(train.dataset_id, minlength=3), [36, 30, 40])
        assert np.all(val.has_task.any(0))
        # every class of every task, of both tasks of tagged too (finding 2)
        assert label_counts(val, CATEGORY) == [2, 2, 2, 2, 2, 2]
        assert label_counts(val, WORD) == [3, 3]
        assert label_counts(val, TAGS) == [4, 4, 4] and label_counts(val, LOUD) == [4, 4]
        own = [f"commands/validation{i}" for i in range(6)]
        np.testing.assert_array_equal(val.ids[val.dataset_id == 1], own)
        # no row, and no group (source clip of sounds, session of tagged), on two sides
        assert not set(val.ids) & set(train.ids) and not set(val.ids) & set(test.ids)
        assert len(set(val.ids) | set(train.ids) | set(test.ids)) == 60 + 42 + 60

        def sources(side):
            names = [i.split("/") for i in side.ids]
            return {(d, int(sounds.groups[int(i)])) for d, i in names if d == "sounds"} | {
                (d, int(i[5:]) // 4) for d, i in names if d == "tagged" and i[:5] == "train"
            }

        assert not sources(val) & sources(train)
        assert len(sources(val)) == 6 + 2 and len(sources(train)) == 18 + 10
    # carving none leaves the validation side to the predefined part alone: the state of
    # finding 1, where three of the four tasks had no validation rows
    (first, *_) = pipeline.splits([sounds, commands, tagged], folds=5, validation=None)
    np.testing.assert_array_equal(first.validation.has_task.any(0), [False, True, False, False])
    np.testing.assert_array_equal(np.bincount(first.train.dataset_id), [48, 30, 48])


def test_splits_table_prints_the_rows_used_per_dataset_and_side():
    folds = list(pipeline.splits(list(three_kinds_of_dataset()), folds=5, seed=0))
    lines = data.splits_table(folds[:1]).splitlines()
    assert lines[0].split()[:5] == ["fold", "dataset", "train", "validation", "test"]
    rows = [line.split() for line in lines[2:]]
    assert rows == [
        ["0", "sounds", "36", "12", "12", "8x2"],
        ["0", "commands", "30", "6", "6", "8x2"],
        ["0", "tagged", "40", "8", "12", "8x2"],
    ]


def test_splits_validation_option():
    sounds = dataset(200)  # 4 folds of 50; a fold's 150 train rows, 50 of each sound
    for fraction, n_val in ((0.1, 15), (0.3, 45)):
        for split in pipeline.splits([sounds], folds=4, validation=fraction):
            assert len(split.validation) == n_val and len(split.train) == 150 - n_val
            assert label_counts(split.validation, SOUND) == [n_val // 3] * 3
    for bad in (1.0, -0.1, True):
        with pytest.raises(ValueError, match="validation must be in"):
            pipeline.splits([sounds], folds=5, validation=bad)
    assert next(pipeline.splits([sounds], folds=5, validation=0)).validation is None
    # too small to carve: an error naming the dataset, at once
    one_group = Split(train=dataset(4, name="solo", groups=np.zeros(4)), test=dataset(2))
    with pytest.raises(ValueError, match=r"validation=0.1\): dataset 'solo': 4 row\(s\) in 1 gr"):
        pipeline.splits([sounds, one_group], folds=5)
    has = np.array([[True], [False], [False], [False]])
    rare = Split(train=dataset(4, name="rare", has_task=has), test=dataset(2))
    with pytest.raises(ValueError, match="dataset 'rare': task 'sound' is labelled in 1 group"):
        pipeline.splits([rare], folds=5)
    (kept,) = pipeline.splits([rare], folds=5, validation=None)
    assert len(kept.train) == 4 and kept.validation is None
