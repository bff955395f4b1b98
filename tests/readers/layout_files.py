"""Small files the reader tests write: tones, text and CSV lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from conftest import write_tone

from mtjax.audio.features import LogMel

SHORT = 0.05  # seconds per clip
LOGMEL = LogMel(sample_rate=16000, n_fft=256, hop_length=160, n_mels=8)


def wav(path: Path, frequency: float = 440.0, seconds: float = SHORT) -> Path:
    """A short 16-bit tone at 16 kHz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * 16000)) / 16000
    sf.write(path, 0.3 * np.sin(2 * np.pi * frequency * t), 16000, subtype="PCM_16")
    return path


def tone(path: Path, i: int = 0) -> None:
    """The i-th of a set of distinct short tones."""
    write_tone(path, 300.0 + 40.0 * i, seconds=SHORT, seed=i)


def tones(folder: Path, names: list[str], seconds: float = 0.2) -> None:
    """One distinct tone per file name under `folder`."""
    for i, name in enumerate(names):
        write_tone(folder / name, 300.0 + 100 * i, seconds=seconds, seed=i)


def write_text(path: Path, text: str) -> None:
    """`text` at `path`, its folders made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_lines(path: Path, lines: list[str], newline: str = "\n") -> None:
    """`lines` at `path` with the given line ending, its folders made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((newline.join(lines) + newline).encode())


def by_id(reader) -> dict:
    """The reader's items by id."""
    return {item.id: item for item in reader.items()}
