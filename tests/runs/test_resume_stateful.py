"""Every combiner with state resumes exactly: a run stopped after its first epoch and
resumed ends bit-identical to one never stopped (parameters, optimizer and combiner state,
history). The stop is an exception raised once epoch 0 is recorded, so the run folder is
as a killed process leaves it (`test_fit_runs` kills one for real).
"""

from __future__ import annotations

import gc

import pytest
import resume_child
from test_resume_faults import resumed, same_value, straight

from mtjax.runs import recorder

STATEFUL = [  # combiners whose state (or trainable parameters) carries over between steps
    ("famo", {}),
    ("stch", {"warmup_epochs": 1}),  # warm-up in the first epoch, the nadir point after it
    ("excess_mtl", {}),
    ("db_mtl", {}),
    ("ema", {"combiner": "dwa"}),
    ("gradvac", {}),
    ("imtl_l", {}),
    ("modo", {}),
    ("moco", {}),  # needs init(n_tasks, shared=...) from the trainer (state.combiner_state)
    ("dwa", {}),
    ("gradnorm", {}),
    ("uncertainty_weighting", {}),
]


def test_every_stateful_combiner_in_the_catalogue_is_resumed_here():
    """A combiner with state or trainable parameters that is not in STATEFUL fails this."""
    import jax
    import jax.numpy as jnp

    from mtjax.train.combiners import catalogue

    stateful = set()
    for name in catalogue.COMBINERS:
        options = {"weights": [1.0, 1.0, 1.0]} if name == "weighted" else {}
        combiner = catalogue.combiner_from_config(name, **options)
        try:
            state = combiner.init(3)
        except ValueError:  # moco: its state is shaped like the shared parameters
            state = combiner.init(3, shared={"w": jnp.zeros(4)})  # type: ignore[call-arg]
        if jax.tree.leaves(state) or combiner.init_params is not None:
            stateful.add(name)
    assert stateful == {name for name, _ in STATEFUL}


class StoppedError(Exception):
    """Raised by the patched recorder once epoch 0 is on disk."""


@pytest.fixture(autouse=True)
def no_figures(monkeypatch):
    resume_child.without_figures(monkeypatch.setattr)


@pytest.mark.parametrize("name, options", STATEFUL, ids=[n for n, _ in STATEFUL])
def test_a_stopped_run_resumes_bit_identical(tmp_path, monkeypatch, name, options):
    spec = {"root": str(tmp_path), "name": name, "epochs": 2, "lr": 0.01}
    spec |= {"combine": name, "combine_options": options}
    record_epoch = recorder.Recorder.epoch

    def record_then_stop(self, epoch, *args, **kwargs):
        record_epoch(self, epoch, *args, **kwargs)
        if epoch == 0:
            raise StoppedError

    monkeypatch.setattr(recorder.Recorder, "epoch", record_then_stop)
    with pytest.raises(StoppedError):
        resumed(spec)
    monkeypatch.setattr(recorder.Recorder, "epoch", record_epoch)
    gc.collect()  # the stopped fit's recorder, and with it the run's lock
    got = resumed(spec)
    assert [r["epoch"] for r in got.history] == [0, 1]
    same_value(got, straight(spec))
