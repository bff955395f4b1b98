"""FSDKaggle2018, FSD50K and AudioSetCsv on miniature copies of their layouts."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from conftest import write_tone

import mtjax
from mtjax.data import Split
from mtjax.readers.audioset import AudioSetCsv
from mtjax.readers.base import Reader, ReaderError
from mtjax.readers.fsd import FSD50K, FSDKaggle2018
from mtjax.tasks import Task


def write(path: Path, lines: list[str], newline: str = "\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((newline.join(lines) + newline).encode())


def tones(folder: Path, names: list[str], seconds: float = 0.2) -> None:
    for i, name in enumerate(names):
        write_tone(folder / name, 300.0 + 100 * i, seconds=seconds, seed=i)


# --- FSDKaggle2018 ---------------------------------------------------------------------------

TRAIN_2018 = [
    "fname,label,manually_verified,freesound_id,license",
    "00044347.wav,Hi-hat,0,28739,Attribution",
    "001ca53d.wav,Saxophone,1,358827,Attribution",
    "002d256b.wav,Trumpet,0,10897,Creative Commons 0",
    "0033e230.wav,Glockenspiel,1,325017,Attribution",
    "00353774.wav,Cello,1,195688,Attribution",
]
TEST_2018 = [
    "fname,label,usage,freesound_id,license",
    "00326aa9.wav,Oboe,Private,355125,Attribution",
    "0038a046.wav,Cello,Public,90142,Creative Commons 0",
    "007759c4.wav,Saxophone,Private,41952,Attribution",
]


@pytest.fixture
def kaggle2018(tmp_path) -> Path:
    """Zenodo layout, CRLF line ends; its test CSV names Bark, which no train row has."""
    root = tmp_path / "FSDKaggle2018"
    write(root / "FSDKaggle2018.meta/train_post_competition.csv", TRAIN_2018, "\r\n")
    test = [TEST_2018[0], TEST_2018[2], "0ab12345.wav,Bark,Public,1,Attribution", TEST_2018[3]]
    write(root / "FSDKaggle2018.meta/test_post_competition_scoring_clips.csv", test, "\r\n")
    tones(root / "FSDKaggle2018.audio_train", [r.split(",")[0] for r in TRAIN_2018[1:]])
    tones(root / "FSDKaggle2018.audio_test", [r.split(",")[0] for r in test[1:]])
    return root


def test_fsdkaggle2018_zenodo_layout(tmp_path):
    root = tmp_path / "z"
    write(
        root / "FSDKaggle2018.meta/train_post_competition.csv",
        [*TRAIN_2018, "0a0b0c0d.wav,Oboe,1,5,Attribution"],
        "\r\n",
    )
    write(root / "FSDKaggle2018.meta/test_post_competition_scoring_clips.csv", TEST_2018, "\r\n")
    tones(
        root / "FSDKaggle2018.audio_train",
        [r.split(",")[0] for r in TRAIN_2018[1:]] + ["0a0b0c0d.wav"],
    )
    tones(root / "FSDKaggle2018.audio_test", [r.split(",")[0] for r in TEST_2018[1:]])
    # an unscored clip in the audio folder is not listed
    tones(root / "FSDKaggle2018.audio_test", ["ffffffff.wav"])

    reader = FSDKaggle2018(root)
    items = list(reader.items())
    assert isinstance(reader, Reader)
    assert reader.name == "FSDKaggle2018"
    labels = ("Cello", "Glockenspiel", "Hi-hat", "Oboe", "Saxophone", "Trumpet")
    assert reader.tasks == (Task("label", labels, "multiclass"),)
    assert len(items) == 6 + 3
    assert [i.split for i in items] == ["train"] * 6 + ["test"] * 3
    assert items[0].id == "FSDKaggle2018.audio_train/00044347.wav"
    assert items[0].targets == {"label": ("Hi-hat",)}
    assert items[0].group == "28739"
    assert items[-1].id == "FSDKaggle2018.audio_test/007759c4.wav"
    assert items[-1].targets == {"label": ("Saxophone",)}
    assert all(Path(i.path).is_file() and "\r" not in i.id for i in items)

    verified = list(FSDKaggle2018(root, verified_only=True).items())
    assert [i.id.split("/")[1] for i in verified if i.split == "train"] == [
        "001ca53d.wav",
        "0033e230.wav",
        "00353774.wav",
        "0a0b0c0d.wav",
    ]
    assert sum(i.split == "test" for i in verified) == 3
    assert FSDKaggle2018(root, verified_only=True).tasks == reader.tasks

    public = list(FSDKaggle2018(root, public_as_validation=True).items())
    assert [i.split for i in public[6:]] == ["test", "validation", "test"]


def test_fsdkaggle2018_kaggle_layout_skips_ignored(tmp_path):
    root = tmp_path / "k"
    write(
        root / "train.csv",
        ["fname,label,manually_verified", "a1.wav,Bark,1", "a2.wav,Meow,0", "a3.wav,Bark,0"],
    )
    write(
        root / "test_post_competition.csv",
        [
            "fname,label,usage,freesound_id,license",
            "b1.wav,Meow,Public,1,Attribution",
            "b2.wav,None,Ignored,2,Attribution",
            "b3.wav,Bark,Private,3,Attribution",
        ],
    )
    tones(root / "audio_train", ["a1.wav", "a2.wav", "a3.wav"])
    tones(root / "audio_test", ["b1.wav", "b2.wav", "b3.wav"])
    reader = FSDKaggle2018(root, verified_only=True)
    items = list(reader.items())
    assert reader.tasks == (Task("label", ("Bark", "Meow"), "multiclass"),)
    assert [(i.id, i.split) for i in items] == [
        ("audio_train/a1.wav", "train"),
        ("audio_test/b1.wav", "test"),
        ("audio_test/b3.wav", "test"),
    ]
    assert items[0].group is None


def test_fsdkaggle2018_bad_input(kaggle2018, tmp_path):
    with pytest.raises(
        ReaderError, match=r"test_post_competition_scoring_clips.csv line 3: .*'Bark'"
    ):
        list(FSDKaggle2018(kaggle2018).items())
    (kaggle2018 / "FSDKaggle2018.meta/test_post_competition_scoring_clips.csv").unlink()
    with pytest.raises(FileNotFoundError, match="test_post_competition_scoring_clips.csv"):
        FSDKaggle2018(kaggle2018)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="train_post_competition.csv.*train.csv"):
        FSDKaggle2018(empty)
    bad = tmp_path / "bad"
    write(bad / "train.csv", ["fname,label,manually_verified", "a1.wav,Bark,1", "a2.wav,Meow,yes"])
    write(bad / "test_post_competition.csv", ["fname,label", "b1.wav,Meow"])
    tones(bad / "audio_train", ["a1.wav", "a2.wav"])
    with pytest.raises(ReaderError, match="train.csv line 3: manually_verified 'yes'"):
        list(FSDKaggle2018(bad, verified_only=True).items())
    with pytest.raises(ReaderError, match=r"test_post_competition.csv line 2: audio file 'b1.wav'"):
        list(FSDKaggle2018(bad).items())


# --- FSD50K ----------------------------------------------------------------------------------

VOCABULARY = [
    "0,Accelerating_and_revving_and_vroom,/m/07q2z82",
    "1,Bark,/m/05tny_",
    "2,Dog,/m/0bt9lr",
    "3,Animal,/m/0jbk",
    "4,Speech,/m/09x0r",
]
DEV = [
    "fname,labels,mids,split",
    '64760,"Bark,Dog,Animal","/m/05tny_,/m/0bt9lr,/m/0jbk",train',
    "16399,Speech,/m/09x0r,train",
    '16401,"Speech,Animal","/m/09x0r,/m/0jbk",val',
    "16402,Accelerating_and_revving_and_vroom,/m/07q2z82,train",
    '16403,"Dog,Animal","/m/0bt9lr,/m/0jbk",val',
]
EVAL = [
    "fname,labels,mids",
    '37199,"Bark,Dog,Animal","/m/05tny_,/m/0bt9lr,/m/0jbk"',
    "175151,Speech,/m/09x0r",
]


@pytest.fixture
def fsd50k(tmp_path) -> Path:
    root = tmp_path / "FSD50K"
    write(root / "FSD50K.ground_truth/vocabulary.csv", VOCABULARY)
    write(root / "FSD50K.ground_truth/dev.csv", DEV)
    write(root / "FSD50K.ground_truth/eval.csv", EVAL)
    tones(root / "FSD50K.dev_audio", [f"{r.split(',')[0]}.wav" for r in DEV[1:]], seconds=0.3)
    tones(root / "FSD50K.eval_audio", [f"{r.split(',')[0]}.wav" for r in EVAL[1:]], seconds=0.3)
    return root


def test_fsd50k_multilabel_with_official_validation(fsd50k):
    reader = FSD50K(fsd50k)
    items = list(reader.items())
    assert isinstance(reader, Reader)
    labels = ("Accelerating_and_revving_and_vroom", "Bark", "Dog", "Animal", "Speech")
    assert reader.tasks == (Task("labels", labels, "multilabel"),)
    assert len(items) == 7
    assert [i.split for i in items] == [
        "train",
        "train",
        "validation",
        "train",
        "validation",
        "test",
        "test",
    ]
    assert items[0].targets == {"labels": ("Bark", "Dog", "Animal")}
    assert items[1].targets == {"labels": ("Speech",)}
    assert items[0].id == "FSD50K.dev_audio/64760.wav"
    assert items[5].id == "FSD50K.eval_audio/37199.wav"
    assert all(i.group is None for i in items)


def test_fsd50k_bad_input(fsd50k):
    write(fsd50k / "FSD50K.ground_truth/eval.csv", [*EVAL, '9,"Bark,Cat",/m/05tny_'])
    write_tone(fsd50k / "FSD50K.eval_audio/9.wav", 500.0)
    with pytest.raises(ReaderError, match=r"eval.csv line 4: label 'Cat' is not in .*vocabulary"):
        list(FSD50K(fsd50k).items())
    write(fsd50k / "FSD50K.ground_truth/dev.csv", [*DEV[:2], "5,Bark,/m/05tny_,holdout"])
    with pytest.raises(ReaderError, match=r"dev.csv line 3: split 'holdout'"):
        list(FSD50K(fsd50k).items())
    (fsd50k / "FSD50K.ground_truth/vocabulary.csv").unlink()
    with pytest.raises(FileNotFoundError, match="vocabulary.csv"):
        FSD50K(fsd50k)


def test_fsd50k_read_gives_official_split(fsd50k):
    features = mtjax.features.LogMel(sample_rate=16000, n_mels=20)
    split = mtjax.read(FSD50K(fsd50k), features, n_jobs=1, progress=False)
    assert isinstance(split, Split)
    assert (len(split.train.x), len(split.validation.x), len(split.test.x)) == (3, 2, 2)
    assert split.train.y.shape == (3, 5)
    assert split.train.y[0].tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


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
    write(root / "balanced_train_segments.csv", BALANCED)
    write(root / "eval_segments.csv", EVAL_SEGMENTS)
    write(root / "class_labels_indices.csv", CLASS_INDEX)
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
    write(
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
    write(audioset / "eval_segments.csv", [*EVAL_SEGMENTS, 'zzzzzzzzzzz, 0.000, 10.000, "/m/xyz"'])
    reader = AudioSetCsv(audioset, "eval_segments.csv")
    with pytest.raises(ReaderError, match=r"eval_segments.csv line 6: label id '/m/xyz'"):
        list(reader.items())
    write(audioset / "eval_segments.csv", [*EVAL_SEGMENTS[:3], "--4gqARaEJE, 0.000, 10.000"])
    with pytest.raises(ReaderError, match=r"eval_segments.csv line 4: 3 cells"):
        _ = AudioSetCsv(audioset, "eval_segments.csv").tasks
