"""DCASEScenes on a miniature copy of its layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from layout_files import LOGMEL, by_id, tone, write_text

import mtjax as mt
from mtjax.readers.base import ReaderError
from mtjax.readers.dcase import DCASEScenes

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
    write_text(
        root / "meta.txt",
        "".join(f"audio/{s}.wav\t{scene}\t{rec}\n" for s, (scene, rec) in TUT_SCENES.items()),
    )
    setup = root / "evaluation_setup"
    for n, test in TUT_FOLD_TEST.items():
        train = [s for s in TUT_SCENES if s not in test]
        write_text(
            setup / f"fold{n}_train.txt",
            "".join(f"audio/{s}.wav\t{TUT_SCENES[s][0]}\n" for s in train),
        )
        write_text(
            setup / f"fold{n}_evaluate.txt",
            "".join(f"audio/{s}.wav\t{TUT_SCENES[s][0]}\n" for s in test),
        )
        write_text(setup / f"fold{n}_test.txt", "".join(f"audio/{s}.wav\n" for s in test))
    write_text(root / "error.txt", "audio/a001_0_10.wav\t1.0\t2.0\terror\n")
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
    write_text(
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
    write_text(root / "meta.csv", meta)
    setup = root / "evaluation_setup"
    train, test = rows[:3], rows[3:5]
    write_text(
        setup / "fold1_train.csv",
        "filename\tscene_label\n" + "".join(f"audio/{s}.wav\t{c}\n" for s, c, _ in train),
    )
    write_text(
        setup / "fold1_test.csv", "filename\n" + "".join(f"audio/{s}.wav\n" for s, _, _ in test)
    )
    write_text(
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
    write_text(
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


def test_dcase_scenes_meta_csv_header_without_scene_label(tau_scenes):
    write_text(tau_scenes / "meta.csv", "filename\tlabel\naudio/park-vienna-205-6150-a.wav\tpark\n")
    with pytest.raises(ReaderError, match="meta.csv line 1: no column 'scene_label'"):
        _ = DCASEScenes(tau_scenes).tasks
