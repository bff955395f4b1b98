"""Feature extraction of single files, as run inside worker processes.

Kept apart from `mtjax.audio.cache` so that a worker imports only audio and feature code (no JAX).
Each batch of files is written atomically as one `<parts>/<first index>-<token>.npz`
(arrays `indices` [M], `lengths` [M], `features` [sum of lengths, F]; no pickles), and
each file that cannot be used is described in `<parts>/<index>.err.json`. One file per
batch rather than per clip: creating files costs more than extracting a short clip. An
interrupted extraction resumes from whatever parts exist.
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np

from mtjax import files
from mtjax.audio import loading


def error_path(parts: Path, index: int) -> Path:
    """Where the error record of job `index` goes in the `parts` folder."""
    return parts / f"{index:07d}.err.json"


def features_of(path: str, extraction) -> np.ndarray:
    """float32 [T, F] features of one audio file; raises AudioError naming the file."""
    signal, sample_rate = loading.load(path, extraction.sample_rate)
    loading.check_signal(signal, sample_rate, path, min_samples=extraction.min_samples)
    features = np.asarray(extraction(signal, sample_rate), np.float32)
    if features.ndim != 2 or features.shape[0] == 0:
        raise loading.AudioError(f"{path}: extraction gave features of shape {features.shape}")
    if not np.all(np.isfinite(features)):
        raise loading.AudioError(f"{path}: features contain NaN or inf ({extraction.key})")
    return features


def extract_batch(
    jobs: Sequence[tuple[int, str]], extraction, parts: str
) -> list[tuple[int, int, str | None]]:
    """Extract each `(index, path)` into one part file in `parts`; never raises for a bad file.

    Returns:
      (index, number of frames or -1, error message or None) per job.
    """
    parts_dir = Path(parts)
    results: list[tuple[int, int, str | None]] = []
    indices: list[int] = []
    arrays: list[np.ndarray] = []
    for index, path in jobs:
        try:
            features = features_of(path, extraction)
        except (loading.AudioError, OSError, ValueError, RuntimeError, EOFError) as err:
            message = str(err) if str(err).startswith(str(path)) else f"{path}: {err}"
            record = json.dumps({"path": path, "error": message}).encode()
            files.write_atomic(
                error_path(parts_dir, index), functools.partial(_write, record), durable=False
            )
            results.append((index, -1, message))
            continue
        indices.append(index)
        arrays.append(features)
        results.append((index, int(features.shape[0]), None))
    if arrays:
        name = f"{indices[0]:07d}-{uuid.uuid4().hex[:8]}.npz"
        save = functools.partial(
            np.savez,
            indices=np.asarray(indices, np.int64),
            lengths=np.asarray([a.shape[0] for a in arrays], np.int64),
            features=np.concatenate(arrays),
        )
        files.write_atomic(parts_dir / name, save, durable=False)
    return results


def _write(data: bytes, file: IO[bytes]) -> None:
    file.write(data)


class Part(NamedTuple):
    """Where one clip's features sit in a part file."""

    file: Path
    row: int  # first row in the file's `features`
    length: int


def scan_parts(parts: Path) -> tuple[dict[int, Part], dict[int, str]]:
    """Clips already extracted (index -> Part) and clips that failed (index -> message).

    A part file that cannot be read (cut short by a power loss) is deleted with a
    warning, so its clips are extracted again.
    """
    done: dict[int, Part] = {}
    for file in sorted(parts.glob("*.npz")):
        try:
            with np.load(file, allow_pickle=False) as batch:
                indices, lengths = batch["indices"], batch["lengths"]
        except (OSError, ValueError, KeyError, EOFError) as err:
            logging.getLogger("mtjax").warning("%s is unreadable (%s); re-extracting it", file, err)
            file.unlink()
            continue
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        for index, start, length in zip(indices.tolist(), starts.tolist(), lengths.tolist()):
            done[index] = Part(file, start, length)
    failed = {}
    for file in parts.glob("*.err.json"):
        index = int(file.name.split(".")[0])
        if index not in done:
            failed[index] = json.loads(file.read_text())["error"]
    return done, failed


def init_worker() -> None:
    """Process-pool initializer: one BLAS thread per worker, since the pool fills the cores."""
    from threadpoolctl import threadpool_limits

    global _LIMITS
    _LIMITS = threadpool_limits(1)


_LIMITS = None


def warm_up() -> None:
    """Import and run the audio stack once (librosa loads much of itself on first use).

    Run before forking workers, so that each starts warm.
    """
    from mtjax.audio.features import LogMel, Mfcc

    noise = np.random.default_rng(0).standard_normal(4096).astype(np.float32)
    LogMel(sample_rate=16000, n_fft=512)(noise, 22050)
    Mfcc(sample_rate=16000, n_fft=512)(noise, 16000)
