"""Rows of a 2-D `.npy` file read with `os.pread`, without mapping the file.

A memory map keeps every page it touched resident in the process; reading rows with
`pread` keeps only what the caller holds, so a pass over a dataset larger than memory
stays bounded. Safe to send to worker processes: each opens its own descriptor.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class NpyRows:
    """Read-only access to rows of a C-ordered 2-D `.npy` file.

    Attributes:
      path: the file.
      shape: (rows, columns).
      dtype: element type.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            self._data_offset = f.tell()
        if len(shape) != 2 or fortran or dtype.hasobject:
            raise ValueError(f"{self.path}: expected a C-ordered 2-D numeric array, got {shape}")
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self._row_bytes = self.shape[1] * self.dtype.itemsize
        self._fd: int | None = None
        self._pid = -1

    ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])

    def __del__(self):
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDONLY)
            self._pid = os.getpid()
        return self._fd

    def read(self, start: int, count: int) -> np.ndarray:
        """Rows `start : start + count` as a new array [count, columns]."""
        if start < 0 or count < 0 or start + count > self.shape[0]:
            raise IndexError(f"rows {start}:{start + count} outside {self.shape[0]} rows")
        size = count * self._row_bytes
        buffer = bytearray(size)
        view, done = memoryview(buffer), 0
        fd = self._descriptor()
        while done < size:
            got = os.preadv(fd, [view[done:]], self._data_offset + start * self._row_bytes + done)
            if got == 0:
                raise OSError(f"{self.path}: file ends before row {start + count}")
            done += got
        return np.frombuffer(buffer, self.dtype).reshape(count, self.shape[1])

    def __getitem__(self, index) -> np.ndarray:
        """Rows by int array, slice or int; reads one span per run of consecutive rows."""
        if isinstance(index, slice):
            start, stop, step = index.indices(self.shape[0])
            rows = self.read(start, max(stop - start, 0))
            return rows[::step] if step != 1 else rows
        if isinstance(index, (int, np.integer)):
            return self.read(int(index) % self.shape[0], 1)[0]
        rows = np.asarray(index, np.int64)
        if rows.size == 0:
            return np.zeros([0, self.shape[1]], self.dtype)
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        breaks = np.nonzero(np.diff(sorted_rows) > 1)[0] + 1
        out = np.empty([len(rows), self.shape[1]], self.dtype)
        for run in np.split(np.arange(len(rows)), breaks):
            first, last = sorted_rows[run[0]], sorted_rows[run[-1]]
            block = self.read(int(first), int(last - first + 1))
            out[order[run]] = block[sorted_rows[run] - first]
        return out
