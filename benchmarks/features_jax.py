"""Features per second of audio: the JAX path (`batch_features`) vs the librosa path.

One JSON line per extraction: seconds of audio featurised per second of wall time by
`ext(signal, rate)` clip by clip in this one process (librosa), by `batch_features` on the
whole batch (float32 and float64; the best of `--repeats` after a compiling call, transfers
included), and the ratio JAX float32 / librosa. The default settings of each extraction and
the speech ones (16 kHz, 25 ms window, 10 ms hop).

Usage: python benchmarks/features_jax.py [--clips 16] [--seconds 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from mtjax.audio.features import FilterBank, LogMel, MelSpectrogram, Mfcc, device

SPEECH = dict(win_seconds=0.025, hop_seconds=0.010)
EXTRACTIONS = {
    "MelSpectrogram": MelSpectrogram(),
    "LogMel": LogMel(),
    "Mfcc": Mfcc(),
    "FilterBank": FilterBank(),
    "MelSpectrogram-16k-25ms": MelSpectrogram(16000, **SPEECH),
    "LogMel-16k-25ms": LogMel(16000, **SPEECH),
    "Mfcc-16k-25ms": Mfcc(16000, **SPEECH),
}


def signals(n: int, seconds: float, sample_rate: int) -> np.ndarray:
    """float32 [n, seconds * sample_rate]: tones of random pitch in noise."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pitch = rng.uniform(100, 2000, (n, 1))
    y = 0.5 * np.sin(2 * np.pi * pitch * t) + 0.05 * rng.standard_normal((n, len(t)))
    return y.astype(np.float32)


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def rates(ext, y: np.ndarray, seconds: float, repeats: int) -> dict[str, float]:
    """Audio seconds per second: librosa clip by clip, then JAX on the batch per precision."""
    ext(y[0], ext.sample_rate)  # librosa's first call builds its caches
    out = {"librosa": seconds / best_of(1, lambda: [ext(s, ext.sample_rate) for s in y])}
    for precision in device.PRECISIONS:

        def run(precision=precision):
            jax.block_until_ready(device.batch_features(ext, y, precision=precision)[0])

        run()  # compiles
        out[precision] = seconds / best_of(repeats, run)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    audio = args.clips * args.seconds
    for name, ext in EXTRACTIONS.items():
        y = signals(args.clips, args.seconds, ext.sample_rate)
        speed = rates(ext, y, audio, args.repeats)
        line = {
            "name": f"features/{name}",
            "audio_s": audio,
            "librosa_audio_s_per_s": round(speed["librosa"], 1),
            "jax_float32_audio_s_per_s": round(speed["float32"], 1),
            "jax_float64_audio_s_per_s": round(speed["float64"], 1),
            "ratio": round(speed["float32"] / speed["librosa"], 2),
            "backend": jax.default_backend(),
            "batch": args.clips,
        }
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
