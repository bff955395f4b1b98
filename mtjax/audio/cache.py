"""`read`: a dataset's audio to features, through an on-disk cache.

A cache entry is a folder `<cache>/<reader name>/<extraction name>-<hash>/` holding

  features.npy   float32 [sum of T, F], every clip's frames one after another
  offsets.npy    int64 [N + 1], clip n is features[offsets[n]:offsets[n + 1]]
  index.json     format, extraction key, library versions, item ids, skipped files

`index.json` is written last, so a folder without it is unfinished: its `parts/` holds
one `.npy` per clip already extracted, and the next `read` extracts only the rest. The
hash covers the extraction key, the versions of the libraries that change the numbers,
and every file's id, size and modification time. Targets, groups and splits are not
cached: they come from the reader on every call. Only `.npy` and `.json` are read back,
with `allow_pickle=False`.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from mtjax import files
from mtjax.audio import worker
from mtjax.data import ops
from mtjax.data.arrays import DiskArray, RaggedSource
from mtjax.data.npyfile import NpyRows
from mtjax.data.values import Split, TaskDataset
from mtjax.readers.base import Item, Reader, ReaderError
from mtjax.tasks import LabelError, Task, task_slices

log = logging.getLogger("mtjax")

CACHE_FORMAT = 1
BATCH_FILES = 16  # files per worker task and per part file
VERSIONED = ("numpy", "scipy", "librosa", "soundfile", "soxr")


class CacheError(RuntimeError):
    """A cache folder that cannot be trusted; the message names it."""


class ExtractionError(RuntimeError):
    """An audio file that could not be turned into features; the message names it."""


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
) -> TaskDataset | Split:
    """Reads a dataset's audio as features, extracting only what the cache lacks.

    Args:
      reader: a dataset layout (see `mtjax.readers`).
      extraction: a feature extraction value (see `mtjax.features`); audio is resampled
        to its `sample_rate`.
      cache: folder of the feature cache; None extracts into a temporary folder that
        lives as long as the process.
      n_jobs: worker processes; default all cores; 1 extracts in this process.
      executor: any `concurrent.futures.Executor` (a Dask or Ray one for a cluster);
        overrides `n_jobs`. Its workers must see the cache folder.
      in_memory: True loads the features as one padded array; False keeps them on disk
        as a `DiskArray` (index mode) that reads rows when they are used: same API,
        memory bounded by what is in use, not by the dataset's size.
      max_frames: cap on the padded length T; longer clips are cut.
      on_error: "raise" stops at the first unusable file (missing, corrupt, empty,
        silent, too short for the extraction, non-finite features) with an error naming
        it; "skip" leaves such files out and logs them (also listed in index.json).
      progress: show a progress bar while extracting.

    Returns:
      A `TaskDataset`, or a `Split` when the reader gives predefined splits.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    items = list(reader.items())
    if not items:
        raise ReaderError(f"dataset {reader.name!r} at {reader.root} has no audio items")
    _check_unique_ids(reader, items)
    folder = _entry_folder(reader, extraction, items, cache)
    index = _load_index(folder) if (folder / "index.json").exists() else None
    if index is None:
        index = _extract(
            items, extraction, folder, n_jobs, executor, on_error, progress, reader.name
        )
    skipped = {s["id"] for s in index["skipped"]}
    if skipped:
        log.warning(
            "%s: %d unusable file(s) left out, e.g. %s (full list in %s)",
            reader.name,
            len(skipped),
            index["skipped"][0]["error"],
            folder / "index.json",
        )
    kept = [item for item in items if item.id not in skipped]
    source = _load_source(folder, index, mmap=not in_memory)
    dataset = _dataset(reader, extraction, kept, source, in_memory, max_frames)
    return _split_by_item(dataset, kept)


# Cache entries


def _check_unique_ids(reader: Reader, items: Sequence[Item]) -> None:
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ReaderError(f"dataset {reader.name!r}: item id {item.id!r} appears twice")
        seen.add(item.id)


@functools.cache
def library_versions() -> dict[str, str]:
    """Versions of the libraries whose updates can change extracted numbers."""
    out = {}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    try:
        import soundfile

        out["libsndfile"] = soundfile.__libsndfile_version__
    except (ImportError, AttributeError):
        pass
    return out


def cache_key(extraction, items: Sequence[Item]) -> str:
    """Hash of the extraction, library versions and every file's id, size and mtime."""
    digest = hashlib.sha256()
    header = {"format": CACHE_FORMAT, "extraction": extraction.key, "versions": library_versions()}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for item in items:
        try:
            stat = os.stat(item.path)
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        digest.update(f"\n{item.id}\t{size}\t{mtime}".encode())
    return digest.hexdigest()[:20]


_TEMPORARY: list[tempfile.TemporaryDirectory] = []


def _entry_folder(reader: Reader, extraction, items: Sequence[Item], cache) -> Path:
    if cache is None:
        tmp = tempfile.TemporaryDirectory(prefix="mtjax-features-")
        _TEMPORARY.append(tmp)
        cache = tmp.name
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in reader.name) or "dataset"
    folder = Path(cache) / name / f"{type(extraction).__name__}-{cache_key(extraction, items)}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@atexit.register
def _remove_temporary() -> None:
    for tmp in _TEMPORARY:
        tmp.cleanup()


def _load_index(folder: Path) -> dict:
    path = folder / "index.json"
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CacheError(f"{path} is unreadable ({err}); delete {folder} to rebuild it") from err
    if not isinstance(index, dict) or index.get("format") != CACHE_FORMAT:
        found = index.get("format") if isinstance(index, dict) else None
        raise CacheError(
            f"{folder} was written in cache format {found!r}, this mtjax reads format"
            f" {CACHE_FORMAT}; delete the folder to rebuild it"
        )
    for name in ("features.npy", "offsets.npy"):
        if not (folder / name).exists():
            raise CacheError(f"{folder} has index.json but no {name}; delete it to rebuild it")
    return index


def _load_source(folder: Path, index: dict, mmap: bool) -> RaggedSource:
    try:
        offsets = np.load(folder / "offsets.npy", allow_pickle=False)
        if mmap:
            flat = NpyRows(folder / "features.npy")
        else:
            flat = np.load(folder / "features.npy", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise CacheError(f"{folder}: cannot load features ({err}); delete it to rebuild") from err
    n_items = len(index["ids"])
    if (
        offsets.shape != (n_items + 1,)
        or flat.ndim != 2
        or offsets[-1] != flat.shape[0]
        or np.any(np.diff(offsets) <= 0)
    ):
        raise CacheError(
            f"{folder}: features.npy {flat.shape} and offsets.npy {offsets.shape} do not match"
            f" the {n_items} items of index.json; delete the folder to rebuild it"
        )
    return RaggedSource(flat, offsets)


# Extraction


def _extract(items, extraction, folder, n_jobs, executor, on_error, progress, name) -> dict:
    parts = folder / "parts"
    parts.mkdir(exist_ok=True)
    done, failed = worker.scan_parts(parts)
    retry = on_error == "raise"
    todo = [
        (i, item.path)
        for i, item in enumerate(items)
        if i not in done and (retry or i not in failed)
    ]
    n_done, quiet = len(items) - len(todo), not progress or not todo
    if n_done:
        log.info("%s: resuming, %d of %d files already done", name, n_done, len(items))
    bar = tqdm(total=len(items), initial=n_done, desc=f"extract {name}", unit="file", disable=quiet)
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
    return _consolidate(items, extraction, folder, parts)


def _run_jobs(todo, extraction, parts: Path, n_jobs, executor):
    """Yields each batch's results as it finishes, in the calling process or a pool."""
    if not todo:
        return
    workers = max(1, n_jobs or os.cpu_count() or 1)
    size = max(1, min(BATCH_FILES, len(todo) // (workers * 4)))
    batches = [todo[i : i + size] for i in range(0, len(todo), size)]
    if executor is None and workers == 1:
        for batch in batches:
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
    return cf.ProcessPoolExecutor(workers, mp_context=context, initializer=worker.init_worker)


def _consolidate(items, extraction, folder: Path, parts: Path) -> dict:
    """Joins the parts into features.npy + offsets.npy, then writes index.json."""
    done, failed = worker.scan_parts(parts)
    kept = [i for i in range(len(items)) if i in done]
    skipped = [
        {"id": items[i].id, "path": items[i].path, "error": failed.get(i, "not extracted")}
        for i in range(len(items))
        if i not in done
    ]
    if not kept:
        raise ExtractionError(f"no usable audio in {len(items)} files, e.g. {skipped[0]['error']}")
    offsets = np.concatenate([[0], np.cumsum([done[i].length for i in kept])]).astype(np.int64)
    row_of = {i: row for row, i in enumerate(kept)}
    by_file: dict[Path, list[int]] = {}
    for i in kept:
        by_file.setdefault(done[i].file, []).append(i)
    features_tmp = folder / ".features.npy.tmp"
    flat: np.memmap | None = None
    for file, indices in sorted(by_file.items()):
        with np.load(file, allow_pickle=False) as batch:
            features = batch["features"]
        if flat is None:
            shape = (int(offsets[-1]), features.shape[1])
            flat = np.lib.format.open_memmap(features_tmp, mode="w+", dtype=np.float32, shape=shape)
        if features.ndim != 2 or features.shape[1] != flat.shape[1]:
            raise CacheError(
                f"{file}: features of shape {features.shape}, expected F={flat.shape[1]}"
            )
        for i in indices:
            part, row = done[i], row_of[i]
            flat[offsets[row] : offsets[row + 1]] = features[part.row : part.row + part.length]
    assert flat is not None  # `kept` is not empty, so at least one part file was read
    n_features = int(flat.shape[1])
    flat.flush()
    with open(features_tmp, "rb+") as f:
        os.fsync(f.fileno())
    del flat
    os.replace(features_tmp, folder / "features.npy")
    files.write_atomic(folder / "offsets.npy", lambda f: np.save(f, offsets))
    index = {
        "format": CACHE_FORMAT,
        "extraction": extraction.key,
        "versions": library_versions(),
        "ids": [items[i].id for i in kept],
        "n_features": n_features,
        "skipped": skipped,
    }
    text = json.dumps(index, indent=1).encode()
    files.write_atomic(folder / "index.json", lambda f: f.write(text))
    shutil.rmtree(parts, ignore_errors=True)
    return index


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
