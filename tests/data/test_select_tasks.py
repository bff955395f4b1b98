"""select_tasks: the single-task side of a multi-task dataset."""

from __future__ import annotations

import numpy as np
import pytest

import mtjax as mt


def _two_datasets():
    rng = np.random.default_rng(0)
    word = mt.Task("word", ("yes", "no", "up"), "multiclass")
    loud = mt.Task("loud", ("quiet", "loud"), "binary")
    scene = mt.Task("scene", ("park", "bus"), "multiclass")
    a = mt.TaskDataset.from_arrays(
        rng.standard_normal((6, 10, 3)),
        np.concatenate([np.eye(3)[[0, 1, 2, 0, 1, 2]], [[1], [0], [1], [0], [0], [1]]], 1),
        [word, loud],
        lengths=np.array([4, 4, 3, 4, 2, 4]),
        name="a",
    )
    b = mt.TaskDataset.from_arrays(
        rng.standard_normal((4, 10, 3)), np.eye(2)[[0, 1, 1, 0]], [scene], name="b"
    )
    return mt.concat([a, b])


def test_rows_columns_and_frames_of_the_chosen_tasks():
    data = _two_datasets()
    one = mt.data.select_tasks(data, "loud")
    assert [t.name for t in one.tasks] == ["loud"] and len(one) == 6
    np.testing.assert_array_equal(one.y[:, 0], [1, 0, 1, 0, 0, 1])
    assert one.x.shape == (6, 4, 3)  # cut to the longest of these rows
    np.testing.assert_array_equal(one.x, np.asarray(data.x)[:6, :4])
    two = mt.data.select_tasks(data, ["scene", "word"])
    assert [t.name for t in two.tasks] == ["scene", "word"] and len(two) == 10
    np.testing.assert_array_equal(two.y[6:, :2], np.eye(2)[[0, 1, 1, 0]])
    np.testing.assert_array_equal(two.y[:6, 2:], np.eye(3)[[0, 1, 2, 0, 1, 2]])
    np.testing.assert_array_equal(two.has_task[:6], [[False, True]] * 6)
    assert two.x.shape == (10, 10, 3)


@pytest.mark.parametrize("names", ["mood", ["word", "word"], []])
def test_unknown_or_repeated_tasks_are_refused(names):
    with pytest.raises(ValueError, match="must be distinct task names of"):
        mt.data.select_tasks(_two_datasets(), names)
