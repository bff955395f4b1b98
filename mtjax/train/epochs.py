"""One epoch of train steps: where the arrays live, and the runner `fit` picks once.

`epoch_runner` returns `run_epoch(state, planned, epoch) -> (state, step_metrics)`, one of:

  scan        the training arrays live on the device and the epoch is one jitted
              `lax.scan` over its batches, rows gathered on the device;
  stepwise    the arrays live on the device and the jitted step is dispatched once per
              batch (where a scan is slow: `step.scan_is_slow`);
  host-fed    the arrays stay on the host (a memory map, or more than `DEVICE_BYTES`) and
              each batch is gathered there while the previous one trains.

Every host-to-device copy in an epoch is an explicit `jax.device_put` (`Placement`), so an
epoch runs under `jax.transfer_guard("disallow")`; the host reads the step metrics only
after the epoch (`jax.device_get`).
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mtjax.data.values import MultiTaskData
from mtjax.train import schedules
from mtjax.train import step as steps
from mtjax.train.step import Batch, TrainState

DEVICE_BYTES = 2 * 2**30  # training arrays up to this size live on the device

RunEpoch = Callable[[TrainState, schedules.Batches, int], tuple[TrainState, dict]]


def as_mesh(devices: Any) -> jax.sharding.Mesh | None:
    """A one-axis "data" mesh over `devices` (a list of devices), a given Mesh as is, or None.

    Raises:
      ValueError: an empty list, or a Mesh without a "data" axis.
    """
    if devices is None or isinstance(devices, jax.sharding.Mesh):
        mesh = devices
    else:
        found = list(devices)
        if not found:
            raise ValueError("devices= is empty; give a list of jax devices, a Mesh, or None")
        mesh = jax.sharding.Mesh(np.array(found), ("data",))
    if mesh is not None and "data" not in mesh.axis_names:
        raise ValueError(f"the mesh needs a 'data' axis, it has {mesh.axis_names}")
    return mesh


class Placement:
    """Where arrays go: the default device, or a mesh.

    On a mesh, parameters and data are replicated and batch rows split along its "data"
    axis. Data parallelism is only this: the same jitted step, other input shardings.
    """

    def __init__(self, mesh: jax.sharding.Mesh | None, batch_size: int):
        self.mesh = mesh = as_mesh(mesh)
        if mesh is not None and batch_size % mesh.shape["data"]:
            raise ValueError(
                f"batch_size {batch_size} does not split over {mesh.shape['data']} devices"
            )

    def replicated(self, tree: Any) -> Any:
        """`tree` on the device, whole on every device of the mesh."""
        if self.mesh is None:
            return jax.device_put(tree)
        return jax.device_put(tree, jax.sharding.NamedSharding(self.mesh, _spec()))

    def rows(self, array: Any, axis: int = 0) -> jax.Array:
        """`array` on the device, split along `axis` over the mesh's "data" axis."""
        if self.mesh is None:
            return jax.device_put(array)
        spec = _spec(*([None] * axis), "data")
        return jax.device_put(array, jax.sharding.NamedSharding(self.mesh, spec))

    def scalar(self, value: int) -> jax.Array:
        """An int32 scalar on the device (replicated)."""
        return self.replicated(np.int32(value))


def _spec(*axes: str | None) -> jax.sharding.PartitionSpec:
    return jax.sharding.PartitionSpec(*axes)


def gather(data: MultiTaskData, rows: np.ndarray, weight: np.ndarray, place: Placement) -> Batch:
    """The batch of `rows` int [B] (weights float32 [B]), gathered on the host and placed."""
    return Batch(
        place.rows(np.asarray(data.x[rows], np.float32)),
        place.rows(data.y[rows]),
        place.rows(data.has_task[rows]),
        place.rows(weight),
    )


def copy(tree: Any) -> Any:
    """`tree` with every array copied on its device: a jitted call may donate the copy."""
    return jax.tree.map(lambda a: a.copy() if isinstance(a, jax.Array) else a, tree)


def _stacked(step_metrics: list[dict]) -> dict:
    return jax.tree.map(lambda *a: jnp.stack(a), *step_metrics)


def epoch_runner(
    step: Callable,
    data: MultiTaskData,
    place: Placement,
    state: TrainState,
    run_key: jax.Array,
    first: schedules.Batches,
) -> RunEpoch:
    """The function that trains one epoch, chosen once for the whole run.

    Args:
      step: `step(state, batch, run_key, epoch) -> (state, metrics)`, not yet jitted
        (`step.make_train_step`).
      data: the training data.
      place: where arrays go.
      state: the placed train state, as an example of its shapes.
      run_key: the run's PRNG key; each step folds in its step number.
      first: a planned epoch, as an example of the batches' shapes.

    Returns:
      `run_epoch(state, planned, epoch) -> (state, step_metrics)`: trains on the batches of
      `planned` (`schedules.Batches` [S, B]) in order. `state` itself stays valid (a copy
      is donated), so the caller keeps the last good state. `step_metrics` holds each
      step's metrics stacked, on the device: loss [S], tasks [S, K], present [S, K],
      weights [S, K].
    """
    run_key = place.replicated(run_key)  # once, not implicitly at every step on a mesh
    if not (isinstance(data.x, np.ndarray) and data.x.nbytes <= DEVICE_BYTES):
        run_step = jax.jit(step, donate_argnums=0)

        def host_fed(state, planned, epoch):
            def batch(s: int) -> Batch:
                return gather(data, planned.index[s], planned.weight[s], place)

            state, epoch_key, collected = copy(state), place.scalar(epoch), []
            with cf.ThreadPoolExecutor(1) as pool:
                upcoming = pool.submit(batch, 0)
                for s in range(len(planned.index)):
                    current = upcoming.result()
                    if s + 1 < len(planned.index):
                        upcoming = pool.submit(batch, s + 1)
                    state, step_metrics = run_step(state, current, run_key, epoch_key)
                    collected.append(step_metrics)
            return state, _stacked(collected)

        return host_fed

    arrays = place.replicated((data.x, data.y, data.has_task))
    indexed = steps.indexed_step(step)
    example = (
        state,
        *arrays,
        place.rows(first.index[0]),
        place.rows(first.weight[0]),
        run_key,
        place.scalar(0),
    )
    if steps.scan_is_slow(indexed, *example):
        run_indexed = jax.jit(indexed, donate_argnums=0)

        def stepwise(state, planned, epoch):
            state, epoch_key, collected = copy(state), place.scalar(epoch), []
            for index, weight in zip(planned.index, planned.weight):
                state, step_metrics = run_indexed(
                    state, *arrays, place.rows(index), place.rows(weight), run_key, epoch_key
                )
                collected.append(step_metrics)
            return state, _stacked(collected)

        return stepwise

    run_scan = jax.jit(steps.make_epoch(step), donate_argnums=0)

    def scan(state, planned, epoch):
        return run_scan(
            copy(state),
            *arrays,
            place.rows(planned.index, axis=1),
            place.rows(planned.weight, axis=1),
            run_key,
            place.scalar(epoch),
        )

    return scan
