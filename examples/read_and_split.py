"""Read two datasets through the feature cache and build five leak-free folds.

    python examples/read_and_split.py --demo                  # generated demo audio
    python examples/read_and_split.py --speech PATH --esc50 PATH

PATH for --speech is an unpacked Speech Commands archive (one folder per word), for
--esc50 an unpacked ESC-50-master folder (audio/ and meta/esc50.csv).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import mtjax as mt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo", action="store_true", help="use generated demo audio")
    parser.add_argument("--speech", type=Path, help="Speech Commands folder")
    parser.add_argument("--esc50", type=Path, help="ESC-50 folder")
    parser.add_argument("--out", type=Path, default=Path("mtjax-example"))
    args = parser.parse_args()
    if args.demo:
        paths = mt.demo.make_demo(args.out / "data")
        args.speech, args.esc50 = paths["commands"], paths["sounds"]
    if args.speech is None or args.esc50 is None:
        parser.error("give --demo, or both --speech and --esc50")

    logmel = mt.features.LogMel(sample_rate=16000, n_mels=40)
    words = mt.read(
        mt.readers.FolderReader(args.speech, task="word", group=r"^(.+?)_nohash_"),
        logmel,
        cache=args.out / "cache",
        n_jobs=2,
    )
    sounds = mt.read(
        mt.readers.CsvReader(
            args.esc50,
            "meta/esc50.csv",
            path_column="filename",
            audio_dir="audio",
            label_columns=("category",),
            fold_column="fold",
            group_column="src_file",
        ),
        logmel,
        cache=args.out / "cache",
        in_memory=False,  # index mode: rows read when used
    )
    prepare = [mt.frame("median"), mt.standardize(per="feature")]
    for fold, split in enumerate(mt.splits([words, sounds], folds=5, prepare=prepare, seed=0)):
        train, test = split
        share = np.round(train.has_task.mean(0), 2).tolist()
        print(
            f"fold {fold}: train {train.x.shape}, test {test.x.shape}, "
            f"tasks {[t.name for t in train.tasks]} in {share} of train rows"
        )


if __name__ == "__main__":
    main()
