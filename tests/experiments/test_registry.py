"""The registry of named parts: every built-in by name, import paths, `register`, signatures."""

from __future__ import annotations

import inspect

import jax
import numpy as np
import pytest

import mtjax as mt
from mtjax import readers
from mtjax.audio import features
from mtjax.experiments import registry
from mtjax.tasks import Task
from mtjax.train import combiners, models, schedules, stopping


@pytest.fixture
def isolated(monkeypatch):
    """Registrations made in the test are gone after it."""
    for kind in registry.KINDS:
        monkeypatch.setitem(registry._PARTS, kind, dict(registry._PARTS[kind]))


READERS = {
    "folder": readers.FolderReader,
    "csv": readers.CsvReader,
    "esc50": readers.ESC50,
    "urbansound8k": readers.UrbanSound8K,
    "speech_commands": readers.SpeechCommands,
    "fsd_kaggle2018": readers.FSDKaggle2018,
    "fsd50k": readers.FSD50K,
    "ravdess": readers.RAVDESS,
    "dcase_scenes": readers.DCASEScenes,
    "dcase_events": readers.DCASEEvents,
    "asvspoof2015": readers.ASVspoof2015,
    "gtzan": readers.GTZAN,
    "audioset_csv": readers.AudioSetCsv,
}


def test_every_built_in_reader_by_its_snake_case_and_its_class_name():
    layouts = {n for n in readers.__all__ if n not in ("Item", "Reader", "ReaderError")}
    assert {cls.__name__ for cls in READERS.values()} == layouts  # none left out
    for name, cls in READERS.items():
        assert registry.lookup("reader", name) is cls
        assert registry.lookup("reader", cls.__name__) is cls
    assert len(registry.names("reader")) == 2 * len(READERS)


def test_extractions_models_combiners_schedules_and_stopping_rules():
    for name, cls in features.EXTRACTIONS.items():
        assert registry.lookup("extraction", name) is cls
        assert registry.lookup("extraction", registry.snake_case(name)) is cls
    assert registry.lookup("extraction", "log_mel") is features.LogMel
    assert registry.lookup("extraction", "mel_spectrogram") is features.MelSpectrogram
    assert registry.lookup("model", "dnn") is registry.lookup("model", "HardSharingDNN")
    assert registry.lookup("model", "cnn") is models.HardSharingCNN
    for name, factory in combiners.COMBINERS.items():
        assert registry.lookup("combiner", name) is factory
    assert registry.names("schedule") == [
        "balanced",
        "every_task",
        "mixed",
        "per_dataset",
        "proportional",
    ]
    assert registry.lookup("schedule", "every_task") is schedules.every_task
    assert registry.lookup("stopping", "patience") is stopping.patience
    assert registry.lookup("stopping", "never") is stopping.never


def test_a_schedule_by_name_draws_what_the_schedule_itself_draws():
    task = Task("t", ("a", "b"))
    data = mt.concat(
        [
            mt.TaskDataset.from_arrays(
                np.zeros([n, 2, 3], np.float32),
                np.tile([[1.0, 0.0], [0.0, 1.0]], (n // 2, 1)),
                [task],
                name=name,
            )
            for n, name in ((6, "six"), (10, "ten"))
        ]
    )
    key = jax.random.key(3)
    for name, options in (("mixed", {}), ("balanced", {"per": "task", "steps": 3})):
        mine = registry.lookup("schedule", name)(**options)(key, data, 4)
        theirs = schedules.schedule_from_config(name, **options)(key, data, 4)
        np.testing.assert_array_equal(mine.index, theirs.index)
        np.testing.assert_array_equal(mine.weight, theirs.weight)
    assert registry.arguments(registry.lookup("schedule", "mixed")).accepted == ()
    assert registry.arguments(registry.lookup("schedule", "balanced")).accepted == ("per", "steps")
    assert "temperature" in registry.arguments(registry.lookup("schedule", "proportional")).accepted


def test_an_unknown_name_lists_the_known_ones_and_the_closest():
    with pytest.raises(ValueError) as err:
        registry.lookup("reader", "speech_comands")
    message = str(err.value)
    assert message.startswith("unknown reader 'speech_comands'; known: ASVspoof2015, asvspoof2015")
    assert message.endswith("; did you mean 'speech_commands'?")
    with pytest.raises(ValueError) as err:
        registry.lookup("model", "transformer", also=("tiny",))
    assert str(err.value) == (
        "unknown model 'transformer'; known: CGC, cgc, cnn, cross_stitch, CrossStitch, dnn,"
        " dselect_k, DSelectK, HardSharingCNN, HardSharingDNN, MMoE, mmoe, MTAN, mtan, PLE, ple,"
        " tiny"
    )  # nothing close: no guess
    with pytest.raises(ValueError, match="did you mean 'LogMel'"):
        registry.lookup("extraction", "logmel")  # matched whatever the case


def test_an_import_path_names_a_module_attribute():
    assert registry.lookup("reader", "mtjax.readers:ESC50") is readers.ESC50
    assert registry.lookup("combiner", "mtjax.train.combiners:pcgrad") is combiners.pcgrad
    with pytest.raises(ValueError, match="'mtjax.readers' has no attribute 'ESC5'; did you mean"):
        registry.lookup("reader", "mtjax.readers:ESC5")
    with pytest.raises(ValueError, match="cannot import 'no_such_lab_module'"):
        registry.lookup("reader", "no_such_lab_module:Reader")
    with pytest.raises(ValueError, match="an import path is module:attribute"):
        registry.lookup("reader", "mtjax.readers:")
    with pytest.raises(ValueError, match="is a tuple, not a class or function"):
        registry.lookup("reader", "mtjax.experiments.registry:KINDS")


def test_register_adds_a_name_and_refuses_to_replace_one(isolated):
    def tiny(tasks, width=4):
        return (tasks, width)

    registry.register("model", "tiny", tiny)
    registry.register("model", "tiny", tiny)  # again, as a module imported twice: no change
    assert registry.lookup("model", "tiny") is tiny and "tiny" in registry.names("model")
    with pytest.raises(ValueError, match="model 'cnn' is already registered as .*HardSharingCNN"):
        registry.register("model", "cnn", tiny)
    with pytest.raises(ValueError, match="unknown kind 'models'; kinds: reader, extraction"):
        registry.register("models", "tiny", tiny)
    with pytest.raises(ValueError, match="without ':'"):
        registry.register("model", "lab:tiny", tiny)
    with pytest.raises(TypeError, match="must be callable"):
        registry.register("model", "other", 3)
    assert registry.lookup("model", "cnn") is models.HardSharingCNN


def test_register_is_undone_by_the_fixture():
    with pytest.raises(ValueError, match="unknown model 'tiny'"):
        registry.lookup("model", "tiny")


def test_arguments_reads_the_signature():
    def factory(root, manifest, *, name="", delimiter=",", **_):
        del root, manifest, name, delimiter

    def fixed(a, /, b, *args, c=1):
        del a, b, args, c

    assert registry.arguments(factory) == registry.Arguments(
        ("root", "manifest", "name", "delimiter"), ("root", "manifest"), True
    )
    assert registry.arguments(fixed) == registry.Arguments(("b", "c"), ("b",), False)
    cnn = registry.arguments(models.HardSharingCNN, supplied=("tasks", "parent", "name"))
    assert "channels" in cnn.accepted and "tasks" not in cnn.accepted and not cnn.required
    assert registry.arguments(readers.CsvReader).required == ("root", "manifest")
    assert inspect.isclass(registry.lookup("reader", "csv"))


def test_snake_case():
    assert [registry.snake_case(n) for n in ("LogMel", "MelSpectrogram", "Mfcc", "Raw")] == [
        "log_mel",
        "mel_spectrogram",
        "mfcc",
        "raw",
    ]
