"""Reading benchmarks: one JSON line per measurement, each a ratio within the same run.

  extraction with 2 workers vs serial          goal >= 1.8x
  cache hit vs first read                      goal >= 50x
  index-mode (on disk) vs in-memory data pass  goal >= 0.5x (in order, and shuffled batches)
  index-mode vs in-memory `fit` epoch           goal >= 0.5x ([101, 40] rows with the default
                                                CNN, [7, 24] rows with the default DNN)

Usage: python benchmarks/read_bench.py [--clips 1200] [--seconds 1.0] [--fit-rows 4000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

import mtjax as mt
from mtjax.audio import worker


def write_clips(root: Path, n: int, seconds: float, sample_rate: int = 16000) -> None:
    """`n` clips in 4 class folders: tones with noise and jittered pitch and level."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    for i in range(n):
        label = f"class{i % 4}"
        pitch = (200 + 300 * (i % 4)) * rng.uniform(0.9, 1.1)
        signal = rng.uniform(0.2, 0.8) * np.sin(2 * np.pi * pitch * t)
        signal += 0.05 * rng.standard_normal(t.shape)
        path = root / label / f"{i:05d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, signal.astype(np.float32), sample_rate, subtype="PCM_16")


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def emit(name: str, ratio: float, goal: float, **numbers) -> None:
    rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in numbers.items()}
    line = {"name": name, "ratio": round(ratio, 2), "goal": goal, "met": ratio >= goal}
    print(json.dumps(line | rounded), flush=True)


def fit_epochs(tmp: Path, rows: int, frames: int, features: int, batch_size: int) -> None:
    """`fit` epochs (default model, 4 classes) on the same rows in memory and on disk."""
    from mtjax.data.arrays import DiskArray, RaggedSource
    from mtjax.data.npyfile import NpyRows

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, rows)
    flat = rng.standard_normal([rows * frames, features]) + 0.3 * np.repeat(labels, frames)[:, None]
    path = tmp / f"fit_{frames}x{features}.npy"
    np.save(path, flat.astype(np.float32))
    offsets = np.arange(rows + 1, dtype=np.int64) * frames
    disk = DiskArray.from_source(RaggedSource(NpyRows(path), offsets), frames)
    task = mt.Task("class", ("a", "b", "c", "d"), "multiclass")
    y = np.eye(4, dtype=np.float32)[labels]
    on_disk = mt.TaskDataset.from_arrays(disk, y, [task])
    in_memory = mt.TaskDataset.from_arrays(np.asarray(disk), y, [task])
    seconds: dict[str, list[float]] = {"memory": [], "disk": []}
    for name, data in [("memory", in_memory), ("disk", on_disk)] * 2:
        trained = mt.fit(
            None, data, epochs=3, batch_size=batch_size, early_stop=None, progress=False
        )
        seconds[name].append(float(np.median([r["seconds"] for r in trained.history[1:]])))
    memory_s, disk_s = min(seconds["memory"]), min(seconds["disk"])
    emit(
        f"index_mode_vs_in_memory_fit_epoch_{frames}x{features}",
        memory_s / disk_s,
        0.5,
        in_memory_epoch_s=memory_s,
        index_mode_epoch_s=disk_s,
        rows=rows,
        batch_size=batch_size,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=1200)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--fit-rows", type=int, default=4000)
    args = parser.parse_args()
    extraction = mt.features.LogMel(sample_rate=16000, n_mels=40)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_clips(root, args.clips, args.seconds)
        reader = mt.readers.FolderReader(root, task="class")

        def read(cache, **kw):
            return mt.read(reader, extraction, cache=Path(tmp) / cache, progress=False, **kw)

        # librosa's one-time start-up (it loads much of itself on first use) is paid by
        # neither side of the worker comparison, and by the first read as a user sees it.
        warm_up_s, _ = timed(worker.warm_up)
        serial_s, _ = timed(lambda: read("serial", n_jobs=1))
        parallel_s, _ = timed(lambda: read("parallel", n_jobs=2))
        emit(
            "extract_2_workers_vs_serial",
            serial_s / parallel_s,
            1.8,
            serial_s=serial_s,
            parallel_s=parallel_s,
            clips=args.clips,
        )

        hits = [timed(lambda: read("parallel", n_jobs=2))[0] for _ in range(3)]
        hit_s = float(np.median(hits))
        emit(
            "cache_hit_vs_first_read",
            (warm_up_s + parallel_s) / hit_s,
            50.0,
            first_read_s=warm_up_s + parallel_s,
            cache_hit_s=hit_s,
            ratio_without_start_up=round(parallel_s / hit_s, 2),
        )

        dense = read("parallel")
        lazy = read("parallel", in_memory=False)

        def one_pass(ds):  # what a streamed pass does: scaler statistics
            return mt.data.fit_scaler(ds)

        order = np.random.default_rng(0).permutation(len(dense))

        def shuffled_batches(ds, batch_size=64):
            total = 0.0
            for begin in range(0, len(order), batch_size):
                rows = order[begin : begin + batch_size]
                total += float(ds.x[rows].sum())
            return total

        for name, fn in [("pass", one_pass), ("shuffled_batches", shuffled_batches)]:
            memory_s = float(np.median([timed(lambda f=fn: f(dense))[0] for _ in range(5)]))
            disk_s = float(np.median([timed(lambda f=fn: f(lazy))[0] for _ in range(5)]))
            emit(
                f"index_mode_vs_in_memory_{name}",
                memory_s / disk_s,
                0.5,
                in_memory_s=memory_s,
                index_mode_s=disk_s,
                feature_mb=dense.x.nbytes / 2**20,
            )

        fit_epochs(Path(tmp), args.fit_rows, 101, 40, batch_size=32)
        fit_epochs(Path(tmp), 6 * args.fit_rows, 7, 24, batch_size=64)


if __name__ == "__main__":
    main()
