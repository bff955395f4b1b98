"""CsvReader on tiny layouts written in the test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from layout_files import wav

from mtjax.readers import CsvReader, Reader, ReaderError
from mtjax.tasks import Task

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
