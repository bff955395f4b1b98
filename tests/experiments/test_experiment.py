"""Experiment files: validation that names the key, sweeps, and a tiny demo run end to end."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest

import mtjax as mt
from mtjax import cli, runs
from mtjax import experiments as ex
from mtjax.experiments import config as config_
from mtjax.experiments import parts, running, sweeps
from mtjax.tasks import Task


def write(folder: Path, text: str, name: str = "exp.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def test_defaults_and_relative_paths(tmp_path):
    (tmp_path / "exps" / "data" / "commands").mkdir(parents=True)  # readers are built: roots exist
    esc = tmp_path / "ESC-50"
    (esc / "meta").mkdir(parents=True)
    (esc / "meta" / "esc50.csv").write_text("path,category,fold\n")
    path = write(
        tmp_path / "exps",
        """
        name = "speech+sounds"
        output = "out"
        [[datasets]]
        name = "commands"
        reader = "folder"
        root = "data/commands"
        task = "word"
        group = '^(.+?)_nohash_'
        [[datasets]]
        reader = "csv"
        root = "{esc}"
        manifest = "meta/esc50.csv"
        label_columns = ["category"]
        fold_column = "fold"
    """.replace("{esc}", str(esc)),
    )
    e = ex.load(path)
    assert e.name == "speech+sounds" and e.output == tmp_path / "exps" / "out"
    assert e.cache == e.output / "cache"  # default: next to the runs
    assert e.datasets[0]["root"] == str(tmp_path / "exps" / "data" / "commands")
    assert e.datasets[1]["root"] == str(esc) and e.datasets[1]["name"] == "ESC-50"
    assert e.datasets[1]["predefined_folds"] is True
    assert e.features["name"] == "LogMel" and e.model["name"] == "cnn"
    assert e.prepare["frame"] == "median" and e.prepare["standardize"]["per"] == "feature"
    assert e.train["combine"]["name"] == "sum" and e.train["early_stop"] == "default"
    with pytest.raises(TypeError):
        e.datasets[0]["root"] = "elsewhere"  # frozen, down to the sections
    assert ex.parse(e.to_dict(), base=e.base, source=e.source) == e  # to_dict round trip
    json.dumps(e.to_dict())


def test_demo_shorthand_and_demo_readers(tmp_path):
    e = ex.load(write(tmp_path, "demo = {scale = 0.5}\n[prepare]\nframe = 50\nstandardize = false"))
    assert [d["name"] for d in e.datasets] == ["commands", "sounds", "tagged"]
    assert {d["scale"] for d in e.datasets} == {0.5}
    assert e.datasets[1]["predefined_folds"] == "auto"
    assert e.prepare["frame"] == 50 and e.prepare["standardize"] is None


BAD = [
    ("bogus = 1", "bogus: unknown key; the top level takes: name, output"),
    ("[train]\ncombiner = 'sum'", "train.combiner: unknown key; [train] takes: epochs"),
    (
        "[train]\ncombine = 'nope'",
        "train.combine: unknown combiner 'nope'; known: aligned_mtl, cagrad",
    ),
    ("[train]\ncombine = {name = 'dwa', temp = 2}", "train.combine.temp: unknown key; 'dwa'"),
    ("[train]\nbatches = 'random'", "train.batches: unknown schedule 'random'; known: balanced"),
    (
        "[train]\noptimizer = {name = 'adamx', learning_rate = 0.1}",
        "train.optimizer.name: unknown optimizer 'adamx'; known: adabelief",
    ),
    ("[train]\noptimizer = {name = 'adam', lr = 0.1}", "train.optimizer.lr: unknown key"),
    (
        "[train]\noptimizer = {name = 'adam', learning_rate = {schedule = 'wavy'}}",
        "train.optimizer.learning_rate.schedule: 'wavy' is not one of: constant_schedule",
    ),
    ("[train]\nepochs = 'ten'", "train.epochs: expected an integer, got 'ten' (str)"),
    ("[train]\nearly_stop = {metric = 'validation/loss', wait = 3}", "train.early_stop.wait"),
    ("[train]\nloss = {word = 'hinge'}", "train.loss.word: 'hinge' is not one of"),
    ("folds = 1", "folds: expected an integer >= 2, got 1"),
    ("seed = 1.5", "seed: expected an integer, got 1.5 (float)"),
    ("[model]\nname = 'rnn'", "model.name: unknown model 'rnn'; known: CGC, cgc, cnn"),
    ("[model]\nname = 'cnn'\nchanels = [8]", "model.chanels: unknown key; model 'cnn' takes"),
    ("[features]\nname = 'Spectro'", "features.name: unknown extraction 'Spectro'; known: "),
    ("[features]\nname = 'LogMel'\nbands = 3", "features.bands: unknown key; LogMel takes"),
    ("[prepare]\nstandardize = 'row'", "prepare.standardize: 'row' is not one of: feature, cell"),
    (
        "[prepare]\nframe = 'mean'",
        "prepare.frame: frame length 'mean' is not an int >= 1 or one of: median, min, max",
    ),
    ("[prepare]\nwindows = {length = 10, step = 5}", "prepare.windows.step: unknown key"),
    ("[sweep]\n'train.combine' = 'sum'", 'sweep."train.combine": expected a non-empty array'),
    ("[sweep]\nname = ['a', 'b']", "sweep.name: not a sweepable choice"),
    ("[sweep]\ndatasets = 'all'", 'sweep.datasets: expected "combinations"'),
    ("seeds = []", "seeds: expected a non-empty array of integers >= 0, got []"),
    ("seeds = [1, 1]", "seeds: [1, 1] lists a seed twice"),
    ("seeds = [0, -1]", "seeds[1]: expected an integer >= 0, got -1"),
    ("seeds = [0, 1]\n[sweep]\nseed = [0, 1]", "seeds: sweep.seed varies the seed too"),
    ("[train.augment]\nshift = 0.1\nspin = 2", "train.augment.spin: unknown key"),
    ("[train.augment]\nshift = 1.5", "train.augment.shift: "),
]


@pytest.mark.parametrize("text, message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_validation_names_the_dotted_key(tmp_path, text, message):
    path = write(tmp_path, "demo = true\n" + text)
    with pytest.raises(ex.ExperimentError) as err:
        ex.load(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("name = 'x'", "datasets: no datasets: add [[datasets]] tables, or demo = true"),
        (
            "[[datasets]]\nreader = 'zip'\nroot = 'a'",
            "datasets[0].reader: unknown reader 'zip'; known: ASVspoof2015, asvspoof2015,",
        ),
        (
            "[[datasets]]\nreader = 'csv'\nroot = 'a'",
            "datasets[0].manifest: missing; a csv dataset needs root, manifest",
        ),
        (
            "[[datasets]]\nreader = 'folder'\nroot = 'a'\nlabels = 'x'",
            "datasets[0].labels: unknown key; a folder dataset takes: reader, predefined_folds,"
            " root",
        ),
        (
            "[[datasets]]\nreader = 'folder'\nroot = 'a'\n"
            "[[datasets]]\nreader = 'folder'\nroot = 'b/a'",
            "datasets[1].name: 'a' is already the name of datasets[0]",
        ),
        (
            "[[datasets]]\nreader = 'demo'\nname = 'birds'",
            "datasets[0].name: 'birds' is not one of",
        ),
        (
            "[[datasets]]\nreader = 'folder'\nroot = 'a'\npredefined_folds = 'yes'",
            'datasets[0].predefined_folds: expected true, false or "auto"',
        ),
        ("demo = true\nwhat = [", "not valid TOML"),
    ],
)
def test_dataset_errors(tmp_path, text, message):
    (tmp_path / "a").mkdir()  # readers are built: the roots exist
    (tmp_path / "b" / "a").mkdir(parents=True)
    with pytest.raises(ex.ExperimentError, match=None) as err:
        ex.load(write(tmp_path, text))
    assert message in str(err.value)


def test_sweep_expands_the_cross_product_with_readable_names(tmp_path, caplog):
    path = write(
        tmp_path,
        """
        name = "speech+sounds"
        demo = true
        [sweep]
        datasets = "combinations"
        "train.combine" = ["sum", "pcgrad"]
    """,
    )
    with caplog.at_level(logging.INFO, logger="mtjax"):
        points = ex.expand(ex.load(path))
    # 7 non-empty combinations of 3 datasets x 2 combiners, but commands (word) and sounds
    # (category) have one task each: their pcgrad points would repeat their sum points
    assert len(points) == 12
    names = [p.name for p in points]
    assert len(set(names)) == 12
    assert names[:3] == [
        "speech+sounds/commands/combine=sum",
        "speech+sounds/sounds/combine=sum",
        "speech+sounds/tagged/combine=sum",  # tagged has two tasks (tags, loud): both kept
    ]
    assert "speech+sounds/tagged/combine=pcgrad" in names
    assert "speech+sounds/commands+sounds+tagged/combine=pcgrad" in names
    assert "speech+sounds/commands/combine=pcgrad" not in names
    lone = write(
        tmp_path,
        "demo = true\n[sweep]\ndatasets = [['commands']]\n'train.combine' = ['sum', 'bogus']",
        "lone.toml",
    )
    with pytest.raises(ex.ExperimentError, match="unknown combiner 'bogus'.*in sweep point"):
        ex.expand(ex.load(lone))  # a skipped point is checked all the same
    (message,) = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert "2 sweep point(s) skipped" in message
    assert "speech+sounds/commands/combine=pcgrad, speech+sounds/sounds/combine=pcgrad" in message
    assert all(not p.sweep for p in points)
    pcgrad = next(p for p in points if p.name == "speech+sounds/sounds+tagged/combine=pcgrad")
    assert [d["name"] for d in pcgrad.datasets] == ["sounds", "tagged"]
    assert pcgrad.train["combine"]["name"] == "pcgrad"
    # Points that differ in training choices only share their data (and prepared folds).
    assert len({p.data_key for p in points}) == 7


def test_sweep_over_features_options_and_explicit_subsets(tmp_path):
    path = write(
        tmp_path,
        """
        name = "s"
        demo = true
        [train]
        combine = {name = "dwa", temperature = 2.0}
        [sweep]
        datasets = [["commands"], ["commands", "tagged"]]
        "features.n_mels" = [40, 64]
        "train.combine.temperature" = [1.0, 4.0]
        "train.optimizer" = [{name = "adam", learning_rate = 1e-3}]
    """,
    )
    points = ex.expand(ex.load(path))
    assert len(points) == 6  # commands alone has one task: temperature 1 only
    assert points[0].name == "s/commands/n_mels=40/temperature=1/optimizer=adam,learning_rate=0.001"
    assert [p.train["combine"]["temperature"] for p in points] == [1, 1, 1, 4, 1, 4]
    assert points[-1].features["n_mels"] == 64 and points[-1].train["combine"]["temperature"] == 4
    assert len({p.data_key for p in points}) == 4
    bad = write(tmp_path, "demo = true\n[sweep]\n'train.combine' = ['sum', 'bogus']", "bad.toml")
    with pytest.raises(ex.ExperimentError, match="unknown combiner 'bogus'.*in sweep point"):
        ex.expand(ex.load(bad))
    unknown = write(tmp_path, "demo = true\n[sweep]\ndatasets = [['speech']]", "unknown.toml")
    with pytest.raises(ex.ExperimentError, match="sweep.datasets\\[0\\]: no dataset 'speech'"):
        ex.expand(ex.load(unknown))


SEEDED = """
name = "s"
demo = true
{seeds}
[sweep]
datasets = [["commands"], ["commands", "tagged"]]
"train.combine" = ["sum", "pcgrad"]
"""


def test_seeds_run_every_point_once_per_seed_and_seed_0_keeps_its_paths(tmp_path):
    experiment = ex.load(write(tmp_path, SEEDED.format(seeds="seeds = [0, 2]")))
    assert experiment.seeds == (0, 2) and experiment.seed == 0
    points = ex.expand(experiment)
    one, both = "s/commands/combine=sum", "s/commands+tagged/combine="
    assert [(p.name, p.group, p.seed, p.seeds) for p in points] == [
        (one, one, 0, (0,)),
        (f"{one}/seed2", one, 2, (2,)),  # commands alone: one task, sum only
        (f"{both}sum", f"{both}sum", 0, (0,)),
        (f"{both}sum/seed2", f"{both}sum", 2, (2,)),
        (f"{both}pcgrad", f"{both}pcgrad", 0, (0,)),
        (f"{both}pcgrad/seed2", f"{both}pcgrad", 2, (2,)),
    ]
    assert len({p.data_key for p in points}) == 4  # a seed draws its own folds
    assert ex.parse(experiment.to_dict(), base=experiment.base, source=experiment.source) == (
        experiment
    )

    # Without seeds, the same file gives seed 0's points, and their run folders resume.
    plain = ex.expand(ex.load(write(tmp_path, SEEDED.format(seeds=""), "plain.toml")))
    assert [p.name for p in plain] == [p.name for p in points if p.seed == 0]
    for before, now in zip(plain, [p for p in points if p.seed == 0]):
        recorded = before.to_dict()
        del recorded["seeds"]  # as a run folder written before seeds existed holds it
        run = runs.Run(tmp_path / "runs", f"{now.name}/fold0")
        runs.write_config(run, {"experiment": recorded})
        runs.check_resumable(run, now.to_dict(), entry="experiment", ignore=config_.NOT_RESUMED)
        other = next(p for p in points if p.group == now.group and p.seed == 2)
        with pytest.raises(ValueError, match="seed differ"):
            runs.check_resumable(
                run, other.to_dict(), entry="experiment", ignore=config_.NOT_RESUMED
            )

    alone = ex.expand(
        ex.load(write(tmp_path, 'name = "one"\ndemo = true\nseeds = [0, 1]', "1.toml"))
    )
    assert [(p.name, p.group, p.seed) for p in alone] == [
        ("one", "one", 0),
        ("one/seed1", "one", 1),
    ]
    assert ex.override(points[1], {"train.epochs": 2}).group == one  # a seed point keeps it
    assert ex.override(experiment, {"name": "t"}).group == "t"
    other_base = ex.load(
        write(tmp_path, 'name = "b"\ndemo = true\nseed = 3\nseeds = [3, 4]', "b.toml")
    )
    assert [p.name for p in ex.expand(other_base)] == ["b", "b/seed4"]  # `seed` keeps its path


def test_single_task_points_are_told_by_their_datasets_tasks(tmp_path):
    experiment = ex.load(write(tmp_path, SEEDED.format(seeds="")))
    shared = {"commands": ("word",), "tagged": ("word",)}  # as if tagged had only "word"
    assert [p.name for p in ex.expand(experiment, tasks=shared)] == [
        "s/commands/combine=sum",
        "s/commands+tagged/combine=sum",  # two datasets, one shared task: one task
    ]
    (tmp_path / "words" / "yes").mkdir(parents=True)
    (tmp_path / "words" / "no").mkdir()
    read = ex.load(
        write(
            tmp_path,
            """
            name = "r"
            [[datasets]]
            reader = "folder"
            root = "words"
            task = "word"
            [sweep]
            "train.combine.name" = ["sum", "mgda"]
            """,
            "read.toml",
        )
    )
    assert sweeps.dataset_tasks(read) == {"words": ("word",)}  # from the reader
    assert [p.name for p in ex.expand(read)] == ["r/name=sum"]
    assert len(ex.expand(read, tasks={"words": ("a", "b")})) == 2


def test_multi_task_points_are_set_against_single_task_points_of_the_same_choices(tmp_path):
    points = {p.name: p for p in ex.expand(ex.load(write(tmp_path, SEEDED.format(seeds=""))))}
    single = sweeps.reference_key(points["s/commands/combine=sum"].to_dict())
    pcgrad = points["s/commands+tagged/combine=pcgrad"]
    assert sweeps.reference_key(pcgrad.to_dict()) == single  # the combiner is left out
    seeded = dataclasses.replace(pcgrad, seed=5, name="elsewhere")
    assert sweeps.reference_key(seeded.to_dict()) == single
    bigger = ex.override(pcgrad, {"model.channels": [8]})
    assert sweeps.reference_key(bigger.to_dict()) != single


def test_resolved_train_records_every_part_with_its_defaults(tmp_path):
    text = """
        demo = true
        [train]
        combine = {name = "dwa", temperature = 4.0}
        batches = "balanced"
        optimizer = {name = "adam", learning_rate = 1e-3}
    """
    e = ex.load(write(tmp_path, text + "[train.augment]\nshift = 0.1\nmixup = 0.2\n"))
    resolved = parts.resolved_train(e.train)
    assert parts.build_augment(e.train["augment"]) == mt.Augment(shift=0.1, mixup=0.2)
    assert resolved["augment"] == {"shift": 0.1, "mixup": 0.2}
    assert resolved["combine"] == {"name": "dwa", "temperature": 4.0}  # as given
    assert resolved["batches"] == {"name": "balanced", "per": "dataset", "steps": None}
    assert resolved["early_stop"] == {  # "default": fit's rule, patience at its defaults
        "name": "patience",
        "metric": "validation/loss",
        "patience": 10,
        "min_delta": 0.0,
        "mode": "auto",
        "restore_best": True,
    }
    assert resolved["optimizer"]["learning_rate"] == 1e-3 and resolved["optimizer"]["b2"] == 0.999
    assert resolved["epochs"] == 30 and json.loads(json.dumps(resolved)) == resolved
    plain = parts.resolved_train(ex.override(e, {"train.early_stop": False}).train)
    assert plain["early_stop"] is None
    assert (
        parts.resolved_train(ex.load(write(tmp_path, "demo = true", "d.toml")).train)["optimizer"]
        is None
    )  # fit's default optimizer, which fit describes


def test_override_and_built_parts(tmp_path):
    e = ex.load(
        write(
            tmp_path,
            """
        demo = true
        [train]
        optimizer = {name = "adamw", learning_rate = 1e-3, weight_decay = 1e-4}
        early_stop = {metric = "validation/score", patience = 2}
    """,
        )
    )
    quick = ex.override(e, {"train.epochs": 2, "run_folds": 1})
    assert quick.train["epochs"] == 2 and quick.run_folds == 1 and e.train["epochs"] == 30
    with pytest.raises(ex.ExperimentError, match="train.epochs: expected an integer >= 1"):
        ex.override(e, {"train.epochs": 0})
    assert ex.build_early_stop(e.train["early_stop"]).metric == "validation/score"
    tx = ex.build_optimizer(e.train["optimizer"])
    import jax.numpy as jnp

    state = tx.init({"w": jnp.zeros(3)})
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(1e-3)  # logged by fit


def test_a_model_value_is_refused_when_the_model_is_built(tmp_path):
    path = write(tmp_path, "demo = true\n[model]\nname = 'cnn'\nkernel = -1")
    e = ex.load(path)  # the model needs the tasks: at load its keys are checked, not its values
    with pytest.raises(ex.ExperimentError) as err:
        ex.build_model(e.model, (Task("word", ("a", "b")),), source=e.source)
    assert str(err.value).startswith(f"{path}: model: HardSharingCNN: kernel must be a positive")


def test_predefined_folds_kept_dropped_or_refused():
    x = np.zeros([8, 2, 3], np.float32)
    task = Task("t", ("a", "b"))
    ds = mt.TaskDataset.from_arrays(
        x, np.tile([[1.0, 0.0], [0.0, 1.0]], (4, 1)), [task], folds=np.arange(8) % 4, name="four"
    )
    e = ex.parse({"demo": True, "folds": 5})
    spec = {"name": "four", "predefined_folds": "auto"}
    assert np.all(running._with_folds(e, spec, ds).folds == -1)  # 4 folds, 5 asked: k-fold
    assert np.all(running._with_folds(ex.override(e, {"folds": 4}), spec, ds).folds == ds.folds)
    wrong_count = "has 4 predefined folds but the run has 5 folds; use 4"
    with pytest.raises(ex.ExperimentError, match=wrong_count):
        running._with_folds(e, {**spec, "predefined_folds": True}, ds)
    assert np.all(running._with_folds(e, {**spec, "predefined_folds": False}, ds).folds == -1)


# A tiny demo sweep, run once for the tests below.

TINY = """
name = "tiny"
output = "runs"
demo = {scale = 0.3}
run_folds = 1
jobs = 1
[[datasets]]
name = "commands"
reader = "demo"
[[datasets]]
name = "tagged"
reader = "demo"
[model]
name = "dnn"
hidden = [16]
[train]
epochs = 1
batch_size = 32
early_stop = false
[sweep]
"train.combine" = ["sum", "mean"]
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    experiment = ex.load(write(folder, TINY))
    reads = []
    real = mt.read

    def counting(reader, extraction, **kwargs):
        reads.append(reader.name)
        return real(reader, extraction, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mt.audio.cache, "read", counting)
        ran = ex.run_experiment(experiment, progress=False)
        ex.read_datasets(ex.expand(experiment)[0], progress=False)  # memoised: no new read
    return experiment, ran, reads


def test_demo_sweep_runs_end_to_end(tiny, capsys):
    experiment, ran, _ = tiny
    assert [r.name for r in ran] == ["tiny/combine=sum/fold0", "tiny/combine=mean/fold0"]
    for run, combine in zip(ran, ["sum", "mean"]):
        assert run.root == experiment.output == experiment.base / "runs"
        config = runs.read_config(run)
        assert config["group"] == f"tiny/combine={combine}" and config["fold"] == 0
        assert config["experiment"]["train"]["combine"] == {"name": combine}
        assert [t["name"] for t in config["tasks"]] == ["word", "tags", "loud"]
        demo_tasks = [*config_.DEMO_TASKS["commands"], *config_.DEMO_TASKS["tagged"]]
        assert [t["name"] for t in config["tasks"]] == demo_tasks  # what sweeps count by
        assert config["chosen_epoch"] == 0 and config["chosen_by"] == "last epoch"
        assert len(runs.read_history(run)) == 1
        assert (run.path / "checkpoints").is_dir() and (run.path / "events").is_dir()
    assert (experiment.output / "data" / "demo.json").is_file()  # demo made under output/data
    assert any((experiment.output / "cache").iterdir())


def test_each_dataset_is_read_once_for_runs_that_differ_in_training_only(tiny):
    _, _, reads = tiny
    assert sorted(reads) == ["commands", "tagged"]


def test_report_command_prints_the_table_and_writes_the_plot(tiny, capsys):
    experiment, ran, _ = tiny
    folder = experiment.output / "tiny"
    assert cli.main(["report", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "tiny/combine=sum" in out and "tiny/combine=mean" in out and "word" in out
    assert "accuracy" in out and "micro_f1" in out
    assert (folder / "comparison.png").is_file()  # a folder of runs: the plot goes inside
    assert cli.main(["report", str(ran[0].path), "--split", "validation"]) == 0
    assert (ran[0].path.parent / "comparison.png").is_file()  # a run: next to it
    assert [r.path for r in ex.find_runs([experiment.output])] == [r.path for r in ran[::-1]]


def test_evaluate_command_rebuilds_the_fold_and_writes_reports(tiny, capsys):
    experiment, ran, _ = tiny
    argv = ["evaluate", str(ran[0].path), "--data", experiment.source, "--epoch", "0"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "epoch 0, fold 0 test of tiny/combine=sum" in out and "loud" in out
    written = runs.read_reports(ran[0], 0, "evaluation")
    assert written["word"]["accuracy"] == runs.read_reports(ran[0], 0, "test")["word"]["accuracy"]


def test_a_run_folder_of_other_settings_is_not_resumed(tiny):
    experiment, _, _ = tiny
    point = ex.override(ex.expand(experiment)[0], {"model.hidden": [8]})
    with pytest.raises(ex.ExperimentError, match="model.hidden differ"):
        ex.train_fold(point, 0, split=None)
