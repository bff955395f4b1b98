"""Writing files so that a killed process leaves the old file or the whole new one.

The one atomic writer of the package: the feature cache (`mtjax.audio.cache`) and the run
folder (`mtjax.runs`) both write through `write_atomic`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def named_error(err: OSError, message: str) -> OSError:
    """An OSError of the same kind (errno) as `err` with `message` before its reason."""
    detail = err.strerror or str(err)
    return (
        OSError(err.errno, f"{message}: {detail}") if err.errno else OSError(f"{message}: {detail}")
    )


def file_part(value: str, what: str) -> str:
    """`value` if it can be one file or folder name; else ValueError naming `what`.

    The one check for names that become parts of a path (a dataset, run, experiment, task or
    split name): not empty, not "." or "..", no slash, backslash or NUL, no leading or trailing
    whitespace, at most 200 characters.
    """
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__}")
    if (
        value in ("", ".", "..")
        or any(c in value for c in "/\\\0")
        or value != value.strip()
        or len(value) > 200
    ):
        raise ValueError(
            f"{what} {value!r} cannot name a file or folder: use 1-200 characters without"
            " '/', '\\', NUL or surrounding spaces, and not '.' or '..'"
        )
    return value


def writable_folder(path: Path) -> Path:
    """`path` as a folder that exists and can be written, made with its parents if needed.

    Raises:
      OSError naming the folder (and the nearest existing parent when that is the cause).
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    except OSError as err:
        existing = next((p for p in (path, *path.parents) if p.exists()), None)
        blocked = "" if existing in (None, path) else f" (nearest existing: {existing})"
        raise named_error(err, f"cannot write into folder {path}{blocked}") from err
    return path


def write_atomic(
    path: str | os.PathLike, write: Callable[[IO[bytes]], Any], *, durable: bool = True
) -> Path:
    """Calls `write(file)` on a fresh temporary file beside `path`, then renames it into place.

    Concurrent writers of one path each write their own temporary file, so the last rename
    wins with a whole file. `durable` also flushes the data to the disk before the rename,
    so that the same holds after a power cut; the cache's part files skip that (it costs
    more than extracting a clip) and are checked when they are reused.

    The file gets the mode a plain `open(path, "w")` gives: 0o666 less the process umask
    (0o644 under umask 022), so a colleague's TensorBoard can read a run.

    Raises:
      OSError naming `path` or its folder; whatever `write` raises (the temporary file
      is removed either way).
    """
    path = Path(path)
    folder = writable_folder(path.parent)
    try:
        fd, tmp = _temporary(folder, path.name)
    except OSError as err:
        raise named_error(err, f"cannot write into folder {folder}") from err
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise named_error(err, f"cannot write {path}") from err
        raise
    return path


def _temporary(folder: Path, name: str) -> tuple[int, Path]:
    """A new file `.{name}.<random>.tmp` in `folder`, opened for writing.

    Made with `O_CREAT | O_EXCL` and mode 0o666, which the kernel masks with the umask (and
    a default ACL), where `tempfile.mkstemp` would always give 0o600.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    flags |= getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary name for {name}", str(folder))


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """`data` written atomically and durably at `path`."""
    return write_atomic(path, lambda f: f.write(data))
