"""The on-disk cache entry: its names, its index, its checksums, and the checks on reading it.

An entry is a folder `<cache>/<reader name>/<Extraction>-<key>/` holding

  features.npy   float32 [sum of T, F], every clip's frames one after another
  offsets.npy    int64 [N + 1], clip n is features[offsets[n]:offsets[n + 1]]
  index.json     written last; a folder without it is unfinished

`key` hashes the cache format, the extraction key, the versions of the libraries that
change the numbers, and every file's id, size and modification time (its `Stamp`), in
the reader's order. `index.json` records the kept clips (`ids`, with each file's path,
size, modification time and sha256 when extracted), the `skipped` files with their error,
the shape and byte size of features.npy, the sha256 of offsets.npy and of features.npy,
and a `checksum`: sha256 over all of those fields, which ties ids, offsets and features
together. Clips extracted but not yet in an entry wait in `<Extraction>-<scope>.work/parts/`
(scope: the key without the files), shared by every entry of that reader and extraction,
and writers take `<cache>/.locks/<reader name>.<Extraction>-<scope>.lock`.
Only `.npy` and `.json` are read back, with `allow_pickle=False`.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import hashlib
import io
import json
import os
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mtjax import files
from mtjax.audio import worker
from mtjax.audio.worker import Stamp
from mtjax.data.arrays import RaggedSource
from mtjax.data.npyfile import NpyRows
from mtjax.readers.base import Item

CACHE_FORMAT = 2
VERSIONED = ("numpy", "scipy", "librosa", "soundfile", "soxr")
VERIFY = ("fast", "content")


class CacheError(RuntimeError):
    """A cache entry that cannot be trusted; the message names it and what is wrong."""


class ExtractionError(RuntimeError):
    """An audio file that could not be turned into features; the message names it."""


class Layout(NamedTuple):
    """Where one entry of one dataset and extraction lives, and its shared work places."""

    entry: Path  # the entry folder
    work: Path  # parts of clips not yet in an entry, shared with other file sets
    lock: Path  # held while extracting into `work` and writing the entry


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


def _header_digest(extraction) -> Any:
    digest = hashlib.sha256()
    header = {"format": CACHE_FORMAT, "extraction": extraction.key, "versions": library_versions()}
    digest.update(json.dumps(header, sort_keys=True).encode())
    return digest


def entry_key(extraction, stamps: Sequence[Stamp]) -> str:
    """Hash of the extraction, library versions and every file's id, size and mtime."""
    digest = _header_digest(extraction)
    for s in stamps:
        digest.update(f"\n{s.id}\t{s.size}\t{s.mtime_ns}".encode())
    return digest.hexdigest()[:20]


def cache_key(extraction, items: Sequence[Item]) -> str:
    """`entry_key` of the items' files as they are now."""
    return entry_key(extraction, [worker.stamp(item.id, item.path) for item in items])


def layout(cache: str | os.PathLike, name: str, extraction, stamps: Sequence[Stamp]) -> Layout:
    """The entry of dataset `name` (its files' `stamps`) and `extraction` in `cache`."""
    files.file_part(name, "dataset name")  # never a path out of the cache
    part = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    kind, scope = type(extraction).__name__, _header_digest(extraction).hexdigest()[:20]
    folder = Path(cache) / part
    return Layout(
        entry=folder / f"{kind}-{entry_key(extraction, stamps)}",
        work=folder / f"{kind}-{scope}.work",
        lock=Path(cache) / ".locks" / f"{part}.{kind}-{scope}.lock",
    )


# The index and its checksum


def checksum(index: dict) -> str:
    """sha256 over every field of `index` but `checksum` (canonical JSON)."""
    fields = {k: v for k, v in index.items() if k != "checksum"}
    return hashlib.sha256(
        json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


_STRINGS = ("key", "extraction", "features_sha256", "offsets_sha256", "checksum")
_COUNTS = ("n_features", "rows", "features_bytes")
_COLUMNS = {"ids": str, "paths": str, "sha256": str, "sizes": int, "mtime_ns": int}


def _fail(folder: Path, problem: str) -> CacheError:
    return CacheError(f"cache entry {folder}: {problem}")


def _schema(index: Any, folder: Path) -> dict:
    """`index` when it has every field with its type, else CacheError naming the field."""
    if not isinstance(index, dict):
        raise _fail(folder, f"index.json holds a {type(index).__name__}, not an object")
    if index.get("format") != CACHE_FORMAT:
        raise _fail(
            folder,
            f"written in cache format {index.get('format')!r}, this mtjax reads"
            f" format {CACHE_FORMAT}",
        )
    for name in _STRINGS:
        if not isinstance(index.get(name), str):
            raise _fail(folder, f"index.json field {name!r} is missing or not a string")
    for name in _COUNTS:
        value = index.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _fail(folder, f"index.json field {name!r} is missing or not a count")
    if not isinstance(index.get("ids"), list):
        raise _fail(folder, "index.json field 'ids' is missing or not a list")
    n = len(index["ids"])
    for name, kind in _COLUMNS.items():
        column = index.get(name)
        if not isinstance(column, list) or len(column) != n:
            raise _fail(folder, f"index.json field {name!r} is missing or not a list of {n}")
        if not all(isinstance(v, kind) and not isinstance(v, bool) for v in column):
            raise _fail(
                folder, f"index.json field {name!r} holds a value that is not {kind.__name__}"
            )
    skipped = index.get("skipped")
    if not isinstance(skipped, list) or not all(
        isinstance(s, dict)
        and all(isinstance(s.get(k), str) for k in ("id", "path", "error"))
        and isinstance(s.get("sha256"), (str, type(None)))
        for s in skipped
    ):
        raise _fail(folder, "index.json field 'skipped' is missing or not a list of records")
    return index


def read_index(folder: Path) -> dict:
    """The index of entry `folder`, its fields, types and checksum checked; else CacheError."""
    path = folder / "index.json"
    try:
        index = _schema(json.loads(path.read_bytes()), folder)
    except (OSError, ValueError, RecursionError) as err:
        raise _fail(folder, f"index.json is unreadable ({type(err).__name__}: {err})") from err
    if checksum(index) != index["checksum"]:
        raise _fail(folder, "index.json does not match its checksum (edited or damaged)")
    kept, skipped = set(index["ids"]), {s["id"] for s in index["skipped"]}
    if len(kept) != len(index["ids"]) or len(skipped) != len(index["skipped"]):
        raise _fail(folder, "index.json lists a clip id twice")
    if kept & skipped:
        raise _fail(folder, "index.json lists a clip both kept and skipped")
    if not folder.name.endswith(f"-{index['key']}"):
        raise _fail(folder, f"index.json belongs to entry key {index['key']!r}, not this folder")
    return index


def _check_items(folder: Path, index: dict, items: Sequence[Item]) -> None:
    skipped = {s["id"] for s in index["skipped"]}
    expected = [item.id for item in items if item.id not in skipped]
    if len(expected) + len(skipped) != len(items) or expected != index["ids"]:
        at = next((n for n, (a, b) in enumerate(zip(expected, index["ids"])) if a != b), None)
        where = (
            ""
            if at is None
            else f" (clip {at} is {index['ids'][at]!r}, the dataset has {expected[at]!r})"
        )
        raise _fail(folder, f"index.json ids do not match the dataset's {len(items)} items{where}")


# Loading


def load(
    folder: Path, items: Sequence[Item] | None = None, *, verify: str = "fast", mmap: bool = False
) -> tuple[dict, RaggedSource]:
    """The index and features of entry `folder`, refused with CacheError unless they check.

    Checks, always: index.json has every field with its type and matches its checksum;
    no clip is listed twice or both kept and skipped; offsets.npy matches its recorded
    sha256, starts at 0, grows and ends at the recorded row count; features.npy has the
    recorded shape, float32, and byte size; with `items`, the kept and skipped ids are
    exactly the items', in their order. `verify="content"` also compares the sha256 of
    features.npy and of every audio file (the items' paths, else the recorded ones) with
    the sha256 recorded at extraction.

    Returns:
      (index, features): features in memory, or read on demand (`NpyRows`) with `mmap`.
    """
    if verify not in VERIFY:
        raise ValueError(f"verify must be one of {VERIFY}, got {verify!r}")
    index = read_index(folder)
    if items is not None:
        _check_items(folder, index, items)
    n, rows = len(index["ids"]), index["rows"]
    try:
        data = (folder / "offsets.npy").read_bytes()
        if hashlib.sha256(data).hexdigest() != index["offsets_sha256"]:
            raise _fail(folder, "offsets.npy does not match the sha256 in index.json")
        offsets = np.load(io.BytesIO(data), allow_pickle=False)
        path = folder / "features.npy"
        head = NpyRows(path)
        if head.shape != (rows, index["n_features"]) or head.dtype != np.float32:
            raise _fail(
                folder,
                f"features.npy is {head.dtype} {head.shape}, index.json says float32"
                f" ({rows}, {index['n_features']})",
            )
        if path.stat().st_size != index["features_bytes"]:
            raise _fail(
                folder,
                f"features.npy has {path.stat().st_size} bytes, index.json says"
                f" {index['features_bytes']}",
            )
        flat = head if mmap else np.load(path, allow_pickle=False)
    except CacheError:
        raise
    except Exception as err:  # a damaged file raises ValueError, EOFError, OSError, ...
        raise _fail(folder, f"{type(err).__name__}: {err}".splitlines()[0]) from err
    if (
        offsets.shape != (n + 1,)
        or offsets.dtype != np.int64
        or offsets[0] != 0
        or offsets[-1] != rows
        or np.any(np.diff(offsets) <= 0)
    ):
        raise _fail(
            folder,
            f"offsets.npy {offsets.dtype} {offsets.shape} does not fit {n} clips of {rows} rows",
        )
    if verify == "content":
        check_content(folder, index, items)
    return index, RaggedSource(flat, offsets)


def check_content(folder: Path, index: dict, items: Sequence[Item] | None = None) -> None:
    """CacheError unless features.npy and every audio file hash as recorded at extraction."""
    if worker.file_sha256(folder / "features.npy") != index["features_sha256"]:
        raise _fail(folder, "features.npy does not match the sha256 in index.json")
    by_id = {item.id: item.path for item in items} if items is not None else {}
    recorded = [(p, h) for p, h in zip(index["paths"], index["sha256"])]
    recorded += [(s["path"], s["sha256"]) for s in index["skipped"] if s["sha256"] is not None]
    ids = index["ids"] + [s["id"] for s in index["skipped"] if s["sha256"] is not None]
    paths = [by_id.get(i, p) for i, (p, _) in zip(ids, recorded)]
    with cf.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:  # hashlib frees the GIL
        now = list(pool.map(worker.file_sha256, paths))
    changed = [p for p, h, (_, then) in zip(paths, now, recorded) if h != then]
    if changed:
        missing = sum(h is None for h in now)
        raise _fail(
            folder,
            f"{len(changed)} of {len(paths)} audio files changed since extraction"
            f" ({missing} unreadable), e.g. {changed[0]}",
        )


def discard(folder: Path) -> None:
    """Removes an entry's files, index.json first (the folder then reads as unfinished)."""
    for name in ("index.json", "offsets.npy", "features.npy"):
        (folder / name).unlink(missing_ok=True)


# Writing


def build(where: Layout, extraction, items: Sequence[Item], stamps: Sequence[Stamp]) -> dict | None:
    """Joins the clips of `items` found in the parts into the entry, index.json last.

    Returns:
      The index; None when a part turned out damaged (it is deleted: extract again) or a
      clip is neither done nor failed (its file changed while being extracted).

    Raises:
      ExtractionError when no item is usable.
    """
    done, failed = worker.scan_parts(where.work / "parts")
    if any(s not in done and s not in failed for s in stamps):
        return None
    kept = [n for n, s in enumerate(stamps) if s in done]
    skipped = [
        {
            "id": items[n].id,
            "path": items[n].path,
            "error": failed[s]["error"],
            "sha256": failed[s].get("sha256"),
        }
        for n, s in enumerate(stamps)
        if s not in done
    ]
    if not kept:
        raise ExtractionError(f"no usable audio in {len(items)} files, e.g. {skipped[0]['error']}")
    offsets = np.concatenate([[0], np.cumsum([done[stamps[n]].length for n in kept])]).astype(
        np.int64
    )
    by_file: dict[Path, list[int]] = {}
    for row, n in enumerate(kept):
        by_file.setdefault(done[stamps[n]].file, []).append(row)
    folder = files.writable_folder(where.entry)
    features_tmp = folder / ".features.npy.tmp"
    flat: np.memmap | None = None
    for file, rows in sorted(by_file.items()):
        features = worker.part_features(file)
        if features is None:
            return None
        if flat is None:
            shape = (int(offsets[-1]), features.shape[1])
            flat = np.lib.format.open_memmap(features_tmp, mode="w+", dtype=np.float32, shape=shape)
        if features.shape[1] != flat.shape[1]:
            worker.discard(
                file, ValueError(f"F={features.shape[1]}, other parts have {flat.shape[1]}")
            )
            return None
        for row in rows:
            part = done[stamps[kept[row]]]
            flat[offsets[row] : offsets[row + 1]] = features[part.row : part.row + part.length]
    assert flat is not None  # `kept` is not empty, so at least one part file was read
    n_features = int(flat.shape[1])
    flat.flush()
    del flat
    with open(features_tmp, "rb+") as f:
        os.fsync(f.fileno())
    features_sha256 = worker.file_sha256(features_tmp)
    features_bytes = features_tmp.stat().st_size
    os.replace(features_tmp, folder / "features.npy")
    buffer = io.BytesIO()
    np.save(buffer, offsets)
    files.write_bytes(folder / "offsets.npy", buffer.getvalue())
    index = {
        "format": CACHE_FORMAT,
        "key": folder.name.rsplit("-", 1)[-1],
        "extraction": extraction.key,
        "versions": library_versions(),
        "n_features": n_features,
        "ids": [items[n].id for n in kept],
        "paths": [items[n].path for n in kept],
        "sizes": [stamps[n].size for n in kept],
        "mtime_ns": [stamps[n].mtime_ns for n in kept],
        "sha256": [done[stamps[n]].sha256 for n in kept],
        "skipped": skipped,
        "rows": int(offsets[-1]),
        "features_bytes": features_bytes,
        "features_sha256": features_sha256,
        "offsets_sha256": hashlib.sha256(buffer.getvalue()).hexdigest(),
    }
    index["checksum"] = checksum(index)
    files.write_bytes(folder / "index.json", json.dumps(index, indent=1).encode())
    return index


# Checking a whole cache


class EntryCheck(NamedTuple):
    """The outcome of checking one entry folder."""

    folder: Path
    status: str  # "ok", "bad" or "unfinished"
    detail: str  # clips and rows when ok, else what is wrong


def verify_cache(cache: str | os.PathLike, *, content: bool = False) -> list[EntryCheck]:
    """Checks every entry of a cache folder as `load` does (without a reader's items).

    Args:
      cache: the folder given to `read` as `cache`.
      content: also compare features.npy and every recorded audio file with their sha256.

    Raises:
      FileNotFoundError when `cache` is not a folder.
    """
    cache = Path(cache)
    if not cache.is_dir():
        raise FileNotFoundError(f"no cache folder {cache}")
    out = []
    for dataset in sorted(p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for folder in sorted(
            p for p in dataset.iterdir() if p.is_dir() and not p.name.endswith(".work")
        ):
            if not (folder / "index.json").exists():
                out.append(
                    EntryCheck(folder, "unfinished", "no index.json; the next read completes it")
                )
                continue
            try:
                index, _ = load(folder, verify="content" if content else "fast", mmap=True)
            except CacheError as err:
                out.append(
                    EntryCheck(folder, "bad", str(err).removeprefix(f"cache entry {folder}: "))
                )
                continue
            out.append(
                EntryCheck(
                    folder,
                    "ok",
                    f"{len(index['ids'])} clips, {index['rows']} frames,"
                    f" {len(index['skipped'])} skipped",
                )
            )
    return out
