"""Feature extraction of single files, as run inside worker processes.

Kept apart from `mtjax.audio.cache` so that a worker imports only audio and feature code (no JAX).
Each batch of files is written atomically as one `<parts>/<first id's digest>-<token>.npz`
(arrays `ids` [M], `sizes` [M], `mtime_ns` [M], `sha256` [M] of the audio file's bytes,
`lengths` [M], `features` [sum of lengths, F]; no pickles), and each file that cannot be
used is described in `<parts>/<id's digest>.err.json`. One file per batch rather than per
clip: creating files costs more than extracting a short clip. A clip is reused only for
the same file: the same id, size and modification time (its `Stamp`), so the parts of a
read that stopped on a bad file serve the next read after the file was replaced. An
interrupted extraction resumes from whatever parts exist; a damaged part is deleted with a
warning naming it, and its clips are extracted again.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np

from mtjax import files
from mtjax.audio import loading, locks

log = logging.getLogger("mtjax")


class Stamp(NamedTuple):
    """What identifies one version of an item's file without reading it."""

    id: str
    size: int  # bytes; -1 when the file cannot be looked at
    mtime_ns: int


class Part(NamedTuple):
    """Where one clip's features sit in a part file."""

    file: Path
    row: int  # first row in the file's `features`
    length: int
    sha256: str  # of the audio file's bytes when it was extracted


def stamp(item_id: str, path: str) -> Stamp:
    """The `Stamp` of the file at `path` now."""
    try:
        stat = os.stat(path)
    except OSError:
        return Stamp(item_id, -1, -1)
    return Stamp(item_id, stat.st_size, stat.st_mtime_ns)


def file_sha256(path: str | os.PathLike) -> str | None:
    """Hex sha256 of a file's bytes, None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(functools.partial(f.read, 1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def error_path(parts: Path, item_id: str) -> Path:
    """Where the error record of item `item_id` goes in the `parts` folder."""
    return parts / f"{hashlib.sha1(item_id.encode()).hexdigest()[:16]}.err.json"


def features_of(path: str, extraction) -> np.ndarray:
    """float32 [T, F] features of one audio file; raises AudioError naming the file."""
    signal_, sample_rate = loading.load(path, extraction.sample_rate)
    loading.check_signal(signal_, sample_rate, path, min_samples=extraction.min_samples)
    features = np.asarray(extraction(signal_, sample_rate), np.float32)
    if features.ndim != 2 or features.shape[0] == 0:
        raise loading.AudioError(f"{path}: extraction gave features of shape {features.shape}")
    if not np.all(np.isfinite(features)):
        raise loading.AudioError(f"{path}: features contain NaN or inf ({extraction.key})")
    return features


def extract_batch(
    jobs: Sequence[tuple[str, str]], extraction, parts: str
) -> list[tuple[str, int, str | None]]:
    """Extract each `(id, path)` into one part file in `parts`; never raises for a bad file.

    Returns:
      (id, number of frames or -1, error message or None) per job.
    """
    parts_dir = Path(parts)
    results: list[tuple[str, int, str | None]] = []
    stamps: list[Stamp] = []
    digests: list[str] = []
    arrays: list[np.ndarray] = []
    for item_id, path in jobs:
        file_stamp, digest = stamp(item_id, path), file_sha256(path)
        try:
            features = features_of(path, extraction)
        except (loading.AudioError, OSError, ValueError, RuntimeError, EOFError) as err:
            message = str(err) if str(err).startswith(str(path)) else f"{path}: {err}"
            record = {"path": path, "error": message, "sha256": digest, **file_stamp._asdict()}
            data = json.dumps(record).encode()
            write = functools.partial(_write, data)
            files.write_atomic(error_path(parts_dir, item_id), write, durable=False)
            results.append((item_id, -1, message))
            continue
        stamps.append(file_stamp)
        digests.append(digest or "")
        arrays.append(features)
        results.append((item_id, int(features.shape[0]), None))
    if arrays:
        first = hashlib.sha1(stamps[0].id.encode()).hexdigest()[:8]
        save = functools.partial(
            np.savez,
            ids=np.asarray([s.id for s in stamps], str),
            sizes=np.asarray([s.size for s in stamps], np.int64),
            mtime_ns=np.asarray([s.mtime_ns for s in stamps], np.int64),
            sha256=np.asarray(digests, str),
            lengths=np.asarray([a.shape[0] for a in arrays], np.int64),
            features=np.concatenate(arrays),
        )
        files.write_atomic(parts_dir / f"{first}-{uuid.uuid4().hex[:8]}.npz", save, durable=False)
    return results


def _write(data: bytes, file: IO[bytes]) -> None:
    file.write(data)


def scan_parts(parts: Path) -> tuple[dict[Stamp, Part], dict[Stamp, dict]]:
    """Clips already extracted (stamp -> Part) and files that failed (stamp -> error record).

    A part or error file that cannot be read (cut short or zero-filled by a power loss,
    or written by something else) is deleted with a warning naming it, so its clips are
    extracted again. Reads only the small arrays; `part_features` reads the features.
    """
    done: dict[Stamp, Part] = {}
    for file in sorted(parts.glob("*.npz")):
        try:
            with np.load(file, allow_pickle=False) as batch:
                columns = [batch[k] for k in ("ids", "sizes", "mtime_ns", "sha256", "lengths")]
            ids, sizes, mtimes, digests, lengths = columns
            if ids.dtype.kind != "U" or digests.dtype.kind != "U":
                raise ValueError("ids or sha256 are not strings")
            if any(c.dtype.kind not in "iu" for c in (sizes, mtimes, lengths)):
                raise ValueError("sizes, mtime_ns or lengths are not integers")
            if any(c.shape != ids.shape or c.ndim != 1 for c in columns) or np.any(lengths <= 0):
                raise ValueError(f"arrays of shapes {[c.shape for c in columns]}")
        except Exception as err:  # whatever a damaged file raises: the cure is to extract again
            discard(file, err)
            continue
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        rows = zip(*(c.tolist() for c in (ids, sizes, mtimes, starts, lengths, digests)))
        for item_id, size, mtime, start, length, digest in rows:
            done[Stamp(item_id, size, mtime)] = Part(file, start, length, digest)
    failed: dict[Stamp, dict] = {}
    for file in sorted(parts.glob("*.err.json")):
        try:
            record = json.loads(file.read_text())
            if not all(isinstance(record.get(k), str) for k in ("id", "path", "error")):
                raise ValueError("not an error record")
            failed[Stamp(record["id"], int(record["size"]), int(record["mtime_ns"]))] = record
        except Exception as err:
            discard(file, err)
    return done, {s: r for s, r in failed.items() if s not in done}


def part_features(file: Path) -> np.ndarray | None:
    """float32 [sum of lengths, F] of a part file; None, after `discard`, when it is damaged."""
    try:
        with np.load(file, allow_pickle=False) as batch:
            features, lengths = batch["features"], batch["lengths"]
        if features.ndim != 2 or features.dtype != np.float32 or len(features) != lengths.sum():
            raise ValueError(
                f"features {features.dtype} {features.shape}, {lengths.sum()} rows listed"
            )
    except Exception as err:  # a torn zip raises BadZipFile, others ValueError, EOFError, ...
        discard(file, err)
        return None
    return features


def discard(file: Path, err: BaseException) -> None:
    """Deletes a damaged part or error file, with a warning naming it."""
    reason = f"{type(err).__name__}: {err}".splitlines()[0]
    log.warning(
        "cache part %s is damaged (%s); deleted, its clips are extracted again", file, reason
    )
    file.unlink(missing_ok=True)


def init_worker(parent: int | None = None) -> None:
    """Process-pool initializer: one BLAS thread per worker, and exit when `parent` dies.

    The pool fills the cores, hence one thread each. A worker whose parent was killed
    (SIGKILL gives it no chance to stop its pool) exits at once on Linux (the kernel's
    parent-death signal) and elsewhere within `_WATCH_SECONDS` (a thread watching the
    parent process id).
    """
    from threadpoolctl import threadpool_limits

    global _LIMITS
    _LIMITS = threadpool_limits(1)
    locks.close_inherited()
    if parent is not None:
        _exit_with(parent)


_LIMITS = None
_WATCH_SECONDS = 0.25
_PR_SET_PDEATHSIG = 1


def _exit_with(parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watching thread below still ends this process

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_WATCH_SECONDS)
        os._exit(1)

    if os.getppid() != parent:  # the parent died before the signal was set up
        os._exit(1)
    threading.Thread(target=watch, name="mtjax-parent-watch", daemon=True).start()


def warm_up() -> None:
    """Import and run the audio stack once (librosa loads much of itself on first use).

    Run before forking workers, so that each starts warm.
    """
    from mtjax.audio.features import LogMel, Mfcc

    noise = np.random.default_rng(0).standard_normal(4096).astype(np.float32)
    LogMel(sample_rate=16000, n_fft=512)(noise, 22050)
    Mfcc(sample_rate=16000, n_fft=512)(noise, 16000)
