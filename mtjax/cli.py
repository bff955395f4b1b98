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
from pathlib import Path

from mtjax.demo import job
from mtjax.experiments import running as experiment


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
        job.run_demo(args.out, seed=args.seed, folds=args.folds, n_jobs=args.jobs, epochs=args.epochs)
        return 0
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
