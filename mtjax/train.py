"""Training and evaluation: one jitted step, masked per-task losses, a flat `fit`.

The step computes every task's masked mean loss on one fixed-shape batch (rows of
several datasets and tasks mixed; rows lacking a task and weight-0 padding rows count
nothing), combines them with a loss combiner and applies an Optax update. Combiners that
work on per-task gradients get them from one `vmap` over the tasks of a VJP, and the
model's gradient is then the chain rule through the combined loss,
`sum_k d total / d loss_k * grad_k`. When the training arrays fit on the device, an
epoch is one `lax.scan` over its batches, with no host round trip per step.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import importlib
import inspect
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from tqdm.auto import tqdm

from mtjax import batching, checkpoints, early_stopping, losses, metrics, models, recording, runs
from mtjax.arrays import DiskArray
from mtjax.data import MultiTaskData, TaskDataset, concat, subset
from mtjax.folds import kfold
from mtjax.tasks import Task, task_slices

log = logging.getLogger("mtjax")

DEVICE_BYTES = 2 * 2**30  # training arrays up to this size live on the device


class Batch(NamedTuple):
    """One step's rows: x float32 [B, T, F], y float32 [B, C], has_task bool [B, K],
    weight float32 [B] (0 on padding rows)."""

    x: jax.Array
    y: jax.Array
    has_task: jax.Array
    weight: jax.Array


class TrainState(train_state.TrainState):
    """flax's TrainState; `params` holds {"model": ..., "combiner": ...} (both optimized)."""

    batch_stats: Any
    comb_state: Any


@dataclasses.dataclass(frozen=True)
class Trained:
    """What `fit` returns; `evaluate` and `predict` accept it.

    Attributes:
      model: the Flax module.
      tasks: the tasks, in column order.
      params: the model's parameters (those of `best_epoch`).
      batch_stats: the model's batch statistics ({} without batch normalisation).
      opt_state: the optimizer's state after the last epoch trained.
      comb_state: the loss combiner's state after the last epoch trained.
      comb_params: the combiner's trainable parameters ({} when it has none).
      history: one record per epoch (see `fit`).
      best_epoch: the epoch whose parameters are kept.
      loss_fns: each task's per-row loss function.
    """

    model: nn.Module
    tasks: tuple[Task, ...]
    params: Any
    batch_stats: Any
    opt_state: Any
    comb_state: Any
    comb_params: Any
    history: tuple[dict, ...]
    best_epoch: int
    loss_fns: tuple[Callable, ...]

    @property
    def variables(self) -> dict:
        out = {"params": self.params}
        if self.batch_stats:
            out["batch_stats"] = self.batch_stats
        return out


class TrainingError(FloatingPointError):
    """A non-finite loss; `.trained` holds the last good state."""

    def __init__(self, message: str, trained: Trained | None):
        super().__init__(message)
        self.trained = trained


# The step


def _accepts_train(model: nn.Module) -> bool:
    try:
        return "train" in inspect.signature(type(model).__call__).parameters
    except (TypeError, ValueError):
        return False


def make_forward(model: nn.Module) -> Callable:
    """`forward(params, batch_stats, x, train, dropout_key) -> (logits, batch_stats)`."""
    takes_train = _accepts_train(model)

    def forward(params, batch_stats, x, train: bool, dropout_key):
        variables = {"params": params}
        if batch_stats:
            variables["batch_stats"] = batch_stats
        kwargs = {"train": train} if takes_train else {}
        if train and batch_stats:
            logits, updates = model.apply(
                variables, x, rngs={"dropout": dropout_key}, mutable=["batch_stats"], **kwargs
            )
            return logits, updates["batch_stats"]
        logits = model.apply(variables, x, rngs={"dropout": dropout_key}, **kwargs)
        return logits, batch_stats

    return forward


def make_train_step(
    model: nn.Module,
    tasks: Sequence[Task],
    loss_fns: Sequence[Callable],
    combiner: losses.Combiner,
) -> Callable:
    """`step(state, batch, run_key, epoch) -> (state, metrics)`, pure and jittable.

    metrics: loss (combined, scalar), tasks float32 [K] (each task's masked mean),
    present bool [K], weights float32 [K] (d total / d loss_k).
    """
    forward = make_forward(model)
    n_tasks = len(tasks)

    def step(state: TrainState, batch: Batch, run_key: jax.Array, epoch: jax.Array):
        dropout_key, combine_key = jax.random.split(jax.random.fold_in(run_key, state.step))
        extra = dict(key=combine_key, step=state.step, epoch=epoch)

        def task_losses(model_params):
            logits, batch_stats = forward(
                model_params, state.batch_stats, batch.x, True, dropout_key
            )
            losses_K, present_K = losses.task_losses(
                logits, batch.y, batch.has_task, batch.weight, tasks, loss_fns
            )
            return losses_K, (present_K, batch_stats)

        def combined(losses_K, comb_params, present_K, grads):
            total, comb_state = combiner.apply(
                losses_K,
                state.comb_state,
                present=present_K,
                grads=grads,
                params=comb_params,
                **extra,
            )
            if jnp.shape(total) != ():
                raise ValueError(
                    f"the loss combiner returned shape {jnp.shape(total)}; it must return a scalar"
                )
            return total, comb_state

        model_params, comb_params = state.params["model"], state.params["combiner"]
        if combiner.uses_grads:
            losses_K, vjp, (present_K, batch_stats) = jax.vjp(
                task_losses, model_params, has_aux=True
            )
            (grads_K,) = jax.vmap(vjp)(jnp.eye(n_tasks, dtype=losses_K.dtype))
            grads_K = jax.tree.map(
                lambda g: g * present_K.reshape((-1,) + (1,) * (g.ndim - 1)), grads_K
            )
            (total, comb_state), (weights_K, comb_grads) = jax.value_and_grad(
                combined, argnums=(0, 1), has_aux=True
            )(losses_K, comb_params, present_K, grads_K)
            model_grads = jax.tree.map(lambda g: jnp.tensordot(weights_K, g, axes=1), grads_K)
        else:

            def objective(model_params, comb_params):
                losses_K, (present_K, batch_stats) = task_losses(model_params)
                total, comb_state = combined(losses_K, comb_params, present_K, None)
                return total, (losses_K, present_K, batch_stats, comb_state)

            (total, aux), (model_grads, comb_grads) = jax.value_and_grad(
                objective, argnums=(0, 1), has_aux=True
            )(model_params, comb_params)
            losses_K, present_K, batch_stats, comb_state = aux
            weights_K = jax.grad(
                lambda l: combined(l, comb_params, present_K, None)[0]
            )(jax.lax.stop_gradient(losses_K))
        state = state.apply_gradients(
            grads={"model": model_grads, "combiner": comb_grads},
            batch_stats=batch_stats,
            comb_state=comb_state,
        )
        return state, {"loss": total, "tasks": losses_K, "present": present_K, "weights": weights_K}

    return step


def make_epoch(step: Callable) -> Callable:
    """`epoch(state, x, y, has_task, index [S, B], weight [S, B], run_key, epoch)`: a scan
    of `step` over the epoch's batches, gathering rows on the device."""

    def run(state, x, y, has_task, index, weight, run_key, epoch):
        def body(state, rows):
            return indexed_step(step)(state, x, y, has_task, *rows, run_key, epoch)

        return jax.lax.scan(body, state, (index, weight))

    return run


def indexed_step(step: Callable) -> Callable:
    """`step` on rows `index` [B] (weights `weight` [B]) of device-resident arrays."""

    def run(state, x, y, has_task, index, weight, run_key, epoch):
        return step(state, Batch(x[index], y[index], has_task[index], weight), run_key, epoch)

    return run


def scan_is_slow(step: Callable, *example) -> bool:
    """Whether to dispatch steps one by one instead of scanning them.

    Measured here (jax 0.10, 2-core CPU): a CNN step inside `lax.scan` ran ~10x slower
    than the same step dispatched alone (XLA's CPU convolutions lose their fast path
    inside a loop), while a dense step ran ~2x faster in a scan. So: scan, unless the
    backend is the CPU and the step holds a convolution.
    """
    if jax.default_backend() != "cpu":
        return False
    jaxpr = jax.make_jaxpr(step)(*example)
    return "conv_general_dilated" in str(jaxpr)


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
    batches: Callable = batching.mixed,
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
    train = _as_multi(train, "train")
    test = None if test is None else _as_multi(test, "test")
    validation = None if validation is None else _as_multi(validation, "validation")
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
        recorder = recording.Recorder.open(run, config, tasks, max_to_keep=max_to_keep,
                                      keep_best=getattr(rule, "metric", None))
        restored = recorder.restore(state)
        if restored is not None:
            state, history = restored
            log.info("%s: resuming after epoch %d", run.path, len(history) - 1)

    place = Placement(mesh, batch_size)
    state = place.replicated(state)

    # The step: the epoch as one scan on the device, steps dispatched one by one from
    # device-resident arrays, or batches gathered on the host (index mode).
    step = make_train_step(model, tasks, loss_fns, combiner)
    on_device = isinstance(train.x, np.ndarray) and train.x.nbytes <= DEVICE_BYTES
    if on_device:
        arrays = place.replicated((train.x, train.y, train.has_task))
        first = batches(jax.random.fold_in(schedule_key, 0), train, batch_size)
        example = (state, *arrays, place.rows(first.index[0]), place.rows(first.weight[0]),
                   run_key, jnp.int32(0))
        stepwise = scan_is_slow(indexed_step(step), *example)
        run_epoch = jax.jit(make_epoch(step), donate_argnums=0)
        run_indexed = jax.jit(indexed_step(step), donate_argnums=0)
    else:
        run_step = jax.jit(step, donate_argnums=0)

    # Loop.
    best = None
    conflicts = jax.jit(make_conflicts(model, tasks, loss_fns)) if recorder else None
    done = bool(history) and rule(history).stop
    bar = tqdm(range(len(history), 0 if done else epochs), desc="fit", unit="epoch",
               initial=len(history), total=epochs, disable=not progress)
    for epoch in bar:
        started = time.perf_counter()
        planned = batches(jax.random.fold_in(schedule_key, epoch), train, batch_size)
        batching.check_batches(planned, len(train), batch_size)
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


def make_conflicts(model: nn.Module, tasks: Sequence[Task], loss_fns: Sequence[Callable]):
    """`conflicts(params, batch_stats, batch) -> [K, K]`: the cosine similarity between
    every pair of task gradients on one batch (1 on the diagonal; 0 for absent tasks)."""
    forward = make_forward(model)

    def run(params, batch_stats, batch: Batch):
        def task_losses(params):
            logits, _ = forward(params, batch_stats, batch.x, False, jax.random.key(0))
            return losses.task_losses(
                logits, batch.y, batch.has_task, batch.weight, tasks, loss_fns
            )[0]

        losses_K, vjp = jax.vjp(task_losses, params)
        (grads_K,) = jax.vmap(vjp)(jnp.eye(len(tasks), dtype=losses_K.dtype))
        gram = losses.gram(grads_K)
        norms = jnp.sqrt(jnp.maximum(jnp.diagonal(gram), 1e-30))
        return gram / (norms[:, None] * norms[None, :])

    return run


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
        return early_stopping.as_rule(early_stopping.patience("validation/loss", 10))
    return early_stopping.as_rule(early_stop)


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
        train_rows, val_rows = kfold(data, k, seed=seed)[0]
    except ValueError:  # too few clips of a label for stratification: fall back to random
        rows = np.random.default_rng(seed).permutation(len(data))
        val_rows, train_rows = np.sort(rows[: max(1, len(data) // k)]), np.sort(rows[len(data) // k:])
    return subset(data, train_rows), subset(data, val_rows)


def _as_multi(data, what: str) -> MultiTaskData:
    if isinstance(data, MultiTaskData):
        return data
    if isinstance(data, TaskDataset):
        return concat([data])
    raise TypeError(f"{what} must be a TaskDataset or MultiTaskData, got {type(data).__name__}")


# Evaluation


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


def predict_logits(trained: Trained, data: MultiTaskData, *, batch_size: int = 256):
    """(logits {name: float32 [N, C_k]}, per-row losses float32 [N, K]) over all rows.

    Rows go through the model in batches of one fixed size (the last one padded), so
    nothing recompiles; an out-of-core `x` is read one batch at a time.
    """
    predict = _predictor(trained)
    n = len(data)
    size = max(1, min(batch_size, n))
    logits: dict[str, list] = {t.name: [] for t in trained.tasks}
    row_losses = []
    for begin in range(0, n, size):
        rows = np.arange(begin, min(begin + size, n))
        padded = np.concatenate([rows, np.full(size - len(rows), rows[0])])
        x = np.asarray(data.x[padded], np.float32)
        out, losses_BxK = predict(
            trained.params, trained.batch_stats, x, np.asarray(data.y[padded], np.float32)
        )
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
    trained: Trained | runs.Run,
    data: MultiTaskData | TaskDataset,
    *,
    epoch: int | None = None,
    model: nn.Module | None = None,
    batch_size: int = 256,
    threshold: float = 0.5,
    split: str = "evaluation",
) -> dict:
    """Per-task reports of a trained model, or of a saved run's epochs, on `data`.

    Args:
      trained: what `fit` returned, or a `runs.Run` written by `fit(run=...)`: its model
        is rebuilt from the run's config (or given as `model`) and each saved epoch's
        parameters are restored from its checkpoint; the reports are also written to
        the run under `split`.
      data: rows to evaluate; tasks the model was not trained on are refused.
      epoch: with a run, the one epoch to evaluate; None evaluates every saved epoch.
      model: with a run whose model mtjax cannot rebuild (a user's module), the module.
      batch_size: rows per forward pass.
      threshold: probability above which a multilabel or binary label is predicted.
      split: the name the run's reports are written under.

    Returns:
      {task name: report}, each in scikit-learn's classification_report(output_dict=True)
      form plus "loss" and "confusion_matrix"; with windows (a clip cut into several
      rows), also "clip": the report at clip level, window probabilities averaged. Tasks
      `data` does not carry are left out. For a run with `epoch=None`:
      {epoch: {task name: report}}.
    """
    if isinstance(trained, runs.Run):
        return _evaluate_run(trained, data, epoch=epoch, model=model, batch_size=batch_size,
                             threshold=threshold, split=split)
    data = _as_multi(data, "data")
    names = [t.name for t in trained.tasks]
    missing = [t.name for t in data.tasks if t.name not in names]
    if missing:
        raise ValueError(f"the data has tasks {missing} that the model was not trained on")
    data = _align_tasks(data, trained.tasks)
    logits, row_losses = predict_logits(trained, data, batch_size=batch_size)
    has = np.asarray(data.has_task, bool)
    task_loss = {
        t.name: float((row_losses[:, k] * has[:, k]).sum() / max(has[:, k].sum(), 1))
        for k, t in enumerate(trained.tasks)
    }
    probs = {t.name: metrics.probabilities(t, logits[t.name]) for t in trained.tasks}
    clip = np.asarray(data.clip)
    reports = metrics.evaluation_report(
        trained.tasks, np.asarray(data.y), has, probs, task_loss,
        clip if len(np.unique(clip)) < len(clip) else None, threshold=threshold,
    )
    return {name: report for name, report in reports.items() if has[:, names.index(name)].any()}


def model_from_run_config(config: dict) -> nn.Module:
    """The Flax module a run was trained with, rebuilt from its config.json.

    Works for mtjax's models and for any module importable by its recorded module path
    whose settings are JSON values; raises ValueError saying to pass `model=` otherwise.
    """
    described = dict(config["model"])
    name, module_name = described.pop("name"), described.pop("module")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(
            f"cannot rebuild model {module_name}.{name} ({err}); pass model=... to evaluate"
        ) from None
    kwargs = {k: _from_json(k, v) for k, v in described.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"cannot rebuild model {name} from its config ({err}); "
                         "pass model=... to evaluate") from None


def _from_json(name: str, value):
    if name == "tasks":
        return tuple(Task.from_json(t) for t in value)
    if isinstance(value, list):
        return tuple(_from_json("", v) for v in value)
    return value


def _evaluate_run(run, data, *, epoch, model, batch_size, threshold, split):
    config = runs.read_config(run)
    tasks = tuple(Task.from_json(t) for t in config["tasks"])
    model = model if model is not None else model_from_run_config(config)
    manager = checkpoints.open_manager(run.checkpoints)
    try:
        chosen = checkpoints.epochs(manager) if epoch is None else [epoch]
        if not chosen:
            raise FileNotFoundError(f"{run.path} has no checkpoints to evaluate")
        out = {}
        for e in chosen:
            saved, meta = checkpoints.restore_arrays(manager, e)
            trained = Trained(
                model=model, tasks=tasks, params=saved["params"]["model"],
                batch_stats=saved.get("batch_stats") or {}, opt_state=None, comb_state=None,
                comb_params=saved["params"].get("combiner", {}), history=tuple(meta["history"]),
                best_epoch=e, loss_fns=losses.loss_functions(tasks),
            )
            out[e] = evaluate(trained, data, batch_size=batch_size, threshold=threshold)
            runs.write_reports(run, e, split, out[e])
    finally:
        checkpoints.close(manager)
    return out if epoch is None else out[epoch]


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
    data = _align_tasks(_as_multi(data, "data"), trained.tasks)
    logits, _ = predict_logits(trained, data, batch_size=batch_size)
    return {t.name: metrics.probabilities(t, logits[t.name]) for t in trained.tasks}
