"""Run folders: JSON round trips, TensorBoard read-back, plots, comparison, unwritable roots.

Histories and reports are made by hand (no training). Numbers are dyadic fractions, exact in
float32 and float64, so TensorBoard values and means/stds compare with ==.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from scipy import stats

from mtjax import metrics, runs
from mtjax.runs import Run
from mtjax.tasks import Task

SEX = Task("sex", ("f", "m"), "binary")
GENRE = Task("genre", ("jazz", "rock", "pop"), "multiclass")
TAGS = Task("tags", ("bird", "car", "rain"), "multilabel")
TASKS = (SEX, GENRE, TAGS)
PNG = b"\x89PNG\r\n\x1a\n"


def reports_of(epoch: int) -> dict[str, dict]:
    """Real `task_report`s of small hand-made predictions, with a loss."""
    shift = 0.1 * epoch
    sex = metrics.task_report(
        SEX, np.array([[0.0], [1.0], [1.0], [0.0]]), np.array([[0.2], [0.7], [0.4 + shift], [0.1]])
    )
    genre = metrics.task_report(
        GENRE,
        np.eye(3)[[0, 1, 2, 1]],
        np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.5, 0.2, 0.3 + shift], [0.3, 0.6, 0.1]]),
    )
    tags = metrics.task_report(
        TAGS,
        np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]]),
        np.array([[0.9, 0.2, 0.4 + shift], [0.1, 0.8, 0.3], [0.6, 0.4, 0.2]]),
    )
    losses = {"sex": 0.5, "genre": 0.75, "tags": 0.25}
    return {
        name: {**r, "loss": losses[name] - epoch / 16}
        for name, r in (("sex", sex), ("genre", genre), ("tags", tags))
    }


def record(epoch: int) -> dict:
    """One flat history record in `fit`'s form, every number a dyadic fraction (but the lr)."""
    e = epoch / 8
    out = {
        "epoch": epoch,
        "seconds": 1.25,
        "learning_rate": 0.001 * (epoch + 1),
        "train/loss": 0.75 - e,  # the mean of the three tasks' losses
        "train/objective": 2.0 - e,
        "train/sex/loss": 0.5 - e,
        "train/genre/loss": 1.0 - e,
        "train/tags/loss": 0.75 - e,
        "train/weights/sex": 1.0,
        "train/weights/genre": 0.5 + e,
        "train/weights/tags": 0.25,
    }
    for split, offset in (("validation", 0.0625), ("test", 0.125)):
        out |= {
            f"{split}/loss": 1.5 - 2 * e + offset,
            f"{split}/score": 0.5 + e,
            f"{split}/sex/loss": 0.5 - e + offset,
            f"{split}/sex/accuracy": 0.5 + e,
            f"{split}/sex/macro_f1": 0.375 + e,
            f"{split}/genre/loss": 0.75 - e + offset,
            f"{split}/genre/accuracy": 0.25 + e,
            f"{split}/genre/macro_f1": 0.125 + e,
            f"{split}/tags/loss": 0.25 - e / 2 + offset,
            f"{split}/tags/micro_f1": 0.625 + e,
            f"{split}/tags/macro_f1": 0.5 + e,
        }
    return out


def nested(epoch: int) -> dict:
    """`record(epoch)` in the nested form of mtjax 0.1 run folders."""
    r = record(epoch)
    names = ("sex", "genre", "tags")
    old = {
        "epoch": epoch,
        "seconds": 1.25,
        "train": {
            "loss": r["train/objective"],  # 0.1's train loss was the combiner's objective
            "tasks": {n: r[f"train/{n}/loss"] for n in names},
            "weights": {n: r[f"train/weights/{n}"] for n in names},
        },
    }
    for split in ("validation", "test"):
        old[split] = {"loss": r[f"{split}/loss"], "score": r[f"{split}/score"]} | {
            n: {m: r[f"{split}/{n}/{m}"] for m in ("loss", h, "macro_f1")}
            for n, h in (("sex", "accuracy"), ("genre", "accuracy"), ("tags", "micro_f1"))
        }
    return old


HISTORY = [record(e) for e in range(3)]


def no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


# The run value and JSON files.


def test_run_is_a_frozen_value_of_paths(tmp_path):
    run = Run(tmp_path, "exp/fold0")
    assert run.path == tmp_path / "exp" / "fold0"
    assert (run.events, run.reports, run.plots, run.checkpoints) == tuple(
        run.path / part for part in ("events", "reports", "plots", "checkpoints")
    )
    assert Run(str(tmp_path), "exp/fold0") == run and Run.at(run.path).path == run.path
    assert not run.path.exists()  # nothing is made until written
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.name = "other"
    for bad in ("", ".", "../up", "/abs"):
        with pytest.raises(ValueError, match="run name"):
            Run(tmp_path, bad)


def test_config_and_history_round_trip_atomically(tmp_path):
    run = Run(tmp_path, "a")
    config = {
        "tasks": ["sex", "genre"],
        "group": "mt",
        "fold": 1,
        "lr": 0.001,
        "model": {"name": "cnn", "widths": [16, 32]},
        "early_stop": None,
    }
    assert runs.write_config(run, config) == run.path / "config.json"
    assert runs.read_config(run) == config
    runs.write_config(run, {**config, "fold": 2})  # replaced, not appended
    assert runs.read_config(run)["fold"] == 2
    runs.write_history(run, HISTORY)
    assert runs.read_history(run) == HISTORY
    assert no_temporaries(run.path)


def test_an_old_run_folders_nested_history_reads_back_flat(tmp_path):
    old, new = Run(tmp_path, "old"), Run(tmp_path, "new")
    for run, history in ((old, [nested(e) for e in range(3)]), (new, HISTORY)):
        runs.write_config(run, {"tasks": [t.to_json() for t in TASKS]})
        runs.write_history(run, history)
    assert (old.path / "history.json").read_text() != (new.path / "history.json").read_text()
    # Neither the lr nor the mean task loss was in mtjax 0.1's records.
    flat = [
        {k: v for k, v in r.items() if k not in ("learning_rate", "train/loss")} for r in HISTORY
    ]
    assert runs.read_history(old) == flat
    assert runs.compare([old]).rows == [
        {**r, "group": "old", "runs": [str(old.path)]} for r in runs.compare([new]).rows
    ]
    (old.path / "history.json").write_text('{"epoch": 0}')
    with pytest.raises(ValueError, match=f"{old.path / 'history.json'} is not a run history"):
        runs.read_history(old)


def test_check_resumable_names_every_differing_setting(tmp_path):
    run = Run(tmp_path, "a")
    key = {"model": "cnn", "model_settings": {"channels": [4, 8], "dropout": 0.1}, "batch_size": 32}
    runs.check_resumable(run, key)  # no folder yet: nothing to check
    runs.write_config(run, {"tasks": ["sex"]})
    runs.check_resumable(run, key)  # no resume_key recorded yet
    runs.write_config(run, {"tasks": ["sex"], "resume_key": key})
    runs.check_resumable(run, {**key, "model_settings": {"channels": (4, 8), "dropout": 0.1}})
    other = {**key, "batch_size": 16, "model_settings": {"channels": [4], "dropout": 0.1}}
    with pytest.raises(ValueError, match=r"\(batch_size, model_settings\.channels differ\)"):
        runs.check_resumable(run, other)
    runs.check_resumable(run, other, ignore=("batch_size", "model_settings"))
    runs.write_config(run, {"experiment": {"name": "x", "seed": 1}})
    runs.check_resumable(run, {"name": "y", "seed": 1}, entry="experiment", ignore=("name",))
    with pytest.raises(ValueError, match=rf"{run.path} holds a run with other settings \(seed"):
        runs.check_resumable(run, {"name": "x", "seed": 2}, entry="experiment")


def test_mean_std_text():
    from mtjax.runs.comparison import mean_std

    assert mean_std(0.75, 0.25, 2) == "0.7500 ± 0.2500"
    assert mean_std(0.75, 0.0, 1) == "0.7500"
    assert mean_std(float("nan"), 0.0, 3) == "-"
    assert runs.mean_std is mean_std


def test_config_is_json_only_and_a_failed_write_leaves_the_old_file(tmp_path):
    run = Run(tmp_path, "a")
    runs.write_config(run, {"tasks": ["sex"]})
    with pytest.raises(TypeError, match="only JSON values"):
        runs.write_config(run, {"tasks": ["sex"], "array": np.zeros(2)})
    assert runs.read_config(run) == {"tasks": ["sex"]}
    assert no_temporaries(run.path)


def test_reading_what_is_not_there_names_the_file(tmp_path):
    run = Run(tmp_path, "empty")
    with pytest.raises(FileNotFoundError, match=str(run.path / "config.json")):
        runs.read_config(run)
    with pytest.raises(FileNotFoundError, match=str(run.path / "history.json")):
        runs.read_history(run)
    run.path.mkdir()
    (run.path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        runs.read_config(run)


def test_reports_round_trip_per_epoch_split_and_task(tmp_path):
    run = Run(tmp_path, "a")
    assert runs.report_epochs(run) == []
    for epoch in range(3):
        for split in ("validation", "test"):
            folder = runs.write_reports(run, epoch, split, reports_of(epoch))
            assert folder == run.reports / f"epoch_{epoch:03d}" / split
    assert sorted(p.name for p in (run.reports / "epoch_001" / "test").iterdir()) == [
        "genre.json",
        "sex.json",
        "tags.json",
    ]
    assert runs.report_epochs(run) == [0, 1, 2]
    assert runs.report_splits(run, 1) == ["test", "validation"]
    for epoch in range(3):
        assert runs.read_reports(run, epoch, "test") == reports_of(epoch)
    assert reports_of(1) != reports_of(2)
    with pytest.raises(FileNotFoundError, match=r"epochs with reports: \[0, 1, 2\]"):
        runs.read_reports(run, 7, "test")
    with pytest.raises(ValueError, match="task name 'a/b'"):
        runs.write_reports(run, 0, "test", {"a/b": {}})
    assert no_temporaries(run.path)


# TensorBoard.


def expected_scalars(epoch: int) -> dict[str, float]:
    """Tag -> value of `record(epoch)`, written out by hand."""
    r = record(epoch)
    out = {
        "train/loss": r["train/loss"],
        "train/objective": r["train/objective"],
        "train/learning_rate": 0.001 * (epoch + 1),
        "train/conflict/sex/genre": -0.25,
        "train/conflict/sex/tags": 0.5,
        "train/conflict/genre/tags": 0.125 * epoch,
    }
    for name in ("sex", "genre", "tags"):
        out[f"train/{name}/loss"] = r[f"train/{name}/loss"]
        out[f"train/weights/{name}"] = r[f"train/weights/{name}"]
    for split in ("validation", "test"):
        out[f"{split}/loss"] = r[f"{split}/loss"]
        out[f"{split}/score"] = r[f"{split}/score"]
        for name, headline in (("sex", "accuracy"), ("genre", "accuracy"), ("tags", "micro_f1")):
            for metric in ("loss", headline, "macro_f1"):
                out[f"{split}/{name}/{metric}"] = r[f"{split}/{name}/{metric}"]
    return out


def test_tensorboard_events_read_back_with_tensorboards_reader(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = Run(tmp_path, "a")
    writer = runs.open_events(run)
    for epoch in range(3):
        conflicts = {
            ("sex", "genre"): -0.25,
            ("sex", "tags"): 0.5,
            ("genre", "tags"): 0.125 * epoch,
        }
        reports = {"validation": reports_of(epoch), "test": reports_of(epoch)}
        runs.log_epoch(writer, record(epoch), TASKS, reports, conflicts=conflicts)
    runs.close_events(writer)

    events = EventAccumulator(str(run.events), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    assert sorted(tags["scalars"]) == sorted(expected_scalars(0))
    assert {
        "validation/tags/micro_f1",
        "test/sex/accuracy",
        "train/conflict/sex/genre",
        "train/weights/genre",
        "train/learning_rate",
        "test/loss",
    } <= set(tags["scalars"])
    assert "test/tags/accuracy" not in tags["scalars"]
    for tag in tags["scalars"]:
        got = [(e.step, e.value) for e in events.Scalars(tag)]
        want = [(epoch, expected_scalars(epoch)[tag]) for epoch in range(3)]
        assert [s for s, _ in got] == [0, 1, 2], tag
        np.testing.assert_array_equal(
            [v for _, v in got], np.float32([v for _, v in want]), err_msg=tag
        )
    image_tags = [f"{s}/{t.name}/confusion" for s in ("validation", "test") for t in TASKS]
    assert sorted(tags["images"]) == sorted(image_tags)
    for tag in image_tags:
        images = events.Images(tag)
        assert [i.step for i in images] == [0, 1, 2]
        for image in images:
            assert image.width > 0 and image.height > 0
            assert image.encoded_image_string.startswith(PNG)


def test_a_resumed_run_adds_a_file_and_hides_the_redone_epochs(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = Run(tmp_path, "a")
    writer = runs.open_events(run)
    for epoch in range(3):  # interrupted after logging epoch 2, its checkpoint lost
        runs.log_epoch(writer, record(epoch), TASKS)
    runs.close_events(writer)
    writer = runs.open_events(run, purge_step=2)  # resumed within the same second
    redone = {**record(2), "train/loss": 0.5}
    runs.log_epoch(writer, redone, TASKS)
    runs.close_events(writer)

    assert len(list(run.events.iterdir())) == 2
    events = EventAccumulator(str(run.events), size_guidance={"scalars": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [
        (0, 0.75),
        (1, 0.625),
        (2, 0.5),
    ]


def test_scalar_tags_are_the_ones_tensorboard_stores():
    odd = Task("speech commands", ("no", "yes"), "binary")
    rec = {"epoch": 0, "seconds": 2.0, "train/loss": 1.0, f"train/{odd.name}/loss": 0.5}
    tags = runs.scalars(rec, (odd, SEX), conflicts={(odd.name, "sex"): 0.25})
    assert tags == {
        "train/loss": 1.0,
        "train/speech_commands/loss": 0.5,
        "train/conflict/speech_commands/sex": 0.25,
    }


# Plots.


def test_plots_are_valid_pngs(tmp_path):
    run = Run(tmp_path, "a")
    reports = {"validation": reports_of(2), "test": reports_of(2)}
    paths = runs.write_plots(run, HISTORY, TASKS, reports)
    names = {"learning_curves.png", "scores.png", "weights.png"} | {
        f"confusion_{s}_{t.name}.png" for s in ("validation", "test") for t in TASKS
    }
    assert {p.name for p in paths} == names
    assert {p.name for p in run.plots.iterdir()} == names
    for path in paths:
        assert path.read_bytes()[:8] == PNG
        pixels = matplotlib.image.imread(path)
        assert pixels.ndim == 3 and pixels.shape[0] > 0 and pixels.shape[1] > 0


def test_plots_cope_with_missing_splits(tmp_path):
    history = [{k: v for k, v in record(e).items() if not k.startswith("test/")} for e in range(2)]
    paths = runs.write_plots(Run(tmp_path, "a"), history, (SEX,))
    assert all(p.read_bytes()[:8] == PNG for p in paths)


# Comparison.


def history_of(n: int, **values: list[float]) -> list[dict]:
    """n records holding `split/task/metric=[one value per epoch]` (underscored keys)."""
    out = [{"epoch": e, "train/loss": 1.0} for e in range(n)]
    for key, series in values.items():
        for r, v in zip(out, series):
            r[key.replace("__", "/")] = v
    return out


def make_run(root: Path, name: str, history: list[dict], **config) -> Run:
    run = Run(root, name)
    runs.write_config(run, config)
    runs.write_history(run, history)
    return run


def row(comparison, group, task, metric) -> dict:
    (found,) = [
        r for r in comparison.rows if (r["group"], r["task"], r["metric"]) == (group, task, metric)
    ]
    return found


def test_folds_of_a_group_give_mean_and_sample_std_at_each_runs_chosen_epoch(tmp_path):
    fold0 = history_of(
        3,
        validation__sex__accuracy=[0.5, 0.75, 0.625],
        test__sex__accuracy=[0.25, 0.5, 0.75],
        validation__sex__loss=[1.0, 0.5, 0.75],
        test__sex__loss=[1.0, 0.75, 0.5],
        validation__sex__macro_f1=[0.5, 0.5, 0.5],
        test__sex__macro_f1=[0.5, 0.25, 0.5],
    )
    fold1 = history_of(
        3,
        validation__sex__accuracy=[0.75, 0.5, 0.5],
        test__sex__accuracy=[1.0, 0.25, 0.5],
        validation__sex__loss=[0.75, 1.0, 0.25],
        test__sex__loss=[0.5, 1.0, 0.25],
        validation__sex__macro_f1=[0.25, 0.5, 0.5],
        test__sex__macro_f1=[0.5, 0.75, 0.5],
    )
    a = make_run(tmp_path, "mt-0", fold0, tasks=["sex"], group="mt", fold=0)
    b = make_run(tmp_path, "mt-1", fold1, tasks=["sex"], group="mt", fold=1)
    runs.write_chosen_epoch(a, 1, by="validation/loss")  # lowest validation loss of each
    runs.write_chosen_epoch(b, 2, by="validation/loss")
    comparison = runs.compare([a, b])

    assert [(r["task"], r["metric"]) for r in comparison.rows] == [
        ("sex", "loss"),
        ("sex", "accuracy"),
        ("sex", "macro_f1"),
    ]
    for r in comparison.rows:  # one epoch per run, the same for every metric
        assert r["epochs"] == [1, 2] and r["chosen_by"] == ["validation/loss"] * 2
        assert r["n"] == 2 and r["folds"] == [0, 1] and r["seeds"] == [0, 0]
    accuracy = row(comparison, "mt", "sex", "accuracy")
    assert accuracy["values"] == [0.5, 0.5] and (accuracy["mean"], accuracy["std"]) == (0.5, 0.0)
    loss = row(comparison, "mt", "sex", "loss")  # test 0.75 and 0.25; sample std, ddof 1
    assert loss["mean"] == 0.5 and loss["std"] == pytest.approx(np.std([0.75, 0.25], ddof=1))
    f1 = row(comparison, "mt", "sex", "macro_f1")  # test 0.25 and 0.5
    assert f1["mean"] == 0.375 and f1["std"] == pytest.approx(np.std([0.25, 0.5], ddof=1))
    assert "0.5000 ± 0.0000" in comparison.text and "1,2" in comparison.text

    on_validation = row(runs.compare([a, b], split="validation"), "mt", "sex", "accuracy")
    assert on_validation["values"] == [0.75, 0.5]  # validation at the same epochs

    old = make_run(tmp_path, "old", fold0, tasks=["sex"])  # records no chosen epoch
    (last,) = [r for r in runs.compare([old]).rows if r["metric"] == "accuracy"]
    assert last["epochs"] == [2] and last["mean"] == 0.75  # the last epoch, never test-picked
    assert "last epoch (none recorded)" in runs.compare([old]).text


def test_multi_task_against_single_task_per_task(tmp_path):
    mt = make_run(
        tmp_path,
        "mt",
        history_of(
            2,
            test__sex__loss=[0.5, 0.25],
            test__sex__accuracy=[0.5, 0.75],
            test__sex__macro_f1=[0.5, 0.625],
            test__tags__loss=[0.75, 0.5],
            test__tags__micro_f1=[0.25, 0.5],
            test__tags__macro_f1=[0.125, 0.25],
        ),
        tasks=["sex", "tags"],
    )
    st_sex = make_run(
        tmp_path,
        "st-sex",
        history_of(
            2,
            test__sex__loss=[0.75, 0.5],
            test__sex__accuracy=[0.625, 0.5],
            test__sex__macro_f1=[0.5, 0.5],
        ),
        tasks=["sex"],
    )
    st_tags = make_run(
        tmp_path,
        "st-tags",
        history_of(
            2,
            test__tags__loss=[0.5, 0.25],
            test__tags__micro_f1=[0.375, 0.75],
            test__tags__macro_f1=[0.5, 0.25],
        ),
        tasks=["tags"],
    )
    comparison = runs.compare([mt, st_sex, st_tags])

    versus = {(v["task"], v["metric"]): v for v in comparison.versus}
    assert sorted(versus) == [
        ("sex", "accuracy"),
        ("sex", "loss"),
        ("sex", "macro_f1"),
        ("tags", "loss"),
        ("tags", "macro_f1"),
        ("tags", "micro_f1"),
    ]
    sex = versus["sex", "accuracy"]  # no validation, none recorded: the last epoch (1)
    assert (sex["multi"], sex["single"]) == ("mt", "st-sex")
    assert (sex["multi_mean"], sex["single_mean"], sex["difference"]) == (0.75, 0.5, 0.25)
    assert sex["n_pairs"] == 1 and sex["test"] is None  # one run each: no test
    assert versus["sex", "loss"]["difference"] == 0.25 - 0.5
    tags = versus["tags", "micro_f1"]
    assert (tags["multi_mean"], tags["single_mean"], tags["difference"]) == (0.5, 0.75, -0.25)
    assert versus["tags", "macro_f1"]["difference"] == 0.25 - 0.25
    assert row(comparison, "mt", "tags", "micro_f1")["multi_task"] is True
    assert row(comparison, "st-tags", "tags", "micro_f1")["multi_task"] is False
    (headline,) = [e for e in comparison.delta_m if e["metric"] == "headline"]
    # ΔM: mean of (0.75 - 0.5) / 0.5 and (0.5 - 0.75) / 0.75, in %
    assert headline["delta_m"] == pytest.approx((50.0 - 100 / 3) / 2)

    lines = comparison.text.splitlines()
    (line,) = [s for s in lines if s.split()[:4] == ["sex", "accuracy", "mt", "st-sex"]]
    assert line.split()[4:] == ["0.7500", "0.5000", "+0.2500", "-", "1", "-"]
    (line,) = [s for s in lines if s.split()[:2] == ["tags", "micro_f1"]]
    assert "-0.2500" in line.split()

    path = runs.compare_plot(comparison, tmp_path / "out" / "comparison.png")
    assert path.read_bytes()[:8] == PNG
    assert matplotlib.image.imread(path).shape[0] > 0


def test_folds_against_single_task_folds_carry_their_spread(tmp_path):
    def fold(values, **config):
        return make_run(
            tmp_path,
            f"{config['group']}-{config['fold']}",
            history_of(
                1,
                test__sex__accuracy=[values],
                test__sex__loss=[0.5],
                test__sex__macro_f1=[0.5],
            ),
            **config,
        )

    members = [
        fold(0.5, tasks=["sex", "genre"], group="mt", fold=0),
        fold(1.0, tasks=["sex", "genre"], group="mt", fold=1),
        fold(0.5, tasks=["sex"], group="st", fold=0),
        fold(0.75, tasks=["sex"], group="st", fold=1),
    ]
    comparison = runs.compare(members)
    (v,) = [v for v in comparison.versus if (v["task"], v["metric"]) == ("sex", "accuracy")]
    assert (v["multi_mean"], v["single_mean"]) == (0.75, 0.625)
    assert v["multi_std"] == pytest.approx(np.std([0.5, 1.0], ddof=1))  # sample std
    assert v["single_std"] == pytest.approx(np.std([0.5, 0.75], ddof=1))
    assert v["difference"] == 0.125 and v["pairs"] == [[0, 0], [1, 0]]
    assert v["test"] == "paired t" and v["n_pairs"] == 2
    assert v["p_value"] == pytest.approx(stats.ttest_rel([0.5, 1.0], [0.5, 0.75]).pvalue)
    assert f"0.7500 ± {np.std([0.5, 1.0], ddof=1):.4f}" in comparison.text
    assert "+0.1250" in comparison.text


def test_the_headline_metric_comes_from_the_task_kind_in_the_config(tmp_path):
    history = history_of(
        2,
        test__tags__micro_f1=[0.25, 0.5],
        test__tags__accuracy=[0.5, 0.5],
        test__tags__loss=[0.5, 0.25],
        test__tags__macro_f1=[0.5, 0.5],
    )
    known = make_run(tmp_path, "known", history, tasks=[TAGS.to_json()])
    named = make_run(tmp_path, "named", history, tasks=["tags"])  # the history decides
    as_multiclass = Task("tags", TAGS.labels, "multiclass").to_json()
    other = make_run(tmp_path, "other", history, tasks=[as_multiclass])
    for run, metric in ((known, "micro_f1"), (named, "micro_f1"), (other, "accuracy")):
        rows = runs.compare([run]).rows
        assert [r["metric"] for r in rows] == ["loss", metric, "macro_f1"], run.name


def test_compare_refuses_inconsistent_groups(tmp_path):
    history = history_of(1, test__sex__accuracy=[0.5])
    a = make_run(tmp_path, "a", history, tasks=["sex"], group="g", fold=0)
    b = make_run(tmp_path, "b", history, tasks=["sex", "genre"], group="g", fold=1)
    c = make_run(tmp_path, "c", history, tasks=["sex"], group="g", fold=0)
    with pytest.raises(ValueError, match="share group 'g' but not their tasks"):
        runs.compare([a, b])
    with pytest.raises(ValueError, match="fold 0 twice"):
        runs.compare([a, c])
    with pytest.raises(ValueError, match="no 'tasks'"):
        runs.compare([make_run(tmp_path, "d", history)])


# Unwritable roots.

WRITERS = {
    "config": lambda run: runs.write_config(run, {"tasks": ["sex"]}),
    "history": lambda run: runs.write_history(run, HISTORY),
    "reports": lambda run: runs.write_reports(run, 0, "test", reports_of(0)),
    "events": runs.open_events,
    "plots": lambda run: runs.write_plots(run, HISTORY, TASKS),
}


@pytest.mark.parametrize("what", sorted(WRITERS))
def test_a_read_only_root_is_an_error_naming_the_folder(tmp_path, what):
    root = tmp_path / "read-only"
    root.mkdir()
    root.chmod(0o555)
    try:
        if os.access(root, os.W_OK):
            pytest.skip("chmod does not stop this user (root) from writing")
        with pytest.raises(PermissionError, match=str(root / "run")) as error:
            WRITERS[what](Run(root, "run"))
        assert f"nearest existing: {root}" in str(error.value)
        assert list(root.iterdir()) == []
    finally:
        root.chmod(0o755)


@pytest.mark.parametrize("what", sorted(WRITERS))
def test_a_root_that_is_a_file_is_an_error_naming_the_folder(tmp_path, what):
    root = tmp_path / "not-a-folder"
    root.write_text("a file")
    with pytest.raises(OSError, match=str(root / "run")) as error:
        WRITERS[what](Run(root, "run"))
    assert f"nearest existing: {root}" in str(error.value)
