"""A run folder never chooses code: config.json names a model, mtjax builds only known ones."""

from __future__ import annotations

import json
import sys

import pytest
from tiny_training import three_datasets

import mtjax as mt
from mtjax import runs
from mtjax.train.models import HardSharingDNN


class LabDNN(HardSharingDNN):
    """A user's model class (the same parameters as its parent)."""


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A one-epoch run of mtjax's HardSharingDNN, its test rows and what fit returned."""
    trn, tst = three_datasets(n=48), three_datasets(n=20, seed=10)
    run = runs.Run(tmp_path_factory.mktemp("runs"), "dnn")
    model = HardSharingDNN(trn.tasks, hidden=(8,))
    trained = mt.fit(model, trn, epochs=1, run=run, progress=False, early_stop=None)
    return run, tst, trained


def crafted(run: runs.Run, **model) -> dict:
    """The run's config.json with its "model" table replaced by `model`; the old config."""
    path = run.path / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "model": model}))
    return config


def test_a_legit_run_of_mtjax_dnn_is_rebuilt_and_evaluated(trained_run):
    run, tst, trained = trained_run
    again = mt.evaluate(run, tst, epoch=0)
    direct = mt.evaluate(trained, tst)
    assert again["word"]["accuracy"] == direct["word"]["accuracy"]
    assert again["tags"]["loss"] == pytest.approx(direct["tags"]["loss"], rel=1e-6)
    assert runs.model_from_run_config(runs.read_config(run)) == trained.model


@pytest.mark.parametrize(
    "model",
    [
        {"module": "subprocess", "name": "run", "args": "touch {marker}", "shell": True},
        {"module": "os", "name": "system", "command": "touch {marker}"},
        {"module": "builtins", "name": "exec", "source": "open({marker!r}, 'w').close()"},
    ],
    ids=["subprocess.run", "os.system", "exec"],
)
def test_a_crafted_config_naming_a_function_runs_nothing(trained_run, tmp_path, model):
    run, tst, _ = trained_run
    marker = tmp_path / "marker"
    model = {k: v.format(marker=str(marker)) if isinstance(v, str) else v for k, v in model.items()}
    original = crafted(run, **model)
    try:
        named = f"{model['module']}.{model['name']}"
        with pytest.raises(ValueError, match=f"names model {named}, which is not a known model"):
            mt.evaluate(run, tst, epoch=0, split="crafted")
        with pytest.raises(ValueError, match=r"pass model=\.\.\. .* or models=\[\.\.\.\]"):
            runs.model_from_run_config(runs.read_config(run))
    finally:
        runs.write_config(run, original)
    assert not marker.exists()  # the command did not run
    assert not (run.reports / "epoch_000" / "crafted").exists()  # nothing was evaluated


def test_a_crafted_module_path_is_never_imported(trained_run, tmp_path, monkeypatch):
    run, tst, trained = trained_run
    marker = tmp_path / "imported"
    (tmp_path / "lab_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    original = crafted(run, **{**original_model(run), "module": "lab_evil"})
    try:
        # the class name is mtjax's: mtjax's own class is built, the named module is not imported
        assert mt.evaluate(run, tst, epoch=0)["word"] == mt.evaluate(trained, tst)["word"]
        crafted(run, **{**original_model(run), "module": "lab_evil", "name": "Evil"})
        with pytest.raises(ValueError, match="names model lab_evil.Evil, which is not a known"):
            mt.evaluate(run, tst, epoch=0)
    finally:
        runs.write_config(run, original)
    assert not marker.exists() and "lab_evil" not in sys.modules


def original_model(run: runs.Run) -> dict:
    return dict(runs.read_config(run)["model"])


def test_a_users_class_is_rebuilt_only_when_passed(trained_run):
    run, tst, trained = trained_run
    original = crafted(run, **{**original_model(run), "name": "LabDNN", "module": __name__})
    try:
        with pytest.raises(ValueError, match=f"names model {__name__}.LabDNN, which is not a"):
            mt.evaluate(run, tst, epoch=0)
        expected = mt.evaluate(trained, tst)["word"]
        assert mt.evaluate(run, tst, epoch=0, model=LabDNN)["word"] == expected  # the class
        assert run.evaluate(tst, epoch=0, models=[LabDNN])["word"] == expected  # allowed classes
        rebuilt = runs.model_from_run_config(runs.read_config(run), models=(LabDNN,))
        assert type(rebuilt) is LabDNN and rebuilt.hidden == (8,)
        with pytest.raises(ValueError, match="models= takes nn.Module subclasses, got <built-in"):
            runs.model_from_run_config(runs.read_config(run), models=(print,))
    finally:
        runs.write_config(run, original)
