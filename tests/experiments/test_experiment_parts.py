"""Experiment files reach every registered part: a public layout by name, a user's own
reader by import path or by a registered name, and errors that name the key and the fix."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mtjax import cli, runs
from mtjax import experiments as ex
from mtjax.data import Split
from mtjax.experiments import registry
from mtjax.readers import SpeechCommands


def write(folder: Path, text: str, name: str = "exp.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(text))
    return folder / name


def tone(path: Path, frequency: float, seconds: float, seed: int) -> None:
    """A seeded sine tone with a little noise, 16 kHz 16-bit PCM."""
    t = np.arange(int(seconds * 16000)) / 16000
    noise = 0.01 * np.random.default_rng(seed).standard_normal(t.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.5 * np.sin(2 * np.pi * frequency * t) + noise).astype(np.float32), 16000)


# --- A public layout by name: Speech Commands ------------------------------------------------

CLIPS = [
    f"{word}/{speaker}_nohash_0.wav"
    for word in ("yes", "no")
    for speaker in ("aaaa1111", "bbbb2222", "cccc3333", "dddd4444", "eeee5555", "ffff6666")
]
VALIDATION = ["yes/bbbb2222_nohash_0.wav", "no/bbbb2222_nohash_0.wav"]
TESTING = ["yes/cccc3333_nohash_0.wav", "no/cccc3333_nohash_0.wav", "no/ffff6666_nohash_0.wav"]


@pytest.fixture
def speech(tmp_path) -> Path:
    """Speech Commands as its archive unpacks: word folders of 1 s clips, the two lists and
    `_background_noise_`."""
    root = tmp_path / "speech_commands_v0.02"
    for i, clip in enumerate(CLIPS):
        tone(root / clip, 300 + 80 * i, seconds=1.0, seed=i)
    tone(root / "_background_noise_" / "white_noise.wav", 1000, seconds=1.5, seed=99)
    (root / "validation_list.txt").write_text("\n".join(VALIDATION) + "\n")
    (root / "testing_list.txt").write_text("\n".join(TESTING) + "\n")
    return root


def test_speech_commands_by_name_reads_the_official_lists(speech, tmp_path):
    path = write(
        tmp_path,
        """
        jobs = 1
        [[datasets]]
        reader = "speech_commands"
        root = "speech_commands_v0.02"
        [features]
        name = "log_mel"
        sample_rate = 16000
        n_mels = 20
        """,
    )
    experiment = ex.load(path)
    (spec,) = experiment.datasets
    assert spec["name"] == "SpeechCommands" and spec["root"] == str(speech)
    assert isinstance(ex.build_reader(spec), SpeechCommands)
    (split,) = ex.read_datasets(experiment, progress=False)
    assert isinstance(split, Split)
    assert sorted(np.asarray(split.test.ids).astype(str)) == sorted(TESTING)
    assert sorted(np.asarray(split.validation.ids).astype(str)) == sorted(VALIDATION)
    assert len(split.train) == len(CLIPS) - len(TESTING) - len(VALIDATION)  # noise left out
    assert split.train.x.shape[-1] == 20


def test_class_names_and_snake_case_names_build_the_same_reader(speech, tmp_path):
    by_class = ex.load(
        write(tmp_path, f"[[datasets]]\nreader = 'SpeechCommands'\nroot = '{speech}'")
    )
    by_snake = ex.load(
        write(tmp_path, f"[[datasets]]\nreader = 'speech_commands'\nroot = '{speech}'")
    )
    assert by_class.datasets[0]["reader"] == "SpeechCommands"
    assert ex.build_reader(by_class.datasets[0]) == ex.build_reader(by_snake.datasets[0])


# --- A user's own reader ---------------------------------------------------------------------

LAB_PARTS = '''
"""A lab's own reader: clips labelled by the word before the first "_" of the file name."""

import dataclasses
from pathlib import Path

from mtjax.experiments import register
from mtjax.readers import Item
from mtjax.tasks import Task


@dataclasses.dataclass(frozen=True)
class NamedClips:
    root: Path
    name: str = "named"

    def __post_init__(self):
        if not Path(self.root).is_dir():
            raise FileNotFoundError(f"clip root {str(self.root)!r} does not exist")
        object.__setattr__(self, "root", Path(self.root))

    @property
    def tasks(self):
        labels = sorted({p.name.split("_")[0] for p in self.root.glob("*.wav")})
        return (Task("pitch", tuple(labels)),)

    def items(self):
        for p in sorted(self.root.glob("*.wav")):
            yield Item(path=str(p), targets={"pitch": (p.name.split("_")[0],)}, id=p.name,
                       group=p.stem)


register("reader", "named_clips", NamedClips)
'''


@pytest.fixture
def lab_parts(tmp_path, monkeypatch):
    """`lab_parts` importable from a tmp folder; the registry and sys.modules restored after."""
    folder = tmp_path / "lab"
    folder.mkdir()
    (folder / "lab_parts.py").write_text(LAB_PARTS)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setitem(registry._PARTS, "reader", dict(registry._PARTS["reader"]))
    yield folder
    sys.modules.pop("lab_parts", None)


@pytest.fixture
def clips(tmp_path) -> Path:
    root = tmp_path / "clips"
    for i in range(8):
        tone(root / f"low_{i}.wav", 220 * (1 + 0.03 * i), seconds=0.4, seed=i)
        tone(root / f"high_{i}.wav", 3000 * (1 + 0.03 * i), seconds=0.4, seed=20 + i)
    return root


USER_RUN = """
name = "lab"
jobs = 1
folds = 2
run_folds = 1
{modules}
[[datasets]]
reader = "{reader}"
root = "clips"
[features]
name = "LogMel"
sample_rate = 16000
n_mels = 16
[model]
name = "dnn"
hidden = [8]
[train]
epochs = 1
batch_size = 8
early_stop = false
"""


@pytest.mark.parametrize(
    "reader, modules",
    [("lab_parts:NamedClips", ""), ("named_clips", 'modules = ["lab_parts"]')],
    ids=["import path", "registered by a listed module"],
)
def test_a_users_reader_trains_end_to_end(lab_parts, clips, tmp_path, capsys, reader, modules):
    path = write(tmp_path, USER_RUN.format(reader=reader, modules=modules))
    experiment = ex.load(path)
    assert experiment.datasets[0]["name"] == "named"  # the reader's own default name
    (run,) = ex.run_experiment(experiment, progress=False)
    assert run.path == tmp_path / "runs" / "lab" / "fold0"
    config = runs.read_config(run)
    assert config["group"] == "lab" and config["fold"] == 0
    assert config["experiment"]["datasets"][0]["reader"] == reader
    assert [t["name"] for t in config["tasks"]] == ["pitch"]
    assert len(runs.read_history(run)) == 1
    assert (run.path / "checkpoints").is_dir()
    assert type(ex.build_reader(experiment.datasets[0])).__module__ == "lab_parts"
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if line.startswith("lab ") and "pitch" in line]
    assert "accuracy" in row and "±" not in row  # one fold: the mean alone (runs.mean_std)


def test_a_registered_name_needs_its_module_listed(lab_parts, clips, tmp_path):
    path = write(tmp_path, USER_RUN.format(reader="named_clips", modules=""))
    with pytest.raises(ex.ExperimentError, match="datasets\\[0\\].reader: unknown reader"):
        ex.load(path)
    missing = write(tmp_path, USER_RUN.format(reader="named_clips", modules='modules = ["lab"]'))
    with pytest.raises(ex.ExperimentError, match="modules\\[0\\]: cannot import 'lab'"):
        ex.load(missing)


def test_a_bad_import_path_names_the_key_and_the_closest_attribute(lab_parts, clips, tmp_path):
    path = write(tmp_path, USER_RUN.format(reader="lab_parts:NamedClip", modules=""))
    with pytest.raises(ex.ExperimentError) as err:
        ex.load(path)
    assert str(err.value).startswith(f"{path}: datasets[0].reader: 'lab_parts' has no attribute")
    assert "did you mean 'NamedClips'?" in str(err.value)


# --- Errors that name the file, the key and the fix ------------------------------------------


def test_an_unknown_reader_names_the_key_and_the_closest_match(tmp_path):
    path = write(tmp_path, "[[datasets]]\nreader = 'speech_comands'\nroot = 'x'")
    with pytest.raises(ex.ExperimentError) as err:
        ex.load(path)
    message = str(err.value)
    assert message.startswith(
        f"{path}: datasets[0].reader: unknown reader 'speech_comands'; known:"
    )
    assert message.endswith("did you mean 'speech_commands'?")
    assert "esc50" in message and "demo" in message and "SpeechCommands" in message


def test_a_wrong_constructor_argument_names_the_dotted_key(tmp_path):
    path = write(tmp_path, "demo = true\n[features]\nname = 'LogMel'\nsample_rte = 16000")
    with pytest.raises(ex.ExperimentError) as err:
        ex.load(path)
    assert str(err.value).startswith(f"{path}: features.sample_rte: unknown key; LogMel takes:")
    assert "sample_rate" in str(err.value)


def test_what_a_constructor_refuses_is_passed_on_under_its_key(tmp_path):
    bad_value = write(tmp_path, "demo = true\n[features]\nname = 'log_mel'\nn_mels = 0")
    with pytest.raises(ex.ExperimentError, match=r"^.*exp\.toml: features\.n_mels: LogMel: n_mels"):
        ex.load(bad_value)
    no_root = write(tmp_path, "[[datasets]]\nreader = 'esc50'\nroot = 'nowhere'")
    with pytest.raises(ex.ExperimentError) as err:
        ex.load(no_root)
    assert str(err.value).startswith(f"{no_root}: datasets[0].root: ESC-50 root")
    assert isinstance(err.value.__cause__, FileNotFoundError)
    options = write(tmp_path, "[[datasets]]\nreader = 'ESC50'\nroot = '.'\nesc_10 = true")
    with pytest.raises(ex.ExperimentError, match=r"datasets\[0\]\.esc_10: unknown key; a ESC50"):
        ex.load(options)


@pytest.mark.parametrize("name", registry.names("reader"))
def test_every_built_in_reader_is_reached_by_name(tmp_path, name):
    """The constructor is called: each refuses the missing root under `root`."""
    required = registry.arguments(registry.lookup("reader", name)).required
    others = "".join(f"{k} = 'x.csv'\n" for k in required if k != "root")  # manifest, ...
    path = write(tmp_path, f"[[datasets]]\nreader = '{name}'\nroot = 'nowhere'\n{others}")
    with pytest.raises(ex.ExperimentError, match=r"datasets\[0\]\.root: .*root '.*nowhere'"):
        ex.load(path)


def test_the_training_parts_by_name_and_their_keys(tmp_path):
    e = ex.load(
        write(
            tmp_path,
            """
            demo = true
            [model]
            name = "HardSharingDNN"
            hidden = [8]
            [train]
            batches = {name = "balanced", per = "task"}
            early_stop = "never"
            per_task_grads = "gramian"
            """,
        )
    )
    assert e.model["name"] == "HardSharingDNN" and e.train["batches"]["per"] == "task"
    assert e.train["per_task_grads"] == "gramian"
    assert ex.build_early_stop(e.train["early_stop"]).metric is None  # never: no metric
    bad = [
        ("[train]\nbatches = {name = 'mixed', per = 'task'}", "train.batches.per: unknown key"),
        ("[train]\nearly_stop = 'patients'", "did you mean 'patience'?"),
        ("[model]\nname = 'dnn'\ntasks = ['a']", "model.tasks: unknown key; model 'dnn' takes"),
        ("[train]\ncombine = 'pc_grad'", "did you mean 'pcgrad'?"),
        ("[train]\nper_task_grads = 'hessian'", "train.per_task_grads"),
    ]
    for text, message in bad:
        with pytest.raises(ex.ExperimentError, match=None) as err:
            ex.load(write(tmp_path, "demo = true\n" + text, "bad.toml"))
        assert message in str(err.value), text


def test_a_parsed_file_round_trips_through_its_dict(speech, tmp_path):
    e = ex.load(
        write(
            tmp_path,
            f"[[datasets]]\nreader = 'speech_commands'\nroot = '{speech}'\nwords = ['yes', 'no']",
        )
    )
    assert e.datasets[0]["words"] == ("yes", "no")
    assert ex.parse(e.to_dict(), base=e.base, source=e.source) == e
    assert ex.build_reader(e.datasets[0]).words == ("yes", "no")


def test_the_command_line_exits_with_the_message_of_a_bad_file(tmp_path, capsys):
    path = write(tmp_path, "[[datasets]]\nreader = 'speech_comands'\nroot = 'x'")
    assert cli.main(["run", str(path), "--epochs", "1"]) == 2
    assert capsys.readouterr().err.startswith(f"mtjax: {path}: datasets[0].reader: unknown reader")
    assert cli.main(["report", str(tmp_path / "no_runs_here")]) == 2
    assert re.search("^mtjax: .* is not a folder", capsys.readouterr().err)
