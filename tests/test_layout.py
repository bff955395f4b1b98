"""The package layout: stage packages import only the stages before them, every module
imports on its own, no module grows past the size where it should be split."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mtjax"

# The pipeline, first to last. Private helpers that everything may use come first.
ORDER = (
    "_lazy",
    "files",
    "tasks",
    "tables",
    "data",
    "readers",
    "audio",
    "train",
    "runs",
    "inference",
    "demo",
    "experiments",
    "cli",
    "__main__",
)
MAX_LINES = 460


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _dotted(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _stage(dotted: str) -> str | None:
    """The stage of `mtjax.<stage>...`, None for the top-level package itself."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else None


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported mtjax module or name path) of every import in the file, nested ones too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "mtjax"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "mtjax":
                found += [(node.lineno, f"mtjax.{a.name}") for a in node.names]
            elif node.module.startswith("mtjax."):
                found.append((node.lineno, node.module))
    return found


def test_the_stage_list_names_every_top_level_module_and_package():
    top = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    top |= {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert top == set(ORDER)


def test_each_stage_imports_only_the_stages_before_it():
    wrong = []
    for path in _modules():
        mine = _stage(_dotted(path))
        if mine is None:
            continue  # mtjax/__init__.py re-exports lazily, by name
        for line, target in _imports(path):
            theirs = _stage(target)
            if theirs is None:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports the top-level mtjax")
            elif ORDER.index(theirs) > ORDER.index(mine):
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} ({mine}) imports {target}")
    assert not wrong, "imports against the pipeline order:\n" + "\n".join(wrong)


def test_the_order_check_catches_a_backward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from mtjax.runs import folder\n    import mtjax\n")
    assert _imports(bad) == [(2, "mtjax.runs"), (3, "mtjax")]
    assert ORDER.index(_stage("mtjax.runs")) > ORDER.index(_stage("mtjax.train.loop"))


def test_no_module_is_too_long():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these by concern: {long}"


_IMPORT_EACH = r"""
import importlib, json, sys, traceback
third_party = ["numpy", "jax", "flax", "optax", "orbax.checkpoint", "librosa", "sklearn",
               "scipy", "soundfile", "tensorboardX", "matplotlib", "tqdm"]
for name in third_party:  # imported once; each mtjax module below starts from none of mtjax
    importlib.import_module(name)
failures = {}
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if m == "mtjax" or m.startswith("mtjax.")]:
        del sys.modules[loaded]
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__module__ != "mtjax"]
    try:
        importlib.import_module(name)
    except BaseException:
        failures[name] = traceback.format_exc(limit=-3)
print(json.dumps(failures))
"""


def test_every_module_imports_with_no_other_mtjax_module_loaded_first():
    names = [_dotted(p) for p in _modules()]
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH, json.dumps(names)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    failures = json.loads(out.stdout.strip().splitlines()[-1])
    assert not failures, "\n".join(f"{k}:\n{v}" for k, v in failures.items())


@pytest.mark.parametrize("module", ["mtjax.audio.worker", "mtjax.runs.comparison", "mtjax.tables"])
def test_light_modules_import_no_jax(module):
    code = f"import sys, {module}; print(sorted(m for m in ('jax', 'flax') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_old_module_paths_are_the_new_modules():
    import mtjax.audio.features
    import mtjax.features
    import mtjax.train.schedules
    from mtjax import batching

    assert mtjax.features is mtjax.audio.features
    assert batching is mtjax.train.schedules
    assert mtjax.audio.features.__spec__.name == "mtjax.audio.features"


def test_the_stub_lists_what_the_package_exports():
    import mtjax

    stub = ast.parse((PACKAGE / "__init__.pyi").read_text())
    (listed,) = [
        ast.literal_eval(n.value)
        for n in stub.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "__all__"
    ]
    assert listed == mtjax.__all__
    assert (PACKAGE / "py.typed").is_file()
    for name in mtjax.__all__:
        assert getattr(mtjax, name) is not None
