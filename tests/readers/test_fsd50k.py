"""FSD50K on a miniature copy of its layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_tone
from layout_files import tones, write_lines

import mtjax
from mtjax.data import Split
from mtjax.readers.base import Reader, ReaderError
from mtjax.readers.fsd import FSD50K
from mtjax.tasks import Task

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
    write_lines(root / "FSD50K.ground_truth/vocabulary.csv", VOCABULARY)
    write_lines(root / "FSD50K.ground_truth/dev.csv", DEV)
    write_lines(root / "FSD50K.ground_truth/eval.csv", EVAL)
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
    write_lines(fsd50k / "FSD50K.ground_truth/eval.csv", [*EVAL, '9,"Bark,Cat",/m/05tny_'])
    write_tone(fsd50k / "FSD50K.eval_audio/9.wav", 500.0)
    with pytest.raises(ReaderError, match=r"eval.csv line 4: label 'Cat' is not in .*vocabulary"):
        list(FSD50K(fsd50k).items())
    write_lines(fsd50k / "FSD50K.ground_truth/dev.csv", [*DEV[:2], "5,Bark,/m/05tny_,holdout"])
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
