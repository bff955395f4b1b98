"""The `mtjax` command.

  mtjax demo [--out DIR] [--seed N]   make the demo datasets, read them through the
                                      feature cache, build the folds, train one shared
                                      model on fold 0 into a run folder and print its
                                      test metrics
  mtjax run EXPERIMENT.toml           run an experiment file (or a sweep of them)
  mtjax report RUN_OR_FOLDER...       compare runs: a table and comparison.png
  mtjax evaluate RUN --data EXP.toml  re-evaluate a run's saved epochs
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import mtjax as mt
from mtjax import demo, early_stopping, experiment, metrics, models, report


def run_demo(
    out: Path, *, seed: int = 0, folds: int = 5, n_jobs: int | None = None, epochs: int = 25
) -> dict:
    """Make, read and split the demo datasets, train on fold 0; returns the test reports."""
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
    print(f"\nfeatures {extraction.key}\ncache    {out / 'cache'}")

    split = splits[0]
    print(f"\ntraining a shared CNN on fold 0: {len(split.train)} clips, "
          f"tasks {', '.join(t.name for t in split.train.tasks)}")
    run = mt.runs.Run(out / "runs", "demo/fold0")
    trained = mt.fit(
        models.HardSharingCNN(split.train.tasks),
        split.train,
        split.test,
        validation=split.validation if _covers_tasks(split.validation) else None,
        epochs=epochs,
        batch_size=32,
        early_stop=early_stopping.patience("validation/loss", 6),
        seed=seed,
        run=run,
    )
    reports = mt.evaluate(trained, split.test)
    print(f"\ntest metrics of fold 0 (best epoch {trained.best_epoch + 1} of "
          f"{len(trained.history)}, chosen on validation):")
    print(metrics.summary_table(reports, split.train.tasks))
    print(f"\nrun folder  {run.path}  (config, history, reports/, plots/, checkpoints/)")
    print(f"TensorBoard tensorboard --logdir {run.events}")
    print(f"\ndone in {time.perf_counter() - started:.1f} s")
    return reports


def _covers_tasks(validation) -> bool:
    """A predefined validation set drives early stopping only if it has every task."""
    return validation is not None and bool(np.all(np.asarray(validation.has_task).any(0)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mtjax", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo_cmd = commands.add_parser("demo", help="run the demo experiment on generated audio")
    demo_cmd.add_argument("--out", type=Path, default=Path("mtjax-demo"), help="output folder")
    demo_cmd.add_argument("--seed", type=int, default=0)
    demo_cmd.add_argument("--folds", type=int, default=5)
    demo_cmd.add_argument("--jobs", type=int, default=None, help="extraction processes")
    demo_cmd.add_argument("--epochs", type=int, default=25, help="most training epochs")
    experiment.add_subcommands(commands)
    args = parser.parse_args(argv)
    if args.command == "demo":
        run_demo(args.out, seed=args.seed, folds=args.folds, n_jobs=args.jobs, epochs=args.epochs)
        return 0
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
