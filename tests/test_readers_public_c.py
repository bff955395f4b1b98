"""RAVDESS, DCASE scenes and events, ASVspoof 2015 on miniature copies of their layouts."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import write_tone

import mtjax as mt
from mtjax.features import LogMel
from mtjax.readers.asvspoof import ASVspoof2015
from mtjax.readers.base import Reader, ReaderError
from mtjax.readers.dcase import DCASEEvents, DCASEScenes
from mtjax.readers.ravdess import RAVDESS

LOGMEL = LogMel(sample_rate=16000, n_fft=256, hop_length=160, n_mels=8)


def tone(path: Path, i: int = 0) -> None:
    write_tone(path, 300.0 + 40.0 * i, seconds=0.05, seed=i)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def by_id(reader) -> dict:
    return {item.id: item for item in reader.items()}


# RAVDESS ----------------------------------------------------------------------------------------


@pytest.fixture
def ravdess(tmp_path) -> Path:
    """Speech and song zips, each extracted into a folder named after the zip."""
    root = tmp_path / "ravdess"
    speech, song = root / "Audio_Speech_Actors_01-24", root / "Audio_Song_Actors_01-24"
    names = [
        speech / "Actor_01/03-01-01-01-01-01-01.wav",  # neutral normal kids, male
        speech / "Actor_01/03-01-05-02-02-02-01.wav",  # angry strong dogs, male
        speech / "Actor_02/03-01-08-01-01-01-02.wav",  # surprised normal kids, female
        speech / "Actor_17/03-01-07-02-02-01-17.wav",  # disgust strong dogs, male
        speech / "Actor_02/02-01-03-01-01-01-02.wav",  # video-only: skipped
        speech / "Actor_02/01-01-03-01-01-01-02.wav",  # full audio-video: skipped
        song / "Actor_02/03-02-04-02-01-01-02.wav",  # sad strong kids, song, female
    ]
    for i, path in enumerate(names):
        tone(path, i)
    write(speech / "Actor_01/01-01-01-01-01-01-01.mp4", "not audio")
    return root


def test_ravdess_speech_tasks_labels_groups(ravdess):
    reader = RAVDESS(ravdess)
    assert isinstance(reader, Reader) and reader.name == "ravdess"
    assert [(t.name, t.kind) for t in reader.tasks] == [
        ("emotion", "multiclass"),
        ("intensity", "binary"),
        ("sex", "binary"),
        ("statement", "binary"),
    ]
    emotion, intensity, sex, statement = reader.tasks
    assert emotion.labels == (
        "neutral",
        "calm",
        "happy",
        "sad",
        "angry",
        "fearful",
        "disgust",
        "surprised",
    )
    assert intensity.labels == ("normal", "strong") and sex.labels == ("female", "male")
    assert statement.labels == ("kids", "dogs")
    items = list(reader.items())
    assert len(items) == 4
    got = {Path(i.id).name: (dict(i.targets), i.group) for i in items}
    assert got["03-01-05-02-02-02-01.wav"] == (
        {"emotion": ("angry",), "intensity": ("strong",), "sex": ("male",), "statement": ("dogs",)},
        "Actor_01",
    )
    assert got["03-01-08-01-01-01-02.wav"][0] == {
        "emotion": ("surprised",),
        "intensity": ("normal",),
        "sex": ("female",),
        "statement": ("kids",),
    }
    assert got["03-01-07-02-02-01-17.wav"][0]["sex"] == ("male",)
    assert [i.group for i in items] == ["Actor_01", "Actor_01", "Actor_02", "Actor_17"]
    assert items[0].id == "Audio_Speech_Actors_01-24/Actor_01/03-01-01-01-01-01-01.wav"
    assert all(i.split is None and i.fold is None for i in items)
    assert all(Path(i.path).is_file() for i in items)


def test_ravdess_song_and_task_subset(ravdess):
    both = list(RAVDESS(ravdess, song=True).items())
    assert len(both) == 5
    song = list(RAVDESS(ravdess, speech=False, song=True, tasks=("emotion", "sex")).items())
    assert len(song) == 1 and song[0].group == "Actor_02"
    assert dict(song[0].targets) == {"emotion": ("sad",), "sex": ("female",)}
    reader = RAVDESS(ravdess, tasks=("intensity",))
    assert [t.name for t in reader.tasks] == ["intensity"]
    assert RAVDESS(ravdess, tasks=reader.tasks).tasks == reader.tasks
    with pytest.raises(ValueError, match="actor"):
        RAVDESS(ravdess, tasks=("emotion", "actor"))
    with pytest.raises(ValueError, match="nothing to read"):
        RAVDESS(ravdess, speech=False)


@pytest.mark.parametrize(
    "name, message",
    [
        ("03-01-09-01-01-01-01.wav", r"emotion \(EE\) '09'"),
        ("03-01-01-02-01-01-01.wav", "neutral"),
        ("03-01-01-01-01-01.wav", "not a RAVDESS file name"),
        ("03-01-02-01-01-01-02.wav", "folder is Actor_01"),
    ],
)
def test_ravdess_malformed_name_names_the_file(tmp_path, name, message):
    root = tmp_path / "ravdess"
    tone(root / "Actor_01/03-01-02-01-01-01-01.wav")
    tone(root / "Actor_01" / name)
    with pytest.raises(ReaderError, match=message) as info:
        list(RAVDESS(root).items())
    assert name in str(info.value)


# DCASE acoustic scenes --------------------------------------------------------------------------

TUT_SCENES = {
    "a001_0_10": ("beach", "a001"),
    "a001_10_20": ("beach", "a001"),
    "b002_0_10": ("cafe/restaurant", "b002"),
    "c003_0_10": ("park", "c003"),
    "d004_0_10": ("park", "d004"),
    "e005_0_10": ("cafe/restaurant", "e005"),
}
TUT_FOLD_TEST = {
    1: ["a001_0_10", "a001_10_20", "b002_0_10"],
    2: ["c003_0_10", "d004_0_10", "e005_0_10"],
}


@pytest.fixture
def tut_scenes(tmp_path) -> Path:
    """TUT-acoustic-scenes-2017-development: meta.txt and evaluation_setup fold .txt files."""
    root = tmp_path / "TUT-acoustic-scenes-2017-development"
    for i, stem in enumerate(TUT_SCENES):
        tone(root / "audio" / f"{stem}.wav", i)
    write(
        root / "meta.txt",
        "".join(f"audio/{s}.wav\t{scene}\t{rec}\n" for s, (scene, rec) in TUT_SCENES.items()),
    )
    setup = root / "evaluation_setup"
    for n, test in TUT_FOLD_TEST.items():
        train = [s for s in TUT_SCENES if s not in test]
        write(
            setup / f"fold{n}_train.txt",
            "".join(f"audio/{s}.wav\t{TUT_SCENES[s][0]}\n" for s in train),
        )
        write(
            setup / f"fold{n}_evaluate.txt",
            "".join(f"audio/{s}.wav\t{TUT_SCENES[s][0]}\n" for s in test),
        )
        write(setup / f"fold{n}_test.txt", "".join(f"audio/{s}.wav\n" for s in test))
    write(root / "error.txt", "audio/a001_0_10.wav\t1.0\t2.0\terror\n")
    return root


def test_dcase_scenes_tut2017_folds(tut_scenes):
    reader = DCASEScenes(tut_scenes)
    assert reader.name == "TUT-acoustic-scenes-2017-development"
    (task,) = reader.tasks
    assert (task.name, task.kind) == ("scene", "multiclass")
    assert task.labels == ("beach", "cafe/restaurant", "park")
    items = by_id(reader)
    assert list(items) == [f"audio/{s}.wav" for s in TUT_SCENES]
    for stem, (scene, rec) in TUT_SCENES.items():
        item = items[f"audio/{stem}.wav"]
        assert dict(item.targets) == {"scene": (scene,)}
        assert item.group == rec and item.split is None
        assert item.fold == (0 if stem in TUT_FOLD_TEST[1] else 1)


def test_dcase_scenes_fold_gives_predefined_split(tut_scenes):
    items = by_id(DCASEScenes(tut_scenes, fold=2))
    assert len(items) == 6
    assert {i for i, item in items.items() if item.split == "test"} == {
        f"audio/{s}.wav" for s in TUT_FOLD_TEST[2]
    }
    assert all(item.fold is None for item in items.values())
    with pytest.raises(ValueError, match=r"folds present: \[1, 2\]"):
        DCASEScenes(tut_scenes, fold=3)


def test_dcase_scenes_read_gives_split_and_folds(tut_scenes, tmp_path):
    split = mt.read(DCASEScenes(tut_scenes, fold=1), LOGMEL, cache=tmp_path / "c", n_jobs=1)
    assert isinstance(split, mt.Split)
    assert (len(split.train.lengths), len(split.test.lengths)) == (3, 3)
    ds = mt.read(DCASEScenes(tut_scenes), LOGMEL, cache=tmp_path / "c", n_jobs=1)
    assert sorted(np.asarray(ds.folds).tolist()) == [0, 0, 0, 1, 1, 1]


def test_dcase_scenes_tut_without_identifier_and_fold_files(tmp_path):
    root = tmp_path / "TUT-acoustic-scenes-2016-development"
    tone(root / "audio/b123_40_50.wav")
    tone(root / "audio/b123_50_60.wav", 1)
    tone(root / "audio/x9.wav", 2)
    write(
        root / "meta.txt",
        "audio/b123_40_50.wav\thome\naudio/b123_50_60.wav\thome\naudio/x9.wav\toffice\n",
    )
    items = list(DCASEScenes(root).items())
    assert [i.group for i in items] == ["b123", "b123", None]
    assert all(i.fold is None and i.split is None for i in items)


@pytest.fixture
def tau_scenes(tmp_path) -> Path:
    """TAU-urban-acoustic-scenes-2019-development: tab-separated meta.csv and fold1 .csv lists."""
    root = tmp_path / "TAU-urban-acoustic-scenes-2019-development"
    rows = [
        ("park-vienna-205-6150-a", "park", "vienna-205"),
        ("park-vienna-205-6151-a", "park", "vienna-205"),
        ("airport-lisbon-1000-40000-a", "airport", "lisbon-1000"),
        ("airport-milan-1115-41000-a", "airport", "milan-1115"),
        ("park-milan-1030-6100-a", "park", "milan-1030"),
        ("bus-helsinki-1-2-a", "bus", "helsinki-1"),  # unused: in no fold file
    ]
    meta = "filename\tscene_label\tidentifier\tsource_label\n"
    for i, (stem, scene, ident) in enumerate(rows):
        tone(root / "audio" / f"{stem}.wav", i)
        meta += f"audio/{stem}.wav\t{scene}\t{ident}\ta\n"
    write(root / "meta.csv", meta)
    setup = root / "evaluation_setup"
    train, test = rows[:3], rows[3:5]
    write(
        setup / "fold1_train.csv",
        "filename\tscene_label\n" + "".join(f"audio/{s}.wav\t{c}\n" for s, c, _ in train),
    )
    write(setup / "fold1_test.csv", "filename\n" + "".join(f"audio/{s}.wav\n" for s, _, _ in test))
    write(
        setup / "fold1_evaluate.csv",
        "filename\tscene_label\n" + "".join(f"audio/{s}.wav\t{c}\n" for s, c, _ in test),
    )
    return root


def test_dcase_scenes_tau2019(tau_scenes):
    reader = DCASEScenes(tau_scenes)
    assert reader.tasks[0].labels == ("airport", "bus", "park")
    items = by_id(reader)
    assert len(items) == 5 and "audio/bus-helsinki-1-2-a.wav" not in items
    assert items["audio/park-vienna-205-6150-a.wav"].group == "vienna-205"
    assert dict(items["audio/airport-milan-1115-41000-a.wav"].targets) == {"scene": ("airport",)}
    assert {i: it.fold for i, it in items.items()} == {
        "audio/park-vienna-205-6150-a.wav": None,
        "audio/park-vienna-205-6151-a.wav": None,
        "audio/airport-lisbon-1000-40000-a.wav": None,
        "audio/airport-milan-1115-41000-a.wav": 0,
        "audio/park-milan-1030-6100-a.wav": 0,
    }
    split = {i: it.split for i, it in by_id(DCASEScenes(tau_scenes, fold=1)).items()}
    assert sorted(split.values()) == ["test", "test", "train", "train", "train"]
    assert split["audio/park-milan-1030-6100-a.wav"] == "test"


def test_dcase_scenes_tau_group_from_name_without_identifier(tmp_path):
    root = tmp_path / "tau"
    tone(root / "audio/street_traffic-paris-12-345-b.wav")
    tone(root / "audio/tram-prague-1-2-s1.wav", 1)
    write(
        root / "meta.csv",
        "filename\tscene_label\naudio/street_traffic-paris-12-345-b.wav\t"
        "street_traffic\naudio/tram-prague-1-2-s1.wav\ttram\n",
    )
    assert [i.group for i in DCASEScenes(root).items()] == ["paris-12", "prague-1"]


def test_dcase_scenes_bad_input_names_file_and_line(tut_scenes):
    with open(tut_scenes / "evaluation_setup/fold2_evaluate.txt", "a") as f:
        f.write("audio/zzz_0_10.wav\tpark\n")
    with pytest.raises(ReaderError, match=r"evaluation_setup/fold2_evaluate.txt line 4: .*zzz"):
        list(DCASEScenes(tut_scenes).items())
    with open(tut_scenes / "meta.txt", "a") as f:
        f.write("audio/only_one_cell.wav\n")
    with pytest.raises(ReaderError, match="meta.txt line 7"):
        _ = DCASEScenes(tut_scenes).tasks
    (tut_scenes / "meta.txt").unlink()
    with pytest.raises(ReaderError, match="no meta.txt or meta.csv"):
        _ = DCASEScenes(tut_scenes).tasks


def test_dcase_scenes_clip_in_two_test_lists(tut_scenes):
    with open(tut_scenes / "evaluation_setup/fold2_evaluate.txt", "a") as f:
        f.write("audio/a001_0_10.wav\tbeach\n")
    with pytest.raises(ReaderError, match="fold2_evaluate.txt line 4.*fold1_evaluate.txt line 1"):
        list(DCASEScenes(tut_scenes).items())


# DCASE sound events -----------------------------------------------------------------------------


@pytest.fixture
def tut_events(tmp_path) -> Path:
    """TUT-sound-events-2017-development: audio/street, meta/street/*.ann, street_fold files."""
    root = tmp_path / "TUT-sound-events-2017-development"
    for i, stem in enumerate(["a001", "a002", "b003"]):
        tone(root / f"audio/street/{stem}.wav", i)
    write(
        root / "meta/street/a001.ann",
        "3.250000\t7.812500\tcar\n10.0\t12.5\tpeople walking\n\n"
        "14.0\t15.0\tcar\n4.0 5.5 people speaking\n",
    )
    write(
        root / "meta/street/a002.ann",  # the file/scene-column form, with mixture and id
        "audio/street/a002.wav\tstreet\t1.0\t2.0\tbrakes squeaking\tmixture\ta002\n"
        "audio/street/a002.wav\tstreet\t2.5\t4.0\tlarge vehicle\tmixture\ta002\n",
    )
    write(root / "meta/street/b003.txt", "")  # no events at all
    write(root / "non_verified/meta/street/a001.ann", "0\t1\tunverified label\n")
    write(root / "meta.txt", "audio/street/a001.wav\tstreet\t3.25\t7.81\tcar\tmixture\n")
    setup = root / "evaluation_setup"
    folds = {1: ["a001"], 2: ["a002", "b003"]}
    for n, test in folds.items():
        train = [s for s in ("a001", "a002", "b003") if s not in test]
        write(
            setup / f"street_fold{n}_train.txt",
            "".join(f"audio/street/{s}.wav\tstreet\t1.0\t2.0\tcar\n" for s in train),
        )
        write(
            setup / f"street_fold{n}_evaluate.txt",
            "".join(f"audio/street/{s}.wav\tstreet\t1.0\t2.0\tcar\n" * 2 for s in test),
        )
        write(
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
    write(tut_events / "meta/street/a002.ann", "1.0\t2.0\tcar\nsoon\tlater\tcar\n")
    with pytest.raises(ReaderError, match="meta/street/a002.ann line 2"):
        _ = DCASEEvents(tut_events).tasks
    write(tut_events / "meta/street/a002.ann", "3.0\t2.0\tcar\n")
    with pytest.raises(ReaderError, match="a002.ann line 1: offset 2.0 is before onset 3.0"):
        _ = DCASEEvents(tut_events).tasks
    (tut_events / "meta/street/a002.ann").unlink()
    with pytest.raises(ReaderError, match=r"a002.wav: no annotation file meta/street/a002.ann"):
        _ = DCASEEvents(tut_events).tasks


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
        write(root / "CM_protocol" / protocol, "\n".join(rows) + "\n")
        for row in rows:
            speaker, utterance, _, _ = row.split()
            tone(root / "wav" / speaker / f"{utterance}.wav", i)
            i += 1
    write(root / "Joint_ASV_CM_protocol/ASV_male_enrolment.ndx", "T1 T1_1000001\n")
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


def test_dcase_scenes_meta_csv_header_without_scene_label(tau_scenes):
    write(tau_scenes / "meta.csv", "filename\tlabel\naudio/park-vienna-205-6150-a.wav\tpark\n")
    with pytest.raises(ReaderError, match="meta.csv line 1: no column 'scene_label'"):
        _ = DCASEScenes(tau_scenes).tasks
