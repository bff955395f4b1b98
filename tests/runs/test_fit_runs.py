"""fit(run=...): the run folder, TensorBoard read-back, exact resume after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tiny_training import SmallNet, three_datasets

import mtjax as mt
from mtjax import runs

HERE = Path(__file__).parents[1]  # tests/, where tiny_training.py is


def identical(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(jnp.all(x == y)), a, b)))


def test_run_folder_holds_config_events_reports_plots_checkpoints(tmp_path):
    trn, tst = three_datasets(n=80), three_datasets(n=30, seed=10)
    run = runs.Run(tmp_path, "three-tasks")
    trained = mt.fit(
        SmallNet(trn.tasks),
        trn,
        tst,
        epochs=3,
        run=run,
        progress=False,
        combine=mt.losses.dwa(),
        conflicts=True,  # a loss-level combiner: probed on each epoch's first batch
    )
    config = json.loads((run.path / "config.json").read_text())
    assert [t["name"] for t in config["tasks"]] == ["word", "loud", "tags"]
    assert config["model"]["name"] == "SmallNet" and config["batch_size"] == 32
    assert json.loads((run.path / "history.json").read_text()) == json.loads(
        json.dumps(list(trained.history))
    )
    kept = sorted(int(p.name) for p in run.checkpoints.iterdir() if p.name.isdigit())
    assert kept == sorted({trained.best_epoch, 2})  # by default the chosen and the last
    report = runs.read_reports(run, 2, "test")["word"]
    assert report["support"] == 30 and "confusion_matrix" in report
    assert {"learning_curves.png", "weights.png"} <= {p.name for p in run.plots.iterdir()}

    events = EventAccumulator(str(run.events), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "train/loss",
        "train/word/loss",
        "train/weights/tags",
        "train/learning_rate",
        "validation/loss",
        "test/word/accuracy",
        "test/tags/micro_f1",
        "test/loud/macro_f1",
        "train/conflict/word/loud",
    } <= tags
    steps = [e.step for e in events.Scalars("test/word/accuracy")]
    values = [e.value for e in events.Scalars("test/word/accuracy")]
    assert steps == [0, 1, 2]
    np.testing.assert_allclose(
        values, [r["test/word/accuracy"] for r in trained.history], rtol=1e-6
    )
    conflict = [e.value for e in events.Scalars("train/conflict/word/loud")]
    assert all(-1.0 <= c <= 1.0 for c in conflict)
    assert "test/word/confusion" in events.Tags()["images"]


def test_other_settings_cannot_resume_the_run(tmp_path):
    trn = three_datasets(n=40)
    run = runs.Run(tmp_path, "r")
    mt.fit(SmallNet(trn.tasks), trn, epochs=1, run=run, progress=False, early_stop=None)
    with pytest.raises(ValueError, match="batch_size"):
        mt.fit(
            SmallNet(trn.tasks),
            trn,
            epochs=1,
            batch_size=16,
            run=run,
            progress=False,
            early_stop=None,
        )
    # mixed() is the default schedule, as the bare factory is: the same run, resumed (done)
    again = mt.fit(
        SmallNet(trn.tasks),
        trn,
        epochs=1,
        run=run,
        progress=False,
        early_stop=None,
        batches=mt.batching.mixed(),
    )
    assert len(again.history) == 1
    with pytest.raises(ValueError, match=r"\(batches differ\)"):
        mt.fit(
            SmallNet(trn.tasks),
            trn,
            epochs=1,
            run=run,
            progress=False,
            early_stop=None,
            batches=mt.batching.balanced(per="task"),
        )
    config = runs.read_config(run)
    assert config["batches"] == "mtjax.train.schedules.mixed"


def test_kill9_then_resume_ends_bit_identical_to_an_uninterrupted_run(tmp_path):
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(HERE)!r})
        import mtjax as mt
        from mtjax import runs
        from tiny_training import SmallNet, three_datasets
        trn = three_datasets(n=200)
        mt.fit(SmallNet(trn.tasks), trn, epochs=8, run=runs.Run({str(tmp_path)!r}, "killed"),
               progress=False, early_stop=None, combine=mt.losses.pcgrad())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    marker = tmp_path / "killed" / "checkpoints" / "2"
    deadline = time.time() + 120
    while time.time() < deadline and not marker.exists() and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert marker.exists()
    saved = json.loads((tmp_path / "killed" / "history.json").read_text())
    assert 3 <= len(saved) < 8  # stopped part-way

    trn = three_datasets(n=200)
    settings = dict(epochs=8, progress=False, early_stop=None, combine=mt.losses.pcgrad())
    resumed = mt.fit(SmallNet(trn.tasks), trn, run=runs.Run(tmp_path, "killed"), **settings)
    straight = mt.fit(SmallNet(trn.tasks), trn, **settings)
    assert len(resumed.history) == 8
    assert identical(resumed.params, straight.params)
    assert identical(resumed.opt_state, straight.opt_state)
    assert [r["train/loss"] for r in resumed.history] == [r["train/loss"] for r in straight.history]
    assert [r["learning_rate"] for r in resumed.history] == [
        r["learning_rate"] for r in straight.history
    ]


def test_evaluate_a_saved_run_without_the_model_object(tmp_path):
    trn, tst = three_datasets(n=60), three_datasets(n=30, seed=10)
    run = runs.Run(tmp_path, "cnn")
    model = mt.models.HardSharingCNN(trn.tasks, channels=(4, 8))
    trained = mt.fit(model, trn, epochs=2, run=run, progress=False, early_stop=None, max_to_keep=2)
    every = mt.evaluate(run, tst)  # the model is rebuilt from config.json
    assert sorted(every) == [0, 1]
    direct = mt.evaluate(trained, tst)
    assert every[1]["word"]["accuracy"] == direct["word"]["accuracy"]
    assert every[1]["tags"]["loss"] == pytest.approx(direct["tags"]["loss"], rel=1e-6)
    assert runs.read_reports(run, 0, "evaluation")["loud"]["support"] == 30
    one = mt.evaluate(run, tst, epoch=0)
    assert one["word"] == every[0]["word"]
    with pytest.raises(FileNotFoundError, match="saved epochs: \\[0, 1\\]"):
        mt.evaluate(run, tst, epoch=5)
    importable = runs.Run(tmp_path, "importable")  # a user's module that can be imported
    mt.fit(SmallNet(trn.tasks), trn, epochs=1, run=importable, progress=False, early_stop=None)
    with pytest.raises(ValueError, match="not a known model"):
        mt.evaluate(importable, tst, epoch=0)  # a run folder never chooses code
    assert "word" in mt.evaluate(importable, tst, epoch=0, model=SmallNet)

    class Local(SmallNet):  # defined where no import can find it
        pass

    custom = runs.Run(tmp_path, "custom")
    mt.fit(Local(trn.tasks), trn, epochs=1, run=custom, progress=False, early_stop=None)
    with pytest.raises(ValueError, match="pass model="):
        mt.evaluate(custom, tst)
    assert "word" in mt.evaluate(custom, tst, model=Local(trn.tasks), epoch=0)


def test_config_records_the_resolved_defaults(tmp_path):
    trn = three_datasets(n=60)
    run = runs.Run(tmp_path, "defaults")
    mt.fit(SmallNet(trn.tasks), trn, epochs=3, run=run, progress=False, early_stop=None)
    config = runs.read_config(run)
    steps = -(-len(trn) // 32)  # the default batch of 32, mixed(): every row once
    assert config["combine"] == "sum"
    assert config["optimizer"] == {
        "name": "adamw",
        "weight_decay": 1e-4,
        "learning_rate": {
            "schedule": "warmup_cosine_decay",
            "init": 0.0,
            "peak": 1e-3,
            "warmup_steps": 1,  # one epoch, but at most a tenth of the 3 x 6 steps
            "decay_steps": 3 * steps,
            "end": 1e-5,
        },
    }
    assert steps == 6 and config["chosen_epoch"] == 2 and config["chosen_by"] == "last epoch"
