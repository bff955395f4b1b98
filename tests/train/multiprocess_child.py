"""One process of a multi-process `fit`, started by test_multiprocess.py.

Usage: python multiprocess_child.py PROCESS_ID NUM_PROCESSES PORT LOCAL_DEVICES FOLDER

With NUM_PROCESSES 1 it is the one-process reference (no `jax.distributed`). Every process
trains, over all processes' devices (`devices=jax.devices()`):

  sum      2 epochs of combine="sum", recorded in the run FOLDER/run;
  pcgrad   2 epochs of combine="pcgrad", no run, batches fed from the host (each process
           gathers only its own rows);
  resumed  (several processes only) the sum run again after its epoch-1 checkpoint is
           deleted: it resumes after epoch 0 and trains epoch 1 again.

and writes FOLDER/out_{PROCESS_ID}.npz: each fit's parameters (leaves flattened and
concatenated), pcgrad's test probabilities (`mt.predict`, on this process's default device),
the epoch times of `sum` and `resumed`, and the global device count.
"""

from __future__ import annotations

import os
import shutil
import sys

process_id, processes, port, local, folder = sys.argv[1:6]
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={int(local)}"
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["MTJAX_NO_COMPILATION_CACHE"] = "1"
tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [tests, os.path.dirname(tests)]  # tiny_training, and mtjax itself

import jax  # noqa: E402
import numpy as np  # noqa: E402

if int(processes) > 1:
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=int(processes),
        process_id=int(process_id),
        initialization_timeout=60,
    )

from tiny_training import LOUD, WORD, SmallNet, dataset  # noqa: E402

import mtjax as mt  # noqa: E402
from mtjax.train import distributed, epochs  # noqa: E402


def two_datasets(n: int, seed: int):
    return mt.concat([dataset(n, WORD, "words", seed), dataset(n, LOUD, "loudness", seed + 1)])


train, test = two_datasets(32, 0), two_datasets(8, 7)
default_bytes = epochs.DEVICE_BYTES
run = mt.runs.Run.at(os.path.join(folder, "run"))


def fit(combine: str, recorded: bool, host_fed: bool = False):
    epochs.DEVICE_BYTES = -1 if host_fed else default_bytes
    return mt.fit(
        SmallNet(train.tasks),
        train,
        test,
        epochs=2,
        batch_size=16,
        combine=combine,
        batches=mt.batching.every_task(),
        early_stop=None,
        devices=jax.devices(),
        run=run if recorded else None,
        max_to_keep=2,
        progress=False,
    )


def flat(trained) -> np.ndarray:
    leaves = jax.tree.leaves(distributed.host(trained.params))
    return np.concatenate([np.ravel(a) for a in leaves])


summed = fit("sum", recorded=True)
pcgrad = fit("pcgrad", recorded=False, host_fed=True)
resumed = summed  # the reference does not resume
if int(processes) > 1:
    distributed.barrier("test: run written")
    if distributed.is_primary():
        shutil.rmtree(run.checkpoints / "1")  # as if killed before epoch 1's checkpoint
    distributed.barrier("test: epoch 1 deleted")
    resumed = fit("sum", recorded=True)
np.savez(
    os.path.join(folder, f"out_{process_id}.npz"),
    sum=flat(summed),
    pcgrad=flat(pcgrad),
    predicted=np.concatenate([p.ravel() for p in mt.predict(pcgrad, test).values()]),
    resumed=flat(resumed),
    seconds_sum=[r["seconds"] for r in summed.history],
    seconds_resumed=[r["seconds"] for r in resumed.history],
    devices=len(jax.devices()),
)
