"""`mtjax demo`, the main job: make the demo datasets, read, split, train on fold 0, describe."""

from __future__ import annotations

import time
from pathlib import Path

from mtjax.audio import cache, features
from mtjax.data import describe
from mtjax.data import prepare as steps
from mtjax.demo import layouts
from mtjax.runs import folder, plots
from mtjax.train import compiled, evaluation, loop, metrics, models, stopping

DEFAULTS = {"epochs": 25, "seed": 0, "folds": 5}


def run_name(*, epochs: int, seed: int, folds: int) -> str:
    """The demo run's default name: "demo", with each setting not at its `DEFAULTS`.

    E.g. "demo-epochs3-seed1", so that demos of other settings on one `out` folder each
    train their own run (one run folder holds one setting: `mtjax.runs.check_resumable`).
    """
    given = {"epochs": epochs, "seed": seed, "folds": folds}
    return "demo" + "".join(f"-{k}{v}" for k, v in given.items() if v != DEFAULTS[k])


def run_demo(
    out: Path,
    *,
    seed: int = 0,
    folds: int = 5,
    n_jobs: int | None = None,
    epochs: int = 25,
    name: str | None = None,
) -> dict:
    """Make, read and split the demo datasets, train on fold 0; returns the test reports.

    The run goes to `out/runs/{name}/fold0`, `name` by default `run_name(...)` of the
    settings; the data and the feature cache under `out` are shared by every demo there.
    """
    name = run_name(epochs=epochs, seed=seed, folds=folds) if name is None else name
    started = time.perf_counter()
    compiled.use_compilation_cache(out / "cache" / ".jax")
    paths = layouts.make_demo(out / "data", seed=seed)
    extraction = features.LogMel(sample_rate=16000, n_fft=512, hop_length=160, n_mels=40)
    datasets = [
        cache.read(reader, extraction, cache=out / "cache", n_jobs=n_jobs)
        for reader in layouts.demo_readers(paths)
    ]
    print(describe.datasets_table(datasets))
    prepare = [steps.frame("median"), steps.standardize()]
    splits = list(steps.splits(datasets, folds=folds, prepare=prepare, seed=seed))
    print()
    print(describe.splits_table(splits))
    print(f"\nfeatures {extraction.key}\ncache    {out / 'cache'}")

    split = splits[0]
    if split.test is None:  # the demo's sounds are split k-fold: every fold has a test side
        raise ValueError("demo: fold 0 has no test side")
    print(
        f"\ntraining a shared CNN on fold 0: {len(split.train)} clips, "
        f"tasks {', '.join(t.name for t in split.train.tasks)}"
    )
    run = folder.Run(out / "runs", f"{name}/fold0")
    trained = loop.fit(
        models.HardSharingCNN(split.train.tasks),
        split.train,
        split.test,
        validation=split.validation,
        epochs=epochs,
        batch_size=32,
        early_stop=stopping.patience("validation/loss", 6),
        seed=seed,
        run=run,
    )
    reports = evaluation.evaluate(trained, split.test)
    print(
        f"\ntest metrics of fold 0 (chosen on validation: "
        f"{plots.epoch_text(trained.best_epoch, len(trained.history) - 1)}):"
    )
    print(metrics.summary_table(reports, split.train.tasks))
    print(f"\nrun folder  {run.path}  (config, history, reports/, plots/, checkpoints/)")
    print(f"TensorBoard tensorboard --logdir {run.events}")
    print(f"\ndone in {time.perf_counter() - started:.1f} s")
    return reports
