"""Several processes, one mesh: what `fit` does differently when JAX spans many hosts.

Each process calls `jax.distributed.initialize()` before anything else touches JAX
(on SLURM or Cloud TPU with no arguments; elsewhere with the coordinator's
"host:port", the number of processes and this one's id), then runs the same `fit`
with `devices=jax.devices()`: the mesh is every process's devices. All processes plan
the same batches from the same seed; each places only its own rows of every batch
(`Placement.rows`), the step is one program over the global batch, and parameters are
replicated on every device. What the host reads (step metrics, evaluation outputs)
goes through `host`; files are written by process 0 alone (`is_primary`), checkpoints
through Orbax's multi-process save, and every process restores them. The run folder
must be on a filesystem every host sees. The returned parameters are replicated global
arrays: `host(trained.params)` reads them, and `evaluate`/`predict` take them as they
are (with `devices=` over the mesh, or on each process's default device).

On CPUs the processes' collectives go through gloo (JAX's default
`jax_cpu_collectives_implementation`).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils


def is_primary() -> bool:
    """Whether this process writes files: process 0, or the only process."""
    return jax.process_index() == 0


def host(tree: Any) -> Any:
    """`tree` with every array as numpy, its global value, on every process.

    Arrays this process holds whole (its own, or replicated on every device) are read
    locally; an array split over several processes' devices is gathered from them
    (`process_allgather`), so every process must call this at the same point.
    """

    def read(leaf: Any) -> Any:
        if not isinstance(leaf, jax.Array) or leaf.is_fully_addressable:
            return jax.device_get(leaf)
        if leaf.is_fully_replicated:
            return np.asarray(leaf.addressable_data(0))
        return multihost_utils.process_allgather(leaf, tiled=True)

    return jax.tree.map(read, tree)


def barrier(name: str) -> None:
    """Waits until every process reaches the barrier `name`; nothing with one process."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
