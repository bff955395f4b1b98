"""ASVspoof2015 on a miniature copy of its layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from layout_files import LOGMEL, tone, write_text

import mtjax as mt
from mtjax.readers.asvspoof import ASVspoof2015
from mtjax.readers.base import ReaderError

# ASVspoof 2015 ----------------------------------------------------------------------------------

PROTOCOLS = {
    "cm_train.trn": [
        "T1 T1_1000001 human human",
        "T1 T1_1000002 S1 spoof",
        "T2 T2_1000003 S2 spoof",
    ],
    "cm_develop.ndx": ["D1 D1_1000004 human genuine", "D1 D1_1000005 S3 spoof"],
    "cm_evaluation.ndx.txt": ["E1 E1_1000006 S8 spoof", "E2 E2_1000007 human human"],
}


@pytest.fixture
def asvspoof(tmp_path) -> Path:
    root = tmp_path / "DS_10283_853"
    i = 0
    for protocol, rows in PROTOCOLS.items():
        write_text(root / "CM_protocol" / protocol, "\n".join(rows) + "\n")
        for row in rows:
            speaker, utterance, _, _ = row.split()
            tone(root / "wav" / speaker / f"{utterance}.wav", i)
            i += 1
    write_text(root / "Joint_ASV_CM_protocol/ASV_male_enrolment.ndx", "T1 T1_1000001\n")
    return root


def test_asvspoof2015_tasks_splits_groups(asvspoof):
    reader = ASVspoof2015(asvspoof)
    assert reader.name == "asvspoof2015"
    spoof, attack = reader.tasks
    assert (spoof.name, spoof.kind, spoof.labels) == ("spoof", "binary", ("genuine", "spoof"))
    assert (attack.name, attack.kind) == ("attack", "multiclass")
    assert attack.labels == ("human", "S1", "S2", "S3", "S8")
    items = list(reader.items())
    assert len(items) == 7
    assert [i.split for i in items] == ["train"] * 3 + ["validation"] * 2 + ["test"] * 2
    assert [i.group for i in items] == ["T1", "T1", "T2", "D1", "D1", "E1", "E2"]
    assert items[0].id == "wav/T1/T1_1000001.wav"
    assert [dict(i.targets) for i in items[2:4]] == [
        {"spoof": ("spoof",), "attack": ("S2",)},
        {"spoof": ("genuine",), "attack": ("human",)},
    ]
    assert all(Path(i.path).is_file() and i.fold is None for i in items)


def test_asvspoof2015_read_gives_train_validation_test(asvspoof, tmp_path):
    split = mt.read(ASVspoof2015(asvspoof), LOGMEL, cache=tmp_path / "c", n_jobs=1)
    assert isinstance(split, mt.Split)
    sizes = [len(part.lengths) for part in (split.train, split.validation, split.test)]
    assert sizes == [3, 2, 2]


@pytest.mark.parametrize(
    "row, message",
    [
        ("D1 D1_1000005 S3 fake", "key 'fake' is not one of"),
        ("D1 D1_1000005 S11 spoof", "attack 'S11' is not one of"),
        ("D1 D1_1000005 S3 human", "attack 'S3' with key 'human'"),
        ("D1 D1_1000005 S3", "3 cells"),
        ("D1 T1_1000001 S3 spoof", "again, first at CM_protocol/cm_train.trn line 1"),
        ("D1 D1_9999999 S3 spoof", "audio file not found"),
    ],
)
def test_asvspoof2015_bad_protocol_line_names_file_and_line(asvspoof, row, message):
    path = asvspoof / "CM_protocol/cm_develop.ndx"
    path.write_text(f"D1 D1_1000004 human genuine\n{row}\n")
    with pytest.raises(ReaderError, match="CM_protocol/cm_develop.ndx line 2") as info:
        list(ASVspoof2015(asvspoof).items())
    assert message in str(info.value)


def test_asvspoof2015_missing_protocol(asvspoof):
    (asvspoof / "CM_protocol/cm_train.trn").unlink()
    with pytest.raises(FileNotFoundError, match=r"cm_train.trn \(or cm_train.trn.txt\)"):
        ASVspoof2015(asvspoof)
