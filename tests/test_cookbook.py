"""Every Python recipe of docs/cookbook.md runs as written, in order, in one namespace."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

COOKBOOK = Path(__file__).resolve().parents[1] / "docs" / "cookbook.md"
BLOCKS = re.findall(r"```python\n(.*?)```", COOKBOOK.read_text(), re.S)


def _clips(folder: Path) -> None:
    """Six 0.5 s clips named as the reader recipe expects: <label>__<speaker>__<take>.wav."""
    folder.mkdir(parents=True)
    t = np.arange(8000) / 16000
    for i, (label, f0) in enumerate([("dog", 300.0), ("door_knock", 900.0)] * 3):
        tone = 0.3 * np.sin(2 * np.pi * (f0 + 20 * i) * t)
        noise = 0.01 * np.random.default_rng(i).standard_normal(t.size)
        sf.write(folder / f"{label}__s{i % 3:02d}__{i}.wav", tone + noise, 16000)


def _givens(mt):
    """The names the recipes take as given: small train and test sides, a model, a reader."""
    rng = np.random.default_rng(0)
    word = mt.Task("word", ("yes", "no", "up"), "multiclass")
    loud = mt.Task("loud", ("quiet", "loud"), "binary")

    def dataset(name, task, n):
        y = np.eye(task.n_columns)[rng.integers(0, task.n_columns, n)]
        x = rng.normal(size=(n, 6, 5)).astype(np.float32) + y[:, :1, None]
        return mt.TaskDataset.from_arrays(x, y, [task], name=name, groups=np.arange(n) // 2)

    split = next(mt.splits([dataset("words", word, 48), dataset("levels", loud, 40)], folds=4))
    return {
        "train": split.train,
        "test": split.test,
        "model": mt.models.HardSharingDNN(split.train.tasks, hidden=(16,)),
        "reader": mt.readers.FolderReader("data/folders", task="sound"),
        "logmel": mt.features.LogMel(sample_rate=16000, n_fft=512, hop_length=160, n_mels=20),
    }


def test_the_cookbook_has_recipes():
    assert len(BLOCKS) >= 8
    assert "import mtjax as mt" in BLOCKS[0]


def test_every_recipe_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _clips(tmp_path / "data" / "clips")
    for label in ("dog", "door_knock"):
        _clips(tmp_path / "data" / "folders" / label)
    # One module, as a user's script is: classes defined in it pickle by reference and are
    # found again in the forked extraction workers.
    script = types.ModuleType("cookbook_script")
    monkeypatch.setitem(sys.modules, "cookbook_script", script)
    namespace = script.__dict__
    exec(compile(BLOCKS[0], "cookbook: imports", "exec"), namespace)
    namespace.update(_givens(namespace["mt"]))
    for i, block in enumerate(BLOCKS[1:], start=1):
        try:
            exec(compile(block, f"cookbook block {i}", "exec"), namespace)
        except Exception as err:
            pytest.fail(f"cookbook block {i} fails: {type(err).__name__}: {err}\n{block}")
    assert len(namespace["clips"]) == 6  # the reader recipe read every clip
    assert namespace["trained"].history  # the last recipe that trains did train
