"""Synthesised demo sounds: formant speech, environmental sources and tag sounds (numpy only)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import fft as sp_fft
from scipy import signal as sps

SAMPLE_RATE = 16000


# Formant frequencies (F1, F2, F3) in Hz of an average adult voice.
VOWELS = {
    "a": (750.0, 1250.0, 2550.0),
    "e": (500.0, 1850.0, 2600.0),
    "i": (300.0, 2300.0, 3000.0),
    "o": (520.0, 900.0, 2450.0),
    "u": (320.0, 800.0, 2300.0),
}


def pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Noise with a 1/f power spectrum, float [n], unit RMS."""
    m = sp_fft.next_fast_len(n, real=True)
    spectrum = np.fft.rfft(rng.standard_normal(m))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1.0))
    return _unit(np.fft.irfft(spectrum, m)[:n])


def band_noise(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    """White noise kept between `low` and `high` Hz, float [n], unit RMS."""
    m = sp_fft.next_fast_len(n, real=True)
    spectrum = np.fft.rfft(rng.standard_normal(m))
    freqs = np.fft.rfftfreq(m, 1 / SAMPLE_RATE)
    spectrum[(freqs < low) | (freqs > high)] = 0
    return _unit(np.fft.irfft(spectrum, m)[:n])


def background(rng: np.random.Generator, n: int, db: float) -> np.ndarray:
    """Room noise, float [n] at `db` dB RMS: pink noise plus a random band of white noise."""
    low = rng.uniform(100, 3000)
    band = band_noise(rng, n, low, low * rng.uniform(1.5, 4.0))
    return level(pink_noise(rng, n) + rng.uniform(0, 1.5) * band, db)


def harmonic_tone(f0: np.ndarray, n_harmonics: int, tilt: float = 0.6) -> np.ndarray:
    """Harmonics of a pitch track, the k-th with amplitude k**-tilt, none above 7.5 kHz.

    Args:
      f0: float [n], instantaneous pitch in Hz.
      n_harmonics: how many harmonics.
      tilt: spectral slope.

    Returns:
      float [n], unit RMS.
    """
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    k = np.arange(1, n_harmonics + 1)[:, None]
    audible = (k * f0[None, :] < 7500.0) * k**-tilt
    return _unit((audible * np.sin(k * phase[None, :])).sum(0))


def chirp(n: int, start: float, end: float) -> np.ndarray:
    """Sine sweeping exponentially from `start` to `end` Hz, float [n], unit RMS."""
    f = start * (end / start) ** (np.arange(n) / max(n - 1, 1))
    return _unit(np.sin(2 * np.pi * np.cumsum(f) / SAMPLE_RATE))


def clicks(times: np.ndarray, n: int, frequency: float, decay: float) -> np.ndarray:
    """Clicks, float [n]: a damped sinusoid (`frequency` Hz, `decay` s) at each time (s)."""
    impulses = np.zeros(n)
    at = (np.asarray(times) * SAMPLE_RATE).astype(int)
    np.add.at(impulses, at[(at >= 0) & (at < n)], 1.0)
    t = np.arange(int(6 * decay * SAMPLE_RATE) + 1) / SAMPLE_RATE
    ring = np.exp(-t / decay) * np.sin(2 * np.pi * frequency * t)
    return _unit(sps.fftconvolve(impulses, ring)[:n])


def formant_speech(
    rng: np.random.Generator, f0: np.ndarray, formants: np.ndarray, breath: float = 0.05
) -> np.ndarray:
    """A glottal pulse train through three cascaded resonators whose formants move in time.

    Klatt-style cascade synthesis: a pulse at every pitch period, low-passed, then each
    resonator (centre F_j, bandwidth 60 + 0.05 F_j Hz) in turn, updated every 10 ms.

    Args:
      rng: generator for the aspiration noise.
      f0: float [n], pitch in Hz.
      formants: float [n, 3], formant frequencies in Hz.
      breath: level of aspiration noise added to the source.

    Returns:
      float [n], unit RMS.
    """
    n = len(f0)
    cycles = np.cumsum(f0) / SAMPLE_RATE
    source = (np.diff(np.floor(cycles), prepend=0.0) > 0).astype(float)
    source = _resonate(source, np.zeros(n), 100.0) + breath * rng.standard_normal(n)
    out = source
    for j in range(formants.shape[1]):
        out = _resonate(out, formants[:, j], 60.0 + 0.05 * formants[:, j])
    return _unit(out)


def spoken_word(rng: np.random.Generator, word: str, voice: dict, n: int) -> np.ndarray:
    """One utterance of `word`, float [n], by a speaker (`voice`: pitch "f0", formant "tract")."""
    onset, vowels, coda = WORDS[word]
    stretch = rng.uniform(0.85, 1.15)
    n_voiced = int(0.17 * len(vowels) * stretch * SAMPLE_RATE)
    pitch = voice["f0"] * np.exp(rng.normal(0, 0.05))
    f0 = pitch * np.linspace(1.1, 0.85, n_voiced) * (1 + 0.01 * np.sin(np.arange(n_voiced) / 300))
    jitter = rng.uniform(0.92, 1.08, size=3)
    targets = np.array([VOWELS[v] for v in vowels]) * voice["tract"] * jitter
    where = (np.arange(len(vowels)) + 0.5) / len(vowels) * n_voiced
    formants = np.stack([np.interp(np.arange(n_voiced), where, targets[:, j]) for j in range(3)], 1)
    voiced = formant_speech(rng, f0, formants) * _envelope(n_voiced, 0.02, 0.06)
    parts = [_consonant(rng, onset), voiced, _consonant(rng, coda)]
    utterance = np.concatenate(parts)[: n - 800]
    start = int(rng.integers(400, n - len(utterance) - 399))
    x = np.zeros(n)
    x[start : start + len(utterance)] = utterance
    return x + background(rng, n, rng.uniform(-24, -4))


# ESC-style category -> (draw a source's parameters, render one take of that source).
def _rain_source(rng):
    return {
        "low": rng.uniform(400, 1500),
        "high": rng.uniform(4000, 7500),
        "rate": rng.uniform(20, 60),
    }


def _rain(rng, p, n):
    drops = rng.uniform(0, n / SAMPLE_RATE, size=int(p["rate"] * n / SAMPLE_RATE))
    hiss = band_noise(rng, n, p["low"] * rng.uniform(0.9, 1.1), p["high"])
    return hiss + 0.7 * clicks(drops, n, rng.uniform(1000, 4000), 0.004)


def _birds_source(rng):
    return {
        "freq": rng.uniform(2500, 4500),
        "dur": rng.uniform(0.05, 0.12),
        "rate": rng.uniform(3, 8),
        "up": rng.random() < 0.5,
    }


def _birds(rng, p, n):
    x = np.zeros(n)
    for t in rng.uniform(
        0, n / SAMPLE_RATE - p["dur"], size=max(1, int(p["rate"] * n / SAMPLE_RATE))
    ):
        m = int(p["dur"] * SAMPLE_RATE)
        f = p["freq"] * rng.uniform(0.9, 1.1)
        sweep = chirp(m, f, f * (1.5 if p["up"] else 0.66)) * _envelope(m, 0.005, 0.02)
        i = int(t * SAMPLE_RATE)
        x[i : i + m] += rng.uniform(0.3, 1.0) * sweep
    return x


def _knock_source(rng):
    return {
        "freq": rng.uniform(150, 400),
        "decay": rng.uniform(0.02, 0.05),
        "knocks": int(rng.integers(2, 5)),
        "gap": rng.uniform(0.12, 0.2),
    }


def _knock(rng, p, n):
    seconds = n / SAMPLE_RATE
    first = rng.uniform(0.05, max(0.06, seconds - p["knocks"] * p["gap"] - 0.1))
    times = first + p["gap"] * np.arange(p["knocks"]) + rng.normal(0, 0.01, p["knocks"])
    return clicks(times, n, p["freq"] * rng.uniform(0.95, 1.05), p["decay"])


def _tick_source(rng):
    return {"period": rng.uniform(0.25, 0.5), "freq": rng.uniform(2000, 5000)}


def _tick(rng, p, n):
    times = rng.uniform(0, p["period"]) + np.arange(0, n / SAMPLE_RATE, p["period"])
    times = times + rng.normal(0, 0.003, len(times))
    return clicks(times, n, p["freq"], 0.003)


def _siren_source(rng):
    return {
        "centre": rng.uniform(700, 1100),
        "depth": rng.uniform(200, 400),
        "rate": rng.uniform(0.7, 2.0),
    }


def _siren(rng, p, n):
    t = np.arange(n) / SAMPLE_RATE
    f0 = p["centre"] + p["depth"] * np.sin(2 * np.pi * p["rate"] * t + rng.uniform(0, 2 * np.pi))
    return harmonic_tone(f0, 3, tilt=1.0)


def _horn_source(rng):
    return {"f0": rng.uniform(350, 500), "on": rng.uniform(0.2, 0.6)}


def _horn(rng, p, n):
    on = min(n, int(p["on"] * rng.uniform(0.8, 1.2) * SAMPLE_RATE))
    start = int(rng.integers(0, n - on + 1))
    x = np.zeros(n)
    x[start : start + on] = harmonic_tone(np.full(on, p["f0"]), 8, tilt=0.5) * _envelope(
        on, 0.01, 0.03
    )
    return x


SOUND_SOURCES: dict[str, tuple[Callable, Callable]] = {
    "rain": (_rain_source, _rain),
    "chirping_birds": (_birds_source, _birds),
    "door_wood_knock": (_knock_source, _knock),
    "clock_tick": (_tick_source, _tick),
    "siren": (_siren_source, _siren),
    "car_horn": (_horn_source, _horn),
}


# Tagged-clip sources: tag -> render one occurrence into n samples.
def _tag_chirp(rng, n):
    m = int(rng.uniform(0.2, 0.5) * SAMPLE_RATE)
    start, end = (500.0, 3000.0) if rng.random() < 0.5 else (3000.0, 500.0)
    return _place(rng, chirp(m, start, end) * _envelope(m, 0.01, 0.02), n)


def _tag_clicks(rng, n):
    times = rng.uniform(0, 0.1) + np.arange(0, 1.0, rng.uniform(0.05, 0.15))
    return clicks(times, n, rng.uniform(1500, 4000), 0.002)


def _tag_noise(rng, n):
    m = int(rng.uniform(0.2, 0.5) * SAMPLE_RATE)
    low = rng.uniform(300, 2000)
    return _place(rng, band_noise(rng, m, low, low * 3) * _envelope(m, 0.02, 0.05), n)


def _tag_tone(rng, n):
    m = int(rng.uniform(0.3, 0.7) * SAMPLE_RATE)
    return _place(
        rng, harmonic_tone(np.full(m, rng.uniform(200, 800)), 4) * _envelope(m, 0.01, 0.05), n
    )


def _tag_voice(rng, n):
    voice = {"f0": rng.uniform(90, 240), "tract": rng.uniform(0.9, 1.15)}
    return spoken_word(rng, str(rng.choice(list(WORDS))), voice, n)


TAG_SOURCES: dict[str, Callable] = {
    "chirp": _tag_chirp,
    "clicks": _tag_clicks,
    "noise": _tag_noise,
    "tone": _tag_tone,
    "voice": _tag_voice,
}


def _resonate(x: np.ndarray, centre: np.ndarray, bandwidth: np.ndarray | float) -> np.ndarray:
    """Klatt resonator (unit gain at 0 Hz) whose centre and bandwidth change every 10 ms."""
    hop = SAMPLE_RATE // 100
    bandwidth = np.broadcast_to(bandwidth, x.shape)
    out, state = np.empty_like(x), np.zeros(2)
    for i in range(0, len(x), hop):
        r = np.exp(-np.pi * bandwidth[i] / SAMPLE_RATE)
        b, c = 2 * r * np.cos(2 * np.pi * centre[i] / SAMPLE_RATE), -(r**2)
        out[i : i + hop], state = sps.lfilter([1 - b - c], [1, -b, -c], x[i : i + hop], zi=state)
    return out


def _consonant(rng: np.random.Generator, kind: str) -> np.ndarray:
    if kind == "s":
        m = int(rng.uniform(0.08, 0.14) * SAMPLE_RATE)
        return 0.5 * band_noise(rng, m, 3500, 7500) * _envelope(m, 0.02, 0.02)
    if kind == "t":
        gap, m = int(0.04 * SAMPLE_RATE), int(0.025 * SAMPLE_RATE)
        burst = band_noise(rng, m, 2000, 6000) * np.exp(-np.arange(m) / (0.006 * SAMPLE_RATE))
        return np.concatenate([np.zeros(gap), 1.5 * burst])
    return np.zeros(0)


def _envelope(n: int, attack: float, release: float) -> np.ndarray:
    """Envelope, float [n]: ramps up over `attack` s, down over `release` s, 1 in between."""
    t = np.arange(n)
    up = np.clip(t / max(attack * SAMPLE_RATE, 1), 0, 1)
    down = np.clip((n - 1 - t) / max(release * SAMPLE_RATE, 1), 0, 1)
    return np.minimum(up, down)


def _place(rng: np.random.Generator, part: np.ndarray, n: int) -> np.ndarray:
    """`part` at a random offset in n samples of silence (cut to fit)."""
    part = part[:n]
    x = np.zeros(n)
    start = int(rng.integers(0, n - len(part) + 1))
    x[start : start + len(part)] = part
    return x


def _unit(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def finish(x: np.ndarray, db: float) -> np.ndarray:
    """`x` at an RMS of `db` dB full scale, turned down where its peak would pass 0.95."""
    x = level(x, db)
    return x * min(1.0, 0.95 / max(float(np.abs(x).max()), 1e-12))


def level(x: np.ndarray, db: float) -> np.ndarray:
    """`x` scaled to an RMS of `db` dB full scale."""
    return _unit(x) * 10 ** (db / 20)


# word -> (onset consonant, vowels in turn, final consonant); "s" a hiss, "t" a burst.
WORDS = {
    "down": ("t", ("a", "u"), ""),
    "go": ("", ("o", "u"), ""),
    "left": ("", ("e",), "s"),
    "right": ("", ("a", "i"), "t"),
    "stop": ("s", ("a",), "t"),
    "yes": ("", ("i", "e"), "s"),
}
