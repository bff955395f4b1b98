"""FolderReader on tiny layouts written in the test."""

from __future__ import annotations

from pathlib import Path

import pytest
from layout_files import wav

from mtjax.readers import FolderReader, Item, Reader, ReaderError
from mtjax.tasks import Task


@pytest.fixture
def words(tmp_path) -> Path:
    """Speech-Commands-like folder: 3 words, a noise folder, hidden and non-audio files."""
    root = tmp_path / "words"
    for name in [
        "yes/bb_nohash_0.wav",
        "yes/aa_nohash_1.wav",
        "yes/aa_nohash_0.WAV",
        "yes/more/cc_nohash_0.flac",
        "no/aa_nohash_0.wav",
        "up/cc_nohash_0.wav",
        "_background_noise_/white_noise.wav",
        ".cache/aa_nohash_0.wav",
        "yes/.aa_nohash_2.wav",
    ]:
        wav(root / name)
    (root / "yes" / "notes.txt").write_text("not audio")
    (root / "README.md").write_text("readme")
    return root


# --- FolderReader ----------------------------------------------------------------------------


def test_folder_reader_lists_classes_sorted_skipping_noise_and_hidden(words):
    reader = FolderReader(words, "word")
    items = list(reader.items())
    assert isinstance(reader, Reader)
    assert reader.name == "words"
    assert reader.root == words.resolve()
    assert reader.tasks == (Task("word", ("no", "up", "yes"), "multiclass"),)
    assert [i.id for i in items] == [
        "no/aa_nohash_0.wav",
        "up/cc_nohash_0.wav",
        "yes/aa_nohash_0.WAV",
        "yes/aa_nohash_1.wav",
        "yes/bb_nohash_0.wav",
        "yes/more/cc_nohash_0.flac",
    ]
    assert [i.targets for i in items] == [{"word": ("no",)}, {"word": ("up",)}] + 4 * [
        {"word": ("yes",)}
    ]
    assert items[0] == Item(
        path=str(words.resolve() / "no" / "aa_nohash_0.wav"),
        targets={"word": ("no",)},
        id="no/aa_nohash_0.wav",
    )
    assert [i.split for i in items] == [None] * 6
    assert list(reader.items()) == items


def test_folder_reader_exclude_and_name(words):
    reader = FolderReader(words, exclude=("_background_noise_", "up"), name="kws")
    assert reader.name == "kws"
    assert reader.tasks == (Task("class", ("no", "yes")),)
    reader = FolderReader(words, exclude=())
    assert reader.tasks[0].labels == ("_background_noise_", "no", "up", "yes")


def test_folder_reader_group_regex_and_callable(words):
    reader = FolderReader(words, "word", group=r"^(.+?)_nohash_")
    assert [i.group for i in reader.items()] == ["aa", "cc", "aa", "aa", "bb", "cc"]
    reader = FolderReader(words, "word", group=lambda path: path.parent.name)
    assert [i.group for i in reader.items()] == ["no", "up", "yes", "yes", "yes", "more"]


def test_folder_reader_group_regex_must_match_and_capture(words):
    wav(words / "no" / "stray.wav")
    with pytest.raises(ReaderError, match=r"stray\.wav.*does not match group pattern"):
        list(FolderReader(words, group=r"^(.+?)_nohash_").items())
    with pytest.raises(ValueError, match="needs a capture group"):
        FolderReader(words, group=r"_nohash_")


def test_folder_reader_lists_give_splits(words):
    (words / "validation_list.txt").write_text("yes/aa_nohash_1.wav\n\n")
    (words / "testing_list.txt").write_bytes(
        b"./no/aa_nohash_0.wav\r\nyes/more/cc_nohash_0.flac\r\n"
    )
    reader = FolderReader(
        words, "word", validation_list="validation_list.txt", testing_list="testing_list.txt"
    )
    assert {i.id: i.split for i in reader.items()} == {
        "no/aa_nohash_0.wav": "test",
        "up/cc_nohash_0.wav": "train",
        "yes/aa_nohash_0.WAV": "train",
        "yes/aa_nohash_1.wav": "validation",
        "yes/bb_nohash_0.wav": "train",
        "yes/more/cc_nohash_0.flac": "test",
    }
    only_test = FolderReader(words, testing_list="testing_list.txt")
    assert [i.split for i in only_test.items()] == [
        "test",
        "train",
        "train",
        "train",
        "train",
        "test",
    ]


def test_folder_reader_list_outside_root_or_missing_names_file_and_line(words, tmp_path):
    wav(tmp_path / "outside.wav")
    (words / "testing_list.txt").write_text("no/aa_nohash_0.wav\n../outside.wav\n")
    reader = FolderReader(words, testing_list="testing_list.txt")
    with pytest.raises(ReaderError, match=r"testing_list\.txt line 2: .*outside the dataset root"):
        list(reader.items())
    (words / "testing_list.txt").write_text("\nno/gone.wav\n")
    with pytest.raises(
        ReaderError, match=r"testing_list\.txt line 2: 'no/gone\.wav' does not exist"
    ):
        list(reader.items())
    reader = FolderReader(words, validation_list="missing.txt")
    with pytest.raises(ReaderError, match=r"list file 'missing\.txt' not found"):
        list(reader.items())


def test_folder_reader_binary_needs_two_folders(tmp_path):
    wav(tmp_path / "pos" / "a.wav")
    wav(tmp_path / "neg" / "b.wav")
    reader = FolderReader(tmp_path, "hit", kind="binary")
    assert reader.tasks == (Task("hit", ("neg", "pos"), "binary"),)
    assert [i.targets for i in reader.items()] == [{"hit": ("neg",)}, {"hit": ("pos",)}]
    wav(tmp_path / "maybe" / "c.wav")
    with pytest.raises(
        ReaderError, match=r"exactly two class folders, found \['maybe', 'neg', 'pos'\]"
    ):
        _ = FolderReader(tmp_path, "hit", kind="binary").tasks


def test_folder_reader_given_task(words):
    task = Task("keyword", ("down", "no", "up", "yes"))
    reader = FolderReader(words, task)
    assert reader.tasks == (task,)
    assert next(reader.items()).targets == {"keyword": ("no",)}
    with pytest.raises(ReaderError, match=r"folder 'up' is not a label of task 'kw'"):
        _ = FolderReader(words, Task("kw", ("no", "yes"))).tasks


def test_folder_reader_missing_root_and_empty_layouts(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        FolderReader(tmp_path / "nowhere")
    with pytest.raises(ReaderError, match="no class folders"):
        _ = FolderReader(tmp_path).tasks
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.txt").write_text("x")
    with pytest.raises(ReaderError, match="no audio files"):
        list(FolderReader(tmp_path).items())
