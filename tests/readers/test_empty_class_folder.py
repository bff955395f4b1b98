"""An empty class folder is not a silent label: left out with a warning, or kept when listed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from layout_files import LOGMEL, wav

import mtjax
from mtjax.readers import FolderReader, ReaderError
from mtjax.readers.gtzan import GENRES, GTZAN
from mtjax.readers.speech_commands import SpeechCommands
from mtjax.tasks import Task


@pytest.fixture
def classes(tmp_path) -> Path:
    """dog and cat with clips; bird empty; fish with a text file and a hidden clip only."""
    root = tmp_path / "animals"
    wav(root / "dog" / "a.wav")
    wav(root / "dog" / "b.wav", 660.0)
    wav(root / "cat" / "deeper" / "c.flac", 880.0)
    (root / "bird").mkdir()
    (root / "fish" / "sub").mkdir(parents=True)
    (root / "fish" / "notes.txt").write_text("no audio")
    wav(root / "fish" / "sub" / ".hidden.wav")
    return root


def warnings_of(caplog) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "mtjax" and r.levelname == "WARNING"
    ]


def test_empty_class_folders_are_left_out_of_the_labels_with_one_warning(classes, caplog):
    reader = FolderReader(classes, "animal")
    with caplog.at_level(logging.WARNING, logger="mtjax"):
        assert reader.tasks == (Task("animal", ("cat", "dog")),)
        items = list(reader.items())
        assert reader.tasks == (Task("animal", ("cat", "dog")),)
    assert [i.targets["animal"] for i in items] == [("cat",), ("dog",), ("dog",)]
    assert warnings_of(caplog) == [  # once, however often tasks and items are asked
        f"{classes}: class folder(s) ['bird', 'fish'] hold no audio files"
        f" ({', '.join(reader.suffixes)}): left out of the labels"
    ]


def test_an_empty_folder_a_given_task_lists_stays_a_label_with_a_warning(classes, caplog):
    task = Task("animal", ("bird", "cat", "dog"))
    with caplog.at_level(logging.WARNING, logger="mtjax"):
        reader = FolderReader(classes, task)
        assert reader.tasks == (task,)
        assert len(list(reader.items())) == 3
    assert warnings_of(caplog) == [
        f"{classes}: class folder(s) ['fish'] hold no audio files (.wav, .flac, .ogg, .mp3,"
        " .aif, .aiff, .au, .opus, .m4a): left out of the labels",
        f"{classes}: class folder(s) ['bird'] hold no audio files: kept as labels, as task"
        " 'animal' lists them, but no clip has them",
    ]


def test_every_class_folder_empty_is_an_error_of_items_naming_them(tmp_path, caplog):
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "c").mkdir(parents=True)
    reader = FolderReader(tmp_path)
    with caplog.at_level(logging.WARNING, logger="mtjax"):
        assert reader.tasks == (Task("class", ("a", "b")),)  # nothing left out
    assert warnings_of(caplog) == []
    with pytest.raises(
        ReaderError, match=r"no audio files \(.*\) under the class folders \['a', 'b'\]"
    ):
        list(reader.items())


def test_read_gives_data_without_the_empty_label(classes, tmp_path):
    data = mtjax.read(
        FolderReader(classes, "animal"), LOGMEL, cache=tmp_path / "cache", n_jobs=1, progress=False
    )
    assert data.tasks == (Task("animal", ("cat", "dog")),)
    assert data.y.tolist() == [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]


def test_speech_commands_drops_an_empty_word_folder(tmp_path, caplog):
    root = tmp_path / "speech"
    for clip in ["yes/aa_nohash_0.wav", "no/bb_nohash_0.wav"]:
        wav(root / clip)
    (root / "up").mkdir()
    (root / "validation_list.txt").write_text("yes/aa_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("no/bb_nohash_0.wav\n")
    with caplog.at_level(logging.WARNING, logger="mtjax"):
        assert SpeechCommands(root).tasks == (Task("word", ("no", "yes")),)
    assert any("['up'] hold no audio files" in m for m in warnings_of(caplog))


def test_gtzan_keeps_an_empty_genre_folder_its_task_lists(tmp_path, caplog):
    root = tmp_path / "genres"
    for genre in ("jazz", "rock"):
        wav(root / genre / f"{genre}.00000.wav")
    (root / "blues").mkdir()
    with caplog.at_level(logging.WARNING, logger="mtjax"):
        reader = GTZAN(root)
        assert [i.id for i in reader.items()] == ["jazz/jazz.00000.wav", "rock/rock.00000.wav"]
    assert reader.tasks[0].labels == GENRES
    assert warnings_of(caplog) == [
        f"{root}: class folder(s) ['blues'] hold no audio files: kept as labels, as task"
        " 'genre' lists them, but no clip has them"
    ]
