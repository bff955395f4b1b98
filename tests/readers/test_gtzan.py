"""GTZAN on a miniature copy of its layout."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import write_tone
from layout_files import SHORT

import mtjax
from mtjax.readers.base import Reader, ReaderError
from mtjax.readers.gtzan import GTZAN
from mtjax.tasks import Task

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
