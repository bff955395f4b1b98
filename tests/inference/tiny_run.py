"""A tiny trained run on tones written in the test, shared by the inference tests."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
from conftest import write_tone

import mtjax as mt

CLASSES = (("low", 220.0), ("mid", 880.0), ("high", 3000.0))
# 5-9 frames a clip: the default model is then the quick DNN; SHORT_HOPS, 19-35: the CNN.
LOGMEL = mt.features.LogMel(sample_rate=16000, n_mels=16, n_fft=2048, hop_length=1024)
SHORT_HOPS = mt.features.LogMel(sample_rate=16000, n_mels=16, n_fft=512, hop_length=256)


class TinyRun(NamedTuple):
    run: mt.Run
    audio: Path  # the folder-per-class dataset
    split: mt.Split  # fold 0, prepared
    raw: mt.Split  # fold 0 as read
    trained: mt.Trained


def write_tones(root: Path, per_class: int = 6) -> Path:
    """A folder per class of tones, 0.3-0.55 s long (so framing pads some, cuts others)."""
    for c, (label, base) in enumerate(CLASSES):
        for i in range(per_class):
            write_tone(
                root / label / f"clip{i}.wav",
                base * (1 + 0.02 * i),
                seconds=0.3 + 0.05 * i,
                seed=10 * c + i,
            )
    return root


def train(tmp: Path, prepare, *, extraction=LOGMEL, epochs: int = 2) -> TinyRun:
    """A run of the default model, `epochs` on fold 0 of 3, prepared with `prepare`."""
    audio = write_tones(tmp / "tones")
    reader = mt.readers.FolderReader(audio, task="pitch")
    data = mt.read(reader, extraction, n_jobs=1, progress=False)
    split = next(iter(mt.splits([data], folds=3, prepare=prepare, seed=0)))
    raw = next(iter(mt.splits([data], folds=3, seed=0)))
    run = mt.Run(tmp / "runs", "r")
    trained = mt.fit(
        None,
        split.train,
        split.test,
        validation=split.validation,
        epochs=epochs,
        batch_size=8,
        run=run,
        progress=False,
    )
    return TinyRun(run, audio, split, raw, trained)


def clip_files(tiny: TinyRun) -> list[Path]:
    """The audio files of the test clips, in row order ("tones/low/clip0.wav" -> the file)."""
    ids = dict.fromkeys(str(i).split("/", 1)[1] for i in np.asarray(tiny.split.test.ids))
    return [tiny.audio / i for i in ids]
