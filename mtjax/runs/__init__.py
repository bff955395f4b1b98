"""Run folders: what a training run leaves on disk, and reading it back.

folder (`Run`, config, history, reports: JSON through the one atomic writer) -> plots
(PNG figures) -> events (TensorBoard) -> checkpoints (Orbax, per epoch) -> recorder (what
`fit(run=...)` writes and resumes through `Run.recorder`) -> reevaluate (`mt.evaluate(run,
data)`) -> compare (each run at its chosen epoch; folds x seeds; multi- vs single-task with
Δ, a paired test and ΔM %; charts: comparison.png and comparison_versus.png).

Names are imported on first use: reading or comparing finished runs imports no JAX.
"""

from __future__ import annotations

from typing import Any

from mtjax import _lazy

_NAMES = {
    "Run": "mtjax.runs.folder",
    "Chosen": "mtjax.runs.folder",
    "chosen_epoch": "mtjax.runs.folder",
    "write_chosen_epoch": "mtjax.runs.folder",
    "CONFIG": "mtjax.runs.folder",
    "HISTORY": "mtjax.runs.folder",
    "check_resumable": "mtjax.runs.folder",
    "file_part": "mtjax.runs.folder",
    "read_config": "mtjax.runs.folder",
    "read_history": "mtjax.runs.folder",
    "read_reports": "mtjax.runs.folder",
    "report_epochs": "mtjax.runs.folder",
    "report_splits": "mtjax.runs.folder",
    "write_config": "mtjax.runs.folder",
    "write_history": "mtjax.runs.folder",
    "write_reports": "mtjax.runs.folder",
    "write_plots": "mtjax.runs.plots",
    "open_events": "mtjax.runs.events",
    "close_events": "mtjax.runs.events",
    "log_epoch": "mtjax.runs.events",
    "scalars": "mtjax.runs.events",
    "Recorder": "mtjax.runs.recorder",
    "evaluate_run": "mtjax.runs.reevaluate",
    "model_from_run_config": "mtjax.runs.reevaluate",
    "Comparison": "mtjax.runs.comparison",
    "compare": "mtjax.runs.comparison",
    "compare_plot": "mtjax.runs.comparison",
    "versus_plot": "mtjax.runs.comparison",
    "delta_m": "mtjax.runs.comparison",
    "mean_and_std": "mtjax.runs.comparison",
    "mean_std": "mtjax.runs.comparison",
    "paired_test": "mtjax.runs.comparison",
    "value_at": "mtjax.runs.comparison",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    return _lazy.attribute(globals(), name, _NAMES)


def __dir__() -> list[str]:
    return _lazy.names(globals(), __all__)
