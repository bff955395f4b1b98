"""fit refuses training data it cannot train honestly on, naming what is wrong."""

from __future__ import annotations

import numpy as np
import pytest

import mtjax as mt


def test_a_task_without_training_rows_is_refused_by_name():
    """Issue 10, finding 17: an untrained head would report test metrics of nothing."""
    rng = np.random.default_rng(0)
    word = mt.Task("word", ("yes", "no"), "binary")
    mood = mt.Task("mood", ("calm", "angry", "sad"), "multiclass")
    y = np.concatenate([rng.integers(0, 2, (40, 1)), np.eye(3)[rng.integers(0, 3, 40)]], 1)
    has_task = np.zeros((40, 2), bool)
    has_task[:, 0] = True  # no row carries "mood"
    data = mt.TaskDataset.from_arrays(
        rng.standard_normal((40, 1, 4)), y.astype(np.float32), [word, mood], has_task=has_task
    )
    with pytest.raises(ValueError, match=r"task\(s\) \['mood'\] have no training rows"):
        mt.fit(None, data, epochs=1, early_stop=None, progress=False)
