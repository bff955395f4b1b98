"""The thesis examples run end to end with --demo, at a tiny scale (1 epoch, 1 fold).

Each example's `main(argv)` runs in this process (imported from its file), all sharing one
output folder, so the demo audio is made once and JAX is imported once.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str):
    """examples/{name}.py as a module (its folder on sys.path, for `import _common`)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    if f"example_{name}" in sys.modules:
        return sys.modules[f"example_{name}"]
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("examples")


def run(name: str, out: Path, capsys, *extra: str) -> str:
    argv = [
        "--demo",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--folds",
        "1",
        "--scale",
        "0.3",
        "--quiet",
        *extra,
    ]
    assert load(name).main(argv) == 0
    return capsys.readouterr().out


def test_georgiev(out, capsys):
    text = run("georgiev", out, capsys, "--datasets", "word,category")
    for task in ("word", "category"):
        assert task in text
    assert "multi-task vs single-task" in text
    assert "georgiev/word+category" in text
    for combination in ("word", "category", "word+category"):
        assert (out / "runs" / "georgiev" / combination / "fold0" / "config.json").is_file()


def test_xu(out, capsys):
    text = run("xu", out, capsys)
    assert "category" in text and "tags" in text and "micro_f1" in text
    assert (out / "runs" / "xu" / "fold0" / "history.json").is_file()


def test_park_audioset(out, capsys):
    text = run("park_audioset", out, capsys, "--labels", "chirp,tone")
    assert "multilabel" in text
    for label in ("chirp", "tone"):
        assert label in text
    assert (out / "runs" / "park" / "fold0" / "history.json").is_file()


def test_park_refuses_an_unknown_label(out):
    with pytest.raises(ValueError, match="not in task 'tags'"):
        load("park_audioset").main(["--demo", "--out", str(out), "--labels", "chirp,nope"])


def test_variation(out, capsys):
    only = "base,extraction=Mfcc,scaling=cell,combine=pcgrad,batches=per_dataset"
    text = run("variation", out, capsys, "--only", only)
    table = text[text.index("test headline") :]
    assert "word" in table and "category" in table
    for name in only.split(","):
        assert name in table


def test_examples_need_paths_or_demo(capsys):
    for name in ("georgiev", "xu", "park_audioset", "variation"):
        with pytest.raises(SystemExit):
            load(name).main([])
        assert "--demo" in capsys.readouterr().err
