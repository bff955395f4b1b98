"""Names in an experiment file that become path parts are refused before anything is written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mtjax import cli
from mtjax import experiments as ex


def tree(folder: Path) -> set[str]:
    """Every path below `folder`, relative."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def experiment(
    tmp_path: Path, *, name: str = "exp", dataset: str = "words", extra: str = ""
) -> Path:
    """A folder-reader experiment under tmp_path/lab; its root exists (the reader is built)."""
    (tmp_path / "lab" / "data" / "words").mkdir(parents=True, exist_ok=True)
    path = tmp_path / "lab" / "exp.toml"
    path.write_text(
        f"""
        name = {json.dumps(name)}
        output = "out"
        [[datasets]]
        reader = "folder"
        root = "data/words"
        name = {json.dumps(dataset)}
        task = "word"
        {extra}
        """
    )
    return path


@pytest.mark.parametrize("bad", ["..", ".", "a/b", "../up", "a\\b", " words"])
def test_a_dataset_name_that_is_not_one_folder_is_refused(tmp_path, bad):
    path = experiment(tmp_path, dataset=bad)
    with pytest.raises(ex.ExperimentError) as err:
        ex.load(path)
    message = str(err.value)
    assert message.startswith(f"{path}: datasets[0].name: dataset name {bad!r} cannot name a")
    assert "\n" not in message


@pytest.mark.parametrize("bad", ["..", "../escape", "/abs", "a/../b", "a//b", "a\\b", "a/"])
def test_an_experiment_name_that_leaves_the_output_folder_is_refused(tmp_path, bad):
    path = experiment(tmp_path, name=bad)
    with pytest.raises(ex.ExperimentError, match=f"^{path}: name: experiment name "):
        ex.load(path)


def test_nested_experiment_names_are_kept(tmp_path):
    loaded = ex.load(experiment(tmp_path, name="lab/speech"))
    assert loaded.name == "lab/speech" and loaded.datasets[0]["name"] == "words"


def test_a_task_name_in_train_loss_that_is_not_one_folder_is_refused(tmp_path):
    path = experiment(tmp_path, extra='[train]\nloss = {"../w" = "binary_cross_entropy"}')
    with pytest.raises(
        ex.ExperimentError,
        match=r"^\S+: train\.loss\.\.\./w: task name '\.\./w' cannot name a file",
    ):
        ex.load(path)


def test_mtjax_run_writes_nothing_for_an_escaping_name(tmp_path, capsys):
    path = experiment(tmp_path, dataset="..")
    before = tree(tmp_path)
    assert cli.main(["run", str(path), "--quiet"]) == 2
    assert re.search(r"datasets\[0\]\.name: dataset name '\.\.' cannot", capsys.readouterr().err)
    good = experiment(tmp_path)
    assert cli.main(["run", str(good), "--name", "../x", "--quiet"]) == 2
    assert re.match(r"^mtjax: .*: name: experiment name '\.\./x'", capsys.readouterr().err)
    assert tree(tmp_path) == before  # no cache, run or data folder anywhere
