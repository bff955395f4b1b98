"""Feature extraction of single files, as run inside worker processes.

Kept apart from `store` so that a worker imports only audio and feature code (no JAX).
Each finished file is written atomically as `<parts>/<index>.npy`, or, when it cannot be
used, described in `<parts>/<index>.err.json`; an interrupted extraction resumes from
whatever parts exist.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mtjax import audio


def part_path(parts: Path, index: int) -> Path:
    return parts / f"{index:07d}.npy"


def error_path(parts: Path, index: int) -> Path:
    return parts / f"{index:07d}.err.json"


def write_atomic(path: Path, write) -> None:
    """Call `write(file)` on a temporary sibling of `path`, then rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def features_of(path: str, extraction) -> np.ndarray:
    """float32 [T, F] features of one audio file; raises AudioError naming the file."""
    signal, sample_rate = audio.load(path, extraction.sample_rate)
    audio.check_signal(signal, sample_rate, path, min_samples=extraction.min_samples)
    features = np.asarray(extraction(signal, sample_rate), np.float32)
    if features.ndim != 2 or features.shape[0] == 0:
        raise audio.AudioError(f"{path}: extraction gave features of shape {features.shape}")
    if not np.all(np.isfinite(features)):
        raise audio.AudioError(f"{path}: features contain NaN or inf ({extraction.key})")
    return features


def extract_batch(
    jobs: Sequence[tuple[int, str]], extraction, parts: str
) -> list[tuple[int, int, str | None]]:
    """Extract each `(index, path)` into `parts`; never raises for a bad file.

    Returns:
      (index, number of frames or -1, error message or None) per job.
    """
    parts_dir = Path(parts)
    results = []
    for index, path in jobs:
        try:
            features = features_of(path, extraction)
        except (audio.AudioError, OSError, ValueError, RuntimeError, EOFError) as err:
            message = str(err) if str(err).startswith(str(path)) else f"{path}: {err}"
            record = json.dumps({"path": path, "error": message}).encode()
            write_atomic(error_path(parts_dir, index), lambda f, r=record: f.write(r))
            results.append((index, -1, message))
            continue
        write_atomic(part_path(parts_dir, index), lambda f, a=features: np.save(f, a))
        results.append((index, int(features.shape[0]), None))
    return results


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
    from mtjax.features import LogMel, Mfcc

    noise = np.random.default_rng(0).standard_normal(4096).astype(np.float32)
    LogMel(sample_rate=16000, n_fft=512)(noise, 22050)
    Mfcc(sample_rate=16000, n_fft=512)(noise, 16000)
