"""Experiment files: TOML checked by building its parts, sweeps expanded, every fold trained.

registry (named parts by kind; `register` for your own) -> checks (errors naming the file and
key) -> parts (sections checked and built) -> config (the `Experiment` value, `load`) ->
sweeps (`expand`, `override`) -> reporting (summary table, `report`) -> running (read, split,
train, `run_file`, `evaluate_run`).
"""

from mtjax.experiments.config import Experiment, ExperimentError, load, parse
from mtjax.experiments.parts import (
    build_combiner,
    build_early_stop,
    build_extraction,
    build_model,
    build_optimizer,
    build_prepare,
    build_reader,
    build_schedule,
)
from mtjax.experiments.registry import KINDS, lookup, names, register
from mtjax.experiments.reporting import find_runs, report, summary
from mtjax.experiments.running import (
    build_readers,
    evaluate_run,
    fold_splits,
    read_datasets,
    run_experiment,
    run_file,
    train_fold,
)
from mtjax.experiments.sweeps import expand, override

__all__ = [
    "Experiment",
    "ExperimentError",
    "load",
    "parse",
    "expand",
    "override",
    "KINDS",
    "lookup",
    "names",
    "register",
    "build_combiner",
    "build_early_stop",
    "build_extraction",
    "build_model",
    "build_optimizer",
    "build_prepare",
    "build_reader",
    "build_readers",
    "build_schedule",
    "read_datasets",
    "fold_splits",
    "train_fold",
    "run_experiment",
    "run_file",
    "evaluate_run",
    "find_runs",
    "report",
    "summary",
]
