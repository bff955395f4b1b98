"""SpeechCommands on a miniature copy of its layout."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_tone

import mtjax
from mtjax.data import Split
from mtjax.readers.base import Reader, ReaderError
from mtjax.readers.speech_commands import SpeechCommands
from mtjax.tasks import Task

# --- Speech Commands -------------------------------------------------------------------------

SC_CLIPS = [
    "yes/aaaa1111_nohash_0.wav",
    "yes/bbbb2222_nohash_0.wav",
    "yes/cccc3333_nohash_0.wav",
    "no/aaaa1111_nohash_0.wav",
    "no/dddd4444_nohash_1.wav",
    "no/cccc3333_nohash_0.wav",
    "happy/bbbb2222_nohash_0.wav",
    "happy/dddd4444_nohash_0.wav",
    "happy/eeee5555_nohash_0.wav",
    "up/eeee5555_nohash_2.wav",
]
SC_VALIDATION = ["yes/bbbb2222_nohash_0.wav", "happy/bbbb2222_nohash_0.wav"]
SC_TESTING = [
    "yes/cccc3333_nohash_0.wav",
    "no/cccc3333_nohash_0.wav",
    "happy/eeee5555_nohash_0.wav",
    "up/eeee5555_nohash_2.wav",
]


def speech_commands(root):
    """The archive's tree (no wrapping folder), one tone per clip, 0.2 s at 16 kHz."""
    for i, clip in enumerate(SC_CLIPS):
        write_tone(root / clip, 300 + 60 * i, seconds=0.2, seed=i)
    write_tone(root / "_background_noise_" / "white_noise.wav", 1000, seconds=1.5, noise=0.3)
    (root / "_background_noise_" / "README.md").write_text("noise")
    (root / "validation_list.txt").write_text("\n".join(SC_VALIDATION) + "\n")
    (root / "testing_list.txt").write_text("\n".join(SC_TESTING) + "\n")
    (root / "README.md").write_text("Speech Commands")
    (root / "LICENSE").write_text("CC BY 4.0")
    return root


@pytest.fixture
def commands(tmp_path):
    return speech_commands(tmp_path / "speech_commands_v0.02")


def test_speech_commands_words_split_groups(commands):
    reader = SpeechCommands(commands)
    items = list(reader.items())
    assert isinstance(reader, Reader) and reader.name == "SpeechCommands"
    assert reader.tasks == (Task("word", ("happy", "no", "up", "yes"), "multiclass"),)
    assert sorted(i.id for i in items) == sorted(SC_CLIPS)  # _background_noise_ excluded
    by_id = {i.id: i for i in items}
    assert {i for i, it in by_id.items() if it.split == "test"} == set(SC_TESTING)
    assert {i for i, it in by_id.items() if it.split == "validation"} == set(SC_VALIDATION)
    assert sum(it.split == "train" for it in items) == 4
    assert by_id["no/dddd4444_nohash_1.wav"].group == "dddd4444"
    assert by_id["no/dddd4444_nohash_1.wav"].targets == {"word": ("no",)}
    assert all(it.fold is None for it in items)


def test_speech_commands_keyword_spotting_and_word_subset(commands):
    kws = SpeechCommands(commands, keyword_spotting=True)
    (task,) = kws.tasks
    assert task.name == "keyword" and task.kind == "multiclass"
    assert task.labels == (
        "down",
        "go",
        "left",
        "no",
        "off",
        "on",
        "right",
        "stop",
        "up",
        "yes",
        "_unknown_",
    )
    by_id = {i.id: i.targets["keyword"] for i in kws.items()}
    assert by_id["happy/dddd4444_nohash_0.wav"] == ("_unknown_",)
    assert by_id["up/eeee5555_nohash_2.wav"] == ("up",)
    subset = SpeechCommands(commands, words=("yes", "no"))
    assert subset.tasks == (Task("word", ("no", "yes")),)
    assert len(list(subset.items())) == 6
    with pytest.raises(ReaderError, match="no word folder 'left'"):
        _ = SpeechCommands(commands, words=["left"]).tasks


def test_speech_commands_torchaudio_nesting_and_version(tmp_path):
    speech_commands(tmp_path / "SpeechCommands" / "speech_commands_v0.01")
    nested = tmp_path / "SpeechCommands" / "speech_commands_v0.01"
    assert SpeechCommands(tmp_path).root == nested.resolve()
    assert SpeechCommands(tmp_path, version=1).root == nested.resolve()
    with pytest.raises(ReaderError, match="speech_commands_v0.02"):
        SpeechCommands(tmp_path, version=2)
    speech_commands(tmp_path / "speech_commands_v0.02")
    with pytest.raises(ReaderError, match="pass version=1 or version=2"):
        SpeechCommands(tmp_path)
    assert SpeechCommands(tmp_path, version=2).root.name == "speech_commands_v0.02"


def test_speech_commands_list_naming_a_missing_clip(commands):
    with open(commands / "testing_list.txt", "a") as f:
        f.write("yes/ffff6666_nohash_0.wav\n")
    with pytest.raises(ReaderError, match=r"testing_list\.txt line 5: 'yes/ffff6666"):
        list(SpeechCommands(commands).items())
    (commands / "validation_list.txt").unlink()
    with pytest.raises(ReaderError, match=r"validation_list\.txt"):
        list(SpeechCommands(commands).items())


def test_speech_commands_read_gives_the_testing_list_as_split_test(commands, tmp_path):
    """The issue's acceptance check: `mt.read` returns the predefined split."""
    reader = SpeechCommands(commands)
    split = mtjax.read(
        reader,
        mtjax.features.LogMel(sample_rate=16000, n_mels=20),
        n_jobs=1,
        cache=tmp_path / "cache",
        progress=False,
    )
    assert isinstance(split, Split)
    assert sorted(np.asarray(split.test.ids).astype(str).tolist()) == sorted(SC_TESTING)
    assert sorted(np.asarray(split.validation.ids).astype(str).tolist()) == sorted(SC_VALIDATION)
    assert len(split.train.ids) == len(SC_CLIPS) - len(SC_TESTING) - len(SC_VALIDATION)
    assert split.tasks == reader.tasks
