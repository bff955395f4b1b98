"""Looking after a feature cache folder: what it holds, and emptying it.

`mtjax cache ls` is `cache_rows`, `mtjax cache clear` is `clear_cache`; checking the
entries is `entries.verify_cache` (`mtjax cache verify`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
from pathlib import Path

from mtjax import tables
from mtjax.audio import entries, locks

_ENTRY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*-[0-9a-f]{20}")
_ENTRY_FILES = {"features.npy", "offsets.npy", "index.json"}


def cache_rows(folder: str | os.PathLike) -> list[list[str]]:
    """`mtjax cache ls`: [dataset, extraction, clips, size, status] per entry and work folder.

    Status is `verify_cache`'s ("ok", "bad: why", "unfinished"), or "partial" for the clips
    extracted but not yet in an entry.
    """
    rows = []
    for check in entries.verify_cache(folder):
        try:
            index = entries.read_index(check.folder)
            extraction, clips = str(index["extraction"]), str(len(index["ids"]))
        except entries.CacheError:
            extraction, clips = check.folder.name.rsplit("-", 1)[0], "?"
        status = check.status if check.status != "bad" else f"bad: {check.detail}"
        rows.append([check.folder.parent.name, extraction, clips, _size(check.folder), status])
    for work in sorted(Path(folder).glob("*/*.work")):
        parts = sum(1 for _ in work.glob("parts/*"))
        name = work.name.removesuffix(".work").rsplit("-", 1)[0]
        rows.append([work.parent.name, name, f"{parts} parts", _size(work), "partial"])
    return rows


def clear_cache(folder: str | os.PathLike, *, dataset: str | None = None) -> list[Path]:
    """`mtjax cache clear`: removes the entries and work folders; returns what it removed.

    Only folders that are cache entries (`<Extraction>-<key>` holding only an entry's
    files) or their `.work` folders go, each dataset's under its extraction locks (a
    running extraction of it finishes first); anything else stays, named on stderr.

    Raises:
      FileNotFoundError: no cache folder, or no `dataset` in it (with the closest name).
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"no cache folder {root}")
    datasets = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if dataset is not None:
        names = [p.name for p in datasets]
        if dataset not in names:
            known = f"{', '.join(names) or 'none'}{tables.closest(dataset, names)}"
            raise FileNotFoundError(f"no dataset {dataset!r} in cache {root}; datasets: {known}")
        datasets = [root / dataset]
    removed = []
    for place in datasets:
        with contextlib.ExitStack() as held:
            for lock in sorted((root / ".locks").glob(f"{place.name}.*.lock")):
                held.enter_context(locks.held(lock, f"clearing {place}"))
            for entry in sorted(place.iterdir()):
                if _is_entry(entry):
                    shutil.rmtree(entry)
                    removed.append(entry)
                else:
                    print(f"kept {entry}: not a cache entry", file=sys.stderr)
        with contextlib.suppress(OSError):
            place.rmdir()  # only when empty
    return removed


def _is_entry(path: Path) -> bool:
    """Whether `path` is a cache entry or work folder, by its name and what it holds."""
    if path.is_symlink() or not path.is_dir():
        return False
    if path.name.endswith(".work"):
        inside = {p.name for p in path.iterdir()}
        return bool(_ENTRY.fullmatch(path.name.removesuffix(".work"))) and inside <= {"parts"}
    return bool(_ENTRY.fullmatch(path.name)) and all(
        p.is_file() and (p.name in _ENTRY_FILES or (p.name[0] == "." and p.suffix == ".tmp"))
        for p in path.iterdir()
    )


def _size(path: Path) -> str:
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    power = min(3, max(0, (total.bit_length() - 1) // 10))  # 1024**power <= total
    return f"{total} B" if not power else f"{total / 1024**power:.1f} {' KMG'[power]}iB"
