"""Feature arrays in memory or on disk, behind one small set of row operations.

A feature matrix batch is float32 [N, T, F], zero-padded past each row's length. In
memory it is an `np.ndarray`; out of core it is a `DiskArray`: a lazy view over ragged
memory-mapped features (one flat [sum of T, F] array plus offsets per source), which
selects rows, crops frames and applies an affine scaling only when rows are gathered.
The functions `take`, `crop`, `affine`, `concat_rows` and `chunks` accept either kind
and return the same kind, so the data pipeline never loads an out-of-core dataset whole.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from mtjax.data import npyfile

CHUNK_BYTES = 32 * 2**20

NO_CAP = np.iinfo(np.int64).max // 2  # a row cap that never binds


class RaggedSource(NamedTuple):
    """Ragged features: row r is `flat[offsets[r]:offsets[r + 1]]`.

    Attributes:
      flat: float32 [sum of T, F]: an array in memory, or rows read from disk on demand
        (`mtjax.npyfile.NpyRows`, or a read-only memory map).
      offsets: int64 [R + 1], row boundaries into `flat`.
    """

    flat: np.ndarray | npyfile.NpyRows
    offsets: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        """int64 [R], frames in each row."""
        return np.diff(self.offsets)


class Affine(NamedTuple):
    """`x * mult + add` on valid frames; both float32 [1, F] (per feature) or [T, F] (per cell)."""

    mult: np.ndarray
    add: np.ndarray

    def then(self, other: Affine) -> Affine:
        """This scaling followed by `other`."""
        return Affine(self.mult * other.mult, self.add * other.mult + other.add)


class DiskArray:
    """A read-only float32 [N, T, F] view over ragged sources, gathered on demand.

    Row n shows frames `start[n] : start[n] + T` of row `row[n]` of source `src[n]`,
    zero-padded past the source row's end or past `cap[n]` frames (whichever comes first),
    with source `src[n]`'s affine applied to the valid frames. `cap` keeps a row that was
    cropped short from growing back when `concat_rows` pads it to a longer T. Indexing
    (`a[i]`, `a[rows]`, `a[i:j]`, `np.asarray(a)`) returns numpy arrays, as for a memory
    map; `take`, `crop` and `affine` return new lazy views.
    """

    def __init__(
        self,
        sources: Sequence[RaggedSource],
        src: np.ndarray,
        row: np.ndarray,
        start: np.ndarray,
        length: int,
        scalings: Sequence[Affine | None] | None = None,
        cap: np.ndarray | None = None,
    ):
        self.sources = tuple(sources)
        self.src = np.asarray(src, np.int32)
        self.row = np.asarray(row, np.int64)
        self.start = np.asarray(start, np.int64)
        self.length = int(length)
        self.cap = (
            np.full(len(self.row), NO_CAP, np.int64) if cap is None else np.asarray(cap, np.int64)
        )
        self.scalings = tuple(scalings) if scalings is not None else (None,) * len(self.sources)
        n_features = {s.flat.shape[1] for s in self.sources}
        if len(n_features) > 1:
            raise ValueError(f"sources have different feature counts {sorted(n_features)}")
        self.n_features = n_features.pop() if n_features else 0

    @classmethod
    def from_source(cls, source: RaggedSource, length: int | None = None) -> DiskArray:
        """Every row of `source`, padded (or cut) to `length` frames (default: the longest)."""
        n = len(source.offsets) - 1
        lengths = source.lengths
        if length is None:
            length = int(lengths.max()) if n else 0
        return cls([source], np.zeros(n), np.arange(n), np.zeros(n), length)

    # numpy-like surface
    @property
    def shape(self) -> tuple[int, int, int]:
        """(N, T, F): rows, frames per row, features."""
        return (len(self.row), self.length, self.n_features)

    dtype = np.dtype(np.float32)
    ndim = 3

    def __len__(self) -> int:
        return len(self.row)

    @property
    def nbytes(self) -> int:
        """Bytes the whole array takes in memory as float32."""
        return int(np.prod(self.shape)) * 4

    def __repr__(self) -> str:
        return f"DiskArray(shape={self.shape}, sources={len(self.sources)})"

    def __array__(self, dtype=None, copy=None):
        out = self.gather(np.arange(len(self)))
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, index):
        if isinstance(index, tuple):
            rows = self[index[0]]
            if isinstance(index[0], (int, np.integer)):
                return rows[index[1:]]
            return rows[(slice(None), *index[1:])]
        if isinstance(index, (int, np.integer)):
            return self.gather(np.array([index]))[0]
        if isinstance(index, slice):
            return self.gather(np.arange(len(self))[index])
        return self.gather(np.asarray(index))

    def valid_lengths(self) -> np.ndarray:
        """int32 [N], frames of each row that come from the source (the rest is padding)."""
        out = np.zeros(len(self), np.int64)
        for s, source in enumerate(self.sources):
            sel = self.src == s
            out[sel] = source.lengths[self.row[sel]] - self.start[sel]
        return np.clip(np.minimum(out, self.cap), 0, self.length).astype(np.int32)

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """float32 [len(rows), T, F] read from the sources (only those rows are read).

        Each source's distinct rows are read once, in file order, rows that follow each
        other on disk in one read (`_frames`), then put in the order asked for.
        """
        rows = row_index(rows, len(self))
        if rows.ndim != 1:
            raise IndexError(f"DiskArray takes a 1-D row index, got shape {rows.shape}")
        if rows.size and (rows.min() < -len(self) or rows.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        rows = rows % max(len(self), 1)
        out = np.zeros([len(rows), self.length, self.n_features], np.float32)
        for s, source in enumerate(self.sources):
            sel = np.nonzero(self.src[rows] == s)[0]
            if not sel.size:
                continue
            picked = rows[sel]
            begin = source.offsets[self.row[picked]] + self.start[picked]
            end = source.offsets[self.row[picked] + 1] - begin
            count = np.clip(np.minimum(end, self.cap[picked]), 0, self.length)
            begin, count, slots, slot = _distinct_spans(sel, begin, count)
            valid = np.arange(self.length)[None, :] < count[:, None]  # [U, T], row-major order
            values = np.asarray(_frames(source.flat, begin, count), np.float32)
            scaling = self.scalings[s]
            if scaling is not None:
                if scaling.mult.shape[0] > 1:
                    cell = np.nonzero(valid)[1]
                    values = values * scaling.mult[cell] + scaling.add[cell]
                else:
                    values = values * scaling.mult + scaling.add
            if np.all(count == self.length):  # no padding: the rows are whole blocks
                block = values.reshape(len(count), self.length, self.n_features)
            else:
                block = np.zeros([len(count), self.length, self.n_features], np.float32)
                block[valid] = values
            out[slots] = block if slot is None else block[slot]
        return out

    def replace(self, **changes: Any) -> DiskArray:
        """A new view with the given constructor arguments changed, the others kept."""
        fields: dict[str, Any] = {
            "sources": self.sources,
            "src": self.src,
            "row": self.row,
            "start": self.start,
            "length": self.length,
            "scalings": self.scalings,
            "cap": self.cap,
        }
        fields.update(changes)
        return DiskArray(**fields)


def row_index(rows, n: int) -> np.ndarray:
    """int64 [M] from an int index or a bool mask [n]."""
    rows = np.asarray(rows)
    if rows.dtype == bool:
        if rows.shape != (n,):
            raise IndexError(f"a boolean row mask needs shape ({n},), got {rows.shape}")
        return np.nonzero(rows)[0].astype(np.int64)
    return rows.astype(np.int64)


def _distinct_spans(
    where: np.ndarray, begin: np.ndarray, count: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """The distinct spans of frames to read, in file order, and where each goes.

    Args:
      where: int [M], the output row of each span.
      begin: int [M], each span's first frame in the source.
      count: int [M], each span's frames.

    Returns:
      (begin, count) [U] of the distinct spans sorted by `begin`, and (slots, slot): output
      row `slots[m]` takes distinct span `slot[m]` (slot None: span m, as U == M).
    """
    order = np.argsort(begin, kind="stable")
    begin, count = begin[order], count[order]
    repeat = (begin[1:] == begin[:-1]) & (count[1:] == count[:-1])
    if not repeat.any():
        return begin, count, where[order], None
    first = np.concatenate([[True], ~repeat])
    return begin[first], count[first], where[order], np.cumsum(first) - 1


def _frames(flat, begin: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Frames `begin[m] : begin[m] + count[m]` of `flat`, one row after another.

    One slice when the rows follow each other in `flat` (a pass in order); spans read
    from disk when `flat` reads spans (`NpyRows`); else one fancy index.
    """
    if hasattr(flat, "read_spans"):
        return flat.read_spans(begin, count)
    total = int(count.sum())
    if total and np.all(begin[1:] == begin[:-1] + count[:-1]):
        return flat[int(begin[0]) : int(begin[0]) + total]
    which = np.repeat(np.arange(len(begin)), count)
    frame = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    return flat[begin[which] + frame]


def take(x: np.ndarray | DiskArray, rows: np.ndarray) -> np.ndarray | DiskArray:
    """Rows `rows` (int [M], or a bool mask [N]) of `x`; lazy for a DiskArray."""
    rows = row_index(rows, len(x))
    if isinstance(x, DiskArray):
        return x.replace(src=x.src[rows], row=x.row[rows], start=x.start[rows], cap=x.cap[rows])
    return x[rows]


def crop(x: np.ndarray | DiskArray, starts: np.ndarray, length: int) -> np.ndarray | DiskArray:
    """Frames `starts[n] : starts[n] + length` of each row, zero-padded past the end.

    Args:
      x: float32 [N, T, F].
      starts: int [N], first frame kept in each row.
      length: frames in the result.

    Returns:
      float32 [N, length, F], the same kind as `x`.
    """
    starts = np.asarray(starts, np.int64)
    if isinstance(x, DiskArray):
        if any(s is not None and s.mult.shape[0] > 1 for s in x.scalings):
            raise ValueError("crop or window features before a per-cell scaling, not after")
        cap = np.maximum(np.minimum(x.cap, x.length) - starts, 0)
        return x.replace(start=x.start + starts, length=length, cap=cap)
    frame_idx = starts[:, None] + np.arange(length)[None, :]
    inside = frame_idx < x.shape[1]
    out = np.take_along_axis(x, np.minimum(frame_idx, max(x.shape[1] - 1, 0))[:, :, None], 1)
    return np.where(inside[:, :, None], out, 0.0).astype(np.float32)


def affine(
    x: np.ndarray | DiskArray, lengths: np.ndarray, scaling: Affine
) -> np.ndarray | DiskArray:
    """`x * mult + add` on the valid frames of each row; padding stays zero.

    Args:
      x: float32 [N, T, F].
      lengths: int [N], valid frames per row.
      scaling: mult and add, each [1, F] or [T, F].
    """
    if scaling.mult.shape[0] > 1 and scaling.mult.shape[0] != x.shape[1]:
        raise ValueError(
            f"a per-cell scaling of {scaling.mult.shape[0]} frames does not fit {x.shape[1]} frames"
        )
    if isinstance(x, DiskArray):
        scalings = tuple(scaling if s is None else s.then(scaling) for s in x.scalings)
        return x.replace(scalings=scalings)
    valid = np.arange(x.shape[1])[None, :, None] < np.asarray(lengths)[:, None, None]
    return np.where(valid, x * scaling.mult[None] + scaling.add[None], 0.0).astype(np.float32)


def concat_rows(
    xs: Sequence[np.ndarray | DiskArray], lengths: Sequence[np.ndarray]
) -> np.ndarray | DiskArray:
    """Rows of every array in turn, padded to the longest T.

    Args:
      xs: float32 [N_i, T_i, F] arrays.
      lengths: int [N_i] valid frames of each array's rows.

    In-memory arrays stay in memory; if any is a DiskArray, the result is one, and the
    in-memory ones become in-memory ragged sources of it.
    """
    length = max((x.shape[1] for x in xs), default=0)
    if not any(isinstance(x, DiskArray) for x in xs):
        padded = [np.pad(x, [(0, 0), (0, length - x.shape[1]), (0, 0)]) for x in xs]
        return np.concatenate(padded).astype(np.float32)
    parts = [x if isinstance(x, DiskArray) else _in_memory_view(x, n) for x, n in zip(xs, lengths)]
    sources: list[RaggedSource] = []
    scalings: list[Affine | None] = []
    src: list[np.ndarray] = []
    row: list[np.ndarray] = []
    start: list[np.ndarray] = []
    cap: list[np.ndarray] = []
    for part in parts:
        src.append(part.src + len(sources))
        sources.extend(part.sources)
        scalings.extend(part.scalings)
        row.append(part.row)
        start.append(part.start)
        cap.append(np.minimum(part.cap, part.length))  # a part's rows keep their own T
    return DiskArray(
        sources,
        np.concatenate(src),
        np.concatenate(row),
        np.concatenate(start),
        length,
        scalings,
        np.concatenate(cap),
    )


def _in_memory_view(x: np.ndarray, lengths: np.ndarray) -> DiskArray:
    lengths = np.minimum(np.asarray(lengths, np.int64), x.shape[1])
    valid = np.arange(x.shape[1])[None, :] < lengths[:, None]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return DiskArray.from_source(RaggedSource(x[valid], offsets), x.shape[1])


def chunks(x: np.ndarray | DiskArray, size: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, float32 [<=size, T, F] rows) in order; bounded memory for a DiskArray.

    Args:
      x: float32 [N, T, F].
      size: rows per chunk; default as many as fit in about 32 MiB.
    """
    if size is None:
        size = max(1, CHUNK_BYTES // max(1, x.shape[1] * x.shape[2] * 4))
    for begin in range(0, len(x), size):
        rows = np.arange(begin, min(begin + size, len(x)))
        yield begin, (x.gather(rows) if isinstance(x, DiskArray) else x[begin : begin + size])


def to_numpy(x: np.ndarray | DiskArray) -> np.ndarray:
    """The whole array in memory (loads a DiskArray completely)."""
    return np.asarray(x, np.float32)


CHUNK_VALUES = 1 << 22  # floats per streamed chunk (16 MiB as float32)


def chunk_rows(x: np.ndarray | DiskArray) -> int:
    """Rows per streamed chunk of `x` [N, T, F] (about CHUNK_VALUES floats)."""
    return max(1, CHUNK_VALUES // max(1, x.shape[1] * x.shape[2]))


def nonfinite_rows(x: np.ndarray | DiskArray) -> np.ndarray:
    """Indices (int [M]) of the rows of `x` holding a NaN or inf, found chunk by chunk."""
    bad = [
        begin + np.nonzero(~np.isfinite(chunk).all(axis=(1, 2)))[0]
        for begin, chunk in chunks(x, chunk_rows(x))
    ]
    return np.concatenate(bad) if bad else np.zeros([0], np.int64)
