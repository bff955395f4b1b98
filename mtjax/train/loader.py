"""The batches of a planned epoch read on the host, in order, by prefetching worker threads.

A loader is a pure function of the training data and one planned epoch (`schedules.Batches`
[S, B]): it yields batch s of the plan, its rows and weights, for s in order. So the
batches depend on nothing but (seed, epoch), from which `fit` plans the epoch; checkpoints
are per epoch, so the epoch fixes the loader's position, and a resumed run sees the batches
an uninterrupted one does. `start` begins mid-epoch all the same.

Reads: the plan is cut into blocks of consecutive steps (`steps_per_block`, about
`BLOCK_BYTES` of features each). A block's rows are read in one `gather` — for a
`DiskArray`, its distinct rows in file order, contiguous ones in one read, then put back
in plan order — and split into its batches: the per-read cost of small rows is paid once
per block, not once per row or per batch. Blocks are the records of a Grain `MapDataset`,
read by its prefetching iterator (`grain.ReadOptions`): `threads` worker threads read up
to `prefetch` blocks ahead, handed out in plan order. Threads, not processes: nothing is
pickled. The host holds at most about `prefetch + 1` blocks (plus what the readers of a
`DiskArray` keep: `mtjax.data.npyfile`), so resident memory stays bounded however large
the features on disk are.

Measured (`benchmarks/out_of_core.py`, 2-core CPU under load): a shuffled epoch of [7, 24]
rows in 64-row batches reads 5-9x faster in blocks than one batch per read and ~20x faster
than one read per row; Grain's iterator costs 10-20% more than a bare thread pool on
those reads, nothing visible in a `fit` epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np

from mtjax.data.values import MultiTaskData
from mtjax.train import schedules

THREADS = 2  # reader threads per epoch
PREFETCH = 2  # blocks read ahead of the one training
BLOCK_BYTES = 2**20  # features read per block, about (measured: benchmarks/out_of_core.py)
MAX_BLOCK_STEPS = 64

HostBatch = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x, y, has_task, weight
Read = Callable[[MultiTaskData, np.ndarray, np.ndarray], Sequence[Any]]


def steps_per_block(data: MultiTaskData, batch_size: int) -> int:
    """Steps read together: about `BLOCK_BYTES` of float32 features, 1 to `MAX_BLOCK_STEPS`."""
    batch_bytes = batch_size * int(np.prod(data.x.shape[1:])) * 4
    return int(np.clip(BLOCK_BYTES // max(batch_bytes, 1), 1, MAX_BLOCK_STEPS))


def read_block(data: MultiTaskData, index: np.ndarray, weight: np.ndarray) -> list[HostBatch]:
    """The host batches of steps `index` int [K, B] (weights [K, B]), read in one gather.

    Returns:
      K tuples (x float32 [B, T, F], y [B, C], has_task [B, K_tasks], weight float32 [B]):
      the fields of `step.Batch`, as numpy arrays.
    """
    index = np.asarray(index)
    rows = index.reshape(-1)
    x = np.asarray(data.x[rows], np.float32).reshape(*index.shape, *data.x.shape[1:])
    y = np.asarray(data.y[rows]).reshape(*index.shape, -1)
    has_task = np.asarray(data.has_task[rows]).reshape(*index.shape, -1)
    weight = np.asarray(weight, np.float32)
    return [(x[k], y[k], has_task[k], weight[k]) for k in range(len(index))]


def epoch_batches(
    data: MultiTaskData,
    planned: schedules.Batches,
    *,
    read: Read = read_block,
    block: int | None = None,
    start: int = 0,
    threads: int = THREADS,
    prefetch: int = PREFETCH,
) -> Generator[Any, None, None]:
    """Batches `start`, `start + 1`, ... of `planned`, read ahead by worker threads.

    Args:
      data: the training data; `x` in memory or a `DiskArray`.
      planned: one epoch's batches, index and weight [S, B].
      read: `read(data, index [K, B], weight [K, B]) -> K batches`, run in the worker
        threads; the default gives host batches (`read_block`); one that also places them
        on the device makes the copies overlap training too.
      block: steps per read (K); default `steps_per_block`.
      start: the first step to yield, 0 <= start <= S.
      threads: reader threads (>= 1).
      prefetch: blocks read ahead (>= 1).

    Returns:
      A generator of the S - start batches in plan order; its `close()` stops the threads.

    Raises:
      ValueError: a start outside the epoch, or block, threads or prefetch below 1.
    """
    import grain  # imported on first use: importing mtjax stays light

    n_steps, batch_size = planned.index.shape
    block = steps_per_block(data, batch_size) if block is None else block
    if not 0 <= start <= n_steps:
        raise ValueError(f"start step {start} is outside the epoch's {n_steps} steps")
    if min(block, threads, prefetch) < 1:
        raise ValueError(
            f"block, threads and prefetch must be >= 1, got {block}, {threads} and {prefetch}"
        )

    def record(b: int) -> Sequence[Any]:
        steps = slice(max(b * block, start), min((b + 1) * block, n_steps))
        return read(data, planned.index[steps], planned.weight[steps])

    first = start // block
    records = grain.MapDataset.range(first, -(-n_steps // block)).map(record)
    options = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=prefetch)
    blocks = iter(records.to_iter_dataset(options))

    def batches() -> Generator[Any, None, None]:
        try:
            for read_batches in blocks:
                yield from read_batches
        finally:
            blocks.close()

    return batches()
