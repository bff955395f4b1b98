"""Evaluation: per-task reports of a trained model, or of a saved run's epochs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mtjax.data import values
from mtjax.data.values import MultiTaskData, TaskDataset
from mtjax.tasks import Task, task_slices
from mtjax.train import distributed, metrics
from mtjax.train import epochs as epoch_runners
from mtjax.train.step import Trained, make_forward


def make_predict(model: nn.Module, loss_fns: Sequence[Callable], tasks: Sequence[Task]):
    """`predict(variables, x, y) -> (logits {name: [B, C_k]}, row losses [B, K])`, jitted."""
    forward = make_forward(model)
    slices = task_slices(tasks)

    @jax.jit
    def predict(params, batch_stats, x, y):
        logits, _ = forward(params, batch_stats, x, False, jax.random.key(0))
        rows = jnp.stack(
            [fn(logits[t.name], y[:, slices[t.name]]) for t, fn in zip(tasks, loss_fns)], axis=1
        )
        return logits, rows

    return predict


def predict_logits(
    trained: Trained, data: MultiTaskData, *, batch_size: int = 256, devices: Any = None
):
    """(logits {name: float32 [N, C_k]}, per-row losses float32 [N, K]) over all rows.

    Rows go through the model in batches of one fixed size (the last one padded), so
    nothing recompiles; an out-of-core `x` is read one batch at a time. With `devices` (a
    list of devices or a Mesh with a "data" axis) each batch is split over them, its size
    rounded up to a multiple of their number, and the parameters replicated.
    """
    predict = _predictor(trained)
    mesh = epoch_runners.as_mesh(devices)
    n = len(data)
    shards = 1 if mesh is None else mesh.shape["data"]
    size = -(-max(1, min(batch_size, n)) // shards) * shards
    place = epoch_runners.Placement(mesh, size)
    params, batch_stats = place.replicated((trained.params, trained.batch_stats))
    logits: dict[str, list] = {t.name: [] for t in trained.tasks}
    row_losses = []
    for begin in range(0, n, size):
        rows = np.arange(begin, min(begin + size, n))
        padded = np.concatenate([rows, np.full(size - len(rows), rows[0])])
        x = place.taken(data.x, padded, np.float32)
        y = place.taken(data.y, padded, np.float32)
        out, losses_BxK = distributed.host(predict(params, batch_stats, x, y))
        for t in trained.tasks:
            logits[t.name].append(np.asarray(out[t.name])[: len(rows)])
        row_losses.append(np.asarray(losses_BxK)[: len(rows)])
    return {k: np.concatenate(v) for k, v in logits.items()}, np.concatenate(row_losses)


_PREDICTORS: dict[int, tuple] = {}


def _predictor(trained: Trained):
    key = id(trained.model), trained.tasks, tuple(id(f) for f in trained.loss_fns)
    cached = _PREDICTORS.get(hash(key))
    if cached is None or cached[0] != key:
        cached = (key, make_predict(trained.model, trained.loss_fns, trained.tasks))
        _PREDICTORS[hash(key)] = cached
    return cached[1]


def evaluate(
    trained: Trained | Any,
    data: MultiTaskData | TaskDataset,
    *,
    epoch: int | None = None,
    model: nn.Module | type | None = None,
    batch_size: int = 256,
    threshold: float = 0.5,
    split: str = "evaluation",
    devices: Any = None,
) -> dict:
    """Per-task reports of a trained model, or of a saved run's epochs, on `data`.

    Args:
      trained: what `fit` returned, or a `runs.Run` written by `fit(run=...)`: its model
        is rebuilt from the run's config (or given as `model`) and each saved epoch's
        parameters are restored from its checkpoint; the reports are also written to
        the run under `split`.
      data: rows to evaluate; tasks the model was not trained on are refused.
      epoch: with a run, the one epoch to evaluate; None evaluates every saved epoch.
      model: with a run of a user's model: the module, or its class (rebuilt with the
        run's recorded settings). A run folder never chooses code: only mtjax's own
        models are rebuilt from its config.json alone.
      batch_size: rows per forward pass.
      threshold: probability above which a multilabel or binary label is predicted.
      split: the name the run's reports are written under.
      devices: a list of devices or a Mesh with a "data" axis that each batch is split
        over (`fit`'s `devices`); None: the default device.

    Returns:
      {task name: report}, each in scikit-learn's classification_report(output_dict=True)
      form plus "loss" and "confusion_matrix"; with windows (a clip cut into several
      rows), also "clip": the report at clip level, window probabilities averaged. Tasks
      `data` does not carry are left out. For a run with `epoch=None`:
      {epoch: {task name: report}}.
    """
    if not isinstance(trained, Trained):
        if not callable(getattr(trained, "evaluate", None)):
            raise TypeError(
                "evaluate takes what fit returned or a mtjax.runs.Run, got"
                f" {type(trained).__name__}"
            )
        return trained.evaluate(
            data, epoch=epoch, model=model, batch_size=batch_size, threshold=threshold, split=split
        )
    data = values.as_multi(data, "data")
    names = [t.name for t in trained.tasks]
    missing = [t.name for t in data.tasks if t.name not in names]
    if missing:
        raise ValueError(f"the data has tasks {missing} that the model was not trained on")
    data = _align_tasks(data, trained.tasks)
    logits, row_losses = predict_logits(trained, data, batch_size=batch_size, devices=devices)
    has = np.asarray(data.has_task, bool)
    task_loss = {
        t.name: float((row_losses[:, k] * has[:, k]).sum() / max(has[:, k].sum(), 1))
        for k, t in enumerate(trained.tasks)
    }
    probs = {t.name: metrics.probabilities(t, logits[t.name]) for t in trained.tasks}
    clip = np.asarray(data.clip)
    reports = metrics.evaluation_report(
        trained.tasks,
        np.asarray(data.y),
        has,
        probs,
        task_loss,
        clip if len(np.unique(clip)) < len(clip) else None,
        threshold=threshold,
    )
    return {name: report for name, report in reports.items() if has[:, names.index(name)].any()}


def _align_tasks(data: MultiTaskData, tasks: Sequence[Task]) -> MultiTaskData:
    """`data` with its columns in the order of `tasks` (zero for tasks it lacks)."""
    if tuple(data.tasks) == tuple(tasks):
        return data
    slices, mine = task_slices(tasks), data.task_slices
    y = np.zeros([len(data), sum(t.n_columns for t in tasks)], np.float32)
    has = np.zeros([len(data), len(tasks)], bool)
    for k, t in enumerate(tasks):
        if t.name in mine:
            y[:, slices[t.name]] = np.asarray(data.y)[:, mine[t.name]]
            has[:, k] = np.asarray(data.has_task)[:, [u.name for u in data.tasks].index(t.name)]
    return data.replace(y=y, has_task=has, tasks=tuple(tasks))


def predict(trained: Trained, data: MultiTaskData | TaskDataset, *, batch_size: int = 256):
    """{task name: probabilities float32 [N, C_k]} for every row of `data`."""
    data = _align_tasks(values.as_multi(data, "data"), trained.tasks)
    logits, _ = predict_logits(trained, data, batch_size=batch_size)
    return {t.name: metrics.probabilities(t, logits[t.name]) for t in trained.tasks}
