"""An extraction that sleeps per file, so a test can kill a process mid-extraction."""

from __future__ import annotations

import dataclasses
import time

from mtjax.features import LogMel


@dataclasses.dataclass(frozen=True)
class SlowLogMel:
    inner: LogMel
    delay: float = 0.0

    @property
    def key(self) -> str:  # the delay does not change the numbers, so not the key
        return self.inner.key

    @property
    def sample_rate(self) -> int:
        return self.inner.sample_rate

    @property
    def min_samples(self) -> int:
        return self.inner.min_samples

    def __call__(self, signal, sample_rate):
        time.sleep(self.delay)
        return self.inner(signal, sample_rate)
