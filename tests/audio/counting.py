"""What the cache tests share: a small LogMel and an executor that counts files."""

from __future__ import annotations

import concurrent.futures as cf

from mtjax.features import LogMel

LOGMEL = LogMel(sample_rate=16000, n_fft=512, hop_length=160, n_mels=20)


class CountingExecutor(cf.ThreadPoolExecutor):
    """A thread pool that counts the files it was asked to extract."""

    def __init__(self, max_workers: int = 2):
        super().__init__(max_workers=max_workers)
        self.files = 0

    def submit(self, fn, *args, **kwargs):
        self.files += len(args[0])
        return super().submit(fn, *args, **kwargs)
