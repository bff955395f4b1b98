"""TensorBoard as people use it, read back with TensorBoard's own reader.

One tiny `fit(run=...)` of four epochs whose stopping rule chooses epoch 1: the event files
must hold per-epoch scalars (the epoch's time among them), confusion images at the chosen
and the last step only, the config as text, a Custom Scalars chart per task and metric
across the splits, and an HParams session of the run's settings and chosen-epoch metrics.
"""

from __future__ import annotations

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.util import tensor_util
from tiny_training import LOUD, TAGS, WORD, SmallNet, fit_choosing, three_datasets

import mtjax as mt
from mtjax import runs
from mtjax.runs import events

CHOSEN, LAST = 1, 3


def fit_into(run: runs.Run) -> mt.Trained:
    return fit_choosing(run, CHOSEN, LAST)


def read_events(run: runs.Run) -> EventAccumulator:
    found = EventAccumulator(
        str(run.events), size_guidance={"scalars": 0, "images": 0, "tensors": 0}
    )
    found.Reload()
    return found


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """(run, trained, its events after the fit, its events after the same fit again)."""
    run = runs.Run(tmp_path_factory.mktemp("tensorboard"), "r")
    trained = fit_into(run)
    first = read_events(run)
    fit_into(run)  # a finished run, read back: nothing is logged twice
    return run, trained, first, read_events(run)


def test_confusion_images_exist_only_at_the_chosen_and_the_last_step(recorded):
    _, _, found, again = recorded
    tags = {f"{s}/{t}/confusion" for s in ("validation", "test") for t in ("word", "loud", "tags")}
    for read in (found, again):
        assert set(read.Tags()["images"]) == tags
        for tag in tags:
            images = read.Images(tag)
            assert [i.step for i in images] == [CHOSEN, LAST], tag
            assert all(i.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n" for i in images)


def test_scalars_of_every_epoch_and_the_epochs_time(recorded):
    _, trained, found, _ = recorded
    seconds = found.Scalars(events.EPOCH_SECONDS)
    assert [e.step for e in seconds] == [0, 1, 2, 3]
    assert [e.value for e in seconds] == pytest.approx([r["seconds"] for r in trained.history])
    accuracy = found.Scalars("validation/word/accuracy")
    assert [e.step for e in accuracy] == [0, 1, 2, 3]
    assert [e.value for e in accuracy] == pytest.approx(
        [r["validation/word/accuracy"] for r in trained.history]
    )


def test_the_config_is_a_text_summary(recorded):
    run, _, found, _ = recorded
    tag = "config/text_summary"
    assert tag in found.Tags()["tensors"]
    (event,) = found.Tensors(tag)
    assert event.step == 0
    text = tensor_util.make_ndarray(event.tensor_proto).item().decode()
    assert text.startswith("```json\n") and text.endswith("\n```")
    shown = json.loads(text.removeprefix("```json\n").removesuffix("\n```"))
    written = runs.read_config(run)
    assert shown == {k: v for k, v in written.items() if k not in ("chosen_epoch", "chosen_by")}
    assert shown["batch_size"] == 16


def test_hparams_hold_the_settings_and_the_chosen_epochs_metrics(recorded):
    _, trained, found, _ = recorded
    content = found.PluginTagToContent("hparams")
    assert set(content) == {"_hparams_/session_start_info", "_hparams_/session_end_info"}
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]
    ).session_start_info
    settings = dict(start.hparams)
    assert settings["batch_size"].number_value == 16
    assert settings["epochs"].number_value == LAST + 1
    assert settings["model.name"].string_value == "SmallNet"
    assert settings["tasks[2].kind"].string_value == "multilabel"
    assert settings["tasks[0].labels"].string_value == json.dumps(list(WORD.labels))
    assert not any(name.startswith(("resume_key", "model.tasks", "chosen")) for name in settings)
    chosen = trained.history[CHOSEN]
    for key in ("validation/loss", "validation/score", "test/tags/micro_f1", "test/loud/accuracy"):
        (event,) = found.Scalars(f"chosen/{key}")
        assert event.step == CHOSEN and event.value == pytest.approx(chosen[key]), key
    assert [e.value for e in found.Scalars("chosen/epoch")] == [CHOSEN]


def test_custom_scalars_chart_each_task_and_metric_across_splits(recorded):
    _, _, found, _ = recorded
    assert list(found.PluginTagToContent("custom_scalars")) == ["custom_scalars__config__"]
    (event,) = found.Tensors("custom_scalars__config__")  # where TensorBoard's plugin reads it
    layout = layout_pb2.Layout.FromString(tensor_util.make_ndarray(event.tensor_proto).item())
    charts = {
        (category.title, chart.title): list(chart.multiline.tag)
        for category in layout.category
        for chart in category.chart
    }
    assert charts["word", "word loss"] == [
        r"^train/word/loss$",
        r"^validation/word/loss$",
        r"^test/word/loss$",
    ]
    assert charts["tags", "tags micro_f1"] == [
        r"^validation/tags/micro_f1$",
        r"^test/tags/micro_f1$",
    ]
    assert charts["mean over tasks", "loss"] == [
        r"^train/loss$",
        r"^validation/loss$",
        r"^test/loss$",
    ]
    assert {category for category, _ in charts} == {"word", "loud", "tags", "mean over tasks"}


def test_hparams_flatten_a_config_to_numbers_and_strings():
    config = {
        "batch_size": 32,
        "model": {"name": "dnn", "hidden": [64, 32], "tasks": [{"name": "x"}]},
        "tasks": [{"name": "word", "kind": "multiclass"}],
        "augment": None,
        "restore_best": True,
        "resume_key": {"batch_size": 32},
        "chosen_epoch": 3,
    }
    assert events.hparams(config) == {
        "batch_size": 32.0,
        "model.name": "dnn",
        "model.hidden": "[64, 32]",
        "tasks[0].name": "word",
        "tasks[0].kind": "multiclass",
        "augment": "none",
        "restore_best": True,
    }


def test_the_layout_groups_only_split_tags_of_tasks():
    tags = [
        "train/loss",
        "train/objective",
        "train/weights/word",
        "train/word/loss",
        "validation/word/clip/accuracy",
        "test/word/clip/accuracy",
        "train/learning_rate",
        "time/epoch_seconds",
    ]
    assert events.layout(tags, (WORD, LOUD, TAGS)) == {
        "mean over tasks": {"loss": ["Multiline", [r"^train/loss$"]]},
        "word": {
            "word loss": ["Multiline", [r"^train/word/loss$"]],
            "word clip/accuracy": [
                "Multiline",
                [r"^validation/word/clip/accuracy$", r"^test/word/clip/accuracy$"],
            ],
        },
    }


def test_tensorboards_hparams_dashboard_lists_each_run_with_its_settings(recorded):
    from tensorboard.backend import application
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import hparams_plugin
    from werkzeug.test import Client

    run, _, _, _ = recorded
    trn = three_datasets(n=24)
    other = runs.Run(run.root, "other")
    mt.fit(SmallNet(trn.tasks), trn, epochs=1, batch_size=8, run=other, progress=False)
    events_of = plugin_event_multiplexer.EventMultiplexer()
    events_of.AddRunsFromDirectory(str(run.root))
    events_of.Reload()
    provider = data_provider.MultiplexerDataProvider(events_of, str(run.root))
    context = base_plugin.TBContext(
        logdir=str(run.root), multiplexer=events_of, data_provider=provider
    )
    client = Client(application.TensorBoardWSGI([hparams_plugin.HParamsPlugin(context)]))
    query = {
        "experimentName": "",
        "allowedStatuses": ["STATUS_SUCCESS"],
        "colParams": [],
        "startIndex": 0,
        "sliceSize": 10,
    }
    answer = client.post("/data/plugin/hparams/session_groups", json=query)
    groups = {g["name"]: g for g in answer.get_json()["sessionGroups"]}
    assert sorted(groups) == ["other/events", "r/events"]
    assert groups["r/events"]["hparams"]["batch_size"] == 16
    assert groups["other/events"]["hparams"]["batch_size"] == 8
    metrics = {m["name"]["tag"]: m for m in groups["r/events"]["metricValues"]}
    assert metrics["chosen/validation/loss"]["trainingStep"] == CHOSEN
