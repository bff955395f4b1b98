"""Every combiner and every model trains the demo with every batch schedule.

The demo datasets (`mtjax demo`'s: three datasets, four tasks), fold 0, read once. Then one
`mt.fit` of `--epochs` per (combiner, schedule) with `--model` (default: the default CNN),
and one per (model, schedule) with `sum`. One JSON line each: the training loss of the
last epoch, whether every logged number is finite, and the seconds it took. Not a speed
measurement: a catalogue check, run by hand (about 20 minutes on a 2-core CPU at the
defaults; `--combiners` and `--models` take comma-separated subsets).

Usage: python benchmarks/catalogue_demo.py [--out DIR] [--epochs 1] [--model cnn]
       [--combiners all] [--models all] [--schedules all]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import mtjax as mt
from mtjax.audio import cache, features
from mtjax.data import prepare as steps
from mtjax.demo import layouts
from mtjax.train import models, schedules
from mtjax.train.combiners import catalogue

OPTIONS = {"weighted": {"weights": "ones"}}  # factories without defaults for every argument


def demo_split(out: Path):
    """Fold 0 of the demo datasets, framed and standardised as `mtjax demo` does."""
    paths = layouts.make_demo(out / "data", seed=0)
    extraction = features.LogMel(sample_rate=16000, n_fft=512, hop_length=160, n_mels=40)
    datasets = [
        cache.read(reader, extraction, cache=out / "cache", progress=False)
        for reader in layouts.demo_readers(paths)
    ]
    prepare = [steps.frame("median"), steps.standardize()]
    return next(iter(steps.splits(datasets, folds=5, prepare=prepare, seed=0)))


def combiner(name: str, n_tasks: int):
    options = dict(OPTIONS.get(name, {}))
    if options.get("weights") == "ones":
        options["weights"] = [1.0] * n_tasks
    return catalogue.combiner_from_config(name, **options)


def one_fit(split, model_name: str, combine, schedule: str, epochs: int) -> dict:
    model = models.model_from_config(model_name, split.train.tasks)
    started = time.perf_counter()
    trained = mt.fit(
        model,
        split.train,
        validation=split.validation,
        epochs=epochs,
        combine=combine,
        batches=schedules.schedule_from_config(schedule),
        early_stop=None,
        progress=False,
    )
    last = trained.history[-1]
    numbers = [v for v in last.values() if isinstance(v, float)]
    loss = last.get("train/loss", float("nan"))
    return {
        "train_loss": round(float(loss), 4),
        "finite": all(math.isfinite(v) for v in numbers),
        "seconds": round(time.perf_counter() - started, 1),
    }


def chosen(given: str, known) -> list[str]:
    return sorted(known) if given == "all" else given.split(",")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--combiners", default="all")
    parser.add_argument("--models", default="all")
    parser.add_argument("--schedules", default="all")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        split = demo_split(args.out or Path(tmp))
        n_tasks = len(split.train.tasks)
        names = chosen(args.schedules, schedules.SCHEDULES)
        runs = [("combiner", c, args.model) for c in chosen(args.combiners, catalogue.COMBINERS)]
        runs += [("model", "sum", m) for m in chosen(args.models, models.MODELS)]
        if args.combiners == "none":
            runs = [r for r in runs if r[0] == "model"]
        if args.models == "none":
            runs = [r for r in runs if r[0] == "combiner"]
        for kind, comb, model_name in runs:
            for schedule in names:
                line = {"kind": kind, "combiner": comb, "model": model_name, "schedule": schedule}
                try:
                    combine = combiner(comb, n_tasks)
                    line |= one_fit(split, model_name, combine, schedule, args.epochs)
                except Exception as error:  # a catalogue check reports every failure, then goes on
                    line |= {"error": f"{type(error).__name__}: {error}"[:300]}
                print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
