"""The `mtjax` command: argument parsing only; each command is an importable function.

mtjax demo [--out DIR] [--seed N]   make the demo datasets, read them through the
feature cache, build the folds, train one shared
model on fold 0 into a run folder and print its
test metrics (`mtjax.demo.job.run_demo`)
mtjax run EXPERIMENT.toml           run an experiment file, or a sweep of them
(`mtjax.experiments.run_file`)
mtjax report RUN_OR_FOLDER...       compare runs: a table and comparison.png
(`mtjax.experiments.report`)
mtjax evaluate RUN --data EXP.toml  re-evaluate a run's saved epochs
(`mtjax.experiments.evaluate_run`)
mtjax cache verify CACHE [--content] check every feature cache entry, one line each;
exit status 1 if any is bad (`mtjax.audio.entries.verify_cache`)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mtjax.audio import entries
from mtjax.demo import job
from mtjax.experiments import checks, reporting, running


def parser() -> argparse.ArgumentParser:
    """The `mtjax` argument parser, one sub-command per job."""
    top = argparse.ArgumentParser(prog="mtjax", description=__doc__.split("\n")[0])
    commands = top.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the demo experiment on generated audio")
    demo.add_argument("--out", type=Path, default=Path("mtjax-demo"), help="output folder")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--folds", type=int, default=5)
    demo.add_argument("--jobs", type=int, default=None, help="extraction processes")
    demo.add_argument("--epochs", type=int, default=25, help="most training epochs")
    run = commands.add_parser("run", help="run an experiment file (TOML), every sweep point")
    run.add_argument("experiment", type=Path, help="the experiment file")
    run.add_argument("--folds", type=int, default=None, help="run only the first N folds")
    run.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    run.add_argument("--name", default=None, help="override name (where the runs go)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    rep = commands.add_parser("report", help="compare runs: a table and comparison.png")
    rep.add_argument("runs", nargs="+", help="run folders, or folders holding runs")
    rep.add_argument("--split", default="test", help="the split to report (test, validation)")
    rep.add_argument("--plot", type=Path, default=None, help="where to write the plot")
    ev = commands.add_parser("evaluate", help="evaluate a run's saved epochs on a fold")
    ev.add_argument("run", type=Path, help="the run folder")
    ev.add_argument("--data", type=Path, required=True, help="experiment file giving the data")
    ev.add_argument("--fold", type=int, default=None, help="fold (default: the run's)")
    ev.add_argument("--epoch", type=int, default=None, help="one epoch (default: every saved)")
    ev.add_argument("--split", default="test", choices=("test", "validation", "train"))
    ev.add_argument("--name", default="evaluation", help="report folder name in the run")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    cache = commands.add_parser("cache", help="check a feature cache folder")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True)
    verify = cache_commands.add_parser("verify", help="check every entry, one line each")
    verify.add_argument("folder", type=Path, help="the folder given to read(cache=...)")
    verify.add_argument(
        "--content", action="store_true", help="also hash features.npy and every audio file"
    )
    return top


def main(argv: list[str] | None = None) -> int:
    """Runs `mtjax ARGS...` and returns the exit status.

    A bad experiment file or a missing folder exits with its message, not a traceback.
    """
    args = parser().parse_args(argv)
    try:
        if args.command == "demo":
            job.run_demo(
                args.out, seed=args.seed, folds=args.folds, n_jobs=args.jobs, epochs=args.epochs
            )
        elif args.command == "run":
            running.run_file(
                args.experiment,
                folds=args.folds,
                epochs=args.epochs,
                name=args.name,
                progress=not args.quiet,
            )
        elif args.command == "cache":
            found = entries.verify_cache(args.folder, content=args.content)
            for entry in found:
                print(f"{entry.status:<11} {entry.folder}: {entry.detail}")
            return int(any(entry.status == "bad" for entry in found))
        elif args.command == "report":
            reporting.report(args.runs, split=args.split, plot=args.plot)
        else:
            running.evaluate_run(
                args.run,
                args.data,
                fold=args.fold,
                epoch=args.epoch,
                split=args.split,
                name=args.name,
                progress=not args.quiet,
            )
    except (checks.ExperimentError, FileNotFoundError) as err:
        raise SystemExit(f"mtjax {args.command}: {err}") from err
    return 0


if __name__ == "__main__":
    sys.exit(main())
