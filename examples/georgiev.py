"""Georgiev et al.: a shared DNN on summarised filter banks, every combination of four tasks.

    python examples/georgiev.py --ravdess PATH --asvspoof PATH --scenes PATH
    python examples/georgiev.py --demo                 # offline, generated audio, ~30 s

Datasets (tasks): RAVDESS emotion, RAVDESS intensity (one read of RAVDESS, two datasets
sharing actor-disjoint folds), ASVspoof 2015 genuine vs spoof ("spoof"), DCASE 2017
acoustic scenes ("scene"). Audio resampled to 8 kHz mono; a 24-band log filter bank (30 ms
window, 10 ms step, n_fft 256) summarised over time (7 statistics per band); per-cell
standardisation; a 3 x 512 DNN, SGD lr 0.001, batch 64; 5 folds. Every combination of the
datasets is trained (4 single-task, 11 multi-task), each fold a run under
`out/runs/georgiev/{combination}/fold{i}`, and the runs are compared at the end: each
task's multi-task runs against its single-task one.

--demo stands the demo datasets in: "word" (commands) for emotion, "loud" (a task of
tagged) for intensity, "category" (sounds) for scenes; --datasets picks a subset.
"""

from __future__ import annotations

import itertools
import sys

import _common
import optax

import mtjax as mt


def extraction() -> mt.features.LogbankSummary:
    """24 log filter-bank energies at 8 kHz (30 ms / 10 ms, n_fft 256), 7 statistics each."""
    return mt.features.LogbankSummary(
        sample_rate=8000, n_filters=24, win_seconds=0.03, hop_seconds=0.01, n_fft=256
    )


def paper_datasets(args) -> dict:
    """{dataset name: TaskDataset or Split} of the four public datasets."""
    folds = 5
    read = _common.read_all(
        {
            "ravdess": mt.readers.RAVDESS(args.ravdess, tasks=("emotion", "intensity")),
            "asvspoof": mt.readers.ASVspoof2015(args.asvspoof),
            "scenes": mt.readers.DCASEScenes(args.scenes),
        },
        extraction(),
        args,
        folds=folds,
    )
    ravdess = shared_folds(read["ravdess"], folds, seed=args.seed)
    return {
        "emotion": _common.task_view(ravdess, "emotion", name="emotion"),
        "intensity": _common.task_view(ravdess, "intensity", name="intensity"),
        "spoof": _common.task_view(read["asvspoof"], "spoof", name="spoof"),
        "scene": read["scenes"],
    }


def demo_datasets(args) -> dict:
    """The demo's stand-ins: commands' "word", tagged's "loud", sounds' "category"."""
    readers = _common.demo_readers(args)
    read = _common.read_all(readers, extraction(), args, folds=5)
    return {
        "word": read["commands"],
        "loud": _common.task_view(read["tagged"], "loud", name="loud"),
        "category": read["sounds"],
    }


def shared_folds(ds: mt.TaskDataset, k: int, *, seed: int) -> mt.TaskDataset:
    """`ds` with k predefined folds: stratified on its first task, grouped (by actor)."""
    folds = ds.folds.copy()
    for i, (_, test) in enumerate(mt.data.kfold(ds, k, seed=seed)):
        folds[test] = i
    return ds.replace(folds=folds)


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(__doc__, epochs=100, folds=5)
    p.add_argument("--ravdess", help="RAVDESS folder (Actor_01 ... Actor_24 below it)")
    p.add_argument("--asvspoof", help="ASVspoof 2015 folder (protocol files and wav/)")
    p.add_argument("--scenes", help="TUT-acoustic-scenes-2017-development folder")
    p.add_argument("--datasets", help="comma-separated subset of the datasets to combine")
    args = _common.finish(p.parse_args(argv))
    if args.demo:
        datasets = demo_datasets(args)
    elif args.ravdess and args.asvspoof and args.scenes:
        datasets = paper_datasets(args)
    else:
        p.error("give --demo, or --ravdess, --asvspoof and --scenes")
    if args.datasets:
        chosen = args.datasets.split(",")
        unknown = [n for n in chosen if n not in datasets]
        if unknown:
            p.error(f"--datasets: unknown {unknown}; known: {', '.join(datasets)}")
        datasets = {n: datasets[n] for n in chosen}
    print(mt.data.datasets_table(list(datasets.values())))

    combinations = [
        c for r in range(1, len(datasets) + 1) for c in itertools.combinations(datasets, r)
    ]
    runs = []
    for combination in combinations:
        group = f"georgiev/{'+'.join(combination)}"
        splits = mt.splits(
            [datasets[n] for n in combination],
            folds=5,
            prepare=[mt.standardize(per="cell")],  # every clip is [7, 24]: no framing
            seed=args.seed,
        )
        for fold, split in zip(range(args.folds), splits):
            print(f"\n{group}/fold{fold}: {len(split.train)} train, {len(split.test)} test clips")
            run = mt.Run(args.out / "runs", f"{group}/fold{fold}")
            _, reports = _common.fit_fold(
                mt.models.HardSharingDNN(split.train.tasks, hidden=(512, 512, 512)),
                split,
                args,
                run=run,
                batch_size=64,
                optimizer=optax.sgd(1e-3),
            )
            _common.record_fold(run, group, fold)
            print(mt.metrics.summary_table(reports, split.train.tasks))
            runs.append(run)

    print(f"\n{len(runs)} runs under {args.out / 'runs' / 'georgiev'}\n")
    print(mt.runs.compare(runs).text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
