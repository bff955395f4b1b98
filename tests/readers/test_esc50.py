"""ESC50 (and ESC-10) on a miniature copy of its layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_tone
from layout_files import SHORT

from mtjax.readers.base import Reader, ReaderError
from mtjax.readers.esc50 import ESC50
from mtjax.tasks import Task

# --- ESC-50 ----------------------------------------------------------------------------------

ESC_HEADER = "filename,fold,target,category,esc10,src_file,take"
ESC_ROWS = [  # (fold, src_file, take, target, category, esc10)
    (1, 100032, "A", 0, "dog", True),
    (1, 100038, "A", 14, "chirping_birds", False),
    (2, 100038, "B", 14, "chirping_birds", False),
    (2, 101281, "A", 10, "rain", True),
    (3, 103999, "A", 0, "dog", True),
    (4, 104089, "A", 49, "hand_saw", False),
    (5, 105123, "C", 10, "rain", True),
]


def esc_name(fold, src, take, target) -> str:
    return f"{fold}-{src}-{take}-{target}.wav"


@pytest.fixture
def esc50(tmp_path):
    """`ESC-50-master/` with meta/esc50.csv, a flat audio/ folder and repo clutter."""
    root = tmp_path / "ESC-50-master"
    lines = [ESC_HEADER]
    for i, (fold, src, take, target, category, esc10) in enumerate(ESC_ROWS):
        name = esc_name(fold, src, take, target)
        write_tone(root / "audio" / name, 300 + 50 * i, seconds=SHORT, sample_rate=44100)
        lines.append(f"{name},{fold},{target},{category},{esc10},{src},{take}")
    (root / "meta").mkdir()
    (root / "meta" / "esc50.csv").write_text("\n".join(lines) + "\n")
    (root / "README.md").write_text("ESC-50")
    (root / "meta" / "esc50-human.xlsx").write_bytes(b"not read")
    return root


def test_esc50_items_labels_folds_groups(esc50):
    reader = ESC50(esc50)
    items = list(reader.items())
    assert isinstance(reader, Reader)
    assert reader.name == "ESC-50" and reader.root == esc50.resolve()
    assert reader.tasks == (Task("category", ("dog", "rain", "chirping_birds", "hand_saw")),)
    assert len(items) == len(ESC_ROWS)
    assert [i.id for i in items] == [f"audio/{esc_name(*r[:4])}" for r in ESC_ROWS]
    assert [i.targets["category"] for i in items] == [(r[4],) for r in ESC_ROWS]
    assert [i.fold for i in items] == [0, 0, 1, 1, 2, 3, 4]
    assert [i.group for i in items] == [str(r[1]) for r in ESC_ROWS]
    assert all(i.split is None for i in items)
    assert all((esc50 / i.id).resolve() == Path(i.path) for i in items)


def test_esc10_subset_reindexed_and_wrapper_folder_found(esc50):
    reader = ESC50(esc50.parent, esc10=True)  # the folder that holds ESC-50-master/
    items = list(reader.items())
    assert reader.name == "ESC-10" and reader.root == esc50.resolve()
    assert reader.tasks == (Task("category", ("dog", "rain")),)
    assert [i.targets["category"][0] for i in items] == ["dog", "rain", "dog", "rain"]
    assert [i.fold for i in items] == [0, 1, 2, 4]


def test_esc50_missing_meta_and_missing_clip_name_file_and_line(esc50, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReaderError, match=r"meta/esc50\.csv not found"):
        ESC50(tmp_path / "empty")
    (esc50 / "audio" / esc_name(*ESC_ROWS[2][:4])).unlink()
    with pytest.raises(ReaderError, match=r"meta/esc50\.csv line 4: audio file .*2-100038-B-14"):
        list(ESC50(esc50).items())


def test_esc50_target_naming_two_categories_is_an_error(esc50):
    meta = esc50 / "meta" / "esc50.csv"
    meta.write_text(meta.read_text().replace(",0,dog,True,103999", ",0,cat,True,103999"))
    with pytest.raises(ReaderError, match=r"esc50\.csv line 6: target 0 is 'cat'.*'dog' at line 2"):
        _ = ESC50(esc50).tasks
