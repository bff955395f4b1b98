"""The epoch's hot loop makes no implicit host<->device transfer (big_vision runs whole
trainings under `jax.transfer_guard("disallow")`): every copy is an explicit
`jax.device_put` or `jax.device_get`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_training import SmallNet, three_datasets

import mtjax as mt
from mtjax.train import epochs
from mtjax.train import step as step_module


@pytest.fixture(scope="module")
def data():
    return three_datasets(n=70)


def guard_epochs(monkeypatch) -> list[int]:
    """Wraps every epoch `fit` runs in `transfer_guard("disallow")`; returns the epochs run."""
    ran: list[int] = []
    runner = epochs.epoch_runner

    def guarded_runner(*args, **kwargs):
        run_epoch = runner(*args, **kwargs)

        def guarded(state, planned, epoch):
            with jax.transfer_guard("disallow"):
                state, step_metrics = run_epoch(state, planned, epoch)
                jax.block_until_ready((state, step_metrics))
            ran.append(epoch)
            return state, step_metrics

        return guarded

    monkeypatch.setattr(epochs, "epoch_runner", guarded_runner)
    return ran


def test_the_guard_catches_an_implicit_transfer():
    with jax.transfer_guard("disallow"):
        with pytest.raises(Exception, match="Disallowed host-to-device"):
            jnp.asarray(np.ones(3, np.float32))
        jax.device_put(np.ones(3, np.float32))  # explicit: allowed


@pytest.mark.parametrize(
    "runner", ["scan", "stepwise", "host-fed", "scan on a mesh", "host-fed on a mesh"]
)
def test_an_epoch_of_fit_makes_no_implicit_transfer(data, monkeypatch, runner):
    if runner == "stepwise":
        monkeypatch.setattr(step_module, "scan_is_slow", lambda *args: True)
    if runner == "scan":
        monkeypatch.setattr(step_module, "scan_is_slow", lambda *args: False)
    if runner.startswith("host-fed"):
        monkeypatch.setattr(epochs, "DEVICE_BYTES", 0)
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",)) if "mesh" in runner else None
    ran = guard_epochs(monkeypatch)
    trained = mt.fit(
        SmallNet(data.tasks), data, epochs=1, progress=False, early_stop=None, mesh=mesh
    )  # in memory, the default schedule
    assert ran == [0]
    assert len(trained.history) == 1 and np.isfinite(trained.history[0]["train/loss"])
