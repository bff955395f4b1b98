"""Three real-audio datasets in public layouts, built from Debian packages (no downloads).

    speech/        1.0 s  CSV manifest (`CsvReader`): espeak-ng words by 32 voice variants
                          tasks word (10 classes), sex (binary), rate (binary, slow < 180 wpm)
                          split column by voice: 20 train, 4 validation, 8 test voices
    instruments/   3.0 s  ESC-50 layout (`ESC50`): recorded freepats notes at varied pitches
                          and durations; task category = instrument family (9 classes);
                          5 folds, src_file = the recorded sample (patch + wave)
    drums/         2.0 s  FSD50K layout (`FSD50K`): 1-3 drum types from one Hydrogen kit mixed;
                          task labels (multilabel, 6 drum types); uploader = kit; train,
                          val and eval sides hold different kits

Every clip is 16 kHz mono 16-bit with random gain and pink noise (a random SNR). The same
seed gives the same files. Needs the Debian packages in `PACKAGES` (see `check_packages`).

Usage: python benchmarks/real_audio_data.py [--out /tmp/mtjax_real_audio] [--seed 0] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SR = 16000
MARKER = ".real_audio_data"  # marks a folder this script made (and may replace)
FREEPATS = Path("/usr/share/midi/freepats/Tone_000")
DRUMKITS = Path("/usr/share/hydrogen/data/drumkits")
# Debian package -> the file or command that shows it is installed.
PACKAGES = {"espeak-ng": "espeak-ng", "freepats": FREEPATS, "hydrogen-drumkits": DRUMKITS}

WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
FEMALE = ("f1", "f2", "f3", "f4", "f5", "Alicia", "Andrea", "Annie", "aunty", "belinda")
FEMALE += ("linda", "steph", "steph2", "steph3", "anika", "grandma")
MALE = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "adam", "Alex", "Andy", "david")
MALE += ("ed", "edward", "john", "paul")
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc")

# General MIDI families of the freepats patches that are recordings of acoustic or electric
# instruments (program numbers; synths, effects and timpani left out).
FAMILIES = {
    "piano": (0, 1, 2, 4, 5, 6, 7),
    "chromatic_percussion": (8, 9, 13, 14, 15),
    "organ": (16, 19, 21, 23),
    "guitar": (24, 25, 26, 27, 28, 29, 30),
    "bass": (32, 33, 34, 35, 36, 37),
    "strings": (40, 42, 44, 45, 46, 48),
    "brass": (56, 57, 58, 59, 60, 61),
    "reed": (64, 65, 66, 67, 68, 69, 70, 71),
    "pipe": (72, 73, 74, 75, 76, 79),
}

# Drum type -> instrument-name pattern in the kits' drumkit.xml (first match wins).
DRUM_TYPES = {
    "Bass_drum": r"kick|bass ?drum|bassdrum",
    "Snare_drum": r"snare",
    "Hi-hat": r"\bhh\b|hi-?hat|\bhat\b",
    "Tom-tom": r"\btom",
    "Cymbal": r"crash|ride|splash|china|cymbal",
    "Clapping": r"clap",
}
# Kit folder -> (group, side). The three Millo kits share an author, so one group.
KITS = {
    "BJA_Pacific": ("BJA_Pacific", "train"),
    "Millo-Drums_v.1": ("Millo", "train"),
    "Millo_MultiLayered2": ("Millo", "train"),
    "Millo_MultiLayered3": ("Millo", "train"),
    "The Black Pearl 1.0": ("BlackPearl", "train"),
    "VariBreaks": ("VariBreaks", "train"),
    "rumpf_kit_z01_h2": ("rumpf", "train"),
    "ColomboAcousticDrumkit": ("Colombo", "val"),
    "ElectricEmpireKit": ("ElectricEmpire", "val"),
    "Audiophob": ("Audiophob", "eval"),
    "ForzeeStereo": ("Forzee", "eval"),
    "HardElectro1": ("HardElectro1", "eval"),
}
# Clips per speech voice-and-word, per instrument family, per drum kit folder.
FULL = {"speech": 3, "instruments": 56, "drums": 60}
QUICK = {"speech": 1, "instruments": 12, "drums": 12}


def check_packages() -> None:
    """Exits with one line naming the missing Debian packages and the command to install them."""
    missing = [
        name
        for name, probe in PACKAGES.items()
        if not (Path(probe).exists() if isinstance(probe, Path) else shutil.which(probe))
    ]
    if missing:
        sys.exit(
            f"real_audio_data: missing Debian package(s) {', '.join(missing)}; install with:"
            f" apt-get install -y {' '.join(PACKAGES)}"
        )


# Signal helpers


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """float64 [n] noise with a 1/f power spectrum, unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1.0))
    noise = np.fft.irfft(spectrum, n)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def finish(x: np.ndarray, rng: np.random.Generator, snr_db: tuple[float, float]) -> np.ndarray:
    """`x` plus pink noise at a random SNR (of its active part), peak-normalised to a random
    level in [-20, -1] dBFS; float32."""
    active = np.abs(x) > 0.05 * np.abs(x).max()
    power = np.mean(x[active] ** 2)
    snr = rng.uniform(*snr_db)
    x = x + pink_noise(len(x), rng) * np.sqrt(power / 10 ** (snr / 10))
    return (x / np.abs(x).max() * 10 ** (rng.uniform(-20, -1) / 20)).astype(np.float32)


def mono_16k(x: np.ndarray, rate: float) -> np.ndarray:
    """float64 mono at 16 kHz (soxr, anti-aliased)."""
    x = np.asarray(x, np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    return soxr.resample(x, rate, SR) if rate != SR else x


def trim(x: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    """`x` without its leading and trailing samples below `threshold` of its peak."""
    (loud,) = np.nonzero(np.abs(x) > threshold * np.abs(x).max())
    return x[loud[0] : loud[-1] + 1] if loud.size else x


def fade(x: np.ndarray, seconds: float) -> np.ndarray:
    """`x` with a linear fade-out over its last `seconds`."""
    n = min(len(x), int(seconds * SR))
    out = x.copy()
    out[len(x) - n :] *= np.linspace(1.0, 0.0, n)
    return out


def write(path: Path, x: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, SR, subtype="PCM_16")


# Speech: espeak-ng


def speak(text: str, voice: str, rate: int, pitch: int, tmp: Path) -> np.ndarray:
    """espeak-ng's rendering of `text`, trimmed, at 16 kHz."""
    wav = tmp / "say.wav"
    cmd = ["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", str(wav), text]
    subprocess.run(cmd, check=True, capture_output=True)
    x, rate_in = sf.read(wav)
    return trim(mono_16k(x, rate_in))


def build_speech(root: Path, reps: int, rng: np.random.Generator) -> list[dict]:
    """speech/manifest.csv and speech/clips/*.wav; the manifest's rows."""
    voices = []
    for sex, names in (("female", FEMALE), ("male", MALE)):
        order = [names[i] for i in rng.permutation(len(names))]
        sides = ["test"] * 4 + ["validation"] * 2 + ["train"] * (len(names) - 6)
        voices += [(v, sex, side) for v, side in zip(order, sides)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for voice, sex, side in sorted(voices):
            for rep in range(reps):
                for word in WORDS:
                    rate = int(rng.integers(120, 241))
                    accent = ACCENTS[rng.integers(len(ACCENTS))]
                    x = speak(word, f"{accent}+{voice}", rate, int(rng.integers(25, 76)), Path(tmp))
                    x = x[: int(0.95 * SR)]
                    clip = np.zeros(SR)
                    start = int(rng.integers(0, SR - len(x) + 1))
                    clip[start : start + len(x)] = x
                    path = f"clips/{voice}_{word}_{rep}.wav"
                    write(root / path, finish(clip, rng, (5.0, 30.0)))
                    speed = "slow" if rate < 180 else "fast"
                    rows.append(dict(path=path, word=word, sex=sex, rate=speed, voice=voice))
                    rows[-1]["split"] = side
    with open(root / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["path", "word", "sex", "rate", "voice", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


# Instruments: GUS patches (freepats)


def read_patch(path: Path) -> list[dict]:
    """The waves of a Gravis Ultrasound patch: samples (float64), rate, root and key range
    (Hz), loop points (samples) and mode bits (1 16-bit, 2 unsigned, 4 loop, 8 ping-pong)."""
    data = path.read_bytes()
    if not data.startswith(b"GF1PATCH1"):
        raise ValueError(f"{path}: not a GF1 patch")
    (count,) = struct.unpack_from("<H", data, 85)
    offset, waves = 129 + 63 + 47, []  # file, instrument and layer headers
    for _ in range(count):
        size, start, end, rate, low, high, root = struct.unpack_from("<IIIHIII", data, offset + 8)
        modes = data[offset + 55]
        raw = data[offset + 96 : offset + 96 + size]
        width = 2 if modes & 1 else 1
        kind = {(2, 0): "<i2", (2, 2): "<u2", (1, 0): "i1", (1, 2): "u1"}[(width, modes & 2)]
        x = np.frombuffer(raw, kind).astype(np.float64)
        if modes & 2:
            x -= 2 ** (8 * width - 1)
        x /= 2 ** (8 * width - 1)
        waves.append(
            dict(x=x, rate=rate, low=low / 1000, high=high / 1000, root=root / 1000)
            | dict(start=start // width, end=end // width, modes=modes)
        )
        offset += 96 + size
    return waves


def play(wave: dict, freq: float, seconds: float, release: float) -> np.ndarray:
    """A note of `wave` at `freq` Hz held for `seconds`, then released; at 16 kHz."""
    speed = freq / wave["root"]
    needed = int((seconds + release) * wave["rate"] * speed) + 64
    x = wave["x"]
    if wave["modes"] & 4 and wave["end"] - wave["start"] > 8 and len(x) < needed:
        loop = x[wave["start"] : wave["end"]]
        if wave["modes"] & 8:
            loop = np.concatenate([loop, loop[::-1]])
        repeats = (needed - wave["start"]) // len(loop) + 1
        x = np.concatenate([x[: wave["start"]], np.tile(loop, repeats)])
    note = soxr.resample(x[:needed], wave["rate"] * speed, SR)
    note = note[: int((seconds + release) * SR)]
    note[: int(0.005 * SR)] *= np.linspace(0, 1, int(0.005 * SR))[: len(note)]
    return fade(note, release)


def build_instruments(root: Path, per_family: int, rng: np.random.Generator) -> list[dict]:
    """instruments/ESC-50-master/{meta/esc50.csv, audio/*.wav}; the CSV's rows."""
    folder = root / "ESC-50-master"
    patches = {int(p.name[:3]): p for p in FREEPATS.glob("*.pat")}
    rows = []
    for target, (family, programs) in enumerate(FAMILIES.items()):
        sources = []
        for program in programs:
            for w, wave in enumerate(read_patch(patches[program])):
                sources.append((f"{program:03d}{w:02d}", wave))
        folds = rng.permutation(len(sources)) % 5 + 1
        order = rng.permutation(len(sources))  # clips spread evenly over the recordings
        takes: Counter = Counter()
        for i in range(per_family):
            k = int(order[i % len(order)])
            src, wave = sources[k]
            low = max(wave["low"], wave["root"] * 2 ** (-7 / 12), 30.0)
            high = min(wave["high"], wave["root"] * 2 ** (7 / 12), 4000.0)
            freq = float(np.exp(rng.uniform(np.log(low), np.log(max(high, low)))))
            onset, hold = rng.uniform(0.0, 0.4), rng.uniform(0.3, 2.2)
            note = play(wave, freq, hold, release=rng.uniform(0.1, 0.3))
            clip = np.zeros(3 * SR)
            start = int(onset * SR)
            note = note[: len(clip) - start]
            clip[start : start + len(note)] = note
            take = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[takes[src] % 26] * (takes[src] // 26 + 1)
            takes[src] += 1
            name = f"{folds[k]}-{src}-{take}-{target}.wav"
            write(folder / "audio" / name, finish(clip, rng, (10.0, 35.0)))
            rows.append(
                dict(filename=name, fold=int(folds[k]), target=target, category=family)
                | dict(esc10="False", src_file=src, take=take)
            )
    rows.sort(key=lambda r: r["filename"])
    (folder / "meta").mkdir(parents=True, exist_ok=True)
    with open(folder / "meta" / "esc50.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


# Drums: Hydrogen kits


def kit_sounds(folder: Path) -> dict[str, list[Path]]:
    """Drum type -> the kit's sample files of that type (every layer of every instrument)."""
    tree = ET.parse(folder / "drumkit.xml")
    out: dict[str, list[Path]] = {}
    for instrument in tree.iter():
        if _tag(instrument) != "instrument":
            continue
        name = next((e.text or "" for e in instrument if _tag(e) == "name"), "")
        kind = next((k for k, p in DRUM_TYPES.items() if re.search(p, name, re.I)), None)
        files = [folder / (e.text or "") for e in instrument.iter() if _tag(e) == "filename"]
        files = [f for f in files if f.is_file() and "empty" not in f.name.lower()]
        if kind and files:
            out.setdefault(kind, []).extend(files)
    return {k: sorted(v) for k, v in out.items()}


def _tag(element: ET.Element) -> str:
    """An XML element's tag without its namespace."""
    return element.tag.rsplit("}", 1)[-1]


def build_drums(root: Path, per_kit: int, rng: np.random.Generator) -> list[dict]:
    """drums/FSD50K.{ground_truth,dev_audio,eval_audio}; the dev and eval rows."""
    vocabulary = list(DRUM_TYPES)
    loaded: dict[Path, np.ndarray] = {}
    rows = []
    for kit, (group, side) in KITS.items():
        sounds = kit_sounds(DRUMKITS / kit)
        kinds = sorted(sounds)
        for _ in range(per_kit):
            count = min(len(kinds), int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25])))
            chosen = sorted(kinds[i] for i in rng.permutation(len(kinds))[:count])
            clip = np.zeros(2 * SR)
            for kind in chosen:
                for _ in range(int(rng.integers(1, 3))):
                    file = sounds[kind][int(rng.integers(len(sounds[kind])))]
                    if file not in loaded:
                        x, rate = sf.read(file, always_2d=True)
                        loaded[file] = trim(mono_16k(x, rate), 0.001)
                    hit = loaded[file] / (np.abs(loaded[file]).max() + 1e-12)
                    hit = hit * 10 ** (rng.uniform(-15, 0) / 20)
                    start = int(rng.uniform(0, 1.6) * SR)
                    hit = fade(hit[: len(clip) - start], 0.05)
                    clip[start : start + len(hit)] += hit
            fname = str(100000 + len(rows))
            audio = "FSD50K.eval_audio" if side == "eval" else "FSD50K.dev_audio"
            write(root / audio / f"{fname}.wav", finish(clip, rng, (10.0, 35.0)))
            rows.append(
                dict(fname=fname, labels=",".join(chosen), mids=",".join(_mid(k) for k in chosen))
                | dict(split=side, uploader=group)
            )
    truth = root / "FSD50K.ground_truth"
    truth.mkdir(parents=True, exist_ok=True)
    with open(truth / "vocabulary.csv", "w", newline="") as f:
        csv.writer(f).writerows([i, label, _mid(label)] for i, label in enumerate(vocabulary))
    for name, keep, columns in (
        ("dev.csv", ("train", "val"), ["fname", "labels", "mids", "split", "uploader"]),
        ("eval.csv", ("eval",), ["fname", "labels", "mids", "uploader"]),
    ):
        with open(truth / name, "w", newline="") as f:
            writer = csv.DictWriter(f, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(r for r in rows if r["split"] in keep)
    return rows


def _mid(label: str) -> str:
    """A stand-in for an AudioSet mid (these labels are not AudioSet's)."""
    return "/x/" + label.lower().replace("-", "_")


# The whole build


def fresh(folder: Path) -> Path:
    """`folder`, emptied if this script made it before; an error if something else is there."""
    if folder.exists():
        if not (folder / MARKER).exists():
            sys.exit(f"real_audio_data: {folder} exists and was not made by this script")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("made by benchmarks/real_audio_data.py\n")
    return folder


def summary(speech: list[dict], instruments: list[dict], drums: list[dict]) -> dict:
    """Clip counts per dataset and side, clip seconds, and each task's labels."""
    return {
        "speech": dict(
            layout="CsvReader (speech/manifest.csv)",
            seconds=1.0,
            sides=dict(Counter(r["split"] for r in speech)),
            tasks={t: dict(Counter(r[t] for r in speech)) for t in ("word", "sex", "rate")},
        ),
        "instruments": dict(
            layout="ESC50 (instruments/ESC-50-master)",
            seconds=3.0,
            folds=dict(Counter(str(r["fold"]) for r in instruments)),
            tasks={"category": dict(Counter(r["category"] for r in instruments))},
        ),
        "drums": dict(
            layout="FSD50K (drums/)",
            seconds=2.0,
            sides=dict(Counter(r["split"] for r in drums)),
            tasks={"labels": dict(Counter(x for r in drums for x in r["labels"].split(",")))},
        ),
    }


def build(out: Path, *, seed: int = 0, quick: bool = False) -> dict:
    """Writes the three datasets under `out` and `out/datasets.json`; returns the summary."""
    check_packages()
    counts = QUICK if quick else FULL
    out.mkdir(parents=True, exist_ok=True)
    speech = build_speech(fresh(out / "speech"), counts["speech"], np.random.default_rng(seed))
    instruments = build_instruments(
        fresh(out / "instruments"), counts["instruments"], np.random.default_rng(seed + 1)
    )
    drums = build_drums(fresh(out / "drums"), counts["drums"], np.random.default_rng(seed + 2))
    info = summary(speech, instruments, drums) | {"seed": seed, "quick": quick}
    (out / "datasets.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/mtjax_real_audio"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a few clips per dataset")
    args = parser.parse_args()
    info = build(args.out, seed=args.seed, quick=args.quick)
    for name, part in info.items():
        if isinstance(part, dict):
            print(json.dumps({"dataset": name} | part), flush=True)


if __name__ == "__main__":
    main()
