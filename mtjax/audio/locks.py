"""Exclusive locks on files that the operating system releases when their holder dies.

`held(path)` takes an advisory lock on `path` (`fcntl.flock` on POSIX, `msvcrt.locking`
on Windows) for the length of a `with` block; a second process, or a second thread,
waits until the first lets go. The lock belongs to an open file, not to the file's
name, so a holder killed with SIGKILL leaves nothing stuck: its files close as it dies.
Lock files stay on disk (removing one while another process waits on it would let two
hold "the" lock); each is a few bytes naming the last holder's process id.

Kept free of JAX and of the cache, so that extraction workers can import it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from mtjax import files

log = logging.getLogger("mtjax")

_HELD: set[int] = set()  # descriptors of the locks this process holds now


@contextlib.contextmanager
def held(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Holds an exclusive lock on `path` (made with its folder if needed) inside the block.

    Args:
      path: the lock file.
      what: what the lock guards, for the message logged while waiting.

    Raises:
      OSError naming the lock file or its folder when it cannot be made.
    """
    path = Path(path)
    files.writable_folder(path.parent)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise files.named_error(err, f"cannot open lock file {path}") from err
    try:
        if not _lock(fd, wait=False):
            log.info("%s: waiting for process %s, which holds %s", what, _holder(fd), path)
            _lock(fd, wait=True)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        _HELD.add(fd)
        yield
    finally:
        _HELD.discard(fd)
        os.close(fd)  # closing the last descriptor of the open file releases the lock


def close_inherited() -> None:
    """Closes, in a forked child, the lock descriptors it inherited from its parent.

    The parent keeps its locks (the child only drops its own copies); without this a
    forked worker that outlived its parent would keep the parent's locks held.
    """
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


def _holder(fd: int) -> str:
    try:
        return os.read(fd, 32).decode(errors="replace").strip() or "?"
    except OSError:
        return "?"


if sys.platform == "win32":
    import msvcrt

    def _lock(fd: int, wait: bool) -> bool:
        """True once `fd` is locked; with `wait=False`, False when another holds it."""
        while True:
            try:
                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                return True
            except OSError:
                if not wait:
                    return False
                time.sleep(0.1)

else:
    import fcntl

    def _lock(fd: int, wait: bool) -> bool:
        """True once `fd` is locked; with `wait=False`, False when another holds it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
