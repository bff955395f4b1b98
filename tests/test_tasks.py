"""Task: labels to target columns, and the errors that name the label."""

from __future__ import annotations

import numpy as np
import pytest

from mtjax.tasks import LabelError, Task, task_slices


def test_columns_per_kind():
    binary = Task("loud", ("no", "yes"), "binary")
    multiclass = Task("word", ("go", "stop", "yes"))
    multilabel = Task("tags", ("a", "b", "c"), "multilabel")
    assert [t.n_columns for t in (binary, multiclass, multilabel)] == [1, 3, 3]
    np.testing.assert_array_equal(binary.encode("yes"), [1.0])
    np.testing.assert_array_equal(binary.encode(("no",)), [0.0])
    np.testing.assert_array_equal(multiclass.encode("stop"), [0, 1, 0])
    np.testing.assert_array_equal(multilabel.encode(("c", "a")), [1, 0, 1])
    np.testing.assert_array_equal(multilabel.encode(()), [0, 0, 0])
    y = multiclass.encode_many(["yes", "go", "stop"])
    assert y.dtype == np.float32 and y.shape == (3, 3)
    np.testing.assert_array_equal(multiclass.class_ids(y), [2, 0, 1])
    np.testing.assert_array_equal(binary.class_ids(np.array([[0.2], [0.9]])), [0, 1])


def test_slices_follow_task_order():
    tasks = [Task("loud", ("no", "yes"), "binary"), Task("word", ("a", "b", "c"))]
    assert task_slices(tasks) == {"loud": slice(0, 1), "word": slice(1, 4)}


def test_errors_name_the_label_and_the_choices():
    word = Task("word", ("go", "stop"))
    with pytest.raises(LabelError, match=r"'jump' is not in task 'word'.*\['go', 'stop'\]"):
        word.encode("jump")
    with pytest.raises(LabelError, match="one label per sample"):
        word.encode(("go", "stop"))
    with pytest.raises(ValueError, match="exactly two labels"):
        Task("loud", ("no", "maybe", "yes"), "binary")
    with pytest.raises(ValueError, match="kind 'ordinal'"):
        Task("x", ("a", "b"), "ordinal")
    with pytest.raises(ValueError, match="labels repeat"):
        Task("x", ("a", "a"))
    with pytest.raises(ValueError, match="multilabel"):
        Task("tags", ("a", "b"), "multilabel").class_ids(np.zeros([1, 2]))


def test_json_round_trip():
    task = Task("tags", ("a", "b"), "multilabel")
    assert Task.from_json(task.to_json()) == task
