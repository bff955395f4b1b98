"""The `mtjax` command helps: one-line mistakes with the closest name, --version, defaults in
--help, KEY=VALUE overrides, type-checked option values, cache ls/clear, quiet broken pipes."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mtjax
from mtjax import cli
from mtjax.demo import job
from mtjax.experiments import checks, config, registry, running

ROOT = Path(__file__).resolve().parents[1]

TINY = """
name = "tiny"
demo = {scale = 0.3}
run_folds = 1
[model]
name = "dnn"
hidden = [16]
[train]
epochs = 1
"""


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def mtjax_process(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mtjax", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        **kwargs,
    )


def one_line_mistake(argv, capsys) -> str:
    """Runs `mtjax ARGV`: status 2, nothing on stdout, one line `mtjax: ...` on stderr."""
    assert cli.main([str(a) for a in argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("mtjax: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.removeprefix("mtjax: ").rstrip("\n")


# --version, python -m mtjax, --help


def test_version_and_python_dash_m():
    done = mtjax_process("--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"mtjax {mtjax.__version__}\n", "")
    missing = mtjax_process("run", "no_such_file.toml")
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr == "mtjax: no experiment file no_such_file.toml\n"


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_every_help_shows_every_default(capsys):
    checked = 0
    for parser in _parsers(cli.parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0:  # positionals, flags, --help
                continue
            shown = formatter._expand_help(action)
            assert "default" in shown, f"{parser.prog} {action.option_strings[0]}: {shown!r}"
            if action.default is not None:
                assert f"(default: {action.default})" in shown
            checked += 1
    assert checked >= 15
    assert cli.main(["demo", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "output folder (default: mtjax-demo)" in shown
    assert "most training epochs (default: 25)" in shown and "(default: 0)" in shown
    assert cli.main(["evaluate", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "--data DATA experiment file (default: the one the run recorded)" in shown


# Mistakes: one line, status 2, the closest name


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND (see mtjax --help)"),
        (["rnu"], "invalid choice: 'rnu' (choose from 'demo', 'run', 'datasets', 'report', "),
        (["rnu"], "; did you mean 'run'? (see mtjax --help)"),
        (
            ["demo", "--epocs", "3"],
            "demo: unrecognized arguments: --epocs 3; did you mean '--epochs'?",
        ),
        (["demo", "--epochs", "many"], "demo: argument --epochs: invalid int value: 'many'"),
        (["cache", "lss", "x"], "did you mean 'ls'? (see mtjax cache --help)"),
        (["cache", "clear", "c", "--datset", "a"], "did you mean '--dataset'?"),
    ],
)
def test_command_line_mistakes(argv, message, capsys):
    assert message in one_line_mistake(argv, capsys)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["batch_size"], "run: 'batch_size' is not KEY=VALUE with KEY a dotted key"),
        (["train.batch_sise=64"], "train.batch_sise: unknown key; [train] takes: epochs"),
        (["train.batch_sise=64"], "; did you mean 'batch_size'? (set on the command line"),
        (["trian.epochs=2"], "trian: unknown key; the top level takes: name"),
        (["trian.epochs=2"], "did you mean 'train'?"),
        (["train.combine=PCGrad"], "train.combine: unknown combiner 'PCGrad'; known: "),
        (["train.combine=PCGrad"], "did you mean 'pcgrad'?"),
        (["features.name=logmel"], "features.name: unknown extraction 'logmel'"),
        (["features.name=logmel"], "did you mean 'LogMel'?"),
        (["train.epochs=0"], "train.epochs: expected an integer >= 1, got 0"),
        (["train.epochs=five"], "train.epochs: expected an integer, got 'five' (str)"),
        (
            ["model.hidden=[16, '32']"],
            "model.hidden: expected an array for model 'dnn', got [16, '32']",
        ),
        (["features.n_mels=40.0"], "features.n_mels: expected an integer for LogMel, got 40.0"),
    ],
)
def test_experiment_mistakes_name_the_key_and_the_closest_name(tiny, overrides, message, capsys):
    found = one_line_mistake(["run", tiny, *overrides], capsys)
    assert message in found
    assert found.startswith(f"{tiny}: ") or found.startswith("run: ")


def test_a_string_where_a_number_belongs_is_refused_at_check_time(tiny, capsys):
    text = TINY + 'optimizer = {name = "adam", learning_rate = "2e-3"}\n'
    tiny.write_text(text)
    found = one_line_mistake(["run", tiny], capsys)
    assert found == (
        f"{tiny}: train.optimizer.learning_rate: expected a number, an array or a table for"
        " 'adam', got '2e-3' (str)"
    )
    tiny.write_text(text.replace('"2e-3"', "2e-3"))  # the number itself is fine
    assert config.load(tiny).train["optimizer"]["learning_rate"] == 2e-3
    schedule = '{schedule = "cosine_decay_schedule", init_value = "1e-3", decay_steps = 10}'
    tiny.write_text(TINY + f'optimizer = {{name = "adam", learning_rate = {schedule}}}\n')
    found = one_line_mistake(["run", tiny], capsys)
    assert "train.optimizer.learning_rate.init_value: expected a number" in found


def test_every_default_of_every_part_fits_its_own_annotation():
    checked = 0
    for kind in registry.KINDS:
        for name in registry.names(kind):
            factory = registry.lookup(kind, name)
            for p in checks._parameters(factory).values():
                if isinstance(p.default, (bool, int, float, str)):
                    assert checks.admits(checks.expected_type(factory, p), p.default) is not False
                    checked += 1
    assert checked > 100
    assert checks.admits(int, True) is False and checks.admits(float, 3) is True
    assert checks.admits(tuple[int, ...], [1, 2]) is True
    assert checks.admits(tuple[int, ...], [1, "2"]) is False
    assert checks.admits(Path, "a/b") is True and checks.admits(str | None, 1) is False


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "missing.toml"], "no experiment file missing.toml"),
        (["report", "{tmp}/none"], "is not a folder"),
        (["evaluate", "{tmp}"], "no run config: {tmp}/config.json does not exist"),
        (["evaluate", "{tmp}/none"], "no run config: {tmp}/none/config.json does not exist"),
        (["cache", "ls", "{tmp}/none"], "no cache folder {tmp}/none"),
        (["cache", "verify", "{tmp}/none"], "no cache folder {tmp}/none"),
    ],
)
def test_missing_files_and_folders(tmp_path, argv, message, capsys):
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert message.format(tmp=tmp_path) in one_line_mistake(argv, capsys)


def test_a_bug_keeps_its_traceback_and_debug_shows_any(tiny, monkeypatch, capsys):
    def broken(experiment, *, progress):
        return {}["no such key"]

    monkeypatch.setattr(running, "run_experiment", broken)
    with pytest.raises(KeyError):
        cli.main(["run", str(tiny)])
    monkeypatch.setattr(running, "run_experiment", lambda e, progress: np.zeros(2).reshape(3))
    with pytest.raises(ValueError, match="cannot reshape"):  # raised inside numpy: a bug
        cli.main(["run", str(tiny)])
    with pytest.raises(config.ExperimentError, match="train.epochs: expected an integer"):
        cli.main(["--debug", "run", str(tiny), "train.epochs=x"])
    with pytest.raises(FileNotFoundError):
        cli.main(["run", "missing.toml", "--debug"])
    assert capsys.readouterr().err == ""


# What reaches the run


def test_overrides_reach_the_runs_config(tiny, monkeypatch):
    seen = []
    monkeypatch.setattr(running, "run_experiment", lambda e, progress: seen.append((e, progress)))
    argv = [
        "run",
        str(tiny),
        "train.epochs=5",
        "train.combine=pcgrad",
        "--quiet",
        "train.optimizer={name = 'adam', learning_rate = 2e-3}",
        "prepare.windows.length=20",
        "name=other-name",
        "--folds",
        "2",
    ]
    assert cli.main(argv) == 0
    ((experiment, progress),) = seen
    recorded = experiment.to_dict()  # what the run's config.json records as "experiment"
    assert progress is False
    assert recorded["train"]["epochs"] == 5
    assert recorded["train"]["combine"] == {"name": "pcgrad"}
    assert recorded["train"]["optimizer"] == {"name": "adam", "learning_rate": 2e-3}
    assert recorded["prepare"]["windows"] == {"length": 20, "hop": None}
    assert recorded["name"] == "other-name" and recorded["run_folds"] == 2
    assert recorded["model"] == {"name": "dnn", "hidden": [16]}  # the file's, untouched
    assert cli.overrides(['name="5"', "seed=3", "x.y=a b", "cache=false", "z="]) == {
        "name": "5",
        "seed": 3,
        "x.y": "a b",
        "cache": False,
        "z": "",
    }


REAL = """
name = "real"
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
epochs = 3
early_stop = false
"""


def test_a_real_run_records_the_overrides_and_evaluates_without_the_file(tmp_path, capsys):
    path = tmp_path / "real.toml"
    path.write_text(REAL)
    argv = ["run", str(path), "train.epochs=1", "train.combine=pcgrad", "--quiet"]
    assert cli.main(argv) == 0
    run = tmp_path / "runs" / "real" / "fold0"
    recorded = json.loads((run / "config.json").read_text())
    assert recorded["experiment"]["train"]["epochs"] == 1
    assert recorded["experiment"]["train"]["combine"] == {"name": "pcgrad"}
    assert recorded["resolved"]["combine"]["name"] == "pcgrad"
    assert len(json.loads((run / "history.json").read_text())) == 1
    capsys.readouterr()
    assert cli.main(["evaluate", str(run), "--epoch", "0", "--quiet"]) == 0
    assert "epoch 0, fold 0 test of real" in capsys.readouterr().out
    assert (run / "reports" / "epoch_000" / "evaluation" / "word.json").is_file()


def test_evaluate_needs_no_experiment_file(tiny, tmp_path, monkeypatch):
    experiment = config.load(tiny)
    run = tmp_path / "runs" / "tiny" / "fold0"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"experiment": experiment.to_dict()}))
    assert config.load(run).to_dict() == experiment.to_dict()
    seen = []
    monkeypatch.setattr(running, "evaluate_run", lambda run, data, **kw: seen.append(data))
    assert cli.main(["evaluate", str(run), "--quiet"]) == 0
    assert cli.main(["evaluate", str(run), "--data", str(tiny)]) == 0
    assert seen == [run, tiny]
    (run / "config.json").write_text(json.dumps({"tasks": []}))  # a run of mt.fit alone
    with pytest.raises(config.ExperimentError, match="records no experiment"):
        config.load(run)


def test_demo_names_its_run_by_its_settings(monkeypatch, tmp_path):
    assert job.run_name(epochs=25, seed=0, folds=5) == "demo"
    assert job.run_name(epochs=3, seed=1, folds=5) == "demo-epochs3-seed1"
    seen = []
    monkeypatch.setattr(job, "run_demo", lambda out, **kw: seen.append(kw["name"]))
    assert cli.main(["demo", "--out", str(tmp_path), "--name", "mine"]) == 0
    assert cli.main(["demo", "--out", str(tmp_path)]) == 0
    assert seen == ["mine", None]  # None: run_demo names it with run_name


# mtjax cache ls / clear


def fake_cache(root: Path, datasets=("commands", "sounds")) -> dict[str, Path]:
    """Entry-shaped folders (unfinished: no index.json), a work folder and a stranger."""
    made = {}
    for name in datasets:
        entry = root / name / f"LogMel-{'ab' * 10}"
        entry.mkdir(parents=True)
        (entry / "features.npy").write_bytes(b"\0" * 2048)
        (entry / ".offsets.npy.0123.tmp").write_bytes(b"")
        (root / name / f"LogMel-{'cd' * 10}.work" / "parts").mkdir(parents=True)
        (root / name / f"LogMel-{'cd' * 10}.work" / "parts" / "p0.npy").write_bytes(b"\0" * 10)
        made[name] = entry
    (root / "commands" / "notes").mkdir()  # not an entry: never removed
    (root / ".locks").mkdir()
    (root / ".locks" / f"commands.LogMel-{'cd' * 10}.lock").write_text("1\n")
    return made


def test_cache_ls_lists_entries_and_clear_removes_only_entries(tmp_path, capsys):
    made = fake_cache(tmp_path)
    assert cli.main(["cache", "ls", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["dataset", "extraction", "clips", "size", "status"]
    rows = [line.split() for line in lines[2:]]
    assert ["commands", "LogMel", "?", "2.0", "KiB", "unfinished"] in rows
    assert ["commands", "notes", "?", "0", "B", "unfinished"] in rows  # verify_cache's view
    assert ["sounds", "LogMel", "1", "parts", "10", "B", "partial"] in rows
    assert cli.main(["cache", "clear", str(tmp_path), "--dataset", "comands"]) == 2
    assert "did you mean 'commands'?" in capsys.readouterr().err
    assert cli.main(["cache", "clear", str(tmp_path), "--dataset", "sounds"]) == 0
    out = capsys.readouterr().out
    assert out.endswith(f"2 cache folders removed from {tmp_path}\n")
    assert not (tmp_path / "sounds").exists() and made["commands"].is_dir()
    assert cli.main(["cache", "clear", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert f"kept {tmp_path / 'commands' / 'notes'}: not a cache entry" in captured.err
    assert sorted(p.name for p in (tmp_path / "commands").iterdir()) == ["notes"]
    assert (tmp_path / ".locks").is_dir()  # lock files stay (another process may wait on one)


# A pipe closed early


@pytest.mark.skipif(os.name != "posix", reason="POSIX pipes and head")
def test_a_pipe_closed_early_ends_quietly(tmp_path):
    for d in range(40):
        for e in range(50):
            (tmp_path / f"{d:03d}{'x' * 180}" / f"LogMel-{e:020x}").mkdir(parents=True)
    writer = subprocess.Popen(
        [sys.executable, "-m", "mtjax", "cache", "ls", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    head = subprocess.Popen(["head", "-n", "1"], stdin=writer.stdout, stdout=subprocess.PIPE)
    assert writer.stdout is not None and writer.stderr is not None
    writer.stdout.close()  # only head holds the read end now
    first, _ = head.communicate(timeout=120)
    status, err = writer.wait(timeout=120), writer.stderr.read()
    assert first.split() == [b"dataset", b"extraction", b"clips", b"size", b"status"]
    assert (status, err) == (cli.PIPE_CLOSED, b"")
