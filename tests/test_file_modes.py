"""Run and report files get the mode the umask gives (0o644 under 022), still written atomically."""

from __future__ import annotations

import contextlib
import os
import stat
import tomllib
from pathlib import Path

import pytest

from mtjax import files, runs

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_write_atomic_follows_the_umask(tmp_path, mask, expected):
    with umask(mask):
        written = files.write_bytes(tmp_path / "new" / "a.json", b"{}")
        files.write_bytes(written, b"[]")  # replacing keeps to the umask too
    assert written.read_bytes() == b"[]" and mode(written) == expected
    assert mode(written.parent) == 0o777 & ~mask
    assert sorted(p.name for p in written.parent.iterdir()) == ["a.json"]  # no temporary left


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600)])
def test_run_files_follow_the_umask(tmp_path, mask, expected):
    run = runs.Run(tmp_path, "exp/fold0")
    with umask(mask):
        written = [
            runs.write_config(run, {"seed": 0}),
            runs.write_history(run, [{"epoch": 0, "train/loss": 1.0}]),
            runs.write_reports(run, 0, "test", {"word": {"accuracy": 0.5}}),
        ]
    found = [p for p in run.path.rglob("*") if p.is_file() and p.name != ".lock"]
    assert len(found) >= 3 and {mode(p) for p in found} == {expected}, written


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = files.write_bytes(tmp_path / "a.json", b"old")

    def broken(f):
        f.write(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        files.write_atomic(path, broken)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_requires_python_3_11():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
