"""The demo datasets: deterministic, in the real layouts, readable by their readers."""

from __future__ import annotations

import collections
import csv
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import mtjax as mt
from mtjax.demo import demo_readers, make_demo, speaker_split
from mtjax.tasks import Task

WORDS = ("down", "go", "left", "right", "stop", "yes")
CATEGORIES = ("car_horn", "chirping_birds", "clock_tick", "door_wood_knock", "rain", "siren")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict[str, Path]:
    return make_demo(tmp_path_factory.mktemp("demo"), seed=0, scale=1.0)


def digests(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `root`."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = digests(make_demo(tmp_path / "a", seed=3, scale=0.1)["commands"].parent)
    b = digests(make_demo(tmp_path / "b", seed=3, scale=0.1)["commands"].parent)
    c = digests(make_demo(tmp_path / "c", seed=4, scale=0.1)["commands"].parent)
    assert a == b
    assert sum(name.endswith(".wav") for name in a) == 60 + 60 + 20 + 1
    assert a["tagged/manifest.csv"] != c["tagged/manifest.csv"]
    assert a["tagged/clips/s00_0.wav"] != c["tagged/clips/s00_0.wav"]
    assert {n for n in a if n.startswith("sounds/audio")} != {
        n for n in c if n.startswith("sounds/audio")
    }


def test_make_demo_is_idempotent_and_replaces_another_seed(tmp_path):
    paths = make_demo(tmp_path, seed=1, scale=0.1)
    written = [tmp_path / "demo.json", paths["tagged"] / "manifest.csv", paths["tagged"] / "clips"]
    stamp = [p.stat().st_mtime_ns for p in written]
    assert make_demo(tmp_path, seed=1, scale=0.1) == paths
    assert [p.stat().st_mtime_ns for p in written] == stamp
    before = digests(tmp_path)
    make_demo(tmp_path, seed=2, scale=0.1)
    after = digests(tmp_path)
    assert len(after) == len(before) and after != before
    assert not (tmp_path / ".demo-writing").exists()


def test_make_demo_refuses_foreign_folders(tmp_path):
    (tmp_path / "sounds").mkdir()
    with pytest.raises(FileExistsError, match="not part of an mtjax demo"):
        make_demo(tmp_path)


def test_commands_layout(demo):
    root = demo["commands"]
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert folders == ["_background_noise_", *WORDS]
    noise = sorted(p.name for p in (root / "_background_noise_").iterdir())
    assert noise == ["README.md", "pink_noise.wav"]
    assert sf.info(root / "_background_noise_" / "pink_noise.wav").duration == 5.0
    files = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*.wav"))
    files.remove("_background_noise_/pink_noise.wav")
    assert len(files) == 240
    assert all(re.fullmatch(r"[a-z]+/[0-9a-f]{8}_nohash_\d+\.wav", f) for f in files)
    partition = {}
    for list_name, split in (("validation_list.txt", "validation"), ("testing_list.txt", "test")):
        listed = (root / list_name).read_text().splitlines()
        assert len(listed) == 24
        assert all((root / line).is_file() for line in listed)
        for line in listed:
            partition[line] = split
    speakers = collections.defaultdict(set)
    for f in files:
        speaker = f.split("/")[1].split("_nohash_")[0]
        speakers[speaker].add(partition.get(f, "train"))
    assert len(speakers) == 40
    assert all(parts == {speaker_split(s)} for s, parts in speakers.items())
    counts = collections.Counter(speaker_split(s) for s in speakers)
    assert counts == {"train": 32, "validation": 4, "test": 4}


def test_sounds_layout(demo):
    root = demo["sounds"]
    with open(root / "meta" / "esc50.csv", newline="") as f:
        lines = list(csv.reader(f))
    assert lines[0] == ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
    rows = lines[1:]
    assert len(rows) == 180
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert sorted(p.name for p in (root / "audio").iterdir()) == [r[0] for r in rows]
    folds_of_source = collections.defaultdict(set)
    for filename, fold, target, category, esc10, src, take in rows:
        assert filename == f"{fold}-{src}-{take}-{target}.wav"
        assert esc10 == str(category in ("rain", "clock_tick"))
        folds_of_source[src].add(fold)
    assert all(len(folds) == 1 for folds in folds_of_source.values())
    assert collections.Counter(r[1] for r in rows) == {str(k): 36 for k in range(1, 6)}
    assert {(r[3], r[2]) for r in rows} == {
        ("rain", "10"),
        ("chirping_birds", "14"),
        ("door_wood_knock", "30"),
        ("clock_tick", "38"),
        ("siren", "42"),
        ("car_horn", "43"),
    }
    durations = [sf.info(root / "audio" / r[0]).duration for r in rows[:20]]
    assert all(0.8 <= d <= 1.6 for d in durations) and len(set(durations)) > 10


def test_tagged_layout_and_audio_format(demo):
    root = demo["tagged"]
    with open(root / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "tags", "loud", "split", "session"]
    assert len(rows) == 180
    assert all((root / r["path"]).is_file() and r["path"].startswith("clips/") for r in rows)
    assert {r["loud"] for r in rows} == {"no", "yes"}
    assert any(r["tags"] == "" for r in rows) and any(";" in r["tags"] for r in rows)
    info = sf.info(root / rows[0]["path"])
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (
        16000,
        1,
        "PCM_16",
        16000,
    )
    wavs = list(demo["commands"].parent.rglob("*.wav"))
    assert len(wavs) == 601


def test_demo_readers_tasks_and_counts(demo):
    commands, sounds, tagged = demo_readers(demo)
    assert (commands.name, sounds.name, tagged.name) == ("commands", "sounds", "tagged")
    assert commands.tasks == (Task("word", WORDS, "multiclass"),)
    assert sounds.tasks == (Task("category", CATEGORIES, "multiclass"),)
    assert tagged.tasks == (
        Task("tags", ("chirp", "clicks", "noise", "tone", "voice"), "multilabel"),
        Task("loud", ("no", "yes"), "binary"),
    )

    items = list(commands.items())
    assert len(items) == 240
    assert collections.Counter(i.split for i in items) == {
        "train": 192,
        "validation": 24,
        "test": 24,
    }
    assert len({i.group for i in items}) == 40
    assert all(i.fold is None for i in items)

    items = list(sounds.items())
    assert len(items) == 180
    assert collections.Counter(i.fold for i in items) == {k: 36 for k in range(5)}
    assert len({i.group for i in items}) == 90
    assert all(i.split is None and i.id.startswith("audio/") for i in items)

    items = list(tagged.items())
    assert len(items) == 180
    assert collections.Counter(i.split for i in items) == {"train": 144, "test": 36}
    sides = collections.defaultdict(set)
    for i in items:
        sides[i.group].add(i.split)
        assert set(i.targets) == {"tags", "loud"}
    assert len(sides) == 45 and all(len(s) == 1 for s in sides.values())
    assert any(i.targets["tags"] == () for i in items)


def label_counts(part) -> dict[str, list[int]]:
    """Rows of each label of each task in `part` (each class, for binary and multiclass)."""
    out = {}
    for k, t in enumerate(part.tasks):
        y = part.y[part.has_task[:, k]][:, part.task_slices[t.name]]
        if t.kind == "multilabel":
            out[t.name] = y.sum(0).astype(int).tolist()
        else:
            out[t.name] = np.bincount(t.class_ids(y), minlength=len(t.labels)).tolist()
    return out


def test_demo_validation_holds_every_class_of_every_task(demo):
    # issue 9, findings 1 and 2 on the demo's three datasets: only commands has a validation
    # list; the carve `fit` made from the pooled train, stratified on "word" alone, left two
    # of the six categories ([2, 0, 2, 0, 8, 2]) and tagged's rows out of validation
    logmel = mt.features.LogMel(sample_rate=16000, n_fft=512, hop_length=160, n_mels=40)
    datasets = [mt.read(r, logmel, n_jobs=1, progress=False) for r in demo_readers(demo)]
    every_fold = list(mt.splits(datasets, folds=5, seed=0))
    assert len(every_fold) == 5
    for split in every_fold:
        # commands' own 24, sounds 12 of a fold's 144 train clips, tagged 12 of its 144
        assert np.bincount(split.validation.dataset_id).tolist() == [24, 12, 12]
        assert label_counts(split.validation) == {
            "word": [4] * 6,
            "category": [2] * 6,
            "tags": [4, 5, 7, 1, 5],
            "loud": [2, 10],
        }
    # `fit` given no validation carves per dataset, every class of both of tagged's tasks too
    (uncarved, *_) = mt.splits(datasets, folds=5, seed=0, validation=None)
    _, carved = mt.train.carve_validation(uncarved.train, 0.1, seed=0)
    assert np.bincount(carved.dataset_id).tolist() == [18, 12, 12]
    counts = label_counts(carved)
    assert counts["category"] == [2] * 6 and min(counts["word"]) == 3
    assert min(counts["tags"]) >= 1 and min(counts["loud"]) >= 1
