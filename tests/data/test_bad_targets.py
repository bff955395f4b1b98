"""TaskDataset.from_arrays refuses targets that are not labels, naming the rows."""

from __future__ import annotations

import re

import numpy as np
import pytest

import mtjax as mt
from mtjax.tasks import Task

WORD = Task("word", ("go", "stop", "yes"))
LOUD = Task("loud", ("no", "yes"), "binary")
TAGS = Task("tags", ("bird", "car"), "multilabel")


def targets(n: int = 30) -> np.ndarray:
    """float32 [n, 6]: word one-hot, loud, tags, all valid."""
    rows = np.arange(n)
    word = np.eye(3, dtype=np.float32)[rows % 3]
    loud = (rows % 2).astype(np.float32)[:, None]
    tags = np.stack([rows % 2 == 0, rows % 3 == 0], axis=1).astype(np.float32)
    return np.concatenate([word, loud, tags], axis=1)


def build(y: np.ndarray, **options) -> mt.TaskDataset:
    x = np.zeros((len(y), 2, 4), np.float32)
    return mt.TaskDataset.from_arrays(x, y, [WORD, LOUD, TAGS], name="lab", **options)


def test_valid_targets_are_kept():
    y = targets()
    assert np.array_equal(build(y).y, y)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_targets_are_refused_naming_the_rows(bad):
    y = targets()
    y[[4, 9, 21], 4] = bad
    message = "dataset 'lab': y has NaN or inf values in 3 row(s): [4, 9, 21]"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        build(y)


def test_nan_in_a_row_the_task_does_not_label_is_refused_too():
    y, has = targets(), np.ones((30, 3), bool)
    has[5, 2], y[5, 5] = False, np.nan  # a masked loss of NaN is still NaN
    with pytest.raises(ValueError, match=re.escape("NaN or inf values in 1 row(s): [5]")):
        build(y, has_task=has)


def test_many_bad_rows_show_the_first_ten_and_the_count():
    y = targets()
    y[10:25, 0] = np.nan
    shown = ", ".join(map(str, range(10, 20)))
    with pytest.raises(ValueError, match=re.escape(f"in 15 row(s): [{shown}, ...]")):
        build(y)


@pytest.mark.parametrize(
    ("column", "value", "task"),
    [(3, 0.5, "'loud'"), (3, -1.0, "'loud'"), (4, 2.0, "'tags'"), (1, 0.5, "'word'")],
)
def test_values_other_than_0_and_1_are_refused_naming_the_task(column, value, task):
    y = targets()
    y[[2, 8], column] = value
    message = f"dataset 'lab': task {task}: y has values other than 0 and 1 in 2 row(s): [2, 8]"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        build(y)


def test_a_multiclass_row_without_exactly_one_1_is_refused():
    y = targets()
    y[6, :3] = [1, 1, 0]
    y[7, :3] = 0
    with pytest.raises(ValueError, match=re.escape("'word' (multiclass): y has no single 1")):
        build(y)
    has = np.ones((30, 3), bool)
    has[[6, 7], 0] = False  # rows the task does not label carry no label
    assert len(build(y, has_task=has)) == 30
