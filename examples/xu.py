"""Xu et al.: one CNN for DCASE 2017 acoustic scenes and sound events together.

    python examples/xu.py --scenes PATH --events PATH
    python examples/xu.py --demo                       # offline, generated audio, ~15 s

Datasets (tasks): TUT Acoustic Scenes 2017 ("scene", multiclass) and TUT Sound Events 2017
("events", multilabel: the event classes heard in a clip). Features: the log of a mel
spectrogram (n_fft 2048, hop 512, 40 bands), framed to the shortest training clip,
standardised per feature; a 4-layer CNN of width 64, Adam lr 0.001, batch 32; the official
4 folds (datasets whose folds differ are split 4-fold, grouped by recording). Each fold is a
run under `out/runs/xu/fold{i}`; the folds are compared at the end.

--demo stands "category" (sounds) in for scenes and "tags" (tagged, multilabel) for events.
"""

from __future__ import annotations

import sys

import _common
import optax

import mtjax as mt


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(__doc__, epochs=60, folds=4)
    p.add_argument("--scenes", help="TUT-acoustic-scenes-2017-development folder")
    p.add_argument("--events", help="TUT-sound-events-2017-development folder")
    p.add_argument(
        "--sample-rate",
        type=int,
        default=None,
        help="feature sample rate (default 44100; 16000 with --demo)",
    )
    args = _common.finish(p.parse_args(argv))
    folds = 5 if args.demo else 4  # the demo's sounds have 5 official folds
    sample_rate = args.sample_rate or (16000 if args.demo else 44100)
    mel = mt.features.LogMel(sample_rate=sample_rate, n_fft=2048, hop_length=512, n_mels=40)
    if args.demo:
        readers = _common.demo_readers(args)
        read = _common.read_all(readers, mel, args, folds=folds)
        datasets = [read["sounds"], _common.task_view(read["tagged"], "tags", name="tags")]
    elif args.scenes and args.events:
        readers = {
            "scenes": mt.readers.DCASEScenes(args.scenes),
            "events": mt.readers.DCASEEvents(args.events),
        }
        datasets = list(_common.read_all(readers, mel, args, folds=folds).values())
    else:
        p.error("give --demo, or --scenes and --events")
    print(mt.data.datasets_table(datasets))

    splits = mt.splits(
        datasets,
        folds=folds,
        prepare=[mt.frame("min"), mt.standardize(per="feature")],
        seed=args.seed,
    )
    runs = []
    for fold, split in zip(range(args.folds), splits):
        print(
            f"\nxu/fold{fold}: {len(split.train)} train, {len(split.test)} test clips,"
            f" {split.train.x.shape[1]} frames each"
        )
        run = mt.Run(args.out / "runs", f"xu/fold{fold}")
        _, reports = _common.fit_fold(
            mt.models.HardSharingCNN(split.train.tasks, channels=(64, 64, 64, 64)),
            split,
            args,
            run=run,
            batch_size=32,
            optimizer=optax.adam(1e-3),
        )
        _common.record_fold(run, "xu", fold)
        print(mt.metrics.summary_table(reports, split.train.tasks))
        runs.append(run)

    print(f"\n{len(runs)} runs under {args.out / 'runs' / 'xu'}\n")
    print(mt.runs.compare(runs).text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
