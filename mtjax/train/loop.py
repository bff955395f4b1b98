"""`fit`: set-up, data, model and optimizer, the step, restore, the loop, in one function.

The step itself is in `mtjax.step`, evaluation in `mtjax.evaluation`. When the training
arrays fit on the device an epoch is one `lax.scan` over its batches (or, where a scan is
slow, steps dispatched one by one on device-resident arrays), with no host round trip
per step; otherwise batches are gathered on the host one step ahead.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from mtjax.data import ops, splitters, values
from mtjax.data.values import MultiTaskData, TaskDataset
from mtjax.tasks import Task
from mtjax.train import losses, metrics, models, schedules, stopping
from mtjax.train import step as steps
from mtjax.train.evaluation import evaluate
from mtjax.train.step import Batch, Trained, TrainingError, TrainState

log = logging.getLogger("mtjax")

DEVICE_BYTES = 2 * 2**30  # training arrays up to this size live on the device


# fit


def fit(
    model: nn.Module | None,
    train: MultiTaskData | TaskDataset,
    test: MultiTaskData | TaskDataset | None = None,
    *,
    validation: MultiTaskData | TaskDataset | None = None,
    epochs: int = 60,
    batch_size: int = 32,
    optimizer: optax.GradientTransformation | None = None,
    combine: losses.Combiner | Callable | None = None,
    batches: Callable = schedules.mixed,
    early_stop: Callable | None | str = "default",
    loss: Mapping[str, Callable] | None = None,
    seed: int = 0,
    validation_fraction: float = 0.1,
    progress: bool = True,
    mesh: jax.sharding.Mesh | None = None,
    run: Any = None,
    max_to_keep: int | None = None,
) -> Trained:
    """Trains one shared model on every task of `train`.

    Args:
      model: a Flax module mapping x [B, T, F] to {task name: logits [B, C_k]}; None
        picks `HardSharingCNN` (or `HardSharingDNN` for inputs of fewer than 8 frames).
      train: the training data (a TaskDataset or MultiTaskData).
      test: reported after every epoch, never used for any choice.
      validation: drives early stopping and the choice of the best epoch; when None
        and the stopping rule needs it, `validation_fraction` of train is carved out
        with the same stratified, grouped splitter as the folds.
      epochs: the most epochs to train.
      batch_size: rows per step (B).
      optimizer: any Optax transformation; default AdamW (lr 1e-3, weight decay 1e-4)
        with a linear warm-up (one epoch, at most a tenth of training) and cosine
        decay over `epochs`.
      combine: a loss combiner (`mtjax.losses`) or a function `losses [K] -> scalar`;
        default `losses.sum()`.
      batches: a batch schedule `(key, data, batch_size) -> Batches`.
      early_stop: a stopping rule (`mtjax.early_stopping`); "default" is
        `patience("validation/loss", 10)` restoring the best epoch; None trains
        every epoch.
      loss: task name -> per-row loss `(logits [B, C_k], targets [B, C_k]) -> [B]`,
        overriding the default for that task's kind.
      seed: every random choice (initialisation, batches, dropout, combiners, the
        validation carve-out) follows from it; the same seed gives the same parameters.
      validation_fraction: share of train carved out for validation when needed.
      progress: show a progress bar with per-task losses.
      run: a `mtjax.runs.Run`: every epoch writes a checkpoint, TensorBoard events,
        JSON reports and the history there, and plots at the end; a run that already
        has checkpoints resumes after its last complete epoch and ends where an
        uninterrupted run would. A run folder written with other settings is refused.
      max_to_keep: checkpoints kept in the run (None: all); the best epoch by the
        stopping metric is kept as well.
      mesh: a device mesh with a "data" axis: batches are split along it, parameters
        and data replicated (data parallelism; batch_size must divide evenly). None
        runs on the default device.

    Returns:
      A `Trained` value. Its `history` has one record per epoch: {"epoch", "seconds",
      "train": {"loss", "tasks": {name: loss}, "weights": {name: weight}},
      "validation"/"test": {"loss", "score", name: {"loss", "accuracy" or "micro_f1",
      "macro_f1"}}}.

    Raises:
      ValueError for an empty train split, a model whose outputs do not match the
      tasks, or a combiner that does not return a scalar; TrainingError (with the last
      good state) when a task's loss stops being finite.
    """
    # Set-up.
    train = values.as_multi(train, "train")
    test = None if test is None else values.as_multi(test, "test")
    validation = None if validation is None else values.as_multi(validation, "validation")
    if len(train) == 0:
        raise ValueError("the training split is empty")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    tasks = train.tasks
    rule = _stopping_rule(early_stop)
    if validation is None and _needs_validation(rule):
        train, validation = carve_validation(train, validation_fraction, seed=seed)
    root_key = jax.random.key(seed)
    init_key, schedule_key, run_key = jax.random.split(root_key, 3)

    # Model, losses and optimizer.
    if model is None:
        model = default_model(train)
    loss_fns = losses.loss_functions(tasks, loss)
    combiner = losses.as_combiner(losses.sum() if combine is None else combine)
    steps_per_epoch = _steps_per_epoch(batches, schedule_key, train, batch_size)
    tx = optimizer if optimizer is not None else default_optimizer(epochs, steps_per_epoch)
    x_example = np.asarray(train.x[np.arange(min(2, len(train)))], np.float32)
    variables = model.init({"params": init_key, "dropout": init_key}, x_example)
    logits = model.apply(variables, x_example)
    losses.check_outputs(logits, tasks)
    comb_params = combiner.init_params(len(tasks)) if combiner.init_params else {}
    state = TrainState.create(
        apply_fn=model.apply,
        params={"model": variables["params"], "combiner": comb_params},
        tx=tx,
        batch_stats=variables.get("batch_stats", {}),
        comb_state=combiner.init(len(tasks)),
    ).replace(step=jnp.int32(0))

    # Restore from the run's last complete epoch.
    history: list[dict] = []
    recorder = None
    if run is not None:
        config = run_config(model, train, epochs=epochs, batch_size=batch_size, seed=seed,
                            combine=combine, batches=batches, optimizer=optimizer,
                            validation_fraction=validation_fraction)
        recorder = run.recorder(config, tasks, max_to_keep=max_to_keep,
                                      keep_best=getattr(rule, "metric", None))
        restored = recorder.restore(state)
        if restored is not None:
            state, history = restored
            log.info("%s: resuming after epoch %d", run.path, len(history) - 1)

    place = Placement(mesh, batch_size)
    state = place.replicated(state)

    # The step: the epoch as one scan on the device, steps dispatched one by one from
    # device-resident arrays, or batches gathered on the host (index mode).
    step = steps.make_train_step(model, tasks, loss_fns, combiner)
    on_device = isinstance(train.x, np.ndarray) and train.x.nbytes <= DEVICE_BYTES
    if on_device:
        arrays = place.replicated((train.x, train.y, train.has_task))
        first = batches(jax.random.fold_in(schedule_key, 0), train, batch_size)
        example = (state, *arrays, place.rows(first.index[0]), place.rows(first.weight[0]),
                   run_key, jnp.int32(0))
        stepwise = steps.scan_is_slow(steps.indexed_step(step), *example)
        run_epoch = jax.jit(steps.make_epoch(step), donate_argnums=0)
        run_indexed = jax.jit(steps.indexed_step(step), donate_argnums=0)
    else:
        run_step = jax.jit(step, donate_argnums=0)

    # Loop.
    best = None
    conflicts = jax.jit(steps.make_conflicts(model, tasks, loss_fns)) if recorder else None
    done = bool(history) and rule(history).stop
    bar = tqdm(range(len(history), 0 if done else epochs), desc="fit", unit="epoch",
               initial=len(history), total=epochs, disable=not progress)
    for epoch in bar:
        started = time.perf_counter()
        planned = batches(jax.random.fold_in(schedule_key, epoch), train, batch_size)
        schedules.check_batches(planned, len(train), batch_size)
        previous = state
        if on_device and stepwise:
            state, step_metrics = _stepwise_epoch(
                run_indexed, _copy(state), arrays, planned, run_key, epoch, place
            )
        elif on_device:
            state = _copy(state)  # the scan donates its input; keep the last good state
            state, step_metrics = run_epoch(
                state, *arrays, place.rows(planned.index, axis=1),
                place.rows(planned.weight, axis=1),
                run_key, jnp.int32(epoch),
            )
        else:
            state, step_metrics = _host_epoch(
                run_step, _copy(state), train, planned, run_key, epoch, place
            )
        record = {"epoch": epoch, "train": _train_summary(step_metrics, tasks)}
        bad = [n for n, v in record["train"]["tasks"].items() if not math.isfinite(v)]
        if bad or not math.isfinite(record["train"]["loss"]):
            last_good = _trained(model, tasks, previous, history, len(history) - 1, loss_fns)
            raise TrainingError(
                f"epoch {epoch}: the loss of task(s) {bad or [t.name for t in tasks]} is not"
                f" finite; the last good state (epoch {epoch - 1}) is in this error's .trained",
                last_good if history else None,
            )
        current = _trained(model, tasks, state, history, epoch, loss_fns)
        reports = {}
        for name, part in (("validation", validation), ("test", test)):
            if part is not None:
                reports[name] = evaluate(current, part)
                record[name] = epoch_summary(reports[name], tasks)
        record["seconds"] = time.perf_counter() - started
        history.append(record)
        decision = rule(history)
        if decision.best_epoch == epoch:
            best = (state.params["model"], state.batch_stats)
        if recorder is not None:
            probe = _probe_batch(train, planned, place)
            recorder.epoch(
                epoch, state, history, reports,
                learning_rate=_learning_rate(state, tx, optimizer, epochs, steps_per_epoch),
                conflicts=_pairs(tasks, conflicts(state.params["model"], state.batch_stats,
                                                  probe)),
            )
        bar.set_postfix(_postfix(record))
        if decision.stop:
            break
    bar.close()
    decision = rule(history)
    if decision.best_epoch != len(history) - 1:
        if best is not None:
            state = state.replace(params={**state.params, "model": best[0]}, batch_stats=best[1])
        elif recorder is not None:  # trained before a resume: the best is on disk
            state = recorder.restore_epoch(state, decision.best_epoch)
    if recorder is not None:
        recorder.close(history)
    return _trained(model, tasks, state, history, decision.best_epoch, loss_fns)


def _pairs(tasks: Sequence[Task], cosines) -> dict[tuple[str, str], float]:
    cosines = np.asarray(cosines)
    return {
        (a.name, b.name): float(cosines[i, j])
        for i, a in enumerate(tasks)
        for j, b in enumerate(tasks)
        if i < j
    }


def _probe_batch(data: MultiTaskData, planned, place: Placement) -> Batch:
    """The epoch's first batch, for the gradient-conflict measurement."""
    rows = planned.index[0]
    return Batch(place.rows(np.asarray(data.x[rows], np.float32)), place.rows(data.y[rows]),
                 place.rows(data.has_task[rows]), place.rows(planned.weight[0]))


def _learning_rate(state, tx, optimizer, epochs: int, steps_per_epoch: int) -> float | None:
    """The learning rate at the state's step: known for the default optimizer and for
    optimizers wrapped in `optax.inject_hyperparams`; None otherwise."""
    if optimizer is None:
        total = max(epochs * steps_per_epoch, 2)
        warmup = max(1, min(steps_per_epoch, total // 10))
        schedule = optax.warmup_cosine_decay_schedule(0.0, 1e-3, warmup, total, end_value=1e-5)
        return float(schedule(int(state.step)))
    for leaf in jax.tree.leaves(state.opt_state, is_leaf=lambda x: hasattr(x, "hyperparams")):
        if hasattr(leaf, "hyperparams") and "learning_rate" in leaf.hyperparams:
            return float(leaf.hyperparams["learning_rate"])
    return None


def run_config(model: nn.Module, data: MultiTaskData, **settings) -> dict:
    """What a run folder records about a training run, as JSON values.

    `resume_key` holds the parts that must match for a resume to end where an
    uninterrupted run would: the model and its settings, the tasks, the data's shape and
    row ids, and the training settings.
    """
    model_fields = {
        f.name: _jsonable(getattr(model, f.name))
        for f in dataclasses.fields(model)
        if f.name not in ("parent", "name")
    }
    described = {k: _describe(v) for k, v in settings.items()}
    ids_hash = hashlib.sha256("\n".join(map(str, data.ids)).encode()).hexdigest()[:16]
    key = {"model": type(model).__name__, "model_settings": model_fields, **described,
           "rows": len(data), "x_shape": list(data.x.shape[1:]), "ids": ids_hash}
    return {
        "model": {"name": type(model).__name__, "module": type(model).__module__,
                  **model_fields},
        "tasks": [t.to_json() for t in data.tasks],
        "datasets": list(data.datasets),
        "extraction": data.extraction,
        **described,
        "resume_key": key,
    }


def _jsonable(value):
    if isinstance(value, Task):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return _describe(value)


def _describe(value) -> Any:
    """A JSON description of a setting: plain values as they are, functions by name."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
    if name is not None:
        return f"{getattr(value, '__module__', '?')}.{name}"
    return type(value).__name__


def _copy(tree):
    return jax.tree.map(lambda a: a.copy() if isinstance(a, jax.Array) else a, tree)


class Placement:
    """Where arrays go: the default device, or a mesh with parameters and data replicated
    and batch rows split along its "data" axis. Data parallelism is only this: the same
    jitted step, other input shardings."""

    def __init__(self, mesh: jax.sharding.Mesh | None, batch_size: int):
        self.mesh = mesh
        if mesh is not None:
            if "data" not in mesh.axis_names:
                raise ValueError(f"the mesh needs a 'data' axis, it has {mesh.axis_names}")
            if batch_size % mesh.shape["data"]:
                raise ValueError(
                    f"batch_size {batch_size} does not split over {mesh.shape['data']} devices"
                )

    def replicated(self, tree):
        if self.mesh is None:
            return jax.tree.map(jnp.asarray, tree)
        sharding = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        return jax.device_put(tree, sharding)

    def rows(self, array, axis: int = 0):
        if self.mesh is None:
            return jnp.asarray(array)
        spec = jax.sharding.PartitionSpec(*([None] * axis), "data")
        return jax.device_put(array, jax.sharding.NamedSharding(self.mesh, spec))


def _stepwise_epoch(run_indexed, state, arrays, planned, run_key, epoch, place: Placement):
    """Steps dispatched one by one (asynchronously) on device-resident arrays."""
    collected = []
    for s in range(len(planned.index)):
        state, step_metrics = run_indexed(
            state, *arrays, place.rows(planned.index[s]), place.rows(planned.weight[s]),
            run_key, jnp.int32(epoch),
        )
        collected.append(step_metrics)
    return state, jax.tree.map(lambda *a: jnp.stack(a), *collected)


def _host_epoch(run_step, state, data: MultiTaskData, planned, run_key, epoch, place: Placement):
    """Steps fed from the host, the next batch gathered while the current one trains."""

    def gather(s: int) -> Batch:
        rows = planned.index[s]
        return Batch(
            place.rows(np.asarray(data.x[rows], np.float32)), place.rows(data.y[rows]),
            place.rows(data.has_task[rows]), place.rows(planned.weight[s]),
        )

    collected = []
    with cf.ThreadPoolExecutor(1) as pool:
        upcoming = pool.submit(gather, 0)
        for s in range(len(planned.index)):
            batch = upcoming.result()
            if s + 1 < len(planned.index):
                upcoming = pool.submit(gather, s + 1)
            state, step_metrics = run_step(state, batch, run_key, jnp.int32(epoch))
            collected.append(step_metrics)
    return state, jax.tree.map(lambda *a: jnp.stack(a), *collected)


def _trained(model, tasks, state, history, best_epoch, loss_fns) -> Trained:
    return Trained(
        model=model,
        tasks=tasks,
        params=state.params["model"],
        batch_stats=state.batch_stats,
        opt_state=state.opt_state,
        comb_state=state.comb_state,
        comb_params=state.params["combiner"],
        history=tuple(history),
        best_epoch=max(best_epoch, 0),
        loss_fns=tuple(loss_fns),
    )


def _train_summary(step_metrics: dict, tasks: Sequence[Task]) -> dict:
    """Epoch means: the combined loss, and each task's loss over the steps it was present."""
    present = np.asarray(step_metrics["present"], np.float64)  # [S, K]
    task_losses = np.asarray(step_metrics["tasks"], np.float64)
    weights = np.asarray(step_metrics["weights"], np.float64)
    seen = np.maximum(present.sum(0), 1)
    return {
        "loss": float(np.mean(np.asarray(step_metrics["loss"], np.float64))),
        "tasks": {t.name: float((task_losses[:, k] * present[:, k]).sum() / seen[k])
                  for k, t in enumerate(tasks)},
        "weights": {t.name: float((weights[:, k] * present[:, k]).sum() / seen[k])
                    for k, t in enumerate(tasks)},
    }


def epoch_summary(reports: dict, tasks: Sequence[Task]) -> dict:
    """The numbers of `evaluate` reports that go into the history."""
    out: dict[str, Any] = {}
    for task in tasks:
        report = reports.get(task.name)
        if report is None or not report.get("support"):
            continue
        entry = {"loss": float(report["loss"]), "macro_f1": float(report["macro avg"]["f1-score"])}
        if task.kind == "multilabel":
            entry["micro_f1"] = float(report["micro avg"]["f1-score"])
        else:
            entry["accuracy"] = float(report["accuracy"])
        out[task.name] = entry
    named = [out[t.name] for t in tasks if t.name in out]
    out["loss"] = float(np.mean([e["loss"] for e in named])) if named else math.nan
    out["score"] = float(np.mean([metrics.headline(reports[t.name], t.kind) for t in tasks
                                  if t.name in out])) if named else math.nan
    return out


def _postfix(record: dict) -> dict:
    shown = {name: f"{value:.3f}" for name, value in record["train"]["tasks"].items()}
    if "validation" in record:
        shown["val"] = f"{record['validation']['score']:.3f}"
    return shown


def _stopping_rule(early_stop):
    if isinstance(early_stop, str):
        if early_stop != "default":
            raise ValueError(f"early_stop must be a rule, None or 'default', got {early_stop!r}")
        return stopping.as_rule(stopping.patience("validation/loss", 10))
    return stopping.as_rule(early_stop)


def _needs_validation(rule) -> bool:
    metric = getattr(rule, "metric", None)
    return metric is not None and metric.startswith("validation")


def _steps_per_epoch(batches, key, data, batch_size) -> int:
    return int(len(batches(jax.random.fold_in(key, 0), data, batch_size).index))


def default_optimizer(epochs: int, steps_per_epoch: int) -> optax.GradientTransformation:
    """AdamW, lr 1e-3 after a linear warm-up (one epoch, at most a tenth of training),
    then cosine decay to 1e-5."""
    total = max(epochs * steps_per_epoch, 2)
    warmup = max(1, min(steps_per_epoch, total // 10))
    schedule = optax.warmup_cosine_decay_schedule(0.0, 1e-3, warmup, total, end_value=1e-5)
    return optax.adamw(schedule, weight_decay=1e-4)


def default_model(data: MultiTaskData) -> nn.Module:
    """A CNN for time-frequency inputs, a DNN for inputs of fewer than 8 frames."""
    if data.x.shape[1] < 8:
        return models.HardSharingDNN(data.tasks)
    return models.HardSharingCNN(data.tasks)


def carve_validation(
    data: MultiTaskData, fraction: float, *, seed: int = 0
) -> tuple[MultiTaskData, MultiTaskData]:
    """(train, validation): one fold of a stratified, grouped split of `data`.

    `fraction` sets the number of folds (round(1 / fraction)); the validation side is
    the first fold, so no group spans both.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {fraction}")
    k = max(2, round(1 / fraction))
    try:
        train_rows, val_rows = splitters.kfold(data, k, seed=seed)[0]
    except ValueError:  # too few clips of a label for stratification: fall back to random
        rows = np.random.default_rng(seed).permutation(len(data))
        val_rows, train_rows = np.sort(rows[: max(1, len(data) // k)]), np.sort(rows[len(data) // k:])
    return ops.subset(data, train_rows), ops.subset(data, val_rows)


