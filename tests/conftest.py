"""Shared fixtures: seeded randomness and small audio written in the test.

JAX runs with four CPU devices (so sharded code paths run here too) and with rank
promotion disallowed, so a [B] array never broadcasts silently against a [B, K] one.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
# the jobs' persistent compilation cache would outlive each test's folder (tested apart)
os.environ.setdefault("MTJAX_NO_COMPILATION_CACHE", "1")

import jax
import numpy as np
import pytest
import soundfile as sf

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def write_tone(
    path,
    frequency: float,
    seconds: float = 0.5,
    sample_rate: int = 16000,
    noise: float = 0.01,
    seed: int = 0,
) -> None:
    """A sine tone with a little seeded noise, as 16-bit PCM."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    noise_part = noise * np.random.default_rng(seed).standard_normal(t.shape)
    signal = 0.5 * np.sin(2 * np.pi * frequency * t) + noise_part
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, signal.astype(np.float32), sample_rate, subtype="PCM_16")


@pytest.fixture
def tone_folder(tmp_path):
    """A folder-per-class dataset: 3 classes x 6 clips of tones, lengths 0.3–0.6 s."""
    root = tmp_path / "tones"
    for c, (label, base) in enumerate([("low", 220.0), ("mid", 880.0), ("high", 3000.0)]):
        for i in range(6):
            write_tone(
                root / label / f"spk{i % 3}_nohash_{i}.wav",
                base * (1 + 0.02 * i),
                seconds=0.3 + 0.05 * i,
                seed=10 * c + i,
            )
    return root
