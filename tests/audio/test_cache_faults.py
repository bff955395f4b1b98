"""The feature cache under faults: concurrent readers, a killed reader, damaged parts and
entries, crafted indexes, a failed read fixed, audio edited in place (issue 10, 3-9)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import psutil
import pytest
from conftest import write_tone
from counting import LOGMEL, CountingExecutor

import mtjax as mt
from mtjax import cli
from mtjax.audio import entries, worker
from mtjax.audio.cache import CacheError, ExtractionError
from mtjax.readers import FolderReader

CHILD = Path(__file__).parent / "cache_child.py"


def _dataset(root: Path, n: int, seconds: float = 0.3) -> Path:
    for i in range(n):
        write_tone(root / "ab"[i % 2] / f"clip{i:02d}.wav", 300 + 20 * i, seconds, seed=i)
    return root


def _read(root, cache, **kw):
    pool = CountingExecutor()
    ds = mt.read(FolderReader(root), LOGMEL, cache=cache, executor=pool, progress=False, **kw)
    return ds, pool.files


def _entry(cache: Path) -> Path:
    (index,) = cache.glob("*/*/index.json")
    return index.parent


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A dataset of 18 clips and a finished cache entry of it, with the features read."""
    base = tmp_path_factory.mktemp("template")
    _dataset(base / "audio", 18)
    ds, _ = _read(base / "audio", base / "cache")
    return base, np.asarray(ds.x), list(ds.ids)


@pytest.fixture
def copy(template, tmp_path):
    """A copy of the template's audio and cache (mtimes kept: the same entry key)."""
    base, x, ids = template
    shutil.copytree(base, tmp_path / "t")
    return tmp_path / "t" / "audio", tmp_path / "t" / "cache", x, ids


# 3. Two processes, one cache


def test_two_processes_reading_one_dataset_both_succeed_and_leave_one_entry(tmp_path):
    root, cache, go = _dataset(tmp_path / "audio", 24), tmp_path / "cache", tmp_path / "go"
    command = [sys.executable, str(CHILD), str(root), str(cache), "0.03", "0", str(go)]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    deadline = time.time() + 120
    while len(list(tmp_path.glob("go.ready-*"))) < 2 and time.time() < deadline:
        time.sleep(0.02)
    go.touch()
    outs = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sorted(o["files"] for o in outs) == [0, 24]  # the second waited, then read
    assert outs[0]["n"] == outs[1]["n"] == 24 and outs[0]["sum"] == outs[1]["sum"]
    checks = entries.verify_cache(cache)
    assert [c.status for c in checks] == ["ok"], checks
    assert not list(cache.glob("*/*.work"))


# 4. A killed reader's workers


def _workers(proc: subprocess.Popen) -> list[psutil.Process]:
    parent = psutil.Process(proc.pid)
    return [c for c in parent.children() if c.cmdline() == parent.cmdline()]


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return True


def test_workers_exit_when_the_reading_process_is_killed(tmp_path):
    root, cache = _dataset(tmp_path / "audio", 40), tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, str(CHILD), str(root), str(cache), "1.0", "2"])
    deadline, workers = time.time() + 120, []
    while len(workers) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        workers = _workers(proc)
    assert len(workers) == 2
    time.sleep(0.5)  # mid-extraction: each worker is inside a 5-file, 5-second batch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 3
    while not all(_gone(w) for w in workers) and time.time() < deadline:
        time.sleep(0.05)
    alive = [w.pid for w in workers if not _gone(w)]
    for w in workers:  # tidy up after a failure; these are this test's grandchildren
        if not _gone(w):
            w.kill()
    assert not alive, f"workers {alive} outlived their killed parent"
    parts = next(cache.glob("*/*.work/parts"), None)
    done = len(worker.scan_parts(parts)[0]) if parts else 0
    ds, extracted = _read(root, cache)  # the killed holder's lock is not stuck
    assert len(ds) == 40 and extracted == 40 - done


# 5. Damaged parts


def _failed_read(tmp_path, n=24, bad="b/clip13.wav"):
    """A dataset with one corrupt file, read until it stopped there: parts stay."""
    root, cache = _dataset(tmp_path / "audio", n), tmp_path / "cache"
    good = (root / bad).read_bytes()
    (root / bad).write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(ExtractionError, match=bad.replace(".", r"\.")) as err:
        mt.read(FolderReader(root), LOGMEL, cache=cache, n_jobs=1, progress=False)
    assert "\n" not in str(err.value)
    (root / bad).write_bytes(good)  # fixed: a new size and mtime, so a new entry key
    (parts,) = cache.glob("*/*.work/parts")
    return root, cache, parts


def _zero_member_data(file: Path, member: str) -> None:
    with zipfile.ZipFile(file) as zf:
        info = zf.getinfo(member)
    with open(file, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_length, extra_length = struct.unpack("<HH", f.read(4))
        f.seek(info.header_offset + 30 + name_length + extra_length + info.compress_size // 2)
        f.write(b"\0" * 64)


@pytest.mark.parametrize("damage", ["truncated", "zero-filled", "features zeroed"])
def test_a_damaged_part_is_deleted_with_a_warning_and_its_clips_extracted_again(
    tmp_path, caplog, damage
):
    root, cache, parts = _failed_read(tmp_path)
    done = len(worker.scan_parts(parts)[0])
    part = sorted(parts.glob("*.npz"))[0]
    with np.load(part) as batch:
        in_part = len(batch["ids"])
    data = part.read_bytes()
    if damage == "truncated":
        part.write_bytes(data[: len(data) // 2])
    elif damage == "zero-filled":
        part.write_bytes(b"\0" * len(data))
    else:
        _zero_member_data(part, "features.npy")
    ds, extracted = _read(root, cache)
    assert extracted == 24 - done + in_part
    assert f"cache part {part} is damaged" in caplog.text
    fresh = mt.read(FolderReader(root), LOGMEL, n_jobs=1, progress=False)
    np.testing.assert_array_equal(ds.x, fresh.x)
    assert not list(cache.glob("*/*.work"))


# 8. A failed read keeps its work


def test_after_a_failed_read_is_fixed_only_the_missing_files_are_extracted(tmp_path):
    root, cache, parts = _failed_read(tmp_path)
    done = len(worker.scan_parts(parts)[0])
    assert 12 <= done < 24  # the batches before the bad file and its own batch's good files
    ds, extracted = _read(root, cache)
    assert extracted == 24 - done
    fresh = mt.read(FolderReader(root), LOGMEL, n_jobs=1, progress=False)
    np.testing.assert_array_equal(ds.x, fresh.x)
    np.testing.assert_array_equal(ds.ids, fresh.ids)
    assert not list(cache.glob("*/*.work")) and len(list(cache.glob("*/*/index.json"))) == 1


# 6 and 7. Damaged and inconsistent entries


def _edit_index(folder: Path, edit, reseal: bool = False) -> None:
    path = folder / "index.json"
    index = json.loads(path.read_text())
    edit(index)
    if reseal:
        index["checksum"] = entries.checksum(index)
    path.write_text(json.dumps(index))


def _move_a_boundary(folder: Path) -> None:
    offsets = np.load(folder / "offsets.npy")
    offsets[1] += 1  # clip 0 one frame longer, clip 1 one shorter: still a valid layout
    np.save(folder / "offsets.npy", offsets)


DAMAGES = {
    "features.npy empty": lambda f: (f / "features.npy").write_bytes(b""),
    "features.npy cut": lambda f: (f / "features.npy").write_bytes(
        (f / "features.npy").read_bytes()[:-100]
    ),
    "offsets.npy empty": lambda f: (f / "offsets.npy").write_bytes(b""),
    "index.json cut": lambda f: (f / "index.json").write_text('{"format": 2, "ids": ['),
    "index.json a list": lambda f: (f / "index.json").write_text("[1, 2]"),
    "no ids": lambda f: _edit_index(f, lambda i: i.pop("ids")),
    "no skipped": lambda f: _edit_index(f, lambda i: i.pop("skipped")),
    "ids a string": lambda f: _edit_index(f, lambda i: i.update(ids="a/clip01.wav")),
    "ids numbers": lambda f: _edit_index(f, lambda i: i.update(ids=list(range(18))), True),
    "skipped a dict": lambda f: _edit_index(f, lambda i: i.update(skipped={}), True),
    "old format": lambda f: _edit_index(f, lambda i: i.update(format=1), True),
    # 7: consistent-looking but wrong
    "ids reversed": lambda f: _edit_index(f, lambda i: i["ids"].reverse()),
    "a kept clip skipped": lambda f: _edit_index(
        f, lambda i: i["skipped"].append({"id": i["ids"][0], "path": "x", "error": "x"})
    ),
    "ids reversed, checksum redone": lambda f: _edit_index(f, lambda i: i["ids"].reverse(), True),
    "a kept clip skipped, checksum redone": lambda f: _edit_index(
        f, lambda i: i["skipped"].append({"id": i["ids"][3], "path": "x", "error": "x"}), True
    ),
    "a clip boundary moved": _move_a_boundary,
}
MESSAGES = {
    "features.npy empty": "EOFError|ValueError",
    "features.npy cut": "shorter than its header",
    "offsets.npy empty": "offsets.npy does not match",
    "index.json cut": "index.json is unreadable",
    "index.json a list": "holds a list",
    "no ids": "field 'ids' is missing or not a list$",
    "no skipped": "field 'skipped' is missing or not a list of records",
    "ids a string": "field 'ids' is missing or not a list$",
    "ids numbers": "field 'ids' holds a value that is not str",
    "skipped a dict": "field 'skipped' is missing",
    "old format": "written in cache format 1, this mtjax reads format 2",
    "ids reversed": "does not match its checksum",
    "a kept clip skipped": "does not match its checksum",
    "ids reversed, checksum redone": "ids do not match the dataset's 18 items",
    "a kept clip skipped, checksum redone": "lists a clip both kept and skipped",
    "a clip boundary moved": "offsets.npy does not match the sha256",
}


CASES = [(d, True) for d in DAMAGES] + [
    (d, False) for d in ("features.npy empty", "features.npy cut")
]


@pytest.mark.parametrize(("damage", "in_memory"), CASES)
def test_a_damaged_entry_is_refused_naming_it_and_read_extracts_it_again(
    copy, caplog, damage, in_memory
):
    root, cache, x, ids = copy
    folder = _entry(cache)
    DAMAGES[damage](folder)
    items = list(FolderReader(root).items())
    with pytest.raises(CacheError, match=MESSAGES[damage]) as err:
        entries.load(folder, items, mmap=not in_memory)
    assert str(err.value).startswith(f"cache entry {folder}: ") and "\n" not in str(err.value)
    ds, extracted = _read(root, cache, in_memory=in_memory)
    assert extracted == 18
    assert f"cache entry {folder}: " in caplog.text and "extracting it again" in caplog.text
    np.testing.assert_array_equal(np.asarray(ds.x), x)
    assert list(ds.ids) == ids
    entries.load(folder, items)  # whole again


def test_features_overwritten_in_place_pass_the_default_check_and_fail_the_content_check(copy):
    root, cache, x, _ = copy
    folder = _entry(cache)
    data = bytearray((folder / "features.npy").read_bytes())
    data[-400:] = bytes(400)  # the values change; size, shape and offsets do not
    (folder / "features.npy").write_bytes(bytes(data))
    ds, extracted = _read(root, cache)
    assert extracted == 0 and not np.array_equal(np.asarray(ds.x), x)  # documented
    with pytest.raises(CacheError, match="features.npy does not match the sha256"):
        entries.load(folder, verify="content")
    ds, extracted = _read(root, cache, verify="content")
    assert extracted == 18
    np.testing.assert_array_equal(np.asarray(ds.x), x)


# 9. Audio edited in place, and `mtjax cache verify`


def test_an_in_place_edit_keeping_size_and_mtime_is_caught_by_the_content_check(
    tmp_path, capsys, caplog
):
    root, cache = _dataset(tmp_path / "audio", 18), tmp_path / "cache"
    ds, _ = _read(root, cache)  # its own entry: `mtjax cache verify` hashes the recorded paths
    x, ids, folder = np.asarray(ds.x), list(ds.ids), _entry(cache)
    assert cli.main(["cache", "verify", str(cache)]) == 0
    frames = int(np.load(folder / "offsets.npy")[-1])
    assert (
        capsys.readouterr().out == f"ok          {folder}: 18 clips, {frames} frames, 0 skipped\n"
    )
    edited = root / ids[5]
    before = edited.stat()
    write_tone(edited, 2000.0, 0.3, seed=99)  # the same length: the same size
    os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert edited.stat().st_size == before.st_size
    ds, extracted = _read(root, cache)
    assert extracted == 0  # the default check reads no audio: the old features come back
    np.testing.assert_array_equal(np.asarray(ds.x), x)
    assert cli.main(["cache", "verify", str(cache)]) == 0
    capsys.readouterr()
    assert cli.main(["cache", "verify", "--content", str(cache)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"bad         {folder}: 1 of 18 audio files changed since extraction")
    assert str(edited) in out and out.count("\n") == 1
    ds, extracted = _read(root, cache, verify="content")
    assert extracted == 18 and "1 of 18 audio files changed" in caplog.text
    signal_, sr = mt.audio.load(edited, 16000)
    expected = LOGMEL(signal_, sr)
    np.testing.assert_array_equal(np.asarray(ds.x)[5, : len(expected)], expected)
    assert cli.main(["cache", "verify", "--content", str(cache)]) == 0


def test_cache_verify_reports_each_entry_and_fails_on_a_bad_one(copy, capsys, tmp_path):
    _, cache, _, _ = copy
    folder = _entry(cache)
    unfinished = folder.parent / "LogMel-0123456789abcdef0123"
    unfinished.mkdir()
    (folder / "offsets.npy").write_bytes(b"")
    assert cli.main(["cache", "verify", str(cache)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert sorted(lines) == [
        f"bad         {folder}: offsets.npy does not match the sha256 in index.json",
        f"unfinished  {unfinished}: no index.json; the next read completes it",
    ]
    assert cli.main(["cache", "verify", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err == f"mtjax: no cache folder {tmp_path / 'nowhere'}\n"


def test_verify_must_be_a_known_check(copy):
    root, cache, _, _ = copy
    with pytest.raises(ValueError, match="verify must be one of \\('fast', 'content'\\)"):
        _read(root, cache, verify="full")


def test_a_dataset_name_never_leaves_the_cache_folder(tone_folder, tmp_path):
    """Issue 10, finding 2: a reader named '..' would write its entry beside the cache."""
    cache = tmp_path / "deep" / "cache"
    with pytest.raises(ValueError, match="dataset name '..' cannot name a file or folder"):
        mt.read(FolderReader(tone_folder, task="pitch", name=".."), LOGMEL, cache=cache)
    assert not any(p for p in (tmp_path / "deep").rglob("*") if cache not in (p, *p.parents))
