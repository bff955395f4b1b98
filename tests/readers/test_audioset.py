"""AudioSetCsv on a miniature copy of its layout."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from layout_files import tones, write_lines

from mtjax.readers.audioset import AudioSetCsv
from mtjax.readers.base import Reader, ReaderError
from mtjax.tasks import Task

# --- AudioSet --------------------------------------------------------------------------------

BALANCED = [
    "# Segments csv created Sun Mar  5 10:54:31 2017",
    "# num_ytids=4, num_segs=4, num_unique_labels=3, num_positive_labels=5",
    "# YTID, start_seconds, end_seconds, positive_labels",
    '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"',
    '--ZhevVpy1s, 50.000, 60.000, "/m/012xff"',
    '--aE2O5G5WE, 0.000, 8.000, "/m/03fwl,/m/04rlf"',
    '-0BIyqJj9ZU, 30.000, 40.000, "/m/09x0r"',
]
EVAL_SEGMENTS = [
    "# Segments csv created Sun Mar  5 10:54:25 2017",
    "# num_ytids=2, num_segs=2, num_unique_labels=2, num_positive_labels=2",
    "# YTID, start_seconds, end_seconds, positive_labels",
    '--4gqARaEJE, 0.000, 10.000, "/m/012xff"',
    '--BfvyPmVMo, 20.000, 30.000, "/m/03fwl"',
]
CLASS_INDEX = [
    "index,mid,display_name",
    '0,/m/09x0r,"Speech"',
    '1,/m/012xff,"Whistling"',
    '2,/t/dd00088,"Gush"',
    '3,/m/03fwl,"Goat"',
    '4,/m/04rlf,"Music"',
    '5,/m/0jbk,"Animal, generic"',
]


@pytest.fixture
def audioset(tmp_path) -> Path:
    root = tmp_path / "audioset"
    write_lines(root / "balanced_train_segments.csv", BALANCED)
    write_lines(root / "eval_segments.csv", EVAL_SEGMENTS)
    write_lines(root / "class_labels_indices.csv", CLASS_INDEX)
    # three name forms; -0BIyqJj9ZU (train) and --BfvyPmVMo (test) were not downloaded
    tones(
        root / "audio",
        [
            "--PJHxphWEs.wav",
            "--ZhevVpy1s_50.000.wav",
            "--aE2O5G5WE_0_8.wav",
            "eval/Y--4gqARaEJE.wav",
        ],
    )
    return root


def test_audioset_splits_labels_and_missing_clips(audioset, caplog):
    reader = AudioSetCsv(
        audioset, {"train": "balanced_train_segments.csv", "test": "eval_segments.csv"}
    )
    assert isinstance(reader, Reader)
    assert reader.tasks == (
        Task("labels", ("Speech", "Whistling", "Gush", "Goat", "Music"), "multilabel"),
    )
    with caplog.at_level(logging.WARNING, logger="mtjax"):
        items = list(reader.items())
    assert [(i.id, i.split) for i in items] == [
        ("audio/--PJHxphWEs.wav", "train"),
        ("audio/--ZhevVpy1s_50.000.wav", "train"),
        ("audio/--aE2O5G5WE_0_8.wav", "train"),
        ("audio/eval/Y--4gqARaEJE.wav", "test"),
    ]
    assert items[0].targets == {"labels": ("Speech", "Gush")}
    assert items[2].targets == {"labels": ("Goat", "Music")}
    assert items[0].group == "--PJHxphWEs"
    assert [(s.ytid, s.split) for s in reader.missing()] == [
        ("-0BIyqJj9ZU", "train"),
        ("--BfvyPmVMo", "test"),
    ]
    assert "2 of 6 segments" in caplog.text and "-0BIyqJj9ZU, --BfvyPmVMo" in caplog.text


def test_audioset_single_csv_with_ontology_and_plain_header(tmp_path):
    root = tmp_path / "as"
    write_lines(
        root / "segments.csv",
        [
            "YTID,start_seconds,end_seconds,positive_labels",
            'abcDEF12345,120.000,130.000,"/m/0jbk,/m/09x0r"',
        ],
    )
    nodes = [
        {
            "id": m,
            "name": n,
            "description": "",
            "citation_uri": "",
            "positive_examples": [],
            "child_ids": [],
            "restrictions": [],
        }
        for m, n in [("/m/09x0r", "Speech"), ("/m/0jbk", "Animal"), ("/m/04rlf", "Music")]
    ]
    (root / "ontology.json").write_text(json.dumps(nodes))
    tones(root / "clips", ["abcDEF12345_120000_130000.flac"])
    reader = AudioSetCsv(root, "segments.csv", ontology="ontology.json", audio_dir="clips")
    items = list(reader.items())
    assert reader.tasks == (Task("labels", ("Speech", "Animal"), "multilabel"),)
    assert len(items) == 1 and items[0].split is None
    assert items[0].targets == {"labels": ("Animal", "Speech")}
    assert reader.missing() == ()


def test_audioset_bad_input(audioset):
    with pytest.raises(FileNotFoundError, match="unbalanced_train_segments.csv"):
        AudioSetCsv(audioset, "unbalanced_train_segments.csv")
    with pytest.raises(ValueError, match="not both"):
        AudioSetCsv(audioset, "eval_segments.csv", ontology="o.json", label_map="c.csv")
    write_lines(
        audioset / "eval_segments.csv", [*EVAL_SEGMENTS, 'zzzzzzzzzzz, 0.000, 10.000, "/m/xyz"']
    )
    reader = AudioSetCsv(audioset, "eval_segments.csv")
    with pytest.raises(ReaderError, match=r"eval_segments.csv line 6: label id '/m/xyz'"):
        list(reader.items())
    write_lines(audioset / "eval_segments.csv", [*EVAL_SEGMENTS[:3], "--4gqARaEJE, 0.000, 10.000"])
    with pytest.raises(ReaderError, match=r"eval_segments.csv line 4: 3 cells"):
        _ = AudioSetCsv(audioset, "eval_segments.csv").tasks
