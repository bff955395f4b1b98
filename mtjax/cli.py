"""The `mtjax` command: argument parsing only; each command is an importable function.

  mtjax demo [--out DIR] [--name NAME]  make the demo datasets, read them through the feature
                                        cache, train one shared model on fold 0 into a run
                                        folder, print its test metrics (`mtjax.demo.run_demo`)
  mtjax run EXPERIMENT.toml [KEY=VALUE...]
                                        run an experiment file, or a sweep of them; each
                                        KEY=VALUE replaces a value of the file
                                        (train.epochs=5 train.combine=pcgrad)
  mtjax datasets EXPERIMENT.toml [KEY=VALUE...]
                                        clips, hours and labels per dataset, task and part
  mtjax report RUN_OR_FOLDER...         compare runs: a table and comparison.png
  mtjax evaluate RUN [--data EXP.toml]  re-evaluate a run's saved epochs
  mtjax predict RUN FILE|FOLDER... [--out predictions.csv]
                                        predict new audio with a run folder alone
  mtjax cache ls|verify|clear CACHE     list, check or empty a feature cache folder

A mistake (a bad experiment file or value, a missing folder, a wrong name) answers one line
`mtjax: ...` on stderr and exit status 2; `mtjax --debug ...` shows its traceback. A pipe
closed early (`mtjax report runs | head`) ends the command quietly.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from mtjax import tables

USAGE = 2  # exit status of a mistake
PIPE_CLOSED = 141  # 128 + SIGPIPE, as a shell reports a command its pipe stopped
_PACKAGE = Path(__file__).resolve().parent
_VERSION = sys.modules["mtjax"].__version__  # the package, imported before any of its modules
_DOTTED = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")  # TOML bare keys, dotted
# Cache folders `clear` removes: `<Extraction>-<20 hex>` entries and their `.work` folders.


class UsageError(Exception):
    """A command line mtjax cannot run; the message says what to change."""


class _Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in `--help`; None and False are spelled out in the help."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        shown = not (action.default is None or action.default is False or action.default == [])
        if not shown or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes raise UsageError, with the closest valid choice or option."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("mtjax").strip()
        hint = _suggestion(message, _options(self))
        where = f"{command}: " if command else ""
        raise UsageError(f"{where}{message}{hint} (see {self.prog} --help)")


# The parser


def parser() -> argparse.ArgumentParser:
    """The `mtjax` argument parser, one sub-command per job, defaults shown in `--help`."""
    top = _Parser(prog="mtjax", description=__doc__, formatter_class=_Help)
    top.add_argument("--version", action="version", version=f"mtjax {_VERSION}")
    top.add_argument("--debug", action="store_true", help="show the traceback of an error")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str, parent: Any = commands) -> argparse.ArgumentParser:
        return parent.add_parser(name, help=text, description=text, formatter_class=_Help)

    demo = command("demo", "run the demo experiment on generated audio")
    demo.add_argument("--out", type=Path, default=Path("mtjax-demo"), help="output folder")
    demo.add_argument(
        "--name",
        default=None,
        help="run name under OUT/runs (default: demo, plus each setting not at its"
        " default, e.g. demo-epochs3)",
    )
    demo.add_argument("--seed", type=int, default=0, help="data, folds and training seed")
    demo.add_argument("--folds", type=int, default=5, help="k of the k-fold split")
    demo.add_argument("--jobs", type=int, default=None, help="extraction processes (default: all)")
    demo.add_argument("--epochs", type=int, default=25, help="most training epochs")

    run = command("run", "run an experiment file (TOML), every sweep point")
    run.add_argument("experiment", type=Path, help="the experiment file")
    run.add_argument(
        "overrides",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="replace a value of the file: a dotted key and a TOML value, else a string"
        " (train.epochs=5 train.combine=pcgrad 'train.optimizer={name=\"adam\"}')",
    )
    run.add_argument(
        "--folds",
        type=int,
        default=None,
        help="run only the first N folds (default: the file's run_folds)",
    )
    run.add_argument("--epochs", type=int, default=None, help="train.epochs (default: the file's)")
    run.add_argument("--name", default=None, help="name, where the runs go (default: the file's)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")

    data = command("datasets", "what an experiment's datasets hold: clips, hours, labels")
    data.add_argument("experiment", type=Path, help="the experiment file")
    data.add_argument(
        "overrides", nargs="*", default=[], metavar="KEY=VALUE", help="as for mtjax run"
    )
    data.add_argument("--quiet", action="store_true", help="no progress bars")

    rep = command("report", "compare runs: a table and comparison.png")
    rep.add_argument("runs", nargs="+", help="run folders, or folders holding runs")
    rep.add_argument("--split", default="test", help="the split to report (test, validation)")
    rep.add_argument(
        "--plot", type=Path, default=None, help="the plot (default: comparison.png beside the runs)"
    )

    ev = command("evaluate", "evaluate a run's saved epochs on a fold")
    ev.add_argument("run", type=Path, help="the run folder")
    ev.add_argument(
        "--data",
        type=Path,
        default=None,
        help="experiment file (default: the one the run recorded)",
    )
    ev.add_argument("--fold", type=int, default=None, help="fold (default: the run's)")
    ev.add_argument("--epoch", type=int, default=None, help="one epoch (default: every saved)")
    ev.add_argument(
        "--split", default="test", choices=("test", "validation", "train"), help="part of the fold"
    )
    ev.add_argument("--name", default="evaluation", help="report folder name in the run")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")

    predict = command("predict", "predict audio with a trained run (its folder is enough)")
    predict.add_argument("run", type=Path, help="the run folder")
    predict.add_argument(
        "inputs", nargs="+", type=Path, metavar="FILE|FOLDER", help="audio files or folders of them"
    )
    predict.add_argument(
        "--out", type=Path, default=Path("predictions.csv"), help="the CSV file written"
    )
    predict.add_argument("--batch-size", type=int, default=64, help="files (and rows) at a time")
    predict.add_argument(
        "--dataset",
        default=None,
        help="whose scaling statistics new audio gets, for a run scaled per dataset (default:"
        " the run's one scaling)",
    )
    cache = command("cache", "list, check or empty a feature cache folder")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    ls = command(
        "ls", "one line per entry: dataset, extraction, clips, size, status", cache_commands
    )
    verify = command(
        "verify", "check every entry, one line each; status 1 if one is bad", cache_commands
    )
    clear = command("clear", "remove the cache entries (asks nothing)", cache_commands)
    for each in (ls, verify, clear):
        each.add_argument("folder", type=Path, help="the folder given to read(cache=...)")
    verify.add_argument(
        "--content", action="store_true", help="also hash features.npy and every audio file"
    )
    clear.add_argument("--dataset", default=None, help="only this dataset's (default: all)")
    return top


def _options(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string of `parser` and of its sub-commands."""
    out: list[str] = []
    for action in parser._actions:
        out += action.option_strings
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out += _options(sub)
    return out


def _suggestion(message: str, options: Sequence[str]) -> str:
    """The hint "; did you mean 'run'?" for argparse's invalid choice or unknown option."""
    choice = re.search(r"invalid choice: '?([^' ]*)'? \(choose from (.*)\)", message)
    if choice:
        known = [c.strip(" '\"") for c in choice.group(2).split(",")]
        return tables.closest(choice.group(1), known)
    unknown = re.search(r"unrecognized arguments: (.*)", message)
    if unknown:
        flags = [a.split("=")[0] for a in unknown.group(1).split() if a.startswith("-")]
        return next((hint for f in flags if (hint := tables.closest(f, options))), "")
    return ""


def overrides(texts: Sequence[str]) -> dict[str, Any]:
    """`KEY=VALUE` texts as {dotted key: value}, for `mtjax.experiments.sweeps.override`.

    A value is read as a TOML value (`5`, `2e-3`, `true`, `[1, 2]`, `{name = "dwa"}`, `"5"`),
    else taken as the string it is (`pcgrad`, `my-run`).

    Raises:
      UsageError for a text without "=" or whose key is not a dotted key (`train.epochs`).
    """
    out: dict[str, Any] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not _DOTTED.fullmatch(key.strip()):
            raise UsageError(
                f"run: {text!r} is not KEY=VALUE with KEY a dotted key, e.g. train.epochs=5"
            )
        out[key.strip()] = _toml_value(value.strip())
    return out


def _toml_value(text: str) -> Any:
    try:
        document = tomllib.loads(f"value = {text}")
    except tomllib.TOMLDecodeError:
        return text
    return document["value"] if list(document) == ["value"] else text


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The arguments of `mtjax ARGS...`; `--debug` may stand anywhere.

    `mtjax run`'s KEY=VALUE overrides may also follow its options
    (`mtjax run exp.toml --quiet train.epochs=5`).

    Raises:
      UsageError for a command line argparse refuses.
    """
    top = parser()
    args, extra = top.parse_known_args([a for a in argv if a != "--debug"])
    if args.command in ("run", "datasets"):
        args.overrides += [a for a in extra if "=" in a and not a.startswith("-")]
        extra = [a for a in extra if a not in args.overrides]
    if extra:
        command = top
        for name in (args.command, getattr(args, "cache_command", None)):
            subs = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
            command = subs[0].choices[name] if subs and name else command
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


# The commands


def experiment_of(args: argparse.Namespace) -> Any:
    """The experiment file of `mtjax run` or `mtjax datasets`, changes applied.

    The changes: its KEY=VALUE overrides, and `run`'s --folds, --epochs and --name.
    """
    from mtjax.experiments import config, sweeps

    changes = overrides(args.overrides)
    for option, key in (("folds", "run_folds"), ("epochs", "train.epochs"), ("name", "name")):
        if getattr(args, option, None) is not None:
            changes[key] = getattr(args, option)
    experiment = config.load(args.experiment)
    if changes:
        try:
            experiment = sweeps.override(experiment, changes)
        except config.ExperimentError as err:  # the file alone passed: the changes did it
            given = " ".join(f"{k}={v!r}" for k, v in changes.items())
            raise config.ExperimentError(f"{err} (set on the command line: {given})") from err
    return experiment


def run_command(args: argparse.Namespace) -> None:
    """`mtjax run`: the file, its KEY=VALUE overrides and the shorthands, then every run."""
    from mtjax.experiments import running

    running.run_experiment(experiment_of(args), progress=not args.quiet)


def _cache(args: argparse.Namespace) -> int:
    from mtjax.audio import admin, entries

    if args.cache_command == "ls":
        rows = admin.cache_rows(args.folder)
        print(tables.table(["dataset", "extraction", "clips", "size", "status"], rows))
        return 0
    if args.cache_command == "clear":
        removed = admin.clear_cache(args.folder, dataset=args.dataset)
        for path in removed:
            print(f"removed {path}")
        print(f"{len(removed)} cache folders removed from {args.folder}")
        return 0
    found = entries.verify_cache(args.folder, content=args.content)
    for entry in found:
        print(f"{entry.status:<11} {entry.folder}: {entry.detail}")
    return int(any(entry.status == "bad" for entry in found))


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from mtjax.demo import job

        job.run_demo(
            args.out,
            seed=args.seed,
            folds=args.folds,
            n_jobs=args.jobs,
            epochs=args.epochs,
            name=args.name,
        )
    elif args.command == "run":
        run_command(args)
    elif args.command == "datasets":
        from mtjax.experiments import inventory

        print(inventory.inventory(experiment_of(args), progress=not args.quiet))
    elif args.command == "report":
        from mtjax.experiments import reporting

        reporting.report(args.runs, split=args.split, plot=args.plot)
    elif args.command == "evaluate":
        from mtjax.experiments import running

        running.evaluate_run(
            args.run,
            args.run if args.data is None else args.data,
            fold=args.fold,
            epoch=args.epoch,
            split=args.split,
            name=args.name,
            progress=not args.quiet,
        )
    elif args.command == "predict":
        from mtjax.inference import predictor as predictors

        predictor = predictors.load(args.run, dataset=args.dataset)
        out = predictors.predict_to_csv(
            predictor, args.inputs, args.out, batch_size=args.batch_size
        )
        print(f"{args.run} (epoch {predictor.epoch}): predictions written to {out}")
    else:
        return _cache(args)
    return 0


# Running


def main(argv: Sequence[str] | None = None) -> int:
    """Runs `mtjax ARGS...` and returns the exit status.

    A user's mistake prints one line `mtjax: <message>` on stderr and returns 2
    (`user_error`); `--debug` raises it instead. Anything else is a bug and keeps its
    traceback. A closed stdout pipe returns 141 with nothing more written.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        status = _dispatch(parse(argv))
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return status
    except SystemExit as done:  # --help, --version
        return done.code if isinstance(done.code, int) else 0
    except BrokenPipeError:
        return _stdout_closed()
    except KeyboardInterrupt:
        print("mtjax: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if debug or not user_error(err):
            raise
        print(f"mtjax: {one_line(err)}", file=sys.stderr)
        return USAGE


def user_error(err: BaseException) -> bool:
    """Whether `err` tells the user of a mistake rather than of a bug in mtjax.

    A command line mistake, any OSError (a missing file, a full disk), and a ValueError or
    RuntimeError that mtjax raised itself (bad files, names, values, a run in use: its
    last traceback frame is in the package); not one from deeper in a library.
    """
    if isinstance(err, (UsageError, OSError)):
        return True
    if not isinstance(err, (ValueError, RuntimeError)):
        return False
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(
        _PACKAGE
    )


def one_line(err: BaseException) -> str:
    """The message of `err` on one line (its lines joined by "; "), without "[Errno 2]"."""
    text = str(err)
    if isinstance(err, OSError) and err.strerror:
        text = err.strerror if err.filename is None else f"{err.strerror}: {err.filename}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines) or type(err).__name__


def _stdout_closed() -> int:
    """After a closed stdout pipe: later writes (the flush at exit) go nowhere."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return PIPE_CLOSED


if __name__ == "__main__":
    sys.exit(main())
