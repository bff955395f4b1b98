"""DCASEEvents on a miniature copy of its layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from layout_files import by_id, tone, write_text

from mtjax.readers.base import ReaderError
from mtjax.readers.dcase import DCASEEvents

# DCASE sound events -----------------------------------------------------------------------------


@pytest.fixture
def tut_events(tmp_path) -> Path:
    """TUT-sound-events-2017-development: audio/street, meta/street/*.ann, street_fold files."""
    root = tmp_path / "TUT-sound-events-2017-development"
    for i, stem in enumerate(["a001", "a002", "b003"]):
        tone(root / f"audio/street/{stem}.wav", i)
    write_text(
        root / "meta/street/a001.ann",
        "3.250000\t7.812500\tcar\n10.0\t12.5\tpeople walking\n\n"
        "14.0\t15.0\tcar\n4.0 5.5 people speaking\n",
    )
    write_text(
        root / "meta/street/a002.ann",  # the file/scene-column form, with mixture and id
        "audio/street/a002.wav\tstreet\t1.0\t2.0\tbrakes squeaking\tmixture\ta002\n"
        "audio/street/a002.wav\tstreet\t2.5\t4.0\tlarge vehicle\tmixture\ta002\n",
    )
    write_text(root / "meta/street/b003.txt", "")  # no events at all
    write_text(root / "non_verified/meta/street/a001.ann", "0\t1\tunverified label\n")
    write_text(root / "meta.txt", "audio/street/a001.wav\tstreet\t3.25\t7.81\tcar\tmixture\n")
    setup = root / "evaluation_setup"
    folds = {1: ["a001"], 2: ["a002", "b003"]}
    for n, test in folds.items():
        train = [s for s in ("a001", "a002", "b003") if s not in test]
        write_text(
            setup / f"street_fold{n}_train.txt",
            "".join(f"audio/street/{s}.wav\tstreet\t1.0\t2.0\tcar\n" for s in train),
        )
        write_text(
            setup / f"street_fold{n}_evaluate.txt",
            "".join(f"audio/street/{s}.wav\tstreet\t1.0\t2.0\tcar\n" * 2 for s in test),
        )
        write_text(
            setup / f"street_fold{n}_test.txt",
            "".join(f"audio/street/{s}.wav\tstreet\n" for s in test),
        )
    return root


def test_dcase_events_clip_level_multilabel(tut_events):
    reader = DCASEEvents(tut_events)
    (task,) = reader.tasks
    assert (task.name, task.kind) == ("events", "multilabel")
    assert task.labels == (
        "brakes squeaking",
        "car",
        "large vehicle",
        "people speaking",
        "people walking",
    )
    items = by_id(reader)
    assert list(items) == [
        "audio/street/a001.wav",
        "audio/street/a002.wav",
        "audio/street/b003.wav",
    ]
    assert items["audio/street/a001.wav"].targets == {
        "events": ("car", "people speaking", "people walking")
    }
    assert items["audio/street/a002.wav"].targets == {
        "events": ("brakes squeaking", "large vehicle")
    }
    assert items["audio/street/b003.wav"].targets == {"events": ()}
    assert [it.fold for it in items.values()] == [0, 1, 1]
    assert all(it.group is None and it.split is None for it in items.values())
    y = task.encode_many([it.targets["events"] for it in items.values()])
    np.testing.assert_array_equal(y.sum(1), [3, 2, 0])
    split = {i: it.split for i, it in by_id(DCASEEvents(tut_events, fold=1)).items()}
    assert split == {
        "audio/street/a001.wav": "test",
        "audio/street/a002.wav": "train",
        "audio/street/b003.wav": "train",
    }


def test_dcase_events_without_fold_files(tut_events):

    shutil.rmtree(tut_events / "evaluation_setup")
    items = list(DCASEEvents(tut_events).items())
    assert len(items) == 3 and all(i.fold is None for i in items)


def test_dcase_events_bad_annotation_names_file_and_line(tut_events):
    write_text(tut_events / "meta/street/a002.ann", "1.0\t2.0\tcar\nsoon\tlater\tcar\n")
    with pytest.raises(ReaderError, match="meta/street/a002.ann line 2"):
        _ = DCASEEvents(tut_events).tasks
    write_text(tut_events / "meta/street/a002.ann", "3.0\t2.0\tcar\n")
    with pytest.raises(ReaderError, match="a002.ann line 1: offset 2.0 is before onset 3.0"):
        _ = DCASEEvents(tut_events).tasks
    (tut_events / "meta/street/a002.ann").unlink()
    with pytest.raises(ReaderError, match=r"a002.wav: no annotation file meta/street/a002.ann"):
        _ = DCASEEvents(tut_events).tasks
