"""Datasets as immutable values and the pure functions that prepare them.

values (TaskDataset, MultiTaskData, Split, concat) -> arrays (in memory or out of core) ->
ops (rows and frames) -> scaling -> splitters (k-fold, predefined folds) -> prepare
(steps fitted on train only, and `splits`) -> describe (summary tables).
"""

from mtjax.data.arrays import DiskArray
from mtjax.data.describe import datasets_table, splits_table
from mtjax.data.ops import (
    assert_finite,
    check_frame_length,
    frame,
    frame_length,
    limit_labels,
    select_tasks,
    subset,
    windows,
)
from mtjax.data.prepare import splits
from mtjax.data.scaling import Scaler, fit_scaler, scale
from mtjax.data.splitters import holdout, keep_predefined_folds, kfold, predefined_folds
from mtjax.data.values import (
    Data,
    MultiTaskData,
    Split,
    TaskDataset,
    as_multi,
    concat,
)

__all__ = [
    "Data",
    "DiskArray",
    "MultiTaskData",
    "Scaler",
    "Split",
    "TaskDataset",
    "as_multi",
    "assert_finite",
    "check_frame_length",
    "concat",
    "datasets_table",
    "fit_scaler",
    "frame",
    "frame_length",
    "holdout",
    "keep_predefined_folds",
    "kfold",
    "limit_labels",
    "predefined_folds",
    "scale",
    "select_tasks",
    "splits",
    "splits_table",
    "subset",
    "windows",
]
