"""`read`: a dataset's audio to features, through an on-disk cache.

The entry format, its checksums and checks are `mtjax.audio.entries`; the extraction of
one batch of files (in worker processes) is `mtjax.audio.worker`. `read` loads an entry
that passes its checks without waiting for anything; otherwise it takes the lock of the
dataset and extraction (`mtjax.audio.locks`: a second process reading the same dataset
waits, then loads what the first wrote), extracts the clips that no part holds yet, and
writes the entry. Targets, groups and splits are not cached: they come from the reader
on every call.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import logging
import multiprocessing
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from mtjax.audio import entries, locks, worker
from mtjax.audio.entries import (  # noqa: F401  (their home for users: mtjax.audio, mtjax.store)
    CACHE_FORMAT,
    CacheError,
    ExtractionError,
    cache_key,
    library_versions,
)
from mtjax.data import ops
from mtjax.data.arrays import DiskArray, RaggedSource
from mtjax.data.values import Split, TaskDataset
from mtjax.readers.base import Item, Reader, ReaderError
from mtjax.tasks import LabelError, Task, task_slices

log = logging.getLogger("mtjax")

BATCH_FILES = 16  # files per worker task and per part file
ATTEMPTS = 3  # extraction passes before a part that keeps breaking is an error


def read(
    reader: Reader,
    extraction,
    *,
    cache: str | os.PathLike | None = None,
    n_jobs: int | None = None,
    executor: cf.Executor | None = None,
    in_memory: bool = True,
    max_frames: int | None = None,
    on_error: str = "raise",
    progress: bool = True,
    verify: str = "fast",
) -> TaskDataset | Split:
    """Reads a dataset's audio as features, extracting only what the cache lacks.

    Args:
      reader: a dataset layout (see `mtjax.readers`).
      extraction: a feature extraction value (see `mtjax.features`); audio is resampled
        to its `sample_rate`.
      cache: folder of the feature cache; None extracts into a temporary folder that
        lives as long as the process.
      n_jobs: worker processes; default all cores; 1 extracts in this process, as does
        an extraction whose `in_process` is True (an `Embedding`), whatever `n_jobs`.
      executor: any `concurrent.futures.Executor` (a Dask or Ray one for a cluster);
        overrides `n_jobs` (not `in_process`). Its workers must see the cache folder.
      in_memory: True loads the features as one padded array; False keeps them on disk
        as a `DiskArray` (index mode) that reads rows when they are used: same API,
        memory bounded by what is in use, not by the dataset's size.
      max_frames: cap on the padded length T; longer clips are cut.
      on_error: "raise" stops at the first unusable file (missing, corrupt, empty,
        silent, too short for the extraction, non-finite features) with an error naming
        it; "skip" leaves such files out and logs them (also listed in index.json).
        Clips extracted before the stop are kept: the next read extracts the rest.
      progress: show a progress bar while extracting.
      verify: what is checked before cached features are used. "fast" (the default):
        the entry is the one of this extraction, these library versions and every
        file's id, size and modification time (its folder name hashes them); index.json
        has every field with its type and matches its checksum, which ties the clip ids,
        skipped files, offsets and the features' shape and byte size together; the ids
        are exactly the reader's, in its order; offsets.npy matches its sha256 and
        features.npy its shape and byte size. It reads neither features.npy's values
        (beyond loading them) nor the audio. "content" adds the sha256 of features.npy
        and of every audio file, compared with those recorded at extraction: it catches
        a file edited in place with its size and modification time kept, at the cost
        of reading all the audio. An entry that fails a check is re-extracted, with a
        warning naming it and what failed; a damaged part of an unfinished extraction
        is deleted with a warning and its clips extracted again.

    Returns:
      A `TaskDataset`, or a `Split` when the reader gives predefined splits.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if verify not in entries.VERIFY:
        raise ValueError(f"verify must be one of {entries.VERIFY}, got {verify!r}")
    items = list(reader.items())
    if not items:
        raise ReaderError(f"dataset {reader.name!r} at {reader.root} has no audio items")
    _check_unique_ids(reader, items)
    stamps = [worker.stamp(item.id, item.path) for item in items]
    where = entries.layout(_cache_folder(cache), reader.name, extraction, stamps)
    seen = _signature(where.entry)
    loaded = _load(where, items, verify, in_memory)
    if not isinstance(loaded, tuple):
        with locks.held(where.lock, f"cache entry {where.entry}"):
            if _signature(where.entry) != seen:  # another process wrote it meanwhile
                loaded = _load(where, items, verify, in_memory)
            if not isinstance(loaded, tuple):
                if loaded is not None:
                    log.warning("%s; extracting it again", loaded)
                entries.discard(where.entry)
                job = (extraction, where, n_jobs, executor, on_error, progress, reader.name)
                _extract(items, stamps, *job)
                loaded = _load(where, items, "fast", in_memory)
    if not isinstance(loaded, tuple):
        raise loaded or CacheError(f"cache entry {where.entry}: missing right after writing it")
    index, source = loaded
    skipped = {s["id"] for s in index["skipped"]}
    if skipped:
        log.warning(
            "%s: %d unusable file(s) left out, e.g. %s (full list in %s)",
            reader.name,
            len(skipped),
            index["skipped"][0]["error"],
            where.entry / "index.json",
        )
    kept = [item for item in items if item.id not in skipped]
    dataset = _dataset(reader, extraction, kept, source, in_memory, max_frames)
    return _split_by_item(dataset, kept)


# Cache entries


def _check_unique_ids(reader: Reader, items: Sequence[Item]) -> None:
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ReaderError(f"dataset {reader.name!r}: item id {item.id!r} appears twice")
        seen.add(item.id)


_TEMPORARY: list[tempfile.TemporaryDirectory] = []


def _cache_folder(cache: str | os.PathLike | None) -> str | os.PathLike:
    if cache is None:
        tmp = tempfile.TemporaryDirectory(prefix="mtjax-features-")
        _TEMPORARY.append(tmp)
        return tmp.name
    return cache


@atexit.register
def _remove_temporary() -> None:
    for tmp in _TEMPORARY:
        tmp.cleanup()


def _signature(folder: Path) -> tuple[int, int, int] | None:
    """Identifies the entry's index.json as written: replacing it changes the inode."""
    try:
        stat = (folder / "index.json").stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _load(where, items, verify, in_memory) -> tuple[dict, RaggedSource] | CacheError | None:
    """The entry's index and features; None when it is missing, the error when it is refused."""
    if not (where.entry / "index.json").exists():
        return None
    try:
        return entries.load(where.entry, items, verify=verify, mmap=not in_memory)
    except CacheError as err:
        return err


# Extraction


def _extract(items, stamps, extraction, where, n_jobs, executor, on_error, progress, name) -> dict:
    """Extracts what the parts lack and writes the entry; call with `where.lock` held."""
    parts = where.work / "parts"
    for _ in range(ATTEMPTS):
        parts.mkdir(parents=True, exist_ok=True)
        done, failed = worker.scan_parts(parts)
        retry = on_error == "raise"
        todo = [
            (item.id, item.path)
            for item, s in zip(items, stamps)
            if s not in done and (retry or s not in failed)
        ]
        _run_all(todo, len(items), extraction, parts, n_jobs, executor, on_error, progress, name)
        index = entries.build(where, extraction, items, stamps)
        if index is not None:
            shutil.rmtree(where.work, ignore_errors=True)
            return index
    done, failed = worker.scan_parts(parts)
    changed = [item.path for item, s in zip(items, stamps) if s not in done and s not in failed]
    reason = f"{changed[0]} changed while being read" if changed else "a part file kept breaking"
    raise ExtractionError(
        f"cache entry {where.entry}: {ATTEMPTS} extraction passes did not finish it ({reason})"
    )


def _run_all(todo, total, extraction, parts, n_jobs, executor, on_error, progress, name) -> None:
    n_done, quiet = total - len(todo), not progress or not todo
    if n_done and todo:
        log.info("%s: resuming, %d of %d files already done", name, n_done, total)
    bar = tqdm(total=total, initial=n_done, desc=f"extract {name}", unit="file", disable=quiet)
    try:
        for batch_result in _run_jobs(todo, extraction, parts, n_jobs, executor):
            for _, _, error in batch_result:
                if error is not None and on_error == "raise":
                    raise ExtractionError(
                        f"{error} (dataset {name!r}; pass on_error='skip' to leave such files out)"
                    )
            bar.update(len(batch_result))
    finally:
        bar.close()


def _run_jobs(todo, extraction, parts: Path, n_jobs, executor):
    """Yields each batch's results as it finishes, in the calling process or a pool."""
    if not todo:
        return
    workers = max(1, n_jobs or os.cpu_count() or 1)
    size = max(1, min(BATCH_FILES, len(todo) // (workers * 4)))
    batches = [todo[i : i + size] for i in range(0, len(todo), size)]
    if getattr(extraction, "in_process", False) or (executor is None and workers == 1):
        for batch in batches:  # an `in_process` extraction (a model) is never sent to workers
            yield worker.extract_batch(batch, extraction, str(parts))
        return
    own = executor is None
    if own:
        executor = _process_pool(workers)
    with warnings.catch_warnings():
        # JAX warns on every fork; these workers run numpy and librosa only, never JAX.
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
        futures = [
            executor.submit(worker.extract_batch, b, extraction, str(parts)) for b in batches
        ]
    try:
        for future in cf.as_completed(futures):
            yield future.result()
    finally:
        for future in futures:
            future.cancel()
        if own:
            executor.shutdown(wait=True, cancel_futures=True)


_WARM = False


def _process_pool(workers: int) -> cf.ProcessPoolExecutor:
    """A pool of `workers` extraction processes: forked where the platform forks, else spawned.

    Forked workers re-import nothing of the user's script and inherit a warmed-up librosa.
    """
    global _WARM
    if "fork" in multiprocessing.get_all_start_methods():
        if not _WARM:
            worker.warm_up()
            _WARM = True
        context: multiprocessing.context.BaseContext = multiprocessing.get_context("fork")
    else:
        context = multiprocessing.get_context("spawn")
    return cf.ProcessPoolExecutor(
        workers, mp_context=context, initializer=worker.init_worker, initargs=(os.getpid(),)
    )


# Datasets from cached features


def _dataset(reader, extraction, items, source: RaggedSource, in_memory, max_frames) -> TaskDataset:
    lengths = source.lengths
    length = int(lengths.max()) if max_frames is None else int(max_frames)
    x = _padded(source, length) if in_memory else DiskArray.from_source(source, length)
    tasks = tuple(reader.tasks)
    y, has_task = targets(tasks, items, reader.name)
    keys = [item.id if item.group is None else f"group:{item.group}" for item in items]
    group_ids = {key: g for g, key in enumerate(dict.fromkeys(keys))}  # numbered as first seen
    groups = [group_ids[key] for key in keys]
    return TaskDataset(
        x=x,
        lengths=np.minimum(lengths, length).astype(np.int32),
        y=y,
        has_task=has_task,
        groups=np.asarray(groups, np.int32),
        folds=np.array([-1 if item.fold is None else item.fold for item in items], np.int32),
        clip=np.arange(len(items), dtype=np.int32),
        ids=np.array([item.id for item in items], dtype=str),
        tasks=tasks,
        name=reader.name,
        extraction=extraction.key,
    )


def targets(
    tasks: Sequence[Task], items: Sequence[Item], name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Target columns and task mask of every item.

    Returns:
      y float32 [N, C] (columns of `tasks` in turn), has_task bool [N, K].

    Raises:
      LabelError naming the dataset, the item and the task's labels, for a label that
      is not one of its task's.
    """
    y = np.zeros([len(items), sum(t.n_columns for t in tasks)], np.float32)
    has_task = np.zeros([len(items), len(tasks)], bool)
    for k, (task, columns) in enumerate(zip(tasks, task_slices(tasks).values())):
        encoded: dict[tuple[str, ...], np.ndarray] = {}
        for n, item in enumerate(items):
            labels = item.targets.get(task.name)
            if labels is None:
                continue
            labels = (labels,) if isinstance(labels, str) else tuple(labels)
            if labels not in encoded:
                try:
                    encoded[labels] = task.encode(labels)
                except LabelError as err:
                    raise LabelError(
                        f"dataset {name!r}, item {item.id!r} ({item.path}): {err}"
                    ) from None
            y[n, columns] = encoded[labels]
            has_task[n, k] = True
    return y, has_task


def _padded(source: RaggedSource, length: int) -> np.ndarray:
    """float32 [N, length, F] in memory from ragged rows, zero-padded or cut."""
    lengths = source.lengths
    n, n_features = len(lengths), source.flat.shape[1]
    if np.all(lengths == length):  # clips of one length: the flat array already is [N, T, F]
        return np.asarray(source.flat, np.float32).reshape(n, length, n_features)
    frame = np.arange(length)[None, :]
    keep = frame < lengths[:, None]  # [N, length]
    source_rows = (source.offsets[:-1, None] + frame)[keep]
    x = np.zeros([n, length, n_features], np.float32)
    x[keep] = source.flat[source_rows]
    return x


def _split_by_item(dataset: TaskDataset, items: Sequence[Item]) -> TaskDataset | Split:
    names = np.array([item.split or "" for item in items])
    if not np.any(names != ""):
        return dataset
    unknown = sorted(set(names.tolist()) - {"train", "validation", "test", ""})
    if unknown:
        raise ReaderError(f"dataset {dataset.name!r}: unknown split names {unknown}")
    if np.any(names == ""):
        example = items[int(np.nonzero(names == "")[0][0])].id
        raise ReaderError(
            f"dataset {dataset.name!r}: some items have a predefined split and some do not"
            f" (e.g. {example!r})"
        )

    def part(name):
        rows = np.nonzero(names == name)[0]
        return ops.subset(dataset, rows) if rows.size else None

    train = part("train")
    if train is None:
        raise ReaderError(f"dataset {dataset.name!r}: the predefined split has no train items")
    return Split(train=train, test=part("test"), validation=part("validation"))
