"""The `mtjax` command.

  mtjax demo [--out DIR] [--seed N]   make the demo datasets, read them through the
                                      feature cache, build the folds, print a summary
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import mtjax as mt
from mtjax import demo, report


def run_demo(out: Path, *, seed: int = 0, folds: int = 5, n_jobs: int | None = None) -> list:
    """Make, read and split the demo datasets; returns the folds (`Split`s of MultiTaskData)."""
    started = time.perf_counter()
    paths = demo.make_demo(out / "data", seed=seed)
    extraction = mt.features.LogMel(sample_rate=16000, n_fft=512, hop_length=160, n_mels=40)
    datasets = [
        mt.read(reader, extraction, cache=out / "cache", n_jobs=n_jobs)
        for reader in demo.demo_readers(paths)
    ]
    print(report.datasets_table(datasets))
    prepare = [mt.frame("median"), mt.standardize()]
    splits = list(mt.splits(datasets, folds=folds, prepare=prepare, seed=seed))
    print()
    print(report.splits_table(splits))
    first = splits[0]
    mean = float(np.mean(first.train.x[:, : int(first.train.lengths.min())]))
    print(
        f"\nfeatures {extraction.key}\ncache    {out / 'cache'}\n"
        f"fold 0 train feature mean {mean:+.3f} (standardised on train only); "
        f"done in {time.perf_counter() - started:.1f} s"
    )
    return splits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mtjax", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo_cmd = commands.add_parser("demo", help="run the demo experiment on generated audio")
    demo_cmd.add_argument("--out", type=Path, default=Path("mtjax-demo"), help="output folder")
    demo_cmd.add_argument("--seed", type=int, default=0)
    demo_cmd.add_argument("--folds", type=int, default=5)
    demo_cmd.add_argument("--jobs", type=int, default=None, help="extraction processes")
    args = parser.parse_args(argv)
    if args.command == "demo":
        run_demo(args.out, seed=args.seed, folds=args.folds, n_jobs=args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
