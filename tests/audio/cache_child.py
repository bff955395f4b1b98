"""A process that reads one folder dataset into a cache, for the cache's fault tests.

python cache_child.py ROOT CACHE DELAY N_JOBS [GO]

Extracts with `SlowLogMel` (DELAY seconds per file) and N_JOBS worker processes, or, with
N_JOBS 0, through a one-thread pool that counts the files it extracts. With GO, writes
`GO.ready-<pid>` once imported and waits for the file GO before reading, so that two
processes start reading at the same moment. Prints one JSON line: the files this process
extracted (-1 when not counted), the number of clips and the sum of the features.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from counting import LOGMEL, CountingExecutor
from slow_extraction import SlowLogMel

import mtjax as mt
from mtjax.readers import FolderReader


def main(root: str, cache: str, delay: str, n_jobs: str, go: str | None = None) -> None:
    if go is not None:
        Path(f"{go}.ready-{os.getpid()}").touch()
        while not Path(go).exists():
            time.sleep(0.005)
    pool = CountingExecutor(max_workers=1) if int(n_jobs) == 0 else None
    ds = mt.read(
        FolderReader(root),
        SlowLogMel(LOGMEL, float(delay)),
        cache=cache,
        n_jobs=max(1, int(n_jobs)),
        executor=pool,
        progress=False,
    )
    out = {"files": -1 if pool is None else pool.files, "n": len(ds), "sum": float(ds.x.sum())}
    print(json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:])
