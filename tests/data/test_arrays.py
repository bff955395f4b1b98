"""arrays: a DiskArray over a real memory-mapped file behaves as the padded in-memory array."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mtjax import arrays
from mtjax.arrays import Affine, DiskArray, RaggedSource

LENGTHS = np.array([5, 2, 7, 0, 4])
F = 3


@pytest.fixture
def ragged(tmp_path):
    """(DiskArray over a float32 memmap file, the same rows padded in memory)."""
    rng = np.random.default_rng(0)
    flat = rng.normal(size=(LENGTHS.sum(), F)).astype(np.float32) + 1.0  # no accidental zeros
    path = tmp_path / "flat.f32"
    writer = np.memmap(path, np.float32, "w+", shape=flat.shape)
    writer[:] = flat
    writer.flush()
    del writer
    offsets = np.concatenate([[0], np.cumsum(LENGTHS)]).astype(np.int64)
    source = RaggedSource(np.memmap(path, np.float32, "r", shape=flat.shape), offsets)
    dense = np.zeros([len(LENGTHS), LENGTHS.max(), F], np.float32)
    for n, (begin, end) in enumerate(itertools.pairwise(offsets)):
        dense[n, : end - begin] = flat[begin:end]
    return DiskArray.from_source(source), dense


def test_disk_array_reads_the_padded_rows(ragged):
    disk, dense = ragged
    assert disk.shape == dense.shape == (5, 7, 3)
    np.testing.assert_array_equal(np.asarray(disk), dense)
    np.testing.assert_array_equal(disk.valid_lengths(), LENGTHS)
    np.testing.assert_array_equal(disk[2], dense[2])
    np.testing.assert_array_equal(disk[1:3], dense[1:3])
    assert np.all(np.asarray(disk)[1, 2:] == 0)  # padding past a row's end is zero


def test_take_picks_rows_and_masks(ragged):
    disk, dense = ragged
    rows = np.array([3, 0, 0, 4])
    picked = arrays.take(disk, rows)
    assert isinstance(picked, DiskArray)
    np.testing.assert_array_equal(np.asarray(picked), dense[rows])
    np.testing.assert_array_equal(arrays.take(dense, rows), dense[rows])
    mask = np.array([True, False, True, False, False])
    np.testing.assert_array_equal(np.asarray(arrays.take(disk, mask)), dense[[0, 2]])
    np.testing.assert_array_equal(arrays.take(dense, mask), dense[[0, 2]])


def test_crop_matches_in_memory_and_hand_cut(ragged):
    disk, dense = ragged
    starts = np.array([1, 0, 3, 0, 2])
    cut = arrays.crop(disk, starts, 4)
    assert isinstance(cut, DiskArray) and cut.shape == (5, 4, 3)
    expected = np.zeros([5, 4, 3], np.float32)
    for n, s in enumerate(starts):
        frames = dense[n, s : min(s + 4, LENGTHS[n])]
        expected[n, : len(frames)] = frames
    np.testing.assert_array_equal(np.asarray(cut), expected)
    np.testing.assert_array_equal(arrays.crop(dense, starts, 4), expected)
    np.testing.assert_array_equal(cut.valid_lengths(), [4, 2, 4, 0, 2])
    # longer than T: zero-padded on both paths
    long = arrays.crop(disk, np.zeros(5, int), 9)
    np.testing.assert_array_equal(np.asarray(long), np.pad(dense, [(0, 0), (0, 2), (0, 0)]))
    np.testing.assert_array_equal(arrays.crop(dense, np.zeros(5, int), 9), np.asarray(long))


def test_affine_per_feature_keeps_padding_zero(ragged):
    disk, dense = ragged
    scaling = Affine(np.array([[2.0, -1.0, 0.5]], np.float32), np.full([1, 3], 3.0, np.float32))
    valid = np.arange(7)[None, :, None] < LENGTHS[:, None, None]
    expected = np.where(valid, dense * scaling.mult + scaling.add, 0.0)
    np.testing.assert_allclose(np.asarray(arrays.affine(disk, LENGTHS, scaling)), expected)
    np.testing.assert_allclose(arrays.affine(dense, LENGTHS, scaling), expected)
    # a per-feature scaling may be followed by a crop on either path
    after = arrays.crop(arrays.affine(disk, LENGTHS, scaling), np.ones(5, int), 3)
    np.testing.assert_allclose(np.asarray(after), arrays.crop(expected, np.ones(5, int), 3))


def test_per_cell_scaling_before_crop_refused_after_crop_allowed(ragged):
    disk, dense = ragged
    rng = np.random.default_rng(1)
    mult, add = rng.normal(size=(2, 7, 3)).astype(np.float32)
    cell = Affine(mult, add)
    scaled = arrays.affine(disk, LENGTHS, cell)
    valid = np.arange(7)[None, :, None] < LENGTHS[:, None, None]
    np.testing.assert_allclose(np.asarray(scaled), np.where(valid, dense * cell.mult + cell.add, 0))
    # cropping a per-cell scaled DiskArray would move cells under other statistics: refused
    with pytest.raises(ValueError, match="before a per-cell scaling"):
        arrays.crop(scaled, np.zeros(5, int), 4)
    # crop first, then scale per cell: allowed, equal to the in-memory path
    starts = np.array([1, 0, 3, 0, 2])
    cell4 = Affine(cell.mult[:4], cell.add[:4])
    cut = arrays.crop(disk, starts, 4)
    lengths = cut.valid_lengths()
    on_disk = np.asarray(arrays.affine(cut, lengths, cell4))
    in_memory = arrays.affine(arrays.crop(dense, starts, 4), lengths, cell4)
    np.testing.assert_allclose(on_disk, in_memory, rtol=1e-6)
    with pytest.raises(ValueError, match="does not fit 4 frames"):
        arrays.affine(cut, lengths, cell)


def test_concat_rows_mixes_disk_and_memory(ragged):
    disk, dense = ragged
    rng = np.random.default_rng(2)
    small = rng.normal(size=(2, 9, 3)).astype(np.float32)
    small_lengths = np.array([9, 4])
    small[1, 4:] = 0
    both = arrays.concat_rows([disk, small], [LENGTHS, small_lengths])
    assert isinstance(both, DiskArray) and both.shape == (7, 9, 3)
    expected = np.concatenate([np.pad(dense, [(0, 0), (0, 2), (0, 0)]), small])
    np.testing.assert_array_equal(np.asarray(both), expected)
    np.testing.assert_array_equal(both.valid_lengths(), [5, 2, 7, 0, 4, 9, 4])
    in_memory = arrays.concat_rows([dense, small], [LENGTHS, small_lengths])
    np.testing.assert_array_equal(in_memory, expected)


def test_concat_rows_keeps_a_cropped_row_short(ragged):
    """A row cut to 3 frames stays 3 frames when padded to a longer T by concatenation."""
    disk, dense = ragged
    cut = arrays.crop(disk, np.zeros(5, int), 3)
    both = arrays.concat_rows([cut, disk], [cut.valid_lengths(), LENGTHS])
    expected_cut = np.pad(dense[:, :3], [(0, 0), (0, 4), (0, 0)])
    np.testing.assert_array_equal(np.asarray(both)[:5], expected_cut)
    np.testing.assert_array_equal(both.valid_lengths()[:5], [3, 2, 3, 0, 3])
    np.testing.assert_array_equal(np.asarray(arrays.take(both, [0])), expected_cut[:1])


def test_chunks_cover_the_rows_in_order(ragged):
    disk, dense = ragged
    for x in (disk, dense):
        pieces = list(arrays.chunks(x, 2))
        assert [begin for begin, _ in pieces] == [0, 2, 4]
        assert all(isinstance(chunk, np.ndarray) for _, chunk in pieces)
        np.testing.assert_array_equal(np.concatenate([c for _, c in pieces]), dense)
    np.testing.assert_array_equal(arrays.to_numpy(disk), dense)
