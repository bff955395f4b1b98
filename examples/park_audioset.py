"""A Park-style AudioSet subset: a CNN tagging clips with a handful of AudioSet labels.

    python examples/park_audioset.py --audioset PATH \\
        --train-csv balanced_train_segments.csv --test-csv eval_segments.csv \\
        --labels Speech,Music,Dog,Siren,Engine
    python examples/park_audioset.py --demo            # offline, generated audio, ~10 s

The AudioSet segment CSVs list clips and their label ids; PATH holds them and the clips
already downloaded (missing clips are listed by the reader and left out). Only the chosen
labels are kept, as one multilabel task "labels", and only the clips carrying at least one
of them. Features: log-mel (16 kHz, 64 bands, 25 ms window, 10 ms hop), framed to the
median clip, standardised per feature; the default shared CNN, Adam lr 0.001, batch 32;
the official split (balanced train vs eval). Reported: micro and macro F1, and the F1 of
each label. Extra AudioSetCsv options pass as --reader-option NAME=VALUE.

--demo keeps three of the five "tags" of the tagged demo dataset instead.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path

import _common
import optax

import mtjax as mt


@dataclasses.dataclass(frozen=True)
class LabelSubset:
    """A reader keeping some labels of one multilabel task, and the clips that carry one.

    Attributes:
      reader: any reader with a multilabel task `task`.
      task: the task's name.
      labels: the labels to keep, as the reader names them; the task's columns in this order.
      name: the dataset's name; the reader's by default.
    """

    reader: mt.readers.Reader
    task: str
    labels: tuple[str, ...]
    name: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "name", self.name or self.reader.name)
        found = {t.name: t for t in self.reader.tasks}
        if self.task not in found:
            raise ValueError(f"{self.reader.name}: no task {self.task!r}; tasks: {list(found)}")
        unknown = [label for label in self.labels if label not in found[self.task].labels]
        if unknown:
            known = found[self.task].labels
            raise ValueError(
                f"{self.reader.name}: labels {unknown} are not in task {self.task!r}; e.g."
                f" {', '.join(known[:10])}{' ...' if len(known) > 10 else ''}"
            )

    @property
    def root(self) -> Path:
        return self.reader.root

    @property
    def tasks(self) -> tuple[mt.Task, ...]:
        return (mt.Task(self.task, self.labels, "multilabel"),)

    def items(self) -> Iterator[mt.readers.Item]:
        for item in self.reader.items():
            kept = tuple(label for label in item.targets.get(self.task, ()) if label in self.labels)
            if kept:
                yield dataclasses.replace(item, targets={self.task: kept})


def options(pairs: list[str]) -> dict:
    """["name=value", ...] -> {name: value}."""
    bad = [pair for pair in pairs if "=" not in pair]
    if bad:
        raise SystemExit(f"--reader-option takes NAME=VALUE, got {bad}")
    return dict(pair.split("=", 1) for pair in pairs)


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(__doc__, epochs=60, folds=1)
    p.add_argument("--audioset", help="folder holding the segment CSVs and the clips")
    p.add_argument("--train-csv", default="balanced_train_segments.csv")
    p.add_argument("--test-csv", default="eval_segments.csv")
    p.add_argument("--labels", help="comma-separated labels to keep (as the reader names them)")
    p.add_argument("--reader-option", action="append", default=[], metavar="NAME=VALUE")
    args = _common.finish(p.parse_args(argv))
    logmel = mt.features.LogMel(
        sample_rate=16000, n_fft=512, win_length=400, hop_length=160, n_mels=64
    )
    if args.demo:
        labels = tuple((args.labels or "chirp,tone,voice").split(","))
        tagged = _common.demo_readers(args)["tagged"]
        readers = {"tagged": LabelSubset(tagged, "tags", labels, name="tagged-subset")}
        data = _common.read_all(readers, logmel, args, folds=1)["tagged"]
    elif args.audioset and args.labels:
        labels = tuple(args.labels.split(","))
        extra = options(args.reader_option)
        readers = {
            part: LabelSubset(
                mt.readers.AudioSetCsv(args.audioset, csv, **extra),
                "labels",
                labels,
                name=f"audioset-{part}",
            )
            for part, csv in (("train", args.train_csv), ("test", args.test_csv))
        }
        read = _common.read_all(readers, logmel, args, folds=1)
        data = read["train"]
        if not isinstance(data, mt.Split):
            data = mt.Split(train=data, test=read["test"])
    else:
        p.error("give --demo, or --audioset and --labels")
    print(mt.data.datasets_table([data]))

    split = next(mt.splits([data], prepare=[mt.frame("median"), mt.standardize(per="feature")]))
    run = mt.Run(args.out / "runs", "park/fold0")
    print(
        f"\npark/fold0: {len(split.train)} train, {len(split.test)} test clips,"
        f" labels {', '.join(labels)}"
    )
    _, reports = _common.fit_fold(
        mt.models.HardSharingCNN(split.train.tasks),
        split,
        args,
        run=run,
        batch_size=32,
        optimizer=optax.adam(1e-3),
    )
    _common.record_fold(run, "park", 0)
    print(mt.metrics.summary_table(reports, split.train.tasks))
    report = reports[split.train.tasks[0].name]
    print()
    print(
        mt.tables.table(
            ["label", "support", "precision", "recall", "F1"],
            [
                [
                    label,
                    int(report[label]["support"]),
                    f"{report[label]['precision']:.4f}",
                    f"{report[label]['recall']:.4f}",
                    f"{report[label]['f1-score']:.4f}",
                ]
                for label in labels
            ],
        )
    )
    print(f"\nrun folder {run.path}\n")
    print(mt.runs.compare([run]).text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
