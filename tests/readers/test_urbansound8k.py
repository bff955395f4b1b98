"""UrbanSound8K on a miniature copy of its layout."""

from __future__ import annotations

import pytest
from conftest import write_tone
from layout_files import SHORT

from mtjax.readers.base import Reader, ReaderError
from mtjax.readers.urbansound8k import UrbanSound8K
from mtjax.tasks import Task

# --- UrbanSound8K ----------------------------------------------------------------------------

US_HEADER = "slice_file_name,fsID,start,end,salience,fold,classID,class"
US_ROWS = [  # (fsID, classID, occurrence, slice, fold, class)
    (100032, 3, 0, 0, 5, "dog_bark"),
    (100263, 2, 0, 117, 5, "children_playing"),
    (100648, 1, 0, 0, 10, "car_horn"),
    (100648, 1, 0, 1, 10, "car_horn"),
    (101281, 0, 0, 2, 1, "air_conditioner"),
    (7383, 9, 0, 1, 2, "street_music"),
]


@pytest.fixture
def urbansound(tmp_path):
    root = tmp_path / "UrbanSound8K"
    lines = [US_HEADER]
    for i, (fs, cid, occ, sl, fold, cls) in enumerate(US_ROWS):
        name = f"{fs}-{cid}-{occ}-{sl}.wav"
        write_tone(
            root / "audio" / f"fold{fold}" / name,
            200 + 40 * i,
            seconds=SHORT,
            sample_rate=22050 if i % 2 else 44100,
        )
        start = "0" if i % 2 else "0.0"  # the two stored copies format numbers differently
        fold_cell = f"{fold}.0" if i == 5 else str(fold)
        lines.append(f"{name},{fs},{start},0.05,{1 + i % 2},{fold_cell},{cid},{cls}")
    (root / "metadata").mkdir()
    (root / "metadata" / "UrbanSound8K.csv").write_text("\r\n".join(lines) + "\r\n")
    (root / "FREESOUNDCREDITS.txt").write_text("credits")
    for fold in range(1, 11):
        (root / "audio" / f"fold{fold}").mkdir(parents=True, exist_ok=True)
    return root


def test_urbansound8k_items_labels_folds_groups(urbansound):
    reader = UrbanSound8K(urbansound.parent)
    items = list(reader.items())
    assert isinstance(reader, Reader)
    assert reader.root == urbansound.resolve() and reader.name == "UrbanSound8K"
    labels = ("air_conditioner", "car_horn", "children_playing", "dog_bark", "street_music")
    assert reader.tasks == (Task("class", labels, "multiclass"),)
    assert len(items) == len(US_ROWS)
    assert items[0].id == "audio/fold5/100032-3-0-0.wav"
    assert [i.targets["class"] for i in items] == [(r[5],) for r in US_ROWS]
    assert [i.fold for i in items] == [4, 4, 9, 9, 0, 1]
    assert [i.group for i in items] == ["100032", "100263", "100648", "100648", "101281", "7383"]
    assert all(i.split is None for i in items)


def test_urbansound8k_missing_meta_and_clip_in_wrong_fold(urbansound, tmp_path):
    (tmp_path / "other").mkdir()
    with pytest.raises(ReaderError, match=r"metadata/UrbanSound8K\.csv not found"):
        UrbanSound8K(tmp_path / "other")
    (urbansound / "audio" / "fold10" / "100648-1-0-1.wav").rename(
        urbansound / "audio" / "fold9" / "100648-1-0-1.wav"
    )
    with pytest.raises(ReaderError, match=r"UrbanSound8K\.csv line 5: audio file 'audio/fold10/"):
        list(UrbanSound8K(urbansound).items())


def test_urbansound8k_missing_column_names_the_header_line(urbansound):
    meta = urbansound / "metadata" / "UrbanSound8K.csv"
    meta.write_text(meta.read_text().replace("classID", "class_id"))
    with pytest.raises(ReaderError, match=r"UrbanSound8K\.csv line 1: no column 'classID'"):
        _ = UrbanSound8K(urbansound).tasks
