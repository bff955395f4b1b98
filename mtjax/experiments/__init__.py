"""Experiment files: TOML parsed and validated, sweeps expanded, every fold trained.

config (parse and validate) -> running (read, split, train, summarise; the commands).
"""

from mtjax.experiments.config import Experiment, ExperimentError, load, parse
from mtjax.experiments.running import expand, override, run_experiment, summary

__all__ = [
    "Experiment",
    "ExperimentError",
    "expand",
    "load",
    "override",
    "parse",
    "run_experiment",
    "summary",
]
