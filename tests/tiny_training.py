"""Small learnable multi-task data and a small model, shared by the training and run tests."""

from __future__ import annotations

import flax.linen as nn
import numpy as np

import mtjax as mt
from mtjax.tasks import Task

WORD = Task("word", ("go", "stop", "yes"))
LOUD = Task("loud", ("no", "yes"), "binary")
TAGS = Task("tags", ("bird", "car", "rain"), "multilabel")


def dataset(n, task, name, seed, t=5, f=8):
    """Rows whose features carry their labels plus noise: learnable, not trivial."""
    rng = np.random.default_rng(seed)
    if task.kind == "multilabel":
        y = (rng.random((n, len(task.labels))) < 0.4).astype(np.float32)
        signal = 2.0 * y @ np.eye(len(task.labels), f, k=3)  # labels on features 3, 4, 5
    else:
        classes = rng.integers(0, len(task.labels), n)
        y = task.encode_many([task.labels[c] for c in classes])
        signal = 2.0 * np.eye(len(task.labels), f)[classes]
    x = rng.normal(0, 1, (n, t, f)) + signal[:, None, :]
    return mt.TaskDataset.from_arrays(x, y, [task], name=name)


def three_datasets(n=160, seed=0):
    return mt.concat(
        [
            dataset(n, WORD, "words", seed),
            dataset(n, LOUD, "loudness", seed + 1),
            dataset(n, TAGS, "scenes", seed + 2),
        ]
    )


class SmallNet(nn.Module):
    """Any Flax module with {task: logits} output works with fit."""

    tasks: tuple

    @nn.compact
    def __call__(self, x, *, train=False):
        h = nn.relu(nn.Dense(32)(x.reshape(x.shape[0], -1)))
        h = nn.Dropout(0.1, deterministic=not train)(h)
        return {t.name: nn.Dense(t.n_columns, name=f"head_{t.name}")(h) for t in self.tasks}


def fit_choosing(run, chosen: int, last: int):
    """A recorded fit of SmallNet on `three_datasets` for epochs 0..`last` whose stopping
    rule never stops and chooses epoch `chosen` (once there is one)."""
    rule = mt.early_stopping.Rule(
        None, lambda history: mt.early_stopping.Decision(False, min(chosen, len(history) - 1))
    )
    return mt.fit(
        SmallNet(three_datasets(n=8).tasks),
        three_datasets(n=40),
        three_datasets(n=12, seed=7),
        validation=three_datasets(n=12, seed=5),
        epochs=last + 1,
        batch_size=16,
        early_stop=rule,
        run=run,
        progress=False,
    )
