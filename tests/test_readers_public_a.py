"""ESC50, UrbanSound8K, SpeechCommands and GTZAN on miniature copies of their archives."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import write_tone

import mtjax
from mtjax.data import Split
from mtjax.readers.base import Reader, ReaderError
from mtjax.readers.esc50 import ESC50
from mtjax.readers.gtzan import GTZAN
from mtjax.readers.speech_commands import SpeechCommands
from mtjax.readers.urbansound8k import UrbanSound8K
from mtjax.tasks import Task

SHORT = 0.05  # seconds per clip


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


# --- Speech Commands -------------------------------------------------------------------------

SC_CLIPS = [
    "yes/aaaa1111_nohash_0.wav",
    "yes/bbbb2222_nohash_0.wav",
    "yes/cccc3333_nohash_0.wav",
    "no/aaaa1111_nohash_0.wav",
    "no/dddd4444_nohash_1.wav",
    "no/cccc3333_nohash_0.wav",
    "happy/bbbb2222_nohash_0.wav",
    "happy/dddd4444_nohash_0.wav",
    "happy/eeee5555_nohash_0.wav",
    "up/eeee5555_nohash_2.wav",
]
SC_VALIDATION = ["yes/bbbb2222_nohash_0.wav", "happy/bbbb2222_nohash_0.wav"]
SC_TESTING = [
    "yes/cccc3333_nohash_0.wav",
    "no/cccc3333_nohash_0.wav",
    "happy/eeee5555_nohash_0.wav",
    "up/eeee5555_nohash_2.wav",
]


def speech_commands(root):
    """The archive's tree (no wrapping folder), one tone per clip, 0.2 s at 16 kHz."""
    for i, clip in enumerate(SC_CLIPS):
        write_tone(root / clip, 300 + 60 * i, seconds=0.2, seed=i)
    write_tone(root / "_background_noise_" / "white_noise.wav", 1000, seconds=1.5, noise=0.3)
    (root / "_background_noise_" / "README.md").write_text("noise")
    (root / "validation_list.txt").write_text("\n".join(SC_VALIDATION) + "\n")
    (root / "testing_list.txt").write_text("\n".join(SC_TESTING) + "\n")
    (root / "README.md").write_text("Speech Commands")
    (root / "LICENSE").write_text("CC BY 4.0")
    return root


@pytest.fixture
def commands(tmp_path):
    return speech_commands(tmp_path / "speech_commands_v0.02")


def test_speech_commands_words_split_groups(commands):
    reader = SpeechCommands(commands)
    items = list(reader.items())
    assert isinstance(reader, Reader) and reader.name == "SpeechCommands"
    assert reader.tasks == (Task("word", ("happy", "no", "up", "yes"), "multiclass"),)
    assert sorted(i.id for i in items) == sorted(SC_CLIPS)  # _background_noise_ excluded
    by_id = {i.id: i for i in items}
    assert {i for i, it in by_id.items() if it.split == "test"} == set(SC_TESTING)
    assert {i for i, it in by_id.items() if it.split == "validation"} == set(SC_VALIDATION)
    assert sum(it.split == "train" for it in items) == 4
    assert by_id["no/dddd4444_nohash_1.wav"].group == "dddd4444"
    assert by_id["no/dddd4444_nohash_1.wav"].targets == {"word": ("no",)}
    assert all(it.fold is None for it in items)


def test_speech_commands_keyword_spotting_and_word_subset(commands):
    kws = SpeechCommands(commands, keyword_spotting=True)
    (task,) = kws.tasks
    assert task.name == "keyword" and task.kind == "multiclass"
    assert task.labels == (
        "down",
        "go",
        "left",
        "no",
        "off",
        "on",
        "right",
        "stop",
        "up",
        "yes",
        "_unknown_",
    )
    by_id = {i.id: i.targets["keyword"] for i in kws.items()}
    assert by_id["happy/dddd4444_nohash_0.wav"] == ("_unknown_",)
    assert by_id["up/eeee5555_nohash_2.wav"] == ("up",)
    subset = SpeechCommands(commands, words=("yes", "no"))
    assert subset.tasks == (Task("word", ("no", "yes")),)
    assert len(list(subset.items())) == 6
    with pytest.raises(ReaderError, match="no word folder 'left'"):
        _ = SpeechCommands(commands, words=["left"]).tasks


def test_speech_commands_torchaudio_nesting_and_version(tmp_path):
    speech_commands(tmp_path / "SpeechCommands" / "speech_commands_v0.01")
    nested = tmp_path / "SpeechCommands" / "speech_commands_v0.01"
    assert SpeechCommands(tmp_path).root == nested.resolve()
    assert SpeechCommands(tmp_path, version=1).root == nested.resolve()
    with pytest.raises(ReaderError, match="speech_commands_v0.02"):
        SpeechCommands(tmp_path, version=2)
    speech_commands(tmp_path / "speech_commands_v0.02")
    with pytest.raises(ReaderError, match="pass version=1 or version=2"):
        SpeechCommands(tmp_path)
    assert SpeechCommands(tmp_path, version=2).root.name == "speech_commands_v0.02"


def test_speech_commands_list_naming_a_missing_clip(commands):
    with open(commands / "testing_list.txt", "a") as f:
        f.write("yes/ffff6666_nohash_0.wav\n")
    with pytest.raises(ReaderError, match=r"testing_list\.txt line 5: 'yes/ffff6666"):
        list(SpeechCommands(commands).items())
    (commands / "validation_list.txt").unlink()
    with pytest.raises(ReaderError, match=r"validation_list\.txt"):
        list(SpeechCommands(commands).items())


def test_speech_commands_read_gives_the_testing_list_as_split_test(commands, tmp_path):
    """The issue's acceptance check: `mt.read` returns the predefined split."""
    reader = SpeechCommands(commands)
    split = mtjax.read(
        reader,
        mtjax.features.LogMel(sample_rate=16000, n_mels=20),
        n_jobs=1,
        cache=tmp_path / "cache",
        progress=False,
    )
    assert isinstance(split, Split)
    assert sorted(np.asarray(split.test.ids).astype(str).tolist()) == sorted(SC_TESTING)
    assert sorted(np.asarray(split.validation.ids).astype(str).tolist()) == sorted(SC_VALIDATION)
    assert len(split.train.ids) == len(SC_CLIPS) - len(SC_TESTING) - len(SC_VALIDATION)
    assert split.tasks == reader.tasks


# --- GTZAN -----------------------------------------------------------------------------------

GENRES = (
    "blues",
    "classical",
    "country",
    "disco",
    "hiphop",
    "jazz",
    "metal",
    "pop",
    "reggae",
    "rock",
)


def gtzan(folder, suffix=".wav", per_genre=2, genres=GENRES):
    for g, genre in enumerate(genres):
        for n in range(per_genre):
            write_tone(
                folder / genre / f"{genre}.{n + 53:05d}{suffix}",
                200 + 30 * g,
                seconds=SHORT,
                sample_rate=22050,
                seed=n,
            )
    return folder


def test_gtzan_genres_items_and_corrupt_file_logged(tmp_path, caplog):
    gtzan(tmp_path / "genres")
    reader = GTZAN(tmp_path)
    with caplog.at_level(logging.WARNING, logger="mtjax.readers.gtzan"):
        items = list(reader.items())
    assert isinstance(reader, Reader) and reader.name == "GTZAN"
    assert reader.root == (tmp_path / "genres").resolve()
    assert reader.tasks == (Task("genre", GENRES, "multiclass"),)
    assert len(items) == 20
    assert items[0].id == "blues/blues.00053.wav" and items[0].targets == {"genre": ("blues",)}
    assert [i.targets["genre"][0] for i in items] == [g for g in GENRES for _ in range(2)]
    assert all(i.group is None and i.split is None and i.fold is None for i in items)
    assert "jazz/jazz.00054.wav" in [i.id for i in items]
    assert any("jazz.00054.wav" in r.getMessage() for r in caplog.records)


def test_gtzan_kaggle_layout_au_files_and_genres_root(tmp_path):
    kaggle = gtzan(tmp_path / "kaggle" / "Data" / "genres_original", genres=("jazz", "rock"))
    (tmp_path / "kaggle" / "Data" / "features_30_sec.csv").write_text("filename,label\n")
    assert GTZAN(tmp_path / "kaggle").root == kaggle.resolve()
    assert len(list(GTZAN(tmp_path / "kaggle").items())) == 4
    au = gtzan(tmp_path / "au" / "genres", suffix=".au", per_genre=1)
    reader = GTZAN(au)  # the genres folder itself
    assert reader.root == au.resolve()
    assert [i.id for i in reader.items()][:2] == [
        "blues/blues.00053.au",
        "classical/classical.00053.au",
    ]
    (au / "polka").mkdir()
    write_tone(au / "polka" / "polka.00000.au", 440, seconds=SHORT)
    with pytest.raises(ReaderError, match="'polka' is not a label of task 'genre'"):
        list(GTZAN(au).items())


def test_gtzan_read_skips_an_undecodable_clip(tmp_path):
    root = gtzan(tmp_path / "genres", genres=("jazz", "rock"))
    (root / "jazz" / "jazz.00054.wav").write_bytes(b"RIFF not really a wav")
    data = mtjax.read(
        GTZAN(root),
        mtjax.features.LogMel(sample_rate=22050, n_fft=256, n_mels=20),
        n_jobs=1,
        cache=tmp_path / "cache",
        on_error="skip",
        progress=False,
    )
    assert sorted(np.asarray(data.ids).astype(str).tolist()) == [
        "jazz/jazz.00053.wav",
        "rock/rock.00053.wav",
        "rock/rock.00054.wav",
    ]
