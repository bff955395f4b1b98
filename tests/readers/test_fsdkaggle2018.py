"""FSDKaggle2018 on a miniature copy of its layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from layout_files import tones, write_lines

from mtjax.readers.base import Reader, ReaderError
from mtjax.readers.fsd import FSDKaggle2018
from mtjax.tasks import Task

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
    write_lines(root / "FSDKaggle2018.meta/train_post_competition.csv", TRAIN_2018, "\r\n")
    test = [TEST_2018[0], TEST_2018[2], "0ab12345.wav,Bark,Public,1,Attribution", TEST_2018[3]]
    write_lines(root / "FSDKaggle2018.meta/test_post_competition_scoring_clips.csv", test, "\r\n")
    tones(root / "FSDKaggle2018.audio_train", [r.split(",")[0] for r in TRAIN_2018[1:]])
    tones(root / "FSDKaggle2018.audio_test", [r.split(",")[0] for r in test[1:]])
    return root


def test_fsdkaggle2018_zenodo_layout(tmp_path):
    root = tmp_path / "z"
    write_lines(
        root / "FSDKaggle2018.meta/train_post_competition.csv",
        [*TRAIN_2018, "0a0b0c0d.wav,Oboe,1,5,Attribution"],
        "\r\n",
    )
    write_lines(
        root / "FSDKaggle2018.meta/test_post_competition_scoring_clips.csv", TEST_2018, "\r\n"
    )
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
    write_lines(
        root / "train.csv",
        ["fname,label,manually_verified", "a1.wav,Bark,1", "a2.wav,Meow,0", "a3.wav,Bark,0"],
    )
    write_lines(
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
    write_lines(
        bad / "train.csv", ["fname,label,manually_verified", "a1.wav,Bark,1", "a2.wav,Meow,yes"]
    )
    write_lines(bad / "test_post_competition.csv", ["fname,label", "b1.wav,Meow"])
    tones(bad / "audio_train", ["a1.wav", "a2.wav"])
    with pytest.raises(ReaderError, match="train.csv line 3: manually_verified 'yes'"):
        list(FSDKaggle2018(bad, verified_only=True).items())
    with pytest.raises(ReaderError, match=r"test_post_competition.csv line 2: audio file 'b1.wav'"):
        list(FSDKaggle2018(bad).items())
