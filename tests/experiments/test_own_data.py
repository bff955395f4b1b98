"""The README's "Your own data" files, examples/own_data/*.toml, on layouts made here.

Each file is copied next to a `data/` folder in its layout; `mtjax datasets` prints what it
read (clip counts, hours, labels per part, checked exactly), and the folder-per-class file
goes on to `mtjax run` and `mtjax report`.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import write_tone

from mtjax import cli

OWN_DATA = Path(__file__).resolve().parents[2] / "examples" / "own_data"


def _copy(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copy(OWN_DATA / name, tmp_path / name))


def _datasets(capsys, toml: Path) -> str:
    assert cli.main(["datasets", str(toml), "--quiet", "folds=2"]) == 0
    return capsys.readouterr().out


def _row(text: str, *cells: str) -> list[str]:
    """The table line holding every cell, split on runs of spaces."""
    lines = [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]
    found = [line for line in lines if all(c in line for c in cells)]
    assert len(found) == 1, (cells, text)
    return found[0]


def test_folder_per_class_from_zero_to_report(tmp_path, capsys):
    toml = _copy("folder.toml", tmp_path)
    for c, label in enumerate(("bird", "car", "dog")):
        for source in range(4):
            for take in range(2):
                write_tone(
                    tmp_path / "data" / "my_sounds" / label / f"src{source}_{take}.wav",
                    300.0 * (c + 1) + 20 * source,
                    seconds=0.5,
                    seed=100 * c + 10 * source + take,
                )
    text = _datasets(capsys, toml)
    # 0.5 s at a 10 ms hop, centred frames: 1 + 8000 // 160 = 51
    row = ["my_sounds", "all", "24", "0.00", "0.50", "0.50-0.50", "51"]
    assert _row(text, "my_sounds", "all") == row
    for label in ("bird", "car", "dog"):
        assert _row(text, label)[-1] == "all 8"
    assert (tmp_path / "cache" / "my_sounds").is_dir()

    args = ["run", str(toml), "--quiet", "folds=2", "train.epochs=1", "train.batch_size=8"]
    assert cli.main([*args, "--folds", "1"]) == 0
    run = tmp_path / "runs" / "my-sounds" / "fold0"
    assert (run / "history.json").is_file()
    capsys.readouterr()
    assert cli.main(["report", str(tmp_path / "runs" / "my-sounds")]) == 0
    assert "sound" in capsys.readouterr().out


def test_csv_manifest_two_tasks_one_multilabel(tmp_path, capsys):
    toml = _copy("manifest.toml", tmp_path)
    root = tmp_path / "data" / "my_corpus"
    rows = ["path,speaker,emotion,tags"]
    emotions, tags = ("happy", "sad", "angry"), ("laugh;music", "music", "")
    for i in range(12):
        path = f"clips/s{i % 4:02d}_{i}.wav"
        write_tone(root / path, 250.0 + 40 * i, seconds=0.3 + 0.1 * (i % 2), seed=i)
        rows.append(f"{path},s{i % 4:02d},{emotions[i % 3]},{tags[i % 3]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    text = _datasets(capsys, toml)
    # six clips of 0.3 s and six of 0.4 s: 4.2 s in all, mean 0.35 s
    assert _row(text, "my_corpus", "all")[2:6] == ["12", "0.00", "0.35", "0.30-0.40"]
    assert _row(text, "emotion (multiclass)", "happy")[-1] == "all 4"
    assert _row(text, "tags (multilabel)", "music")[-1] == "all 8"
    assert _row(text, "tags (multilabel)", "laugh")[-1] == "all 4"


def test_public_dataset_by_name_keeps_its_folds(tmp_path, capsys):
    toml = _copy("esc50.toml", tmp_path)
    root = tmp_path / "data" / "ESC-50-master"
    lines = ["filename,fold,target,category,esc10,src_file,take"]
    for i in range(10):
        fold, target, category = i % 5 + 1, (0, 10)[i % 2], ("dog", "rain")[i % 2]
        name = f"{fold}-{1000 + i}-A-{target}.wav"
        write_tone(root / "audio" / name, 300 + 50 * i, seconds=0.25, sample_rate=44100)
        lines.append(f"{name},{fold},{target},{category},True,{1000 + i},A")
    (root / "meta").mkdir()
    (root / "meta" / "esc50.csv").write_text("\n".join(lines) + "\n")
    assert cli.main(["datasets", str(toml), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert _row(text, "esc50", "all")[2] == "10"
    assert _row(text, "category (multiclass)", "dog")[-1] == "all 5"


def test_datasets_names_a_missing_root_in_one_line(tmp_path, capsys):
    toml = _copy("folder.toml", tmp_path)
    assert cli.main(["datasets", str(toml), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mtjax: ") and "\n" not in err
    assert "my_sounds" in err


@pytest.mark.parametrize("name", ["folder.toml", "manifest.toml", "esc50.toml"])
def test_own_data_files_state_their_window_and_hop(name):
    text = (OWN_DATA / name).read_text()
    assert "win_seconds" in text and "hop_seconds" in text
