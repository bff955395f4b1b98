"""NpyRows: rows of a .npy file read on demand, equal to the array written."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from mtjax.npyfile import NpyRows


@pytest.fixture
def written(tmp_path, rng):
    array = rng.standard_normal([50, 4]).astype(np.float32)
    np.save(tmp_path / "a.npy", array)
    return array, NpyRows(tmp_path / "a.npy")


def test_rows_equal_the_array(written):
    array, rows = written
    assert rows.shape == (50, 4) and rows.dtype == np.float32 and len(rows) == 50
    index = np.array([7, 3, 3, 49, 8, 9, 10, 0])
    np.testing.assert_array_equal(rows[index], array[index])
    np.testing.assert_array_equal(rows[5:20:3], array[5:20:3])
    np.testing.assert_array_equal(rows[-1], array[-1])
    starts, counts = np.array([2, 5, 30, 0]), np.array([3, 4, 0, 2])
    expected = np.concatenate([array[s : s + c] for s, c in zip(starts, counts)])
    np.testing.assert_array_equal(rows.read_spans(starts, counts), expected)
    again = pickle.loads(pickle.dumps(rows))
    np.testing.assert_array_equal(again[index], array[index])


def test_out_of_range_and_bad_files(written, tmp_path):
    _, rows = written
    with pytest.raises(IndexError):
        rows[np.array([50])]
    with pytest.raises(IndexError):
        rows.read(45, 10)
    np.save(tmp_path / "cube.npy", np.zeros([2, 2, 2]))
    with pytest.raises(ValueError, match="2-D"):
        NpyRows(tmp_path / "cube.npy")
    data = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) - 40])
    with pytest.raises(ValueError, match="shorter than its header"):
        NpyRows(tmp_path / "cut.npy")


def test_many_short_spans_are_gathered_mapped_and_released(tmp_path, rng, monkeypatch):
    """Shuffled short spans (the mapped path) and long ones (one pread each) give the same
    rows; the map's pages are released after every RELEASE_BYTES gathered."""
    from mtjax.data import npyfile

    array = rng.standard_normal([3000, 24]).astype(np.float32)
    np.save(tmp_path / "b.npy", array)
    rows = NpyRows(tmp_path / "b.npy")
    monkeypatch.setattr(npyfile, "RELEASE_BYTES", 20_000)
    for _ in range(30):
        starts = np.sort(rng.choice(2993, 64, replace=False))
        counts = rng.integers(0, 8, 64)
        expected = np.concatenate([array[s : s + c] for s, c in zip(starts, counts)])
        np.testing.assert_array_equal(rows.read_spans(starts, counts), expected)
        assert rows._gathered < 20_000
    long = rows.read_spans(np.array([0, 2000]), np.array([900, 1000]))
    np.testing.assert_array_equal(long, np.concatenate([array[:900], array[2000:3000]]))
    with pytest.raises(IndexError):
        rows.read_spans(np.array([5, 2995]), np.array([2, 6]))
