"""Out-of-core training: shuffled batches read from disk vs the same rows in memory.

One JSON line per measurement, each a ratio (in-memory time / out-of-core time, so 1.0 is
as fast as memory; goal >= 0.5) within the same run, for [101, 40] rows (batch 32; `fit`'s
default model for them is the CNN) and [7, 24] rows (batch 64; the default DNN):

  batches_*   one shuffled epoch of host batches, each summed, read by:
                grain            `loader.epoch_batches` as shipped: blocks of steps
                                 (`loader.steps_per_block`), 2 threads, 2 blocks ahead
                grain_per_batch  the same, one batch per read, 4 ahead
                threads          the blocks from a plain thread pool, 2 threads, 2 ahead
                serial_blocks    the blocks read one at a time, in the consuming thread's turn
                per_row          one `pread` per row, in plan order, no threads (the old path)
              against `loader.read_block` of the in-memory rows, batch by batch.
  fit_*       a `fit` epoch (median of the epochs after the first, best of 2 runs):
                grain     the host-fed epoch as shipped
                threads   its loader swapped for the thread pool
                one_ahead one thread reading one batch ahead (the host-fed loop before)
              against the in-memory epoch (rows gathered on the device).

The features are written with numpy and read back by `NpyRows`, as a cache entry read
with `in_memory=False` reads them (`mtjax.audio.entries.load(mmap=True)`).

Usage: python benchmarks/out_of_core.py [--large-rows 1000] [--small-rows 12000] [--epochs 3]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

import mtjax as mt
from mtjax.data.arrays import DiskArray, RaggedSource
from mtjax.data.npyfile import NpyRows
from mtjax.train import loader, schedules


def make_data(folder: Path, rows: int, frames: int, features: int) -> tuple:
    """(in memory, on disk): the same rows of 4 learnable classes."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, rows)
    flat = rng.standard_normal([rows * frames, features], np.float32)
    flat += 0.3 * np.repeat(labels, frames)[:, None].astype(np.float32)
    path = folder / f"features_{frames}x{features}.npy"
    np.save(path, flat)
    offsets = np.arange(rows + 1, dtype=np.int64) * frames
    disk = DiskArray.from_source(RaggedSource(NpyRows(path), offsets), frames)
    task = mt.Task("class", ("a", "b", "c", "d"), "multiclass")
    y = np.eye(4, dtype=np.float32)[labels]
    on_disk = mt.concat([mt.TaskDataset.from_arrays(disk, y, [task])])
    return on_disk.replace(x=np.asarray(disk)), on_disk


def threaded(data, planned, *, read=loader.read_block, block=None, start=0, threads=2, prefetch=2):
    """`loader.epoch_batches` from a plain thread pool (a generator: it has `close()`)."""
    n_steps, batch_size = planned.index.shape
    block = loader.steps_per_block(data, batch_size) if block is None else block
    starts = list(range(start, n_steps, block))
    with cf.ThreadPoolExecutor(threads) as pool:

        def submit(b):
            steps = slice(starts[b], min(starts[b] + block, n_steps))
            return pool.submit(read, data, planned.index[steps], planned.weight[steps])

        ahead = [submit(b) for b in range(min(prefetch, len(starts)))]
        for b in range(len(starts)):
            batches = ahead.pop(0).result()
            if b + prefetch < len(starts):
                ahead.append(submit(b + prefetch))
            yield from batches


def per_row(data, planned):
    """One `pread` per row, in plan order: what a batch cost before spans were joined."""
    source = data.x.sources[0]
    for rows, weight in zip(planned.index, planned.weight):
        x = np.stack([source.flat.read(int(source.offsets[r]), data.x.length) for r in rows])
        yield x, data.y[rows], data.has_task[rows], weight


def emit(name: str, memory_s: float, disk_s: float, **numbers) -> None:
    ratio = memory_s / disk_s
    line = {"name": name, "ratio": round(ratio, 2), "goal": 0.5, "met": ratio >= 0.5}
    line |= {"in_memory_s": round(memory_s, 4), "out_of_core_s": round(disk_s, 4)} | numbers
    print(json.dumps(line), flush=True)


def best_of(fn, repeats: int = 5) -> float:
    fn()  # warm-up: imports, thread start-up, the page cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def batch_reads(memory, disk, batch_size: int, shape: str) -> None:
    planned = schedules.mixed()(jax.random.key(0), disk, batch_size)

    def in_memory():
        for rows, weight in zip(planned.index, planned.weight):
            yield from loader.read_block(memory, rows[None], weight[None])

    memory_s = best_of(lambda: [x.sum() for x, *_ in in_memory()])
    readers = {
        "grain": lambda: loader.epoch_batches(disk, planned),
        "grain_per_batch": lambda: loader.epoch_batches(disk, planned, block=1, prefetch=4),
        "threads": lambda: threaded(disk, planned),
        "serial_blocks": lambda: threaded(disk, planned, threads=1, prefetch=1),
        "per_row": lambda: per_row(disk, planned),
    }
    for name, batches in readers.items():
        disk_s = best_of(lambda b=batches: [x.sum() for x, *_ in b()])
        emit(f"batches_{name}_{shape}", memory_s, disk_s, steps=len(planned.index))


def fit_epoch(data, batch_size: int, epochs: int) -> float:
    trained = mt.fit(
        None, data, epochs=epochs, batch_size=batch_size, early_stop=None, progress=False
    )
    return float(np.median([r["seconds"] for r in trained.history[1:]]))


def fit_epochs(memory, disk, batch_size: int, epochs: int, shape: str) -> None:
    shipped = loader.epoch_batches
    loaders = {
        "grain": shipped,
        "threads": threaded,
        "one_ahead": lambda *a, **k: threaded(*a, **k | {"block": 1, "threads": 1, "prefetch": 1}),
    }
    memory_s = min(fit_epoch(memory, batch_size, epochs) for _ in range(2))
    for name, epoch_batches in loaders.items():
        loader.epoch_batches = epoch_batches
        try:
            disk_s = min(fit_epoch(disk, batch_size, epochs) for _ in range(2))
        finally:
            loader.epoch_batches = shipped
        emit(f"fit_{name}_{shape}", memory_s, disk_s, rows=len(disk), batch_size=batch_size)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--large-rows", type=int, default=1000)
    parser.add_argument("--small-rows", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--only", choices=["batches", "fit"], default=None)
    args = parser.parse_args()
    cases = [(args.large_rows, 101, 40, 32), (args.small_rows, 7, 24, 64)]
    with tempfile.TemporaryDirectory() as tmp:
        for rows, frames, features, batch_size in cases:
            memory, disk = make_data(Path(tmp), rows, frames, features)
            shape = f"{frames}x{features}"
            if args.only in (None, "batches"):
                batch_reads(memory, disk, batch_size, shape)
            if args.only in (None, "fit"):
                fit_epochs(memory, disk, batch_size, args.epochs, shape)


if __name__ == "__main__":
    main()
