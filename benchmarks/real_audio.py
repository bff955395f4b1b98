"""Real audio, three datasets, five tasks: default multi-task fit vs single-task and linear.

The datasets come from `real_audio_data.py` (espeak-ng speech, freepats instruments, Hydrogen
drum kits, in the CsvReader, ESC-50 and FSD50K layouts; clips of 1, 3 and 2 s). They are read
with the experiments' default extraction (LogMel 16 kHz, n_fft 512, hop 160, 40 bands) into
a cache, then `mt.splits` gives fold 0 (the ESC-50 fold 1 as test) with a grouped validation
part per dataset (speech and drums: their own, by voice and by kit; instruments: carved by
recorded sample) and `standardize(per="feature")`. One JSON line per measurement:

  data          rows per dataset and side, frames per clip, each task's kind and chance level
                (test share of the train majority class; mAP: mean test prevalence)
  linear        per task: LogisticRegression (multilabel: one-vs-rest) on each clip's
                mean and std over its valid frames, C picked on validation from `C_GRID`
  single_task   per task: `mt.fit(None, train_k, validation=val_k)` on that task alone
  multi_task    `mt.fit(None, train, validation=val)` on all five tasks
  augment       the multi-task run, and the single-task `AUGMENT_TASK` run, with each of
                `AUGMENTS` (`fit(augment=...)`); the setting chosen on validation is named
  verdict       per task: multi - single, multi - linear, saturated (single >= 0.99);
                whether the default multi-task run beats linear on every task and comes
                within 0.01 of single-task on every non-saturated one; Delta_M %

Metrics are each task's headline: accuracy (multiclass, binary) or mAP (multilabel), on
test; the run's chosen epoch is named. `--quick` caps every dataset at `QUICK_ROWS` rows and
trains 3 epochs (a smoke test of about 2 minutes, numbers meaningless).

A full run trains 1 + 5 + 4 multi-task and 5 + 4 single-task models at fit's defaults (60
epochs at most, patience 10): tens of minutes on 2 cores; `--parts` and `--settings` run a
part of it (`--parts linear,single,multi` is the MTL-vs-STL check alone).

Usage: python benchmarks/real_audio.py --data /tmp/mtjax_real_audio [--quick]
         [--parts linear,single,multi,augment] [--settings none,shift,masks,mixup,all]
         [--epochs N] [--seed 0] [--cache DIR] [--jobs 2]
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler

import mtjax as mt
from mtjax.experiments.config import DEFAULT_FEATURES
from mtjax.train.metrics import mean_average_precision

EXTRACTION = mt.features.LogMel(**{k: v for k, v in DEFAULT_FEATURES.items() if k != "name"})
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
AUGMENT_SETTINGS = {  # name -> Augment fields; None is augment=None (off)
    "none": None,
    "shift": dict(shift=0.1),
    "masks": dict(time_masks=2, time_width=0.1, freq_masks=2, freq_width=8),
    "mixup": dict(mixup=0.2),
    "all": dict(shift=0.1, time_masks=2, time_width=0.1, freq_masks=2, freq_width=8, mixup=0.2),
}
AUGMENT_TASK = "word"  # the single-task run the settings are also tried on (1 s clips)
QUICK_ROWS = 240
PARTS = ("linear", "single", "multi", "augment")
SATURATED = 0.99


def emit(line: Mapping) -> None:
    print(json.dumps(line), flush=True)


# Data


def readers(root: Path) -> list:
    """The three datasets `real_audio_data.py` writes under `root`."""
    for folder in ("speech", "instruments", "drums"):
        if not (root / folder).is_dir():
            sys.exit(f"real_audio: {root / folder} not found; run benchmarks/real_audio_data.py")
    speech = mt.readers.CsvReader(
        root / "speech",
        "manifest.csv",
        name="speech",
        label_columns={"word": "multiclass", "sex": "binary", "rate": "binary"},
        split_column="split",
        group_column="voice",
    )
    return [
        speech,
        mt.readers.ESC50(root / "instruments", name="instruments"),
        mt.readers.FSD50K(root / "drums", name="drums"),
    ]


def shrink(data, rows: int, seed: int):
    """`data` (a dataset or a Split) with at most `rows` rows, drawn evenly from each side."""
    rng = np.random.default_rng(seed)
    parts = (data.train, data.test, data.validation) if isinstance(data, mt.Split) else (data,)
    total = sum(len(d) for d in parts if d is not None)
    if total <= rows:
        return data

    def cut(ds):
        keep = max(1, round(len(ds) * rows / total))
        return mt.data.subset(ds, np.sort(rng.permutation(len(ds))[:keep]))

    return data.map(cut) if isinstance(data, mt.Split) else cut(data)


def one_task(data: mt.MultiTaskData, name: str) -> mt.MultiTaskData:
    """The rows labelled for task `name`, with only its columns, cut to their longest clip."""
    k = [t.name for t in data.tasks].index(name)
    picked = mt.data.subset(data, np.nonzero(np.asarray(data.has_task)[:, k])[0])
    frames = int(np.asarray(picked.lengths).max())
    return picked.replace(
        x=np.asarray(picked.x)[:, :frames],
        y=np.asarray(picked.y)[:, data.task_slices[name]],
        has_task=np.asarray(picked.has_task)[:, [k]],
        tasks=(data.tasks[k],),
    )


def targets(data: mt.MultiTaskData, task: mt.Task) -> np.ndarray:
    """Class index [N] (multiclass, binary) or 0/1 matrix [N, C] (multilabel) of the rows."""
    y = np.asarray(data.y)[:, data.task_slices[task.name]]
    if task.kind == "multiclass":
        return y.argmax(1)
    return y[:, 0].astype(int) if task.kind == "binary" else y


def chance(train: mt.MultiTaskData, test: mt.MultiTaskData, task: mt.Task) -> float:
    """Test share of the train majority class; mAP of a constant scorer: mean prevalence."""
    if task.kind == "multilabel":
        return float(targets(test, task).mean())
    majority = np.bincount(targets(train, task)).argmax()
    return float(np.mean(targets(test, task) == majority))


def describe(split: mt.Split) -> None:
    sides = {"train": split.train, "validation": split.validation, "test": split.test}
    for d, name in enumerate(split.train.datasets):
        rows = {s: int(np.sum(np.asarray(v.dataset_id) == d)) for s, v in sides.items()}
        frames = np.asarray(split.train.lengths)[np.asarray(split.train.dataset_id) == d]
        emit(dict(name="data", dataset=name, rows=rows, frames=int(np.median(frames))))
    for task in split.train.tasks:
        train_k, test_k = one_task(split.train, task.name), one_task(split.test, task.name)
        emit(
            dict(name="data", task=task.name, kind=task.kind, labels=len(task.labels))
            | dict(metric=metric_name(task), chance=round(chance(train_k, test_k, task), 4))
        )


# Scores


def metric_name(task: mt.Task) -> str:
    return "mAP" if task.kind == "multilabel" else "accuracy"


def headline(report: Mapping, task: mt.Task) -> float:
    return float(report["mAP"] if task.kind == "multilabel" else report["accuracy"])


def score(task: mt.Task, truth: np.ndarray, probs: np.ndarray) -> float:
    """Headline metric of [N, C] probabilities against `targets`."""
    if task.kind == "multilabel":
        return float(mean_average_precision(truth, probs))
    return float(np.mean(probs.argmax(1) == truth))


# Linear baseline


def pooled(data: mt.MultiTaskData) -> np.ndarray:
    """float64 [N, 2F]: each row's mean and std over its valid frames."""
    x, lengths = np.asarray(data.x, np.float64), np.asarray(data.lengths)
    valid = (np.arange(x.shape[1])[None, :] < lengths[:, None])[..., None]
    n = np.maximum(lengths, 1)[:, None]
    mean = (x * valid).sum(1) / n
    std = np.sqrt((((x - mean[:, None]) * valid) ** 2).sum(1) / n)
    return np.concatenate([mean, std], 1)


def linear(split: mt.Split, task: mt.Task, seed: int) -> dict:
    """The tuned logistic regression's line for `task`."""
    started = time.perf_counter()
    sides = [one_task(d, task.name) for d in (split.train, split.validation, split.test)]
    scaler = StandardScaler().fit(pooled(sides[0]))
    (x_tr, x_va, x_te), (y_tr, y_va, y_te) = (
        [scaler.transform(pooled(d)) for d in sides],
        [targets(d, task) for d in sides],
    )

    def model(c: float):
        one = LogisticRegression(C=c, max_iter=2000, random_state=seed)
        return (OneVsRestClassifier(one) if task.kind == "multilabel" else one).fit(x_tr, y_tr)

    found = {c: score(task, y_va, model(c).predict_proba(x_va)) for c in C_GRID}
    best = max(found, key=lambda c: (found[c], -c))
    test = score(task, y_te, model(best).predict_proba(x_te))
    return dict(
        name="linear", task=task.name, metric=metric_name(task), test=round(test, 4)
    ) | dict(
        validation=round(found[best], 4), C=best, seconds=round(time.perf_counter() - started, 1)
    )


# CNN runs


def augment_value(setting: str):
    fields = AUGMENT_SETTINGS[setting]
    return None if fields is None else mt.Augment(**fields)


def has_augment() -> bool:
    return hasattr(mt, "Augment") and "augment" in inspect.signature(mt.fit).parameters


def cnn(train, validation, test, *, epochs: int | None, seed: int, augment="unset") -> dict:
    """One default `mt.fit`: {task: test headline}, validation headlines, epoch, seconds."""
    options = {} if epochs is None else {"epochs": epochs}
    if augment != "unset":
        options["augment"] = augment
    started = time.perf_counter()
    trained = mt.fit(None, train, validation=validation, seed=seed, progress=False, **options)
    seconds = time.perf_counter() - started
    on_test, on_val = mt.evaluate(trained, test), mt.evaluate(trained, validation)
    return dict(
        test={t.name: round(headline(on_test[t.name], t), 4) for t in trained.tasks},
        validation={t.name: round(headline(on_val[t.name], t), 4) for t in trained.tasks},
        epoch=trained.best_epoch,
        epochs_run=len(trained.history),
        seconds=round(seconds, 1),
        epoch_seconds=round(
            float(np.median([r["seconds"] for r in trained.history[1:]] or [0])), 2
        ),
    )


def compared(run: dict, reference: Mapping[str, Mapping[str, float]]) -> dict:
    """Per task: test, and its difference to each reference {name: {task: test}}."""
    out = {}
    for task, value in run["test"].items():
        out[task] = {"test": value} | {
            f"vs_{name}": round(value - ref[task], 4)
            for name, ref in reference.items()
            if task in ref
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/mtjax_real_audio"))
    parser.add_argument("--cache", type=Path, default=None, help="default: DATA/cache")
    parser.add_argument("--quick", action="store_true", help=f"<= {QUICK_ROWS} rows, 3 epochs")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"some of {PARTS}")
    parser.add_argument(
        "--settings", default=",".join(AUGMENT_SETTINGS), help="augment settings to try"
    )
    parser.add_argument("--epochs", type=int, default=None, help="default: fit's own default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    parts = args.parts.split(",")
    settings = args.settings.split(",")
    for given, known, flag in (
        (parts, PARTS, "--parts"),
        (settings, AUGMENT_SETTINGS, "--settings"),
    ):
        unknown = sorted(set(given) - set(known))
        if unknown:
            parser.error(f"{flag}: unknown {unknown}; choose from {tuple(known)}")
    epochs = 3 if args.quick and args.epochs is None else args.epochs
    cache = args.cache or args.data / "cache"

    started = time.perf_counter()
    datasets = [
        mt.read(r, EXTRACTION, cache=cache, n_jobs=args.jobs, progress=False)
        for r in readers(args.data)
    ]
    if args.quick:
        datasets = [shrink(d, QUICK_ROWS, args.seed) for d in datasets]
    prepare = [mt.standardize(per="feature")]
    split = next(
        iter(mt.splits(datasets, folds=5, seed=args.seed, validation=0.15, prepare=prepare))
    )
    emit(dict(name="read_and_split", seconds=round(time.perf_counter() - started, 1)))
    describe(split)
    tasks = split.train.tasks
    sides = (split.train, split.validation, split.test)
    single_sides = {t.name: [one_task(d, t.name) for d in sides] for t in tasks}
    ref: dict[str, dict[str, float]] = {}
    runs: dict[str, dict] = {}  # "multi_task" and "single_task:<task>" -> the default run

    if "linear" in parts:
        ref["linear"] = {}
        for task in tasks:
            line = linear(split, task, args.seed)
            ref["linear"][task.name] = line["test"]
            emit(line)
    if "single" in parts:
        ref["single"] = {}
        for task in tasks:
            run = cnn(*single_sides[task.name], epochs=epochs, seed=args.seed)
            runs[f"single_task:{task.name}"] = run
            ref["single"][task.name] = run["test"][task.name]
            line = dict(name="single_task", task=task.name, metric=metric_name(task))
            line |= dict(test=run["test"][task.name], validation=run["validation"][task.name])
            line |= {k: run[k] for k in ("epoch", "epochs_run", "seconds", "epoch_seconds")}
            if "linear" in ref:
                line["vs_linear"] = round(run["test"][task.name] - ref["linear"][task.name], 4)
            emit(line)
    multi = None
    if "multi" in parts or "augment" in parts:
        multi = runs["multi_task"] = cnn(*sides, epochs=epochs, seed=args.seed)
        emit(
            dict(name="multi_task", tasks=compared(multi, ref))
            | {k: multi[k] for k in ("epoch", "epochs_run", "seconds", "epoch_seconds")}
        )
    if "augment" in parts:
        augment_runs(split, single_sides[AUGMENT_TASK], runs, ref, settings, epochs, args.seed)
    if multi is not None and {"linear", "single"} <= set(ref):
        emit(verdict(multi, ref, tasks))
    emit(dict(name="total", seconds=round(time.perf_counter() - started, 1)))


def augment_runs(split, single_sides, runs, ref, settings, epochs: int | None, seed: int) -> None:
    """One line per (model, setting); then the setting chosen on mean validation headline.

    A setting equal to fit's default `augment` reuses that model's default run from `runs`.
    """
    if not has_augment():
        emit(dict(name="augment", skipped="mt.Augment / fit(augment=...) not in this mtjax"))
        return
    default = inspect.signature(mt.fit).parameters["augment"].default
    models = {
        "multi_task": (split.train, split.validation, split.test),
        f"single_task:{AUGMENT_TASK}": tuple(single_sides),
    }
    for model, sides in models.items():
        found = {}
        for setting in settings:
            value = augment_value(setting)
            if value == default and model in runs:
                run = runs[model] | {"same_as": model}
            else:
                run = cnn(*sides, epochs=epochs, seed=seed, augment=value)
            found[setting] = run
            off = found.get("none")
            against = dict(ref) | ({"none": off["test"]} if off and setting != "none" else {})
            line = dict(name="augment", model=model, setting=setting)
            line |= dict(augment=AUGMENT_SETTINGS[setting], tasks=compared(run, against))
            line["validation_mean"] = round(float(np.mean(list(run["validation"].values()))), 4)
            line |= {
                k: run[k]
                for k in ("epoch", "epochs_run", "seconds", "epoch_seconds", "same_as")
                if k in run
            }
            emit(line)
        chosen = max(found, key=lambda s: np.mean(list(found[s]["validation"].values())))
        emit(
            dict(
                name="augment_choice",
                model=model,
                chosen_on_validation=chosen,
                test=found[chosen]["test"],
            )
        )


def verdict(multi: dict, ref: Mapping[str, Mapping[str, float]], tasks) -> dict:
    """Per task and overall: does the default multi-task run hold up?"""
    per_task, relative = {}, []
    for task in tasks:
        m, s, lin = multi["test"][task.name], ref["single"][task.name], ref["linear"][task.name]
        per_task[task.name] = dict(
            multi_minus_single=round(m - s, 4),
            multi_minus_linear=round(m - lin, 4),
            saturated=s >= SATURATED,
        )
        relative.append((m - s) / max(s, 1e-12))
    checked = [p for p in per_task.values() if not p["saturated"]]
    return dict(
        name="verdict",
        tasks=per_task,
        beats_linear_on_every_task=all(p["multi_minus_linear"] > 0 for p in per_task.values()),
        within_0_01_of_single_on_every_unsaturated_task=all(
            p["multi_minus_single"] >= -0.01 for p in checked
        ),
        delta_m_percent=round(100 * float(np.mean(relative)), 2),
    )


if __name__ == "__main__":
    main()
