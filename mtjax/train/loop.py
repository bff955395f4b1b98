"""`fit`: set-up, data, model and optimizer, the step, restore, the loop, in one function.

The step is in `mtjax.train.step`, the initial state and the default optimizer in
`mtjax.train.state`, the epoch runner (a `lax.scan` on the device, steps dispatched one by
one, or batches fed from the host) in `mtjax.train.epochs`, the history record in
`mtjax.train.history` and evaluation in `mtjax.train.evaluation`. Each epoch is: plan the
batches, run them, summarise the steps, evaluate, let the stopping rule decide, record.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import optax
from tqdm.auto import tqdm

from mtjax.data import ops, splitters, values
from mtjax.data.values import MultiTaskData, TaskDataset
from mtjax.tasks import Task
from mtjax.train import distributed, losses, models, schedules, settings, stopping
from mtjax.train import epochs as epoch_runners
from mtjax.train import history as records
from mtjax.train import state as states
from mtjax.train import step as steps
from mtjax.train.augment import Augment
from mtjax.train.evaluation import evaluate
from mtjax.train.step import Trained, TrainingError, TrainState

log = logging.getLogger("mtjax")


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
    batches: schedules.Schedule | Callable = schedules.mixed,
    early_stop: stopping.Rule | Callable | str | None = "default",
    loss: Mapping[str, Callable] | None = None,
    seed: int = 0,
    validation_fraction: float = 0.1,
    allow_partial_validation: bool = False,
    shared: steps.Shared = steps.not_a_head,
    augment: Augment | None = None,
    precision: str = "float32",
    per_task_grads: str = "jacobian",
    progress: bool = True,
    mesh: jax.sharding.Mesh | None = None,
    devices: Sequence[jax.Device] | jax.sharding.Mesh | None = None,
    run: Any = None,
    max_to_keep: int | None = None,
    conflicts: bool | None = None,
) -> Trained:
    """Trains one shared model on every task of `train`.

    Args:
      model: a Flax module mapping x [B, T, F] to {task name: logits [B, C_k]}; None
        picks `HardSharingCNN` (or `HardSharingDNN` for inputs of fewer than 8 frames).
      train: the training data (a TaskDataset or MultiTaskData).
      test: reported after every epoch, never used for any choice.
      validation: drives early stopping and the choice of the best epoch. It must hold
        rows of every task that train has (ValueError naming the missing ones; see
        `allow_partial_validation`). When None and the stopping rule reads a
        "validation/..." metric, `validation_fraction` of each dataset's train rows is
        carved out (`carve_validation`: grouped, stratified on all its tasks jointly).
      epochs: the most epochs to train.
      batch_size: rows per step (B).
      optimizer: any Optax transformation; default `state.default_optimizer`: AdamW
        (weight decay 1e-4) with a linear warm-up to 1e-3 (one epoch, at most a tenth of
        training) and cosine decay over `epochs`.
      combine: a loss combiner (`mtjax.losses`) or a function `losses [K] -> scalar`;
        default `losses.sum()`.
      batches: a batch schedule `(key, data, batch_size) -> Batches`
        (`mtjax.batching`; a factory given bare, `mixed`, means its default `mixed()`).
      early_stop: a stopping rule (`mtjax.early_stopping`); "default" is
        `patience("validation/loss", 10)` restoring the best epoch; None trains
        every epoch.
      loss: task name -> per-row loss `(logits [B, C_k], targets [B, C_k]) -> [B]`,
        overriding the default for that task's kind.
      seed: every random choice (initialisation, batches, dropout, combiners, the
        validation carve-out) follows from it; the same seed gives the same parameters.
      validation_fraction: share of each dataset's train rows carved out for validation
        when needed.
      allow_partial_validation: accept a `validation` set lacking some of train's tasks
        (the epoch is then chosen without them); False refuses it.
      shared: which parameters gradient-level combiners (gradnorm, pcgrad, cagrad, mgda)
        act on: by default every top-level entry not named `head_*`, each head then
        training on its own task's gradient; "all" puts the heads in the surgery too.
      augment: on-device augmentation of every training batch inside the jitted step
        (`mt.Augment`: time shift, SpecAugment masks, mixup), drawn from `seed`;
        None (the default) trains on the batches as they are: on the real-audio
        benchmark (`benchmarks/real_audio.py`) no setting helped within the default
        epochs and patience.
      precision: "float32", or "bfloat16": the model runs in bfloat16 (its parameters
        and inputs cast to it in the step) while parameters, losses, the combiner and
        the optimizer stay float32 (mixed precision; fastest on accelerators with
        bfloat16 units, usually slower on CPUs). Evaluation runs in float32.
      per_task_grads: how combiners with per-task gradients get them: "jacobian", all K
        at once (one vmapped backward pass holding K x P floats), or "gramian", only their
        Gram matrix (K sequential backward and forward passes, one gradient alive at a
        time, then one more backward pass with the task weights), for combiners whose
        weights come from it (mgda, pcgrad, cagrad, upgrad, nash_mtl, ...; ValueError for
        the others). Loss-level combiners ignore it.
      progress: show a progress bar with per-task losses.
      mesh: a device mesh with a "data" axis: batches are split along it, parameters
        and data replicated (data parallelism; batch_size must divide evenly). None
        runs on the default device.
      devices: the same as a list of devices (`jax.devices()`: every local one), or a
        Mesh; give `devices` or `mesh`, not both. Every combiner works unchanged: the
        step is one program over the global batch, its per-task gradients reduced
        across devices by XLA, so a run on 4 devices equals one on 1 up to float
        rounding. Over several processes (each calls `jax.distributed.initialize()`
        first), `jax.devices()` is every process's devices: see `mtjax.train.distributed`.
      run: a `mtjax.runs.Run`: every epoch writes a checkpoint, TensorBoard events,
        JSON reports and the history there, and at the end the plots, the confusion figures
        of the chosen and the last epoch and the HParams; a run that already
        has checkpoints resumes after its last complete epoch and ends where an
        uninterrupted run would. A run folder written with other settings is refused.
      max_to_keep: the newest checkpoints kept in the run besides the chosen epoch's
        (None: the last alone, so by default the last and the chosen epoch).
      conflicts: the cosine between every two tasks' gradients of the shared parameters,
        per epoch in the run's TensorBoard events (`train/conflict/{a}/{b}`). None: for
        combiners with per-task gradients (pcgrad, cagrad, ...), their epoch mean over the
        steps where both tasks were present, at no cost; none for the others. True: for
        the others too, on the epoch's first batch (a second compiled function, an extra
        backward pass per task each epoch). False: none.

    Returns:
      A `Trained` value. Its `history` has one flat record per epoch, keys
      "split/task/metric" (`mtjax.train.history`): "epoch", "seconds", "learning_rate"
      (for the default optimizer, or one made with `optax.inject_hyperparams`),
      "train/loss" (the mean of the tasks' losses), "train/objective" (the combiner's
      total), "train/{task}/loss", "train/weights/{task}", and for validation and test
      "{split}/loss", "{split}/score", "{split}/{task}/loss", ".../accuracy" or
      ".../micro_f1", ".../macro_f1", the kind's standard metrics (".../roc_auc",
      ".../eer", ".../mAP", ".../d_prime", ".../lwlrap") and, with windows, ".../clip/...".

    Raises:
      ValueError for an empty train split, a validation set lacking a task of train, a
      dataset too small to carve validation rows from, a stopping rule watching a test
      metric, a model whose outputs do not match the tasks, or a combiner that does not
      return a scalar; TrainingError (with the last good state) when a task's loss stops
      being finite.
    """
    # Set-up.
    if devices is not None and mesh is not None:
        raise ValueError("give devices= or mesh=, not both")
    mesh = epoch_runners.as_mesh(mesh if devices is None else devices)
    train = values.as_multi(train, "train")
    test = None if test is None else values.as_multi(test, "test")
    validation = None if validation is None else values.as_multi(validation, "validation")
    if len(train) == 0:
        raise ValueError("the training split is empty")
    check_train_tasks(train)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    tasks = train.tasks
    rule = _stopping_rule(early_stop)
    if validation is None and rule.metric is not None and rule.metric.startswith("validation"):
        train, validation = carve_validation(train, validation_fraction, seed=seed)
    elif validation is not None and not allow_partial_validation:
        check_validation_tasks(train, validation)
    root_key = jax.random.key(seed)
    init_key, schedule_key, run_key = jax.random.split(root_key, 3)
    schedule = schedules.as_schedule(batches)
    first = schedule(jax.random.fold_in(schedule_key, 0), train, batch_size)
    steps_per_epoch = len(first.index)

    # Model, losses and optimizer.
    if model is None:
        model = default_model(train)
    loss_fns = losses.loss_functions(tasks, loss)
    combiner = losses.as_combiner(losses.sum() if combine is None else combine)
    steps.gramian_rule(per_task_grads, combiner)  # its ValueError before any work
    if combiner.uses_grads and len(tasks) > 1:
        most = int(schedules.tasks_per_step(first, train).max())
        if most <= 1:
            log.warning(
                "combine=%s works on per-task gradients, but the batch schedule gives at most"
                " one task per step, so it does what sum does; use"
                " batches=mt.batching.every_task()",
                getattr(combine, "__name__", type(combine).__name__),
            )
    lr_schedule = None
    if optimizer is None:
        lr_schedule = states.default_learning_rate(epochs, steps_per_epoch)
    tx = optimizer if optimizer is not None else states.default_optimizer(epochs, steps_per_epoch)
    x_example = np.asarray(train.x[np.arange(min(2, len(train)))], np.float32)
    state = states.create_train_state(
        model, tx, combiner, x_example, init_key, tasks=tasks, shared=shared
    )

    # Restore from the run's last complete epoch.
    history: list[dict] = []
    recorder = None
    if run is not None:
        config = settings.run_config(
            model,
            train,
            validation=validation,
            test=test,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            combine=combine if combine is not None else "sum",
            batches=schedule,
            early_stop=rule,
            loss={t.name: fn for t, fn in zip(tasks, loss_fns)},
            optimizer=optimizer
            if optimizer is not None
            else states.default_optimizer_config(epochs, steps_per_epoch),
            validation_fraction=validation_fraction,
            augment=augment.to_json() if augment else None,
            **({"precision": precision} if precision != "float32" else {}),
            **({"per_task_grads": per_task_grads} if per_task_grads != "jacobian" else {}),
            **({"shared": shared} if combiner.uses_grads else {}),
        )
        recorder = run.recorder(
            config, tasks, max_to_keep=max_to_keep, keep_best=rule.metric, rule=rule
        )
        restored = recorder.restore(state)
        if restored is not None:
            state, history = restored
            log.info("%s: resuming after epoch %d", run.path, len(history) - 1)

    # The step, and the one epoch runner for the whole run (see `epochs`).
    place = epoch_runners.Placement(mesh, batch_size)
    state = place.replicated(state)
    step = steps.make_train_step(
        model,
        tasks,
        loss_fns,
        combiner,
        shared=shared,
        augment=augment,
        precision=precision,
        per_task_grads=per_task_grads,
    )
    run_epoch = epoch_runners.epoch_runner(step, train, place, state, run_key, first)
    probe = None
    if run is not None and conflicts and not combiner.uses_grads and len(tasks) > 1:
        probe = jax.jit(steps.make_conflicts(model, tasks, loss_fns, shared=shared))

    # Loop: plan -> run -> summarise -> evaluate -> decide -> record.
    best = None
    done = bool(history) and rule.decide(history).stop
    bar = tqdm(
        range(len(history), 0 if done else epochs),
        desc="fit",
        unit="epoch",
        initial=len(history),
        total=epochs,
        disable=not progress,
    )
    for epoch in bar:
        bar.set_postfix_str(f"epoch {epoch} of 0-{epochs - 1}", refresh=False)  # 0-based
        started = time.perf_counter()
        planned = (
            first
            if epoch == 0
            else schedule(jax.random.fold_in(schedule_key, epoch), train, batch_size)
        )
        schedules.check_batches(planned, len(train), batch_size)
        previous = state
        state, step_metrics = run_epoch(state, planned, epoch)
        step_metrics = distributed.host(step_metrics)
        means = records.train_means(step_metrics, tasks)
        bad = [name for name, value in means.tasks.items() if not math.isfinite(value)]
        if bad or not math.isfinite(means.objective):
            raise TrainingError(
                f"epoch {epoch}: the loss of task(s) {bad or [t.name for t in tasks]} is not"
                f" finite; the last good state (epoch {epoch - 1}) is in this error's .trained",
                _trained(model, tasks, previous, history, len(history) - 1, loss_fns)
                if history
                else None,
            )
        current = _trained(model, tasks, state, history, epoch, loss_fns)
        parts = {"validation": validation, "test": test}
        sides = {n: part for n, part in parts.items() if part is not None}
        reports = {n: evaluate(current, part, devices=mesh) for n, part in sides.items()}
        history.append(
            records.record(
                epoch,
                seconds=time.perf_counter() - started,
                train=means,
                reports=reports,
                tasks=tasks,
                learning_rate=states.learning_rate(state, lr_schedule),
            )
        )
        decision = rule.decide(history)
        if decision.best_epoch == epoch:
            best = (state.params["model"], state.batch_stats)
        if recorder is not None:
            pairs = None
            if probe is not None:
                rows = epoch_runners.gather(train, planned.index[0], planned.weight[0], place)
                cosines = probe(state.params["model"], state.batch_stats, rows)
                pairs = _pairs(tasks, np.asarray(distributed.host(cosines)))
            elif conflicts is not False and "cosines" in step_metrics and len(tasks) > 1:
                cosines = records.epoch_cosines(step_metrics["cosines"], step_metrics["present"])
                pairs = _pairs(tasks, cosines)
            recorder.epoch(epoch, state, history, reports, conflicts=pairs)
        bar.set_postfix(_postfix(history[-1], tasks))
        if decision.stop:
            break
    bar.close()

    # The chosen epoch.
    decision = rule.decide(history)
    if decision.best_epoch != len(history) - 1:
        if best is not None:
            state = state.replace(params={**state.params, "model": best[0]}, batch_stats=best[1])
        elif recorder is not None:  # trained before a resume: the best is on disk
            state = recorder.restore_epoch(state, decision.best_epoch)
    if recorder is not None:
        recorder.close(history, chosen_epoch=decision.best_epoch)
    return _trained(model, tasks, state, history, decision.best_epoch, loss_fns)


def _pairs(tasks: Sequence[Task], cosines_KxK: np.ndarray) -> dict[tuple[str, str], float]:
    return {
        (a.name, b.name): float(cosines_KxK[i, j])
        for i, a in enumerate(tasks)
        for j, b in enumerate(tasks)
        if i < j
    }


def _trained(model, tasks, state: TrainState, history, best_epoch: int, loss_fns) -> Trained:
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


def _postfix(record: Mapping[str, Any], tasks: Sequence[Task]) -> dict[str, str]:
    """The progress bar's numbers: each task's train loss, and the validation score."""
    shown = {
        t.name: f"{records.value(record, records.key('train', t.name, 'loss')):.3f}" for t in tasks
    }
    score = records.value(record, records.key("validation", "score"), default=None)
    if score is not None:
        shown["val"] = f"{score:.3f}"
    return shown


def _stopping_rule(early_stop: Any) -> stopping.Rule:
    if isinstance(early_stop, str):
        if early_stop != "default":
            raise ValueError(f"early_stop must be a rule, None or 'default', got {early_stop!r}")
        return stopping.patience("validation/loss", 10)
    return stopping.as_rule(early_stop)


def default_model(data: MultiTaskData) -> nn.Module:
    """A CNN for time-frequency inputs, a DNN for inputs of fewer than 8 frames."""
    if data.x.shape[1] < 8:
        return models.HardSharingDNN(data.tasks)
    return models.HardSharingCNN(data.tasks)


def check_train_tasks(train: MultiTaskData) -> None:
    """Refuses training data with a task that has no rows: its head would stay untrained.

    Raises:
      ValueError naming the tasks without training rows.
    """
    rows = np.asarray(train.has_task, bool).sum(0)
    empty = [t.name for t, n in zip(train.tasks, rows) if not n]
    if empty:
        raise ValueError(
            f"fit: task(s) {empty} have no training rows, so their heads would stay untrained"
            " and their test metrics mean nothing; drop them from the data or give them rows"
        )


def check_validation_tasks(train: MultiTaskData, validation: MultiTaskData) -> None:
    """Refuses a validation set without rows of a task that has train rows.

    Raises:
      ValueError naming the missing tasks, with how many train rows each has.
    """
    train_rows = np.asarray(train.has_task, bool).sum(0)
    names = [t.name for t in validation.tasks]
    held = np.asarray(validation.has_task, bool).sum(0)
    missing = {
        t.name: int(n)
        for t, n in zip(train.tasks, train_rows)
        if n and (t.name not in names or not held[names.index(t.name)])
    }
    if missing:
        shown = ", ".join(f"{name!r} ({n} train rows)" for name, n in missing.items())
        raise ValueError(
            f"fit: the validation set has no rows of task(s) {shown}; the epoch would be "
            "chosen without them. Give every dataset a validation part (mt.splits carves "
            "one per dataset), pass validation=None to carve one from train, or "
            "allow_partial_validation=True"
        )


def carve_validation(
    data: MultiTaskData, fraction: float, *, seed: int = 0
) -> tuple[MultiTaskData, MultiTaskData]:
    """(train, validation): `fraction` of each dataset's rows carved out for validation.

    `splitters.holdout`: per dataset, grouped (no group on both sides) and stratified on all
    of that dataset's tasks jointly, with every task on both sides.

    Raises:
      ValueError if `fraction` is not in (0, 1), or naming a dataset too small to carve
      (fewer than two groups, or a task labelled in fewer than two).
    """
    if isinstance(fraction, bool) or not 0 < fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {fraction}")
    try:
        train_rows, val_rows = splitters.holdout(data, fraction, seed=seed)
    except ValueError as err:
        raise ValueError(f"fit: carving validation rows from train: {err}") from None
    train_part, validation_part = ops.subset(data, train_rows), ops.subset(data, val_rows)
    return values.as_multi(train_part), values.as_multi(validation_part)
