"""Rows of a 2-D `.npy` file, memory-mapped with bounded residency.

A plain memory map keeps every page it touched resident in the process, so one pass
over a dataset larger than memory grows the process to the dataset's size. `NpyRows`
maps the file too (random row access is then as fast as in memory once the pages are
cached), but after every `release_bytes` read it tells the kernel to drop the mapped
pages (`MADV_DONTNEED`): they stay in the page cache, not in the process. Safe to send
to worker processes: each maps the file itself.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np

RELEASE_BYTES = 128 * 2**20


class NpyRows:
    """Read-only rows of a C-ordered 2-D `.npy` file; indexing returns in-memory copies.

    Attributes:
      path: the file.
      shape: (rows, columns).
      dtype: element type.
    """

    ndim = 2

    def __init__(self, path: str | os.PathLike, release_bytes: int = RELEASE_BYTES):
        self.path = Path(path)
        self.release_bytes = int(release_bytes)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            data_offset = f.tell()
            if len(shape) != 2 or fortran or dtype.hasobject:
                raise ValueError(f"{self.path}: expected a C-ordered 2-D numeric array, got {shape}")
            self.shape = tuple(int(s) for s in shape)
            self.dtype = np.dtype(dtype)
            needed = data_offset + self.shape[0] * self.shape[1] * self.dtype.itemsize
            if os.fstat(f.fileno()).st_size < needed:
                raise ValueError(f"{self.path}: file is shorter than its header says")
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if needed else None
        count = self.shape[0] * self.shape[1]
        buffer = self._map if self._map is not None else b""
        self._rows = np.frombuffer(buffer, self.dtype, count, data_offset if count else 0)
        self._rows = self._rows.reshape(self.shape)
        self._touched = 0

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self):
        return {"path": self.path, "release_bytes": self.release_bytes}

    def __setstate__(self, state):
        self.__init__(state["path"], state["release_bytes"])

    def __getitem__(self, index) -> np.ndarray:
        """Rows by int, slice or int array, copied into memory."""
        out = np.array(self._rows[index], copy=True)
        self._touched += out.nbytes
        if self._touched >= self.release_bytes:
            self.release()
        return out

    def release(self) -> None:
        """Drop this process's mapped pages (the data stay in the kernel's page cache)."""
        self._touched = 0
        if self._map is not None and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)
