"""One run, one model: the recorder records the chosen epoch, and every row reports it.

Histories are made by hand; in each, every task and metric peaks at a different epoch, so a
row that picked its own best epoch (or one picked on the test side) would show a value
other than the chosen epoch's.
"""

from __future__ import annotations

import pytest

from mtjax import runs
from mtjax.runs import folder
from mtjax.tasks import Task

SEX = Task("sex", ("f", "m"), "binary")
TAGS = Task("tags", ("bird", "car", "rain"), "multilabel")
TASKS = (SEX, TAGS)

# epoch -> value of each split/task/metric; each key's best epoch differs from the others'
PEAKS = {
    "validation/loss": [1.0, 0.5, 0.75, 0.875],  # lowest at epoch 1: the chosen epoch
    "validation/sex/loss": [0.5, 0.625, 0.25, 0.75],
    "validation/sex/accuracy": [0.5, 0.625, 0.75, 0.875],
    "validation/sex/macro_f1": [0.875, 0.5, 0.625, 0.75],
    "validation/tags/loss": [0.75, 0.5, 0.625, 0.25],
    "validation/tags/micro_f1": [0.625, 0.5, 0.875, 0.75],
    "validation/tags/macro_f1": [0.5, 0.375, 0.25, 0.875],
    "test/sex/loss": [0.25, 0.5, 0.375, 0.625],
    "test/sex/accuracy": [0.875, 0.5, 0.625, 0.75],
    "test/sex/macro_f1": [0.5, 0.625, 0.875, 0.75],
    "test/tags/loss": [0.625, 0.75, 0.5, 0.25],
    "test/tags/micro_f1": [0.5, 0.25, 0.75, 0.875],
    "test/tags/macro_f1": [0.75, 0.5, 0.375, 0.875],
}


def history(with_validation: bool = True) -> list[dict]:
    kept = {k: v for k, v in PEAKS.items() if with_validation or not k.startswith("validation")}
    return [{"epoch": e, "train/loss": 1.0} | {k: v[e] for k, v in kept.items()} for e in range(4)]


def rows_of(comparison) -> dict[tuple[str, str], dict]:
    return {(r["task"], r["metric"]): r for r in comparison.rows}


@pytest.fixture
def recorded(tmp_path):
    """A run opened and closed through the recorder `fit` uses, chosen epoch 1."""
    run = runs.Run(tmp_path, "chosen")
    config = {"tasks": [t.to_json() for t in TASKS], "seed": 0, "resume_key": {"rows": 4}}
    recorder = run.recorder(config, TASKS, keep_best="validation/loss")
    assert recorder.restore(None) is None  # a new run
    runs.write_history(run, history())
    recorder.close(history(), chosen_epoch=1)
    return run


def test_the_recorder_writes_the_chosen_epoch_and_what_chose_it(recorded):
    config = runs.read_config(recorded)
    assert (config["chosen_epoch"], config["chosen_by"]) == (1, "validation/loss")
    assert config["stopping_metric"] == "validation/loss" and config["max_to_keep"] is None
    assert config["resume_key"] == {"rows": 4}  # what was given stays as it was
    assert folder.chosen_epoch(recorded, config, runs.read_history(recorded)) == (
        1,
        "validation/loss",
        True,
    )
    assert {"learning_curves.png", "scores.png"} <= {p.name for p in recorded.plots.iterdir()}


@pytest.mark.parametrize("split", ["test", "validation"])
def test_every_row_of_a_run_reports_its_chosen_epoch(recorded, split):
    comparison = runs.compare([recorded], split=split)
    rows = rows_of(comparison)
    assert sorted(rows) == sorted(
        (t, m)
        for t, h in (("sex", "accuracy"), ("tags", "micro_f1"))
        for m in ("loss", h, "macro_f1")
    )
    for (task, metric), row in rows.items():
        assert row["epochs"] == [1] and row["chosen_by"] == ["validation/loss"]
        assert row["mean"] == PEAKS[f"{split}/{task}/{metric}"][1], (task, metric)
    lines = [s.split() for s in comparison.text.splitlines()]
    shown = [cells for cells in lines if cells[:1] == ["chosen"]]
    assert len(shown) == 6 and all(cells[5:7] == ["1", "validation/loss"] for cells in shown)


def test_closing_without_a_chosen_epoch_records_the_last(tmp_path):
    run = runs.Run(tmp_path, "last")
    config = {"tasks": [t.to_json() for t in TASKS], "resume_key": {}}
    recorder = run.recorder(config, TASKS, keep_best="validation/loss")
    recorder.restore(None)
    recorder.close(history())  # how the loop calls it before it passes chosen_epoch
    config = runs.read_config(run)
    assert (config["chosen_epoch"], config["chosen_by"]) == (3, "last epoch")


def test_a_run_without_validation_reports_its_last_epoch_never_a_test_picked_one(tmp_path):
    # test/sex/accuracy peaks at epoch 0 and test/sex/loss is lowest there: a test-picked
    # "best" would be epoch 0; the run trained every epoch (no validation): its model is
    # the last epoch's.
    plain = runs.Run(tmp_path, "no-validation")
    runs.write_config(plain, {"tasks": [t.to_json() for t in TASKS]})
    runs.write_history(plain, history(with_validation=False))
    folder.write_chosen_epoch(plain, 3, by="last epoch")
    old = runs.Run(tmp_path, "old-folder")  # written before run folders recorded it
    runs.write_config(old, {"tasks": [t.to_json() for t in TASKS]})
    runs.write_history(old, history(with_validation=False))
    for run, by in ((plain, "last epoch"), (old, "last epoch (none recorded)")):
        comparison = runs.compare([run])
        for (task, metric), row in rows_of(comparison).items():
            assert row["epochs"] == [3] and row["chosen_by"] == [by]
            assert row["mean"] == PEAKS[f"test/{task}/{metric}"][3]
        assert by in comparison.text
        validation = runs.compare([run], split="validation")
        assert all(r["n"] == 0 for r in validation.rows)  # no validation numbers: none shown


def test_a_recorded_epoch_the_history_lacks_is_an_error(tmp_path):
    run = runs.Run(tmp_path, "broken")
    runs.write_config(run, {"tasks": ["sex"]})
    runs.write_history(run, history()[:2])
    folder.write_chosen_epoch(run, 3, by="validation/loss")
    with pytest.raises(ValueError, match="records chosen epoch 3, but .* holds epochs \\[0, 1\\]"):
        runs.compare([run])
    with pytest.raises(ValueError, match="the chosen epoch must be >= 0"):
        folder.write_chosen_epoch(run, -1, by="last epoch")


def test_folds_of_a_group_each_report_their_own_chosen_epoch(tmp_path):
    made = []
    for fold, chosen in ((0, 2), (1, 0)):
        run = runs.Run(tmp_path, f"g/fold{fold}")
        runs.write_config(run, {"tasks": ["sex"], "group": "g", "fold": fold})
        runs.write_history(run, history())
        folder.write_chosen_epoch(run, chosen, by="validation/loss")
        made.append(run)
    rows = rows_of(runs.compare(made))
    for (task, metric), row in rows.items():
        series = PEAKS[f"test/{task}/{metric}"]
        assert row["epochs"] == [2, 0] and row["values"] == [series[2], series[0]]
        assert row["mean"] == (series[2] + series[0]) / 2
