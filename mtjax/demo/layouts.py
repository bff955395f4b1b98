"""Demo datasets: three small synthetic audio datasets in real public layouts.

`make_demo(root)` writes, in a second or two, deterministically from a seed:

    commands/  Speech Commands layout: 6 word folders of formant "speech", speakers with their
               own pitch and vocal tract, validation_list.txt / testing_list.txt made by hashing
               the speaker id, _background_noise_/. Task "word" (multiclass).
    sounds/    ESC-50 layout: audio/{fold}-{src}-{take}-{target}.wav, meta/esc50.csv, 6
               environmental-like categories, 5 folds, takes of one source in one fold.
               Task "category" (multiclass).
    tagged/    CSV manifest: clips/*.wav mixing 0-3 of 5 sources; manifest.csv with a
               ";"-separated "tags" column (multilabel), "loud" yes/no (binary), a train/test
               "split" column and a "session" group column.

All audio is 16-bit PCM WAV, mono, 16 kHz. `demo_readers(paths)` returns readers for them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from mtjax.demo import sounds
from mtjax.readers import CsvReader, FolderReader, Reader

SAMPLE_RATE = sounds.SAMPLE_RATE
FORMAT = 1  # bump when the generated files change: an old demo.json then no longer matches
DATASETS = ("commands", "sounds", "tagged")

# ESC-50 category -> its target number in ESC-50; ESC-10 holds rain and clock_tick.
ESC_TARGETS = {
    "rain": 10,
    "chirping_birds": 14,
    "door_wood_knock": 30,
    "clock_tick": 38,
    "siren": 42,
    "car_horn": 43,
}
ESC10 = ("rain", "clock_tick")
TAGS = ("chirp", "clicks", "noise", "tone", "voice")


def make_demo(root: str | Path, *, seed: int = 0, scale: float = 1.0) -> dict[str, Path]:
    """Write the three demo datasets under `root` and return their folders.

    At scale 1.0: 240 word clips (40 speakers x 6 words, 1.0 s or a little less), 180 ESC-style
    clips (6 categories x 5 folds x 3 sources x 2 takes, 0.8-1.6 s), 180 tagged clips
    (45 sessions x 4, 1.0 s); `scale` multiplies speakers, sources and sessions.

    Idempotent: when `root/demo.json` (written last) records the same seed and scale, nothing is
    rewritten. A demo of another seed or scale is replaced; a `commands/`, `sounds/` or `tagged/`
    folder that is not part of a demo raises FileExistsError.

    Args:
      root: folder to write into (created when missing).
      seed: non-negative integer; the same seed writes byte-identical files.
      scale: positive size factor.

    Returns:
      {"commands": Path, "sounds": Path, "tagged": Path}, absolute.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale!r}")
    root = Path(root).expanduser().resolve()
    paths = {name: root / name for name in DATASETS}
    marker, writing = root / "demo.json", root / ".demo-writing"
    wanted = {"format": FORMAT, "seed": int(seed), "scale": float(scale)}
    if _marker(marker) == wanted:
        return paths
    ours = marker.exists() or writing.exists()
    for path in paths.values():
        if path.exists() and not ours:
            raise FileExistsError(
                f"{path} exists and is not part of an mtjax demo (no demo.json in {root});"
                " choose an empty or new folder"
            )
    root.mkdir(parents=True, exist_ok=True)
    writing.touch()
    marker.unlink(missing_ok=True)
    for path in paths.values():
        shutil.rmtree(path, ignore_errors=True)
    clips = {
        "commands": write_commands(paths["commands"], seed=int(seed), scale=scale),
        "sounds": write_sounds(paths["sounds"], seed=int(seed), scale=scale),
        "tagged": write_tagged(paths["tagged"], seed=int(seed), scale=scale),
    }
    marker.write_text(json.dumps({**wanted, "clips": clips}, indent=2) + "\n")
    writing.unlink()
    return paths


def demo_readers(paths: Mapping[str, str | Path]) -> list[Reader]:
    """Readers for `make_demo`'s datasets: commands, sounds, tagged, in this order.

    Tasks: "word" (multiclass, 6 words; splits from the two list files, group = speaker),
    "category" (multiclass, 6 categories; folds 0-4 from the "fold" column, group = src_file),
    "tags" (multilabel, 5 tags) and "loud" (binary, no/yes; split column, group = session).
    """
    return [
        FolderReader(
            Path(paths["commands"]),
            "word",
            name="commands",
            group=r"^(.+?)_nohash_",
            validation_list="validation_list.txt",
            testing_list="testing_list.txt",
        ),
        CsvReader(
            Path(paths["sounds"]),
            "meta/esc50.csv",
            name="sounds",
            path_column="filename",
            label_columns=("category",),
            fold_column="fold",
            group_column="src_file",
            audio_dir="audio",
        ),
        CsvReader(
            Path(paths["tagged"]),
            "manifest.csv",
            name="tagged",
            label_columns=("tags", "loud"),
            kinds={"loud": "binary"},
            separator={"tags": ";"},
            split_column="split",
            group_column="session",
        ),
    ]


def speaker_split(speaker: str) -> str:
    """Partition of a speaker, from a SHA-1 hash of its id: ~10% validation, ~10% test."""
    percent = int(hashlib.sha1(speaker.encode()).hexdigest(), 16) % 100
    return "validation" if percent < 10 else "test" if percent < 20 else "train"


# --- writing the datasets --------------------------------------------------------------------


def write_commands(root: Path, *, seed: int, scale: float) -> int:
    """Speech Commands layout under `root`; returns the number of word clips."""
    rng = np.random.default_rng([seed, 1])
    speakers = _speakers(rng, max(10, round(40 * scale)))
    lists: dict[str, list[str]] = {"validation": [], "test": []}
    n = 0
    for s, speaker in enumerate(speakers):
        voice = {
            "f0": float(np.exp(rng.uniform(np.log(80.0), np.log(300.0)))),
            "tract": float(rng.uniform(0.85, 1.25)),
        }
        for w, word in enumerate(sounds.WORDS):
            clip_rng = np.random.default_rng([seed, 1, s, w])
            n_samples = (
                SAMPLE_RATE if clip_rng.random() < 0.8 else int(clip_rng.integers(12000, 16000))
            )
            name = f"{word}/{speaker}_nohash_0.wav"
            x = sounds.spoken_word(clip_rng, word, voice, n_samples)
            write_wav(root / name, sounds.finish(x, clip_rng.uniform(-32, -20)))
            if speaker_split(speaker) in lists:
                lists[speaker_split(speaker)].append(name)
            n += 1
    (root / "validation_list.txt").write_text(
        "".join(f"{p}\n" for p in sorted(lists["validation"]))
    )
    (root / "testing_list.txt").write_text("".join(f"{p}\n" for p in sorted(lists["test"])))
    noise = sounds.pink_noise(np.random.default_rng([seed, 4]), 5 * SAMPLE_RATE)
    write_wav(root / "_background_noise_" / "pink_noise.wav", sounds.finish(noise, -24.0))
    (root / "_background_noise_" / "README.md").write_text(
        "Background noise for augmentation (mtjax demo): pink_noise.wav, 5 s of pink noise.\n"
    )
    (root / "README.md").write_text(
        "Synthetic keyword data in the Speech Commands layout, written by mtjax.demo.\n"
        f"Words: {', '.join(sounds.WORDS)}. Files <word>/<speaker>_nohash_<n>.wav; the lists name"
        " the\nvalidation and test clips (by a hash of the speaker id); every other clip is"
        " training.\n"
    )
    return n


def write_sounds(root: Path, *, seed: int, scale: float) -> int:
    """ESC-50 layout under `root`; returns the number of clips."""
    rng = np.random.default_rng([seed, 2])
    per_fold = max(1, round(3 * scale))
    n_sources = len(ESC_TARGETS) * 5 * per_fold
    source_ids = 100000 + rng.choice(900000, size=n_sources, replace=False)
    rows: list[tuple[str, int, int, str, str, int, str]] = []
    for c, (category, target) in enumerate(ESC_TARGETS.items()):
        for fold in range(1, 6):
            for s in range(per_fold):
                src = int(source_ids[(c * 5 + fold - 1) * per_fold + s])
                source_rng = np.random.default_rng([seed, 2, src])
                params = sounds.SOUND_SOURCES[category][0](source_rng)
                for take in "AB":
                    clip_rng = np.random.default_rng([seed, 2, src, ord(take)])
                    n_samples = int(clip_rng.uniform(0.8, 1.6) * SAMPLE_RATE)
                    x = sounds.SOUND_SOURCES[category][1](clip_rng, params, n_samples)
                    x = x + sounds.background(clip_rng, n_samples, clip_rng.uniform(-30, -6))
                    filename = f"{fold}-{src}-{take}-{target}.wav"
                    write_wav(
                        root / "audio" / filename, sounds.finish(x, clip_rng.uniform(-32, -18))
                    )
                    esc10 = str(category in ESC10)
                    rows.append((filename, fold, target, category, esc10, src, take))
    rows.sort(key=lambda row: row[0])
    header = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
    _write_csv(root / "meta" / "esc50.csv", header, rows)
    (root / "README.md").write_text(
        "Synthetic environmental sounds in the ESC-50 layout, written by mtjax.demo.\n"
        f"Categories: {', '.join(ESC_TARGETS)}; 5 folds; takes of one src_file share a fold.\n"
    )
    return len(rows)


def write_tagged(root: Path, *, seed: int, scale: float) -> int:
    """Multi-label CSV manifest layout under `root`; returns the number of clips."""
    rng = np.random.default_rng([seed, 3])
    n_sessions = max(5, round(45 * scale))
    test = set(rng.permutation(n_sessions)[: max(1, round(0.2 * n_sessions))].tolist())
    rows = []
    for s in range(n_sessions):
        session = f"s{s:02d}"
        session_rng = np.random.default_rng([seed, 3, s])
        hum = float(session_rng.choice([50.0, 60.0]) * session_rng.integers(1, 4))
        room = float(session_rng.uniform(-50, -38))
        for k in range(4):
            clip_rng = np.random.default_rng([seed, 3, s, k])
            n_tags = int(clip_rng.choice(4, p=[0.1, 0.35, 0.35, 0.2]))
            tags = sorted(clip_rng.choice(TAGS, size=n_tags, replace=False).tolist())
            n_samples = SAMPLE_RATE
            x = sounds.level(sounds.pink_noise(clip_rng, n_samples), room)
            x = x + sounds.level(
                np.sin(2 * np.pi * hum * np.arange(n_samples) / SAMPLE_RATE), room - 6
            )
            for tag in tags:
                part = sounds.TAG_SOURCES[tag](clip_rng, n_samples)
                x = x + sounds.level(part, clip_rng.uniform(-26, -18))
            loud = bool(clip_rng.random() < 0.5)
            level = clip_rng.uniform(-26, -16) if loud else clip_rng.uniform(-36, -24)
            path = f"clips/{session}_{k}.wav"
            write_wav(root / path, sounds.finish(x, level))
            split = "test" if s in test else "train"
            rows.append([path, ";".join(tags), "yes" if loud else "no", split, session])
    _write_csv(root / "manifest.csv", ["path", "tags", "loud", "split", "session"], rows)
    return len(rows)


def write_wav(path: Path, x: np.ndarray) -> None:
    """Write float [n] in [-1, 1] as a 16-bit PCM mono WAV at 16 kHz (parent folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.round(np.clip(x, -1.0, 1.0) * 32767).astype(np.int16)
    sf.write(path, pcm, SAMPLE_RATE, subtype="PCM_16")


# --- sound synthesis: pure functions of an rng and parameters -------------------------------


# --- small helpers ---------------------------------------------------------------------------


def _speakers(rng: np.random.Generator, n: int) -> list[str]:
    """`n` distinct 8-hex speaker ids, drawn until ~10% hash to validation and ~10% to test."""
    quota = {"validation": max(1, round(0.1 * n)), "test": max(1, round(0.1 * n))}
    quota["train"] = n - quota["validation"] - quota["test"]
    chosen: list[str] = []
    while len(chosen) < n:
        speaker = f"{int(rng.integers(0, 2**32)):08x}"
        split = speaker_split(speaker)
        if quota[split] > 0 and speaker not in chosen:
            chosen.append(speaker)
            quota[split] -= 1
    return chosen


def _marker(path: Path) -> dict | None:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return {k: found.get(k) for k in ("format", "seed", "scale")}


def _write_csv(path: Path, header: list[str], rows: Sequence[Sequence[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(text.getvalue())
