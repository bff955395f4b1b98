"""One choice at a time: how much extraction, scaling, combiner and batch schedule matter.

    python examples/variation.py --speech PATH --esc50 PATH
    python examples/variation.py --demo                # offline, generated audio, ~30 s

A base experiment (Speech Commands "word" + ESC-50 "category"; log-mel, framed to the
median clip, standardised per feature; the default shared CNN, Adam lr 0.001, batch 32,
summed losses, mixed batches) is trained on one fold, then again with one choice changed:

    extraction   LogMel -> Mfcc
    scaling      per feature -> per cell
    combiner     sum -> uncertainty_weighting, pcgrad
    batches      mixed -> per_dataset

and a table gives each variation's test headline per task (accuracy, or micro F1 for a
multilabel task) beside the base's. --only picks variations by name; --runs also writes
each as a run under `out/runs/variation/{name}/fold0`.

--demo uses the demo's commands and sounds datasets.
"""

from __future__ import annotations

import sys

import _common
import optax

import mtjax as mt

LOGMEL = mt.features.LogMel(sample_rate=16000, n_fft=512, hop_length=160, n_mels=40)
BASE = {"extraction": LOGMEL, "scaling": "feature", "combine": "sum", "batches": "mixed"}
VARIATIONS = {
    "base": {},
    "extraction=Mfcc": {
        "extraction": mt.features.Mfcc(
            sample_rate=16000, n_fft=512, hop_length=160, n_mels=40, n_mfcc=20
        )
    },
    "scaling=cell": {"scaling": "cell"},
    "combine=uncertainty_weighting": {"combine": "uncertainty_weighting"},
    "combine=pcgrad": {"combine": "pcgrad"},
    "batches=per_dataset": {"batches": "per_dataset"},
}


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(__doc__, epochs=30, folds=1)
    p.add_argument("--speech", help="Speech Commands folder (v1 or v2)")
    p.add_argument("--esc50", help="ESC-50-master folder")
    p.add_argument("--only", help=f"comma-separated variations; known: {', '.join(VARIATIONS)}")
    p.add_argument("--runs", action="store_true", help="write a run folder per variation")
    args = _common.finish(p.parse_args(argv))
    if args.demo:
        demo = _common.demo_readers(args)
        readers = {"commands": demo["commands"], "sounds": demo["sounds"]}
    elif args.speech and args.esc50:
        readers = {
            "commands": mt.readers.SpeechCommands(args.speech),
            "sounds": mt.readers.ESC50(args.esc50),
        }
    else:
        p.error("give --demo, or --speech and --esc50")
    names = args.only.split(",") if args.only else list(VARIATIONS)
    unknown = [n for n in names if n not in VARIATIONS]
    if unknown:
        p.error(f"--only: unknown {unknown}; known: {', '.join(VARIATIONS)}")

    read = {}  # extraction -> the datasets, read once
    folds = {}  # (extraction, scaling) -> the prepared first fold, shared by the variations
    scores = {}  # variation -> {task: (kind, test headline)}
    for name in names:
        choice = {**BASE, **VARIATIONS[name]}
        data_key = (choice["extraction"], choice["scaling"])
        extraction = choice["extraction"]
        if extraction not in read:
            read[extraction] = _common.read_all(readers, extraction, args, folds=5)
        if data_key not in folds:
            datasets = list(read[extraction].values())
            prepare = [mt.frame("median"), mt.standardize(per=choice["scaling"])]
            folds[data_key] = next(mt.splits(datasets, folds=5, prepare=prepare, seed=args.seed))
        split = folds[data_key]
        print(
            f"\n{name}: {len(split.train)} train, {len(split.test)} test clips,"
            f" x {tuple(split.train.x.shape[1:])}"
        )
        run = mt.Run(args.out / "runs", f"variation/{name}/fold0") if args.runs else None
        _, reports = _common.fit_fold(
            mt.models.HardSharingCNN(split.train.tasks),
            split,
            args,
            run=run,
            batch_size=32,
            optimizer=optax.adam(1e-3),
            combine=mt.losses.combiner_from_config(choice["combine"]),
            batches=mt.batching.schedule_from_config(choice["batches"]),
        )
        print(mt.metrics.summary_table(reports, split.train.tasks))
        scores[name] = {
            t.name: mt.metrics.headline(reports[t.name], t.kind)
            for t in split.train.tasks
            if t.name in reports
        }

    tasks = list(dict.fromkeys(t for s in scores.values() for t in s))
    base = scores.get("base", {})
    print(
        f"\ntest headline (accuracy / micro F1) per task, fold 0, {args.epochs} epochs;"
        " in brackets the difference to base\n"
    )
    print(
        mt.tables.table(
            ["variation", *tasks],
            [
                [name, *(cell(s.get(t), base.get(t), name == "base") for t in tasks)]
                for name, s in scores.items()
            ],
        )
    )
    return 0


def cell(value: float | None, base: float | None, is_base: bool) -> str:
    if value is None:
        return "-"
    if is_base or base is None:
        return f"{value:.4f}"
    return f"{value:.4f} ({value - base:+.4f})"


if __name__ == "__main__":
    sys.exit(main())
