"""Recording a run: `mt.fit` with a run folder against the same `fit` without one.

One JSON line per case, each the ratio of the two wall times in one process (goal <= 1.10):

- "demo": three tasks as the demo has them (6 words, a binary one, 6 tags), `--rows`
  rows each of [101, 40] log-mel-like features, the default CNN;
- "classes50": one 50-class task on as many rows in all (3 x `--rows`).

Both use `fit`'s defaults (the validation carve-out, patience on validation/loss, so the
chosen and the last epoch usually differ and both get confusion figures), batch 32, a test
split of a fifth of `--rows` per task. A one-epoch fit of each kind runs first, so that
imports (matplotlib, Orbax, tensorboardX) and JAX's caches are warm for the measured fits;
then `--repeats` fits of each kind, interleaved, and the fastest of each kind is compared
(on a shared machine the fastest is the least disturbed).
The line also splits the recorded fit's extra time: the recorder's per-epoch writes
(`epoch_s`: events, reports, history, checkpoint), its `close` (`close_s`: figures,
HParams) and the rest (`other_s`: opening the run, the checkpoint files Orbax writes in the
background while the next epoch trains, and the noise between two fits); `recorder_ratio`
is the ratio the recorder's own time alone gives,
(unrecorded + epoch_s + close_s) / unrecorded, which a loaded machine disturbs less.

`--conflicts` records the gradient-conflict probe too (`fit(conflicts=True)`, off by default
for the default `sum` combiner): what recording costs with it.

Usage: python benchmarks/record_bench.py [--rows 400] [--epochs 12] [--repeats 2]
       [--cases demo,classes50] [--conflicts]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np

import mtjax as mt
from mtjax import runs
from mtjax.runs import recorder as recorders
from mtjax.tasks import Task

SHAPE = (101, 40)  # 1 s of 40 log-mel bands


def dataset(rows: int, task: Task, name: str, seed: int) -> mt.TaskDataset:
    """Rows whose first bands carry their labels plus noise: learnable, not trivial."""
    rng = np.random.default_rng(seed)
    if task.kind == "multilabel":
        y = (rng.random((rows, len(task.labels))) < 0.3).astype(np.float32)
    else:
        y = task.encode_many([task.labels[c] for c in rng.integers(0, len(task.labels), rows)])
    x = rng.normal(0.0, 1.0, (rows, *SHAPE)).astype(np.float32)
    x[:, :, : y.shape[1]] += 0.5 * y[:, None, : SHAPE[1]]
    return mt.TaskDataset.from_arrays(x, y, [task], name=name)


def case(name: str, rows: int) -> tuple[mt.MultiTaskData, mt.MultiTaskData]:
    """(train, test) of a case."""
    if name == "demo":
        tasks = [
            Task("word", tuple(f"w{i}" for i in range(6))),
            Task("sex", ("female", "male"), "binary"),
            Task("tags", tuple(f"t{i}" for i in range(6)), "multilabel"),
        ]
    elif name == "classes50":
        tasks = [Task("class", tuple(f"c{i:02d}" for i in range(50)))]
    else:
        raise ValueError(f"unknown case {name!r}: use demo or classes50")
    rows *= 3 if len(tasks) == 1 else 1  # as many rows as the demo-like case has
    parts = [(rows, 0), (max(rows // 5, 10), 100)]
    train, test = (
        mt.concat([dataset(n, t, f"d{k}", seed + k) for k, t in enumerate(tasks)])
        for n, seed in parts
    )
    return train, test


class Timed:
    """Wall time spent in the recorder's `epoch` and `close` while installed."""

    def __init__(self):
        self.epoch = self.close = 0.0
        self._epoch, self._close = recorders.Recorder.epoch, recorders.Recorder.close

    def __enter__(self):
        def epoch(rec, *args, **kwargs):
            started = time.perf_counter()
            self._epoch(rec, *args, **kwargs)
            self.epoch += time.perf_counter() - started

        def close(rec, *args, **kwargs):
            started = time.perf_counter()
            self._close(rec, *args, **kwargs)
            self.close += time.perf_counter() - started

        recorders.Recorder.epoch, recorders.Recorder.close = epoch, close
        return self

    def __exit__(self, *exc):
        recorders.Recorder.epoch, recorders.Recorder.close = self._epoch, self._close


CONFLICTS = {"conflicts": None}  # fit's `conflicts` for the recorded fits (--conflicts)


def seconds_of_fit(train, test, epochs: int, run: runs.Run | None) -> float:
    started = time.perf_counter()
    options = CONFLICTS if run is not None else {}
    mt.fit(None, train, test, epochs=epochs, batch_size=32, progress=False, run=run, **options)
    return time.perf_counter() - started


def measure(name: str, rows: int, epochs: int, root: str, *, repeats: int) -> dict:
    train, test = case(name, rows)
    seconds_of_fit(train, test, 1, None)  # warm: JAX's caches
    seconds_of_fit(train, test, 1, runs.Run(root, f"{name}-warm"))  # and the run's imports
    unrecorded, recorded, parts = [], [], []
    for k in range(repeats):  # interleaved; the fastest of each, as the least disturbed
        unrecorded.append(seconds_of_fit(train, test, epochs, None))
        with Timed() as timed:
            recorded.append(seconds_of_fit(train, test, epochs, runs.Run(root, f"{name}{k}")))
        parts.append((timed.epoch, timed.close))
    best = int(np.argmin(recorded))
    without, with_run = min(unrecorded), recorded[best]
    epoch_s, close_s = parts[best]
    return {
        "measure": "fit with vs without a run folder",
        "case": name,
        "tasks": [t.name for t in train.tasks],
        "train_rows": len(train),
        "x_shape": list(SHAPE),
        "epochs": epochs,
        "chosen_epoch": runs.read_config(runs.Run(root, f"{name}{best}"))["chosen_epoch"],
        "repeats": repeats,
        "unrecorded_s": round(without, 2),
        "recorded_s": round(with_run, 2),
        "ratio": round(with_run / without, 3),
        "goal": "<= 1.10",
        "met": with_run / without <= 1.10,
        "epoch_s": round(epoch_s, 2),
        "close_s": round(close_s, 2),
        "other_s": round(with_run - without - epoch_s - close_s, 2),
        "recorder_ratio": round((without + epoch_s + close_s) / without, 3),
        "conflicts": CONFLICTS["conflicts"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400, help="train rows per task (400)")
    parser.add_argument("--epochs", type=int, default=12, help="epochs of each fit (12)")
    parser.add_argument("--repeats", type=int, default=2, help="fits of each kind (2)")
    parser.add_argument("--cases", default="demo,classes50", help="demo,classes50")
    parser.add_argument("--conflicts", action="store_true", help="fit(conflicts=True)")
    args = parser.parse_args()
    if args.conflicts:
        CONFLICTS["conflicts"] = True
    with tempfile.TemporaryDirectory() as root:
        for name in args.cases.split(","):
            line = measure(name, args.rows, args.epochs, root, repeats=args.repeats)
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
