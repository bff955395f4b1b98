"""One epoch of train steps: where the arrays live, and the runner `fit` picks once.

`epoch_runner` returns `run_epoch(state, planned, epoch) -> (state, step_metrics)`, one of:

  scan        the training arrays live on the device and the epoch is one jitted
              `lax.scan` over its batches, rows gathered on the device;
  stepwise    the arrays live on the device and the jitted step is dispatched once per
              batch (where a scan is slow: `step.scan_is_slow`);
  host-fed    the arrays stay on the host (a memory map, or more than `DEVICE_BYTES`) and
              batches are read there and placed by worker threads a few steps
              ahead (`loader.epoch_batches`) while earlier ones train.

Every host-to-device copy in an epoch is an explicit `jax.device_put` (`Placement`), so an
epoch runs under `jax.transfer_guard("disallow")`; the host reads the step metrics only
after the epoch (`jax.device_get`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mtjax.data.values import MultiTaskData
from mtjax.train import loader, schedules
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
    axis. Data parallelism is only this: the same jitted step, other input shardings. A
    mesh over several processes' devices (`mtjax.train.distributed`) takes the same
    host values on every process, and each process places only the parts its own
    devices hold.
    """

    def __init__(self, mesh: jax.sharding.Mesh | None, batch_size: int):
        self.mesh = mesh = as_mesh(mesh)
        if mesh is not None and batch_size % mesh.shape["data"]:
            raise ValueError(
                f"batch_size {batch_size} does not split over {mesh.shape['data']} devices"
            )

    def replicated(self, tree: Any) -> Any:
        """`tree` on the device, whole on every device of the mesh."""
        if self.mesh is None:  # a value replicated over several processes: its local copy
            return jax.device_put(jax.tree.map(_local, tree))
        sharding = jax.sharding.NamedSharding(self.mesh, _spec())
        return jax.tree.map(lambda leaf: _put(leaf, sharding), tree)

    def rows(self, array: Any, axis: int = 0) -> jax.Array:
        """`array` on the device, split along `axis` over the mesh's "data" axis."""
        if self.mesh is None:
            return jax.device_put(array)
        spec = _spec(*([None] * axis), "data")
        return _put(array, jax.sharding.NamedSharding(self.mesh, spec))

    def taken(self, source: Any, rows: np.ndarray, dtype: Any = None) -> jax.Array:
        """`source[rows]` (rows int [B]) on the device, split like `rows(...)`.

        Over several processes each reads only the rows its devices hold, so an
        out-of-core `source` is read once in all, not once per process.
        """
        sharding = (
            None if self.mesh is None else jax.sharding.NamedSharding(self.mesh, _spec("data"))
        )
        if sharding is None or sharding.is_fully_addressable:
            return self.rows(np.asarray(source[rows], dtype))
        shape = (len(rows), *source.shape[1:])

        def part(index: Any) -> np.ndarray:  # a tuple of slices, one per axis
            return np.asarray(source[rows[index[0]]], dtype)[(slice(None), *index[1:])]

        return jax.make_array_from_callback(shape, sharding, part)

    def scalar(self, value: int) -> jax.Array:
        """An int32 scalar on the device (replicated)."""
        return self.replicated(np.int32(value))


def _local(leaf: Any) -> Any:
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable and leaf.is_fully_replicated:
        return leaf.addressable_data(0)
    return leaf


def _put(value: Any, sharding: jax.sharding.NamedSharding) -> jax.Array:
    """`value` placed with `sharding`; over several processes each places its own parts.

    A host value (or an array of this process alone) must be the same on every process.
    """
    if sharding.is_fully_addressable or (
        isinstance(value, jax.Array) and not value.is_fully_addressable
    ):
        return jax.device_put(value, sharding)  # one process, or resharding a global array
    if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
        data = _put(jax.random.key_data(value), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(value))
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _spec(*axes: str | None) -> jax.sharding.PartitionSpec:
    return jax.sharding.PartitionSpec(*axes)


def gather(data: MultiTaskData, rows: np.ndarray, weight: np.ndarray, place: Placement) -> Batch:
    """The batch of `rows` int [B] (weights float32 [B]), gathered on the host and placed."""
    return Batch(
        place.taken(data.x, rows, np.float32),
        place.taken(data.y, rows),
        place.taken(data.has_task, rows),
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
        one_process = place.mesh is None or not place.mesh.is_multi_process

        def read(data: MultiTaskData, index: np.ndarray, weight: np.ndarray) -> list[Batch]:
            """Steps `index` [K, B] placed; in one read, unless each process reads its own."""
            if one_process:
                return [Batch(*map(place.rows, b)) for b in loader.read_block(data, index, weight)]
            return [gather(data, rows, w, place) for rows, w in zip(index, weight)]

        def host_fed(state, planned, epoch):
            state, epoch_key, collected = copy(state), place.scalar(epoch), []
            batches = loader.epoch_batches(data, planned, read=read)
            try:
                for current in batches:
                    state, step_metrics = run_step(state, current, run_key, epoch_key)
                    collected.append(step_metrics)
            finally:
                batches.close()
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
