"""RAVDESS on a miniature copy of its layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from layout_files import tone, write_text

from mtjax.readers.base import Reader, ReaderError
from mtjax.readers.ravdess import RAVDESS

# RAVDESS ----------------------------------------------------------------------------------------


@pytest.fixture
def ravdess(tmp_path) -> Path:
    """Speech and song zips, each extracted into a folder named after the zip."""
    root = tmp_path / "ravdess"
    speech, song = root / "Audio_Speech_Actors_01-24", root / "Audio_Song_Actors_01-24"
    names = [
        speech / "Actor_01/03-01-01-01-01-01-01.wav",  # neutral normal kids, male
        speech / "Actor_01/03-01-05-02-02-02-01.wav",  # angry strong dogs, male
        speech / "Actor_02/03-01-08-01-01-01-02.wav",  # surprised normal kids, female
        speech / "Actor_17/03-01-07-02-02-01-17.wav",  # disgust strong dogs, male
        speech / "Actor_02/02-01-03-01-01-01-02.wav",  # video-only: skipped
        speech / "Actor_02/01-01-03-01-01-01-02.wav",  # full audio-video: skipped
        song / "Actor_02/03-02-04-02-01-01-02.wav",  # sad strong kids, song, female
    ]
    for i, path in enumerate(names):
        tone(path, i)
    write_text(speech / "Actor_01/01-01-01-01-01-01-01.mp4", "not audio")
    return root


def test_ravdess_speech_tasks_labels_groups(ravdess):
    reader = RAVDESS(ravdess)
    assert isinstance(reader, Reader) and reader.name == "ravdess"
    assert [(t.name, t.kind) for t in reader.tasks] == [
        ("emotion", "multiclass"),
        ("intensity", "binary"),
        ("sex", "binary"),
        ("statement", "binary"),
    ]
    emotion, intensity, sex, statement = reader.tasks
    assert emotion.labels == (
        "neutral",
        "calm",
        "happy",
        "sad",
        "angry",
        "fearful",
        "disgust",
        "surprised",
    )
    assert intensity.labels == ("normal", "strong") and sex.labels == ("female", "male")
    assert statement.labels == ("kids", "dogs")
    items = list(reader.items())
    assert len(items) == 4
    got = {Path(i.id).name: (dict(i.targets), i.group) for i in items}
    assert got["03-01-05-02-02-02-01.wav"] == (
        {"emotion": ("angry",), "intensity": ("strong",), "sex": ("male",), "statement": ("dogs",)},
        "Actor_01",
    )
    assert got["03-01-08-01-01-01-02.wav"][0] == {
        "emotion": ("surprised",),
        "intensity": ("normal",),
        "sex": ("female",),
        "statement": ("kids",),
    }
    assert got["03-01-07-02-02-01-17.wav"][0]["sex"] == ("male",)
    assert [i.group for i in items] == ["Actor_01", "Actor_01", "Actor_02", "Actor_17"]
    assert items[0].id == "Audio_Speech_Actors_01-24/Actor_01/03-01-01-01-01-01-01.wav"
    assert all(i.split is None and i.fold is None for i in items)
    assert all(Path(i.path).is_file() for i in items)


def test_ravdess_song_and_task_subset(ravdess):
    both = list(RAVDESS(ravdess, song=True).items())
    assert len(both) == 5
    song = list(RAVDESS(ravdess, speech=False, song=True, tasks=("emotion", "sex")).items())
    assert len(song) == 1 and song[0].group == "Actor_02"
    assert dict(song[0].targets) == {"emotion": ("sad",), "sex": ("female",)}
    reader = RAVDESS(ravdess, tasks=("intensity",))
    assert [t.name for t in reader.tasks] == ["intensity"]
    assert RAVDESS(ravdess, tasks=reader.tasks).tasks == reader.tasks
    with pytest.raises(ValueError, match="actor"):
        RAVDESS(ravdess, tasks=("emotion", "actor"))
    with pytest.raises(ValueError, match="nothing to read"):
        RAVDESS(ravdess, speech=False)


@pytest.mark.parametrize(
    "name, message",
    [
        ("03-01-09-01-01-01-01.wav", r"emotion \(EE\) '09'"),
        ("03-01-01-02-01-01-01.wav", "neutral"),
        ("03-01-01-01-01-01.wav", "not a RAVDESS file name"),
        ("03-01-02-01-01-01-02.wav", "folder is Actor_01"),
    ],
)
def test_ravdess_malformed_name_names_the_file(tmp_path, name, message):
    root = tmp_path / "ravdess"
    tone(root / "Actor_01/03-01-02-01-01-01-01.wav")
    tone(root / "Actor_01" / name)
    with pytest.raises(ReaderError, match=message) as info:
        list(RAVDESS(root).items())
    assert name in str(info.value)
