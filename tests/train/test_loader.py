"""The out-of-core loader: a planned epoch's batches read ahead, in plan order, from disk.

Its batches equal the in-memory rows, training on them equals training in memory, a
resumed run sees the batches an uninterrupted one does, and resident memory stays
bounded while training on features larger than the cap.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap

import jax
import numpy as np
import optax
import pytest
from tiny_training import SmallNet, three_datasets

import mtjax as mt
from mtjax import runs
from mtjax.data.arrays import DiskArray, RaggedSource
from mtjax.data.npyfile import NpyRows
from mtjax.runs import plots, recorder
from mtjax.train import loader, schedules


def on_disk(data: mt.MultiTaskData, path, rng) -> mt.MultiTaskData:
    """`data` with ragged rows (2 to T frames) kept on disk as a cache keeps them."""
    n, t, _ = data.x.shape
    lengths = rng.integers(2, t + 1, n)
    valid = np.arange(t)[None, :] < lengths[:, None]
    np.save(path, np.asarray(data.x, np.float32)[valid])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return data.replace(x=DiskArray.from_source(RaggedSource(NpyRows(path), offsets), t))


@pytest.fixture
def pair(tmp_path, rng):
    """(in memory, on disk): the same three-dataset training rows."""
    disk = on_disk(three_datasets(n=24), tmp_path / "features.npy", rng)
    return disk.replace(x=np.asarray(disk.x)), disk


@pytest.mark.parametrize("block", [1, 2, None])
def test_batches_are_the_plan_rows_in_plan_order(pair, block):
    memory, disk = pair
    planned = schedules.cut(np.r_[np.arange(len(disk))[::-1], 5, 5], 16)  # repeats, padding
    got = list(loader.epoch_batches(disk, planned, block=block, threads=3, prefetch=1))
    assert len(got) == len(planned.index) == 5
    for s, (x, y, has_task, weight) in enumerate(got):
        rows = planned.index[s]
        np.testing.assert_array_equal(x, memory.x[rows])
        np.testing.assert_array_equal(y, memory.y[rows])
        np.testing.assert_array_equal(has_task, memory.has_task[rows])
        np.testing.assert_array_equal(weight, planned.weight[s])
    tail = list(loader.epoch_batches(disk, planned, block=block, start=3))
    assert len(tail) == 2
    for want, (x, *_, weight) in zip(got[3:], tail):
        np.testing.assert_array_equal(x, want[0])
        np.testing.assert_array_equal(weight, want[3])


def test_bad_loader_settings_are_refused_naming_them(pair):
    planned = schedules.cut(np.arange(len(pair[1])), 16)
    with pytest.raises(ValueError, match="start step 6 is outside the epoch's 5 steps"):
        loader.epoch_batches(pair[1], planned, start=6)
    with pytest.raises(ValueError, match="block, threads and prefetch must be >= 1, got 64, 0"):
        loader.epoch_batches(pair[1], planned, threads=0)


def test_a_block_is_about_block_bytes_of_features(pair):
    assert loader.steps_per_block(pair[1], 16) == 64  # rows of 5 x 8: the most steps
    big = pair[1].replace(x=np.zeros([4, 101, 40], np.float32))
    assert loader.steps_per_block(big, 32) == 2**20 // (32 * 101 * 40 * 4) == 2


class Spans:
    """A ragged source's flat frames that records each read of spans."""

    def __init__(self, flat):
        self.flat, self.shape, self.reads = flat, flat.shape, []

    def read_spans(self, starts, counts):
        self.reads.append((starts.tolist(), counts.tolist()))
        return np.concatenate([self.flat[b : b + c] for b, c in zip(starts, counts)])


def test_a_batch_reads_its_distinct_rows_once_in_file_order():
    flat = np.arange(30, dtype=np.float32).reshape(10, 3)
    spans = Spans(flat)
    x = DiskArray.from_source(RaggedSource(spans, np.array([0, 2, 5, 6, 10])), 4)
    got = x.gather(np.array([3, 0, 3, 2, 0]))
    assert spans.reads == [([0, 5, 6], [2, 1, 4])]  # rows 0, 2, 3: sorted, each once
    want = np.zeros([5, 4, 3], np.float32)
    want[0, :4], want[1, :2], want[2, :4] = flat[6:10], flat[0:2], flat[6:10]
    want[3, :1], want[4, :2] = flat[5:6], flat[0:2]
    np.testing.assert_array_equal(got, want)


def fit(data, **kwargs_given):
    kwargs = {"epochs": 2, "batch_size": 16, "optimizer": optax.adam(0.05), "early_stop": None}
    kwargs |= kwargs_given
    return mt.fit(SmallNet(data.tasks), data, progress=False, **kwargs)


def assert_same(got, want):
    """Bit-identical parameters and train losses: the same batches, the same arithmetic."""
    for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(want.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    losses = [[r["train/objective"] for r in t.history] for t in (got, want)]
    assert losses[0] == losses[1]


class StoppedError(Exception):
    """Raised once epoch 0 of a run is recorded."""


def test_a_resumed_run_out_of_core_equals_one_in_memory(pair, tmp_path, monkeypatch):
    memory, disk = pair
    monkeypatch.setattr(plots, "confusion", lambda *args, **kwargs: None)
    monkeypatch.setattr(plots, "write_plots", lambda *args, **kwargs: [])
    record_epoch = recorder.Recorder.epoch

    def record_then_stop(self, epoch, *args, **kwargs):
        record_epoch(self, epoch, *args, **kwargs)
        if epoch == 0:
            raise StoppedError

    monkeypatch.setattr(recorder.Recorder, "epoch", record_then_stop)
    with pytest.raises(StoppedError):
        fit(disk, run=runs.Run(tmp_path / "runs", "r"))
    monkeypatch.setattr(recorder.Recorder, "epoch", record_epoch)
    gc.collect()  # the stopped fit's recorder, and with it the run's lock
    resumed = fit(disk, run=runs.Run(tmp_path / "runs", "r"))
    assert [r["epoch"] for r in resumed.history] == [0, 1]
    assert_same(resumed, fit(memory))


CAPPED = """
import json, numpy as np, flax.linen as nn, optax
import mtjax as mt
from mtjax.data.arrays import DiskArray, RaggedSource
from mtjax.data.npyfile import NpyRows

class MeanNet(nn.Module):
    tasks: tuple
    @nn.compact
    def __call__(self, x, *, train=False):
        return {"c": nn.Dense(2)(x.mean(1))}

def data(path, rows):
    x = DiskArray.from_source(RaggedSource(NpyRows(path), np.arange(rows + 1) * T), T)
    y = np.eye(2, dtype=np.float32)[np.arange(rows) % 2]
    return mt.TaskDataset.from_arrays(x, y, [mt.Task("c", ("a", "b"))])

def train(ds):
    return mt.fit(MeanNet(ds.tasks), ds, epochs=1, batch_size=32, optimizer=optax.sgd(0.1),
                  early_stop=None, progress=False)

def kib(field):
    status = open("/proc/self/status").read().split(field + ":")[1]
    return int(status.split()[0])

train(data(SMALL, 64))  # compiles the step: what follows is the data's alone
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak resident size restarts from the current one
before = kib("VmRSS")
trained = train(data(BIG, ROWS))
growth = (kib("VmHWM") - before) * 1024
print(json.dumps({"growth": growth, "loss": trained.history[0]["train/c/loss"]}))
"""


def test_out_of_core_training_stays_under_a_memory_cap(tmp_path):
    frames, features, rows, cap = 1000, 40, 2000, 150 * 2**20  # 320 MB of features
    rng = np.random.default_rng(0)
    big = tmp_path / "big.npy"
    with open(big, "wb") as f:
        header = {"descr": "<f4", "fortran_order": False, "shape": (rows * frames, features)}
        np.lib.format.write_array_header_1_0(f, header)
        chunk = rng.standard_normal([100 * frames, features], np.float32).tobytes()
        for _ in range(0, rows, 100):
            f.write(chunk)
    np.save(tmp_path / "small.npy", np.ones([64 * frames, features], np.float32))
    size = big.stat().st_size
    assert size > 2 * cap
    script = f"T, ROWS, SMALL, BIG = {frames}, {rows}, {str(tmp_path / 'small.npy')!r}, "
    script += f"{str(big)!r}\n" + textwrap.dedent(CAPPED)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert 0.6 < result["loss"] < 0.8, result  # about log 2: the epoch ran on noise
    assert 0 < result["growth"] < cap, result
