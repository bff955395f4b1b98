"""mt.read(executor=...) with a Dask cluster's executor: the cluster extracts, one cache.

A local cluster of two worker processes stands in for a cluster whose workers share the
cache folder. Its executor (`Client.get_executor()`) is an ordinary
`concurrent.futures.Executor`, which is all `read` needs.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from counting import LOGMEL

import mtjax as mt
from mtjax.readers import FolderReader

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with distributed.Client(cluster) as dask_client:
        yield dask_client
    cluster.close()


def test_a_dask_cluster_extracts_the_same_features_into_one_entry(tone_folder, tmp_path, client):
    reader = FolderReader(tone_folder, task="pitch")
    serial = mt.read(reader, LOGMEL, cache=tmp_path / "serial", n_jobs=1, progress=False)
    pids = set(client.run(os.getpid).values())
    assert len(pids) == 2 and os.getpid() not in pids  # two processes apart from this one

    cache = tmp_path / "shared"
    on_cluster = mt.read(reader, LOGMEL, cache=cache, executor=client.get_executor())
    np.testing.assert_array_equal(on_cluster.x, serial.x)
    np.testing.assert_array_equal(on_cluster.lengths, serial.lengths)
    np.testing.assert_array_equal(on_cluster.ids, serial.ids)
    entries = [p for p in (cache / reader.name).iterdir() if p.is_dir()]
    assert len(entries) == 1 and (entries[0] / "index.json").is_file()  # finished, no .work
    assert not list((cache / reader.name).glob("*.work"))

    again = mt.read(reader, LOGMEL, cache=cache, executor=client.get_executor())
    np.testing.assert_array_equal(again.x, serial.x)


def test_a_file_a_cluster_worker_cannot_read_is_named(tone_folder, tmp_path, client):
    (tone_folder / "low" / "spk0_nohash_0.wav").write_bytes(b"not audio")
    reader = FolderReader(tone_folder, task="pitch")
    with pytest.raises(mt.audio.ExtractionError, match=r"spk0_nohash_0\.wav"):
        mt.read(reader, LOGMEL, cache=tmp_path / "c", executor=client.get_executor())
    kept = mt.read(
        reader, LOGMEL, cache=tmp_path / "c", executor=client.get_executor(), on_error="skip"
    )
    assert len(kept) == 17
