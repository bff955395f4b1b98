"""A tiny `fit(run=...)` shared by the resume tests and the processes they kill.

`python resume_child.py SPEC_JSON` trains `fit_arguments(spec)` into `Run(root, name)`;
with "pause_after": k it writes `{root}/{name}.paused` once epoch k is fully recorded
(history and checkpoint) and then sleeps, holding the run, until it is killed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/, for tiny_training

import numpy as np
import optax
from tiny_training import SmallNet, three_datasets

import mtjax as mt
from mtjax import runs

COMBINERS = {
    "sum": mt.losses.sum,
    "mean": mt.losses.mean,
    "dwa": mt.losses.dwa,
    "uncertainty": mt.losses.uncertainty_weighting,
}


def fit_arguments(spec: dict) -> tuple:
    """(model, train, kwargs of fit) for a spec; every key has a default."""
    train = three_datasets(n=spec.get("n", 24), seed=spec.get("data_seed", 0))
    validation = three_datasets(n=12, seed=5)
    name = spec.get("combine", "sum")
    factory = COMBINERS.get(name) or mt.losses.COMBINERS[name]
    combine = factory(**spec.get("combine_options", {}))
    kwargs = dict(
        validation=validation,
        epochs=spec.get("epochs", 5),
        batch_size=16,
        optimizer=optax.adam(spec.get("lr", 0.1)),
        combine=combine,
        max_to_keep=spec.get("max_to_keep"),
        progress=False,
    )
    return SmallNet(train.tasks), train, kwargs


def fold_split() -> mt.Split:
    """The split an experiment fold trains on in these tests."""
    return mt.Split(train=three_datasets(n=24), validation=three_datasets(n=12, seed=5))


def experiment(root: str | Path, combine: str):
    """A two-epoch experiment of a small DNN whose folds train on `fold_split`."""
    from mtjax import experiments

    return experiments.parse(
        {
            "name": "exp",
            "output": str(root),
            "demo": True,
            "model": {"name": "dnn", "hidden": [16]},
            "train": {"epochs": 2, "batch_size": 16, "early_stop": False, "combine": combine},
        }
    )


def paused_marker(spec: dict) -> Path:
    return Path(spec["root"]) / f"{spec['name'].replace('/', '-')}.paused"


def without_figures(setattr=setattr) -> None:
    """Figures (TensorBoard confusion images, plots) cost most of a tiny run; none here."""
    from mtjax.runs import plots

    setattr(plots, "confusion", lambda *args, **kwargs: None)
    setattr(plots, "to_rgb", lambda fig: np.zeros((2, 2, 3), np.uint8))
    setattr(plots, "write_plots", lambda *args, **kwargs: [])


def main(spec: dict) -> None:
    without_figures()
    pause_after = spec.get("pause_after")
    if pause_after is not None:
        from mtjax.runs import recorder

        record_epoch = recorder.Recorder.epoch

        def epoch_then_pause(self, epoch, *args, **kwargs):
            record_epoch(self, epoch, *args, **kwargs)
            if epoch == pause_after:
                self._finish_saving()  # the checkpoint is written while the next epoch runs
                paused_marker(spec).write_text(str(os.getpid()))
                time.sleep(600)

        recorder.Recorder.epoch = epoch_then_pause
    if "experiment" in spec:  # a fold of an experiment file, named "exp/fold0"
        from mtjax import experiments

        experiments.train_fold(
            experiment(spec["root"], spec["experiment"]), 0, fold_split(), progress=False
        )
        return
    model, train, kwargs = fit_arguments(spec)
    mt.fit(model, train, run=runs.Run(spec["root"], spec["name"]), **kwargs)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
