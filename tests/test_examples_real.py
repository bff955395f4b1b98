"""The thesis examples' real-data paths, on miniature copies of the public datasets' layouts.

`tests/test_examples.py` runs the examples with --demo; here each example's `main(argv)` gets
dataset folders built in the test (RAVDESS, ASVspoof 2015, TUT acoustic scenes and sound
events 2017, an AudioSet download), laid out as the readers expect, with short tones as
audio. 1 epoch, 1 fold.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_tone
from test_examples import load

SECONDS = 0.5  # every clip; long enough for a 2048-point FFT at 44.1 kHz


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def tone(path: Path, i: int, frequency: float) -> None:
    write_tone(path, frequency * (1 + 0.01 * (i % 7)), seconds=SECONDS, seed=i)


def make_ravdess(root: Path) -> Path:
    """5 actors x 8 emotions x their intensities (neutral only normal): 75 speech clips."""
    speech = root / "Audio_Speech_Actors_01-24"
    i = 0
    for actor in range(1, 6):
        for emotion in range(1, 9):
            for intensity in (1,) if emotion == 1 else (1, 2):
                name = f"03-01-{emotion:02d}-{intensity:02d}-01-01-{actor:02d}.wav"
                tone(speech / f"Actor_{actor:02d}" / name, i, 200.0 * emotion + 50 * intensity)
                i += 1
    return root


def make_asvspoof(root: Path) -> Path:
    """Train, develop and evaluation protocols, genuine and spoofed utterances in each."""
    protocols = {"cm_train.trn": "T", "cm_develop.ndx": "D", "cm_evaluation.ndx": "E"}
    i = 0
    for protocol, prefix in protocols.items():
        rows = []
        for s in range(1, 4):
            speaker = f"{prefix}{s}"
            for u in range(4):
                attack, key = ("human", "human") if u % 2 == 0 else (f"S{1 + u % 5}", "spoof")
                utterance = f"{speaker}_{1000000 + i}"
                rows.append(f"{speaker} {utterance} {attack} {key}")
                tone(
                    root / "wav" / speaker / f"{utterance}.wav",
                    i,
                    500.0 if key == "human" else 2000.0,
                )
                i += 1
        write(root / "CM_protocol" / protocol, "\n".join(rows) + "\n")
    return root


SCENES = ("beach", "cafe/restaurant", "park")


def make_scenes(root: Path, folds: int = 4) -> Path:
    """TUT-acoustic-scenes-2017-development: 3 scenes x 8 recordings x 2 segments, 4 folds."""
    meta, clips = [], []
    i = 0
    for k, scene in enumerate(SCENES):
        for r in range(8):
            recording = f"{'abc'[k]}{r:03d}"
            for s in range(2):
                stem = f"{recording}_{10 * s}_{10 * s + 10}"
                tone(root / "audio" / f"{stem}.wav", i, 300.0 * (k + 1))
                meta.append(f"audio/{stem}.wav\t{scene}\t{recording}\n")
                clips.append((stem, scene, r % folds))
                i += 1
    write(root / "meta.txt", "".join(meta))
    for n in range(folds):
        test = [(s, c) for s, c, f in clips if f == n]
        train = [(s, c) for s, c, f in clips if f != n]
        setup = root / "evaluation_setup"
        write(setup / f"fold{n + 1}_train.txt", "".join(f"audio/{s}.wav\t{c}\n" for s, c in train))
        write(
            setup / f"fold{n + 1}_evaluate.txt", "".join(f"audio/{s}.wav\t{c}\n" for s, c in test)
        )
        write(setup / f"fold{n + 1}_test.txt", "".join(f"audio/{s}.wav\n" for s, _ in test))
    return root


EVENTS = ("car", "people walking", "brakes squeaking")


def make_events(root: Path, folds: int = 4) -> Path:
    """TUT-sound-events-2017-development: 16 street clips, 1-2 events each, 4 folds."""
    clips = []
    for i in range(16):
        stem = f"a{i:03d}"
        tone(root / "audio" / "street" / f"{stem}.wav", i, 400.0 + 300.0 * (i % 3))
        labels = [EVENTS[i % 3]] + ([EVENTS[(i + 1) % 3]] if i % 2 else [])
        write(
            root / "meta" / "street" / f"{stem}.ann",
            "".join(
                f"{0.1 * j:.1f}\t{0.1 * j + 0.2:.1f}\t{label}\n" for j, label in enumerate(labels)
            ),
        )
        clips.append((stem, i % folds))
    setup = root / "evaluation_setup"
    for n in range(folds):
        test = [s for s, f in clips if f == n]
        train = [s for s, f in clips if f != n]
        write(
            setup / f"street_fold{n + 1}_train.txt",
            "".join(f"audio/street/{s}.wav\tstreet\n" for s in train),
        )
        write(
            setup / f"street_fold{n + 1}_evaluate.txt",
            "".join(f"audio/street/{s}.wav\tstreet\n" for s in test),
        )
        write(
            setup / f"street_fold{n + 1}_test.txt",
            "".join(f"audio/street/{s}.wav\tstreet\n" for s in test),
        )
    return root


AUDIOSET_LABELS = {
    "/m/09x0r": "Speech",
    "/m/04rlf": "Music",
    "/m/0bt9lr": "Dog",
    "/m/03qc9zr": "Screaming",
}


def make_audioset(root: Path) -> Path:
    """Balanced-train and eval segment CSVs, a class index, clips (two not downloaded)."""
    mids = list(AUDIOSET_LABELS)
    write(
        root / "class_labels_indices.csv",
        "index,mid,display_name\n"
        + "".join(f'{k},{m},"{n}"\n' for k, (m, n) in enumerate(AUDIOSET_LABELS.items())),
    )
    header = (
        "# Segments csv created Sun Mar  5 10:54:31 2017\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
    )
    i = 0
    for csv, n, prefix in (
        ("balanced_train_segments.csv", 18, "tr"),
        ("eval_segments.csv", 8, "ev"),
    ):
        rows = []
        for j in range(n):
            ytid = f"-{prefix}{j:08d}"
            labels = [mids[j % 4]] + ([mids[(j + 1) % 4]] if j % 3 == 0 else [])
            rows.append(f'{ytid}, 30.000, 40.000, "{",".join(labels)}"\n')
            if j != n - 1:  # the last segment of each CSV was not downloaded
                tone(root / "audio" / f"{ytid}_30.000.wav", i, 250.0 * (1 + j % 4))
            i += 1
        write(root / csv, header + "".join(rows))
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("real")
    return {
        "ravdess": make_ravdess(base / "ravdess"),
        "asvspoof": make_asvspoof(base / "DS_10283_853"),
        "scenes": make_scenes(base / "TUT-acoustic-scenes-2017-development"),
        "events": make_events(base / "TUT-sound-events-2017-development"),
        "audioset": make_audioset(base / "audioset"),
    }


def run(name: str, out: Path, capsys, *args: str) -> str:
    argv = [*args, "--out", str(out), "--epochs", "1", "--folds", "1", "--quiet"]
    assert load(name).main(argv) == 0
    return capsys.readouterr().out


def test_georgiev_real(data, tmp_path, capsys):
    out = tmp_path / "out"
    text = run(
        "georgiev",
        out,
        capsys,
        *("--ravdess", str(data["ravdess"]), "--asvspoof", str(data["asvspoof"])),
        *("--scenes", str(data["scenes"]), "--datasets", "emotion,intensity,spoof"),
    )
    # all four are read: RAVDESS actor-grouped into 5 shared folds, ASVspoof's official
    # train/validation/test, the scenes' 4 official folds replaced by a 5-fold split
    assert "split 5-fold instead" in text
    for task in ("emotion", "intensity", "spoof"):
        assert task in text
    assert "multi-task vs single-task" in text
    assert "georgiev/emotion+intensity+spoof" in text
    for combination in ("emotion", "spoof", "emotion+intensity", "emotion+intensity+spoof"):
        assert (out / "runs" / "georgiev" / combination / "fold0" / "config.json").is_file()
    assert len(list((out / "runs" / "georgiev").glob("*/fold0/config.json"))) == 7


def test_xu_real(data, tmp_path, capsys):
    out = tmp_path / "out"
    text = run("xu", out, capsys, "--scenes", str(data["scenes"]), "--events", str(data["events"]))
    assert "scene" in text and "events" in text and "micro_f1" in text
    assert "split 4-fold instead" not in text and "4 predefined folds" in text
    assert (out / "runs" / "xu" / "fold0" / "history.json").is_file()


def test_park_audioset_real(data, tmp_path, capsys):
    out = tmp_path / "out"
    text = run(
        "park_audioset",
        out,
        capsys,
        *("--audioset", str(data["audioset"]), "--labels", "Speech,Music,Dog"),
    )
    assert "multilabel" in text
    for label in ("Speech", "Music", "Dog"):
        assert label in text
    assert "Screaming" not in text
    # clips not downloaded, and clips with none of the chosen labels, are left out
    assert "train 15 / test 7" in text
    assert (out / "runs" / "park" / "fold0" / "history.json").is_file()
