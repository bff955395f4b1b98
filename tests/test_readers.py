"""FolderReader and CsvReader on tiny layouts written in the test."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mtjax.readers import CsvReader, FolderReader, Item, Reader, ReaderError
from mtjax.tasks import Task


def wav(path: Path, frequency: float = 440.0, seconds: float = 0.05) -> Path:
    """A short 16-bit tone at 16 kHz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * 16000)) / 16000
    sf.write(path, 0.3 * np.sin(2 * np.pi * frequency * t), 16000, subtype="PCM_16")
    return path


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


# --- CsvReader -------------------------------------------------------------------------------


@pytest.fixture
def clips(tmp_path) -> Path:
    root = tmp_path / "clips"
    for i in range(5):
        wav(root / "audio" / f"c{i}.wav", 200.0 * (i + 1))
    return root


MANIFEST = """path,label,tags,loud,split,fold,speaker
audio/c0.wav,dog,bark;growl,yes,Train,3,s1
audio/c1.wav,cat,,no,VALID,7,s2
audio/c2.wav,,growl ; bark;bark,no, eval ,3,
audio/c3.wav,dog,purr,yes,dev,10,s1
audio/c4.wav,cow,bark,no,testing,7,s3
"""


def test_csv_reader_tasks_and_items(clips):
    (clips / "meta.csv").write_text(MANIFEST)
    reader = CsvReader(
        clips,
        "meta.csv",
        label_columns=("label", "tags", "loud"),
        kinds={"loud": "binary"},
        separator={"tags": ";"},
        split_column="split",
        fold_column="fold",
        group_column="speaker",
    )
    assert isinstance(reader, Reader)
    assert reader.name == "clips"
    assert reader.tasks == (
        Task("label", ("cat", "cow", "dog"), "multiclass"),
        Task("tags", ("bark", "growl", "purr"), "multilabel"),
        Task("loud", ("no", "yes"), "binary"),
    )
    items = list(reader.items())
    assert [i.id for i in items] == [f"audio/c{i}.wav" for i in range(5)]
    assert items[0].path == str(clips.resolve() / "audio" / "c0.wav")
    assert [dict(i.targets) for i in items] == [
        {"label": ("dog",), "tags": ("bark", "growl"), "loud": ("yes",)},
        {"label": ("cat",), "tags": (), "loud": ("no",)},
        {"tags": ("growl", "bark"), "loud": ("no",)},
        {"label": ("dog",), "tags": ("purr",), "loud": ("yes",)},
        {"label": ("cow",), "tags": ("bark",), "loud": ("no",)},
    ]
    assert [i.split for i in items] == ["train", "validation", "test", "validation", "test"]
    assert [i.fold for i in items] == [0, 1, 0, 2, 1]
    assert [i.group for i in items] == ["s1", "s2", None, "s1", "s3"]


def test_csv_reader_one_separator_for_all_columns(clips):
    (clips / "meta.csv").write_text(MANIFEST)
    reader = CsvReader(
        clips, "meta.csv", label_columns=["tags", "loud"], separator=";", kinds={"loud": "binary"}
    )
    assert [t.kind for t in reader.tasks] == ["multilabel", "binary"]
    assert [i.split for i in reader.items()] == [None] * 5


def test_csv_reader_crlf_bom_spaces_and_audio_dir(clips):
    text = "\ufeff path , label \r\n c0.wav , dog \r\n\r\nc1.wav,cat\r\n"
    (clips / "meta.csv").write_bytes(text.encode("utf-8"))
    reader = CsvReader(clips, "meta.csv", audio_dir="audio")
    assert reader.tasks == (Task("label", ("cat", "dog")),)
    items = list(reader.items())
    assert [(i.id, dict(i.targets)) for i in items] == [
        ("audio/c0.wav", {"label": ("dog",)}),
        ("audio/c1.wav", {"label": ("cat",)}),
    ]
    assert [(i.split, i.fold, i.group) for i in items] == [(None, None, None)] * 2


def test_csv_reader_absolute_manifest_and_tab_delimiter(clips, tmp_path):
    manifest = tmp_path / "elsewhere.tsv"
    manifest.write_text("file\tkind\naudio/c3.wav\tb\naudio/c4.wav\ta\n")
    reader = CsvReader(
        clips,
        manifest,
        path_column="file",
        label_columns="kind",
        kinds={"kind": "binary"},
        delimiter="\t",
        name="tsv",
    )
    assert reader.name == "tsv"
    assert reader.tasks == (Task("kind", ("a", "b"), "binary"),)
    assert [i.id for i in reader.items()] == ["audio/c3.wav", "audio/c4.wav"]


def test_csv_reader_given_tasks(clips):
    (clips / "meta.csv").write_text(MANIFEST)
    animal = Task("animal", ("cat", "cow", "dog", "pig"))
    reader = CsvReader(clips, "meta.csv", label_columns={"label": animal, "loud": "binary"})
    assert reader.tasks == (animal, Task("loud", ("no", "yes"), "binary"))
    assert dict(next(reader.items()).targets) == {"animal": ("dog",), "loud": ("yes",)}
    reader = CsvReader(clips, "meta.csv", label_columns={"label": Task("animal", ("cat", "dog"))})
    message = "meta.csv line 6: column 'label': label 'cow' is not in task 'animal'"
    with pytest.raises(ReaderError, match=re.escape(message)):
        list(reader.items())


@pytest.mark.parametrize(
    "row, options, message",
    [
        (
            "audio/c0.wav,dog",
            {"label_columns": ("kind",)},
            "meta.csv line 1: no column 'kind'; columns present: ['path', 'label']",
        ),
        ("audio/gone.wav,dog", {}, "meta.csv line 3: audio file 'audio/gone.wav' not found"),
        ("../outside.wav,dog", {}, "meta.csv line 3: path '../outside.wav' resolves outside"),
        (
            "audio/c0.wav,dog",
            {},
            "meta.csv line 3: 'audio/c0.wav' is listed again, first at line 2",
        ),
        ("audio/c1.wav,dog,extra", {}, "meta.csv line 3: 3 cells, the header has 2"),
    ],
)
def test_csv_reader_errors_name_manifest_and_line(clips, tmp_path, row, options, message):
    wav(tmp_path / "outside.wav")
    (clips / "meta.csv").write_text(f"path,label\naudio/c0.wav,cat\n{row}\n")
    with pytest.raises(ReaderError, match=re.escape(message)):
        reader = CsvReader(clips, "meta.csv", **options)
        list(reader.items())


def test_csv_reader_split_and_fold_errors_name_line(clips):
    (clips / "meta.csv").write_text(
        "path,label,split,fold\naudio/c0.wav,a,train,1\naudio/c1.wav,b,holdout,2.0\n"
    )
    reader = CsvReader(clips, "meta.csv", split_column="split", fold_column="fold")
    with pytest.raises(ReaderError, match=r"meta\.csv line 3: split 'holdout' in column 'split'"):
        list(reader.items())
    reader = CsvReader(clips, "meta.csv", fold_column="fold")
    assert [i.fold for i in reader.items()] == [0, 1]
    (clips / "meta.csv").write_text("path,label,fold\naudio/c0.wav,a,1\naudio/c1.wav,b,x\n")
    with pytest.raises(ReaderError, match=r"meta\.csv line 3: fold 'x' is not an integer"):
        list(reader.items())


def test_csv_reader_inferred_task_errors(clips):
    (clips / "meta.csv").write_text("path,label\naudio/c0.wav,a\naudio/c1.wav,b\naudio/c2.wav,c\n")
    with pytest.raises(ReaderError, match=r"meta\.csv: column 'label': .*exactly two labels"):
        _ = CsvReader(clips, "meta.csv", kinds={"label": "binary"}).tasks
    (clips / "meta.csv").write_text("path,label\n")
    with pytest.raises(ReaderError, match=r"meta\.csv: no rows"):
        _ = CsvReader(clips, "meta.csv").tasks


def test_csv_reader_missing_root_or_manifest(tmp_path, clips):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        CsvReader(tmp_path / "nowhere", "meta.csv")
    with pytest.raises(FileNotFoundError, match="manifest 'meta.csv' not found"):
        CsvReader(clips, "meta.csv")
