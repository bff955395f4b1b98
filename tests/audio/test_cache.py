"""mt.read: extraction, the feature cache, resume after kill -9, index mode, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import write_tone
from counting import LOGMEL, CountingExecutor

import mtjax as mt
from mtjax.arrays import DiskArray
from mtjax.audio import entries, load
from mtjax.extract import scan_parts
from mtjax.features import LogMel
from mtjax.readers import CsvReader, FolderReader
from mtjax.store import CacheError, ExtractionError


def test_read_gives_padded_features_equal_to_direct_extraction(tone_folder, tmp_path):
    ds = mt.read(FolderReader(tone_folder, task="pitch"), LOGMEL, cache=tmp_path / "c", n_jobs=1)
    assert isinstance(ds, mt.TaskDataset)
    assert len(ds) == 18 and ds.tasks[0].labels == ("high", "low", "mid")
    assert ds.x.dtype == np.float32 and ds.x.shape[0] == 18 and ds.x.shape[2] == 20
    for n in [0, 7, 17]:
        signal_, sr = load(tone_folder / ds.ids[n], 16000)
        expected = LOGMEL(signal_, sr)
        assert ds.lengths[n] == expected.shape[0]
        np.testing.assert_array_equal(ds.x[n, : ds.lengths[n]], expected)
        assert np.all(ds.x[n, ds.lengths[n] :] == 0)
    assert ds.x.shape[1] == ds.lengths.max()
    # targets: one-hot of the folder name
    labels = [ds.tasks[0].labels[i] for i in ds.y.argmax(1)]
    assert labels == [i.split("/")[0] for i in ds.ids]


def test_cache_hit_is_identical_and_extracts_nothing(tone_folder, tmp_path):
    reader = FolderReader(tone_folder, task="pitch")
    first = mt.read(reader, LOGMEL, cache=tmp_path / "c", n_jobs=2)
    pool = CountingExecutor()
    second = mt.read(reader, LOGMEL, cache=tmp_path / "c", executor=pool)
    assert pool.files == 0
    np.testing.assert_array_equal(first.x, second.x)
    np.testing.assert_array_equal(first.y, second.y)
    np.testing.assert_array_equal(first.ids, second.ids)
    # another parameter is another cache entry
    other = mt.read(
        reader,
        LogMel(sample_rate=16000, n_fft=512, hop_length=160, n_mels=24),
        cache=tmp_path / "c",
        executor=CountingExecutor(),
    )
    assert other.x.shape[2] == 24
    assert len(list((tmp_path / "c" / "tones").iterdir())) == 2


def test_touching_a_file_invalidates_the_cache(tone_folder, tmp_path):
    reader = FolderReader(tone_folder, task="pitch")
    mt.read(reader, LOGMEL, cache=tmp_path / "c", n_jobs=1)
    path = tone_folder / "low" / "spk0_nohash_0.wav"
    write_tone(path, 300.0, seconds=0.4)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    pool = CountingExecutor()
    mt.read(reader, LOGMEL, cache=tmp_path / "c", executor=pool)
    assert pool.files == 18


def test_process_pool_equals_serial(tone_folder, tmp_path):
    reader = FolderReader(tone_folder, task="pitch")
    serial = mt.read(reader, LOGMEL, cache=tmp_path / "a", n_jobs=1, progress=False)
    pooled = mt.read(reader, LOGMEL, cache=tmp_path / "b", n_jobs=2, progress=False)
    np.testing.assert_array_equal(serial.x, pooled.x)


def test_killed_extraction_resumes_with_only_the_missing_files(tmp_path):
    root = tmp_path / "many"
    for i in range(40):
        write_tone(root / ("a" if i % 2 else "b") / f"clip{i:02d}.wav", 300 + 20 * i, 0.3, seed=i)
    cache = tmp_path / "cache"
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})
        import mtjax as mt
        from mtjax.features import LogMel
        from mtjax.readers import FolderReader
        from slow_extraction import SlowLogMel
        ext = SlowLogMel(LogMel(sample_rate=16000, n_fft=512, hop_length=160, n_mels=20), 0.05)
        mt.read(FolderReader({str(root)!r}), ext, cache={str(cache)!r}, n_jobs=1, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    while time.time() < deadline and not list(cache.glob("*/*/parts/*.npz")):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(scan_parts(next(cache.glob("*/*/parts")))[0])
    assert 1 <= done < 40, done
    assert not list(cache.glob("*/*/index.json"))
    sys.path.insert(0, str(Path(__file__).parent))
    from slow_extraction import SlowLogMel

    pool = CountingExecutor()
    ext = SlowLogMel(LogMel(sample_rate=16000, n_fft=512, hop_length=160, n_mels=20), 0.0)
    resumed = mt.read(FolderReader(root), ext, cache=cache, executor=pool, progress=False)
    assert pool.files == 40 - done
    fresh = mt.read(
        FolderReader(root),
        LogMel(sample_rate=16000, n_fft=512, hop_length=160, n_mels=20),
        n_jobs=1,
        progress=False,
    )
    np.testing.assert_array_equal(resumed.x, fresh.x)
    assert not list(cache.glob("*/*/parts"))


def test_index_mode_equals_in_memory(tone_folder, tmp_path):
    reader = FolderReader(tone_folder, task="pitch")
    dense = mt.read(reader, LOGMEL, cache=tmp_path / "c", n_jobs=1)
    lazy = mt.read(reader, LOGMEL, cache=tmp_path / "c", n_jobs=1, in_memory=False)
    assert isinstance(lazy.x, DiskArray) and lazy.x.shape == dense.x.shape
    np.testing.assert_array_equal(np.asarray(lazy.x), dense.x)
    np.testing.assert_array_equal(lazy.x[[3, 1, 3]], dense.x[[3, 1, 3]])
    capped = mt.read(reader, LOGMEL, cache=tmp_path / "c", in_memory=False, max_frames=10)
    assert capped.x.shape[1] == 10 and capped.lengths.max() == 10
    np.testing.assert_array_equal(np.asarray(capped.x), dense.x[:, :10])


def test_predefined_splits_come_back_as_a_split(tmp_path):
    root = tmp_path / "sc"
    for word in ["yes", "no"]:
        for spk in ["aa11", "bb22", "cc33"]:
            write_tone(root / word / f"{spk}_nohash_0.wav", 400 if word == "yes" else 900, 0.3)
    (root / "testing_list.txt").write_text("yes/cc33_nohash_0.wav\nno/cc33_nohash_0.wav\n")
    (root / "validation_list.txt").write_text("yes/bb22_nohash_0.wav\n")
    reader = FolderReader(
        root, task="word", validation_list="validation_list.txt", testing_list="testing_list.txt"
    )
    split = mt.read(reader, LOGMEL, n_jobs=1)
    assert isinstance(split, mt.Split)
    assert sorted(split.test.ids) == ["no/cc33_nohash_0.wav", "yes/cc33_nohash_0.wav"]
    assert list(split.validation.ids) == ["yes/bb22_nohash_0.wav"]
    assert len(split.train) == 3


def _corrupt_dataset(tmp_path):
    root = tmp_path / "bad"
    for i in range(4):
        write_tone(root / "a" / f"ok{i}.wav", 440, 0.3, seed=i)
        write_tone(root / "b" / f"ok{i}.wav", 880, 0.3, seed=i)
    (root / "a" / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    sf.write(root / "b" / "silent.wav", np.zeros(8000, np.float32), 16000)
    sf.write(root / "b" / "short.wav", 0.1 * np.ones(100, np.float32), 16000)
    return root


def test_bad_audio_raises_naming_the_file(tmp_path):
    root = _corrupt_dataset(tmp_path)
    with pytest.raises(ExtractionError, match=r"a/corrupt\.wav"):
        mt.read(FolderReader(root), LOGMEL, cache=tmp_path / "c", n_jobs=1)


def test_bad_audio_skipped_is_listed_and_logged(tmp_path, caplog):
    root = _corrupt_dataset(tmp_path)
    ds = mt.read(FolderReader(root), LOGMEL, cache=tmp_path / "c", n_jobs=1, on_error="skip")
    assert sorted(ds.ids) == sorted(
        [f"a/ok{i}.wav" for i in range(4)] + [f"b/ok{i}.wav" for i in range(4)]
    )
    index = json.loads(next((tmp_path / "c").glob("*/*/index.json")).read_text())
    reasons = {Path(s["id"]).name: s["error"] for s in index["skipped"]}
    assert set(reasons) == {"corrupt.wav", "silent.wav", "short.wav"}
    assert "silent" in reasons["silent.wav"] and "short" in reasons["short.wav"]
    assert "3 unusable file(s)" in caplog.text


def test_damaged_cache_is_refused_naming_it_and_extracted_again(tone_folder, tmp_path, caplog):
    reader = FolderReader(tone_folder, task="pitch")
    first = mt.read(reader, LOGMEL, cache=tmp_path / "c", n_jobs=1)
    index = next((tmp_path / "c").glob("*/*/index.json"))
    for text, message in [
        ('{"format": 2, "ids": [', "index.json is unreadable"),
        (json.dumps({"format": 999, "ids": []}), "format 999"),
        (json.dumps({"format": 2, "ids": ["x"], "skipped": []}), "field 'key' is missing"),
    ]:
        index.write_text(text)
        with pytest.raises(CacheError, match=message):
            entries.load(index.parent)
        pool = CountingExecutor()
        again = mt.read(reader, LOGMEL, cache=tmp_path / "c", executor=pool)
        assert pool.files == 18 and message in caplog.text
        np.testing.assert_array_equal(again.x, first.x)


def test_missing_root_and_empty_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        mt.read(FolderReader(tmp_path / "nowhere"), LOGMEL)


def test_manifest_dataset_reads_multilabel_targets(tmp_path):
    root = tmp_path / "tags"
    rows = ["path,tags,split"]
    for i in range(6):
        write_tone(root / "clips" / f"{i}.wav", 300 + 100 * i, 0.3, seed=i)
        tags = ["a", "a;b", "b", "", "a;b", "b"][i]
        rows.append(f"clips/{i}.wav,{tags},{'test' if i >= 4 else 'train'}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    reader = CsvReader(
        root, "manifest.csv", label_columns=("tags",), separator=";", split_column="split"
    )
    split = mt.read(reader, LOGMEL, n_jobs=1)
    assert split.train.tasks[0].kind == "multilabel"
    np.testing.assert_array_equal(split.train.y, [[1, 0], [1, 1], [0, 1], [0, 0]])
    np.testing.assert_array_equal(split.test.y, [[1, 1], [0, 1]])


def test_index_mode_memory_stays_well_below_the_dataset_size(tmp_path):
    root = tmp_path / "long"
    rng = np.random.default_rng(0)
    for i in range(400):
        signal = 0.3 * rng.standard_normal(64000).astype(np.float32)
        path = root / ("a" if i % 2 else "b") / f"{i:03d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, signal, 16000, subtype="PCM_16")
    raw = mt.features.Raw(sample_rate=16000, frame_length=400, hop_length=400)
    mt.read(FolderReader(root), raw, cache=tmp_path / "c", n_jobs=2, progress=False)
    size = next((tmp_path / "c").glob("*/*/features.npy")).stat().st_size
    assert size > 95 * 2**20
    script = textwrap.dedent(f"""
        import json, numpy as np, psutil
        import mtjax as mt
        from mtjax.readers import FolderReader
        mt.data.arrays.CHUNK_VALUES = 1 << 18          # 1 MiB chunks: memory follows the chunk size
        raw = mt.features.Raw(sample_rate=16000, frame_length=400, hop_length=400)
        rss = lambda: psutil.Process().memory_info().rss
        def read(in_memory):
            return mt.read(FolderReader({str(root)!r}), raw, cache={str(tmp_path / "c")!r},
                           in_memory=in_memory, progress=False)
        ds = read(False)
        before, peak = rss(), 0
        scaler = mt.data.fit_scaler(ds)
        peak = max(peak, rss())
        scaled = mt.data.scale(ds, scaler)
        order = np.random.default_rng(0).permutation(len(ds))
        for begin in range(0, len(ds), 4):  # shuffled batches of 1 MiB
            scaled.x[order[begin : begin + 4]].sum()
            peak = max(peak, rss())
        lazy_growth = peak - before
        dense = read(True)
        print(json.dumps({{"lazy": lazy_growth, "dense": rss() - before,
                           "mean": float(scaler.mean.mean())}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["dense"] > 0.8 * size  # the measurement sees a dataset loaded whole
    assert result["lazy"] < 0.25 * size, result
