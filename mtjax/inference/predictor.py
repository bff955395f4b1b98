"""A run folder that predicts on its own: `load(run)` and the `Predictor` it returns.

A run's config.json records the extraction that made its data ("features"), every fitted
prepare step ("preparation": frame length, windows, scaling statistics) and, once it has
finished, the epoch its stopping rule chose. `load` rebuilds the extraction from mtjax's
own classes (or one the caller passes), the model likewise (`mtjax.runs.reevaluate`), and
restores the chosen epoch's parameters. The predictor then takes audio as it comes: a
file, a folder, a list of files, or a signal and its rate.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import numbers
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import numpy as np

from mtjax import files
from mtjax.audio import features as feature_classes
from mtjax.audio import loading, worker
from mtjax.audio.features.base import Extraction
from mtjax.data import prepare
from mtjax.data.values import Data, TaskDataset
from mtjax.readers.base import AUDIO_SUFFIXES
from mtjax.runs import checkpoints, folder, reevaluate
from mtjax.tasks import Task
from mtjax.train import evaluation, losses, metrics
from mtjax.train.step import Trained

THRESHOLD = 0.5  # a binary or multilabel label is predicted above this probability
SHAPE_STEPS = ("frame", "windows", "per_dataset")

Source = str | os.PathLike | tuple[np.ndarray, int]


@dataclasses.dataclass(frozen=True, eq=False)
class Predictor:
    """A run's model at its chosen epoch, with the extraction and preparation it trained on.

    Call it on audio (`__call__`); `load(run)` makes one.

    Attributes:
      run: the run folder.
      epoch: the epoch whose parameters are restored (the chosen one).
      tasks: the tasks it predicts, in the run's order.
      extraction: the extraction the run's data were made with.
      preparation: the recorded prepare steps, in order, as config.json holds them;
        framing to the run's input length first when it records none.
      trained: the model and its restored parameters.
      n_features: features per frame (F) of the run's data.
      dataset: for values recorded per dataset, the dataset whose values are used.
    """

    run: Path
    epoch: int
    tasks: tuple[Task, ...]
    extraction: Extraction
    preparation: tuple[dict, ...]
    trained: Trained = dataclasses.field(repr=False)
    n_features: int = 0
    dataset: str | None = None

    @property
    def frames(self) -> int:
        """Frames per model input row (T): the recorded frame or windows length."""
        return int(self.prepared([np.ones([1, self.n_features], np.float32)]).x.shape[1])

    def __call__(self, inputs: Source | Sequence[Source], batch_size: int = 64) -> dict:
        """Per-task probabilities and labels of audio.

        Every input is loaded (`mtjax.audio.load`, mono, at the extraction's rate),
        extracted, prepared with the recorded steps and values (framed to the recorded
        length; with windows, every window is predicted and the probabilities are
        averaged per input; scaled with the recorded statistics) and run through the
        model, `batch_size` inputs and rows at a time.

        Args:
          inputs: an audio file, a folder (every audio file under it, sorted), a
            `(signal, rate)` pair (float [S] or [S, C] samples, rate in Hz), or a list of
            files and pairs.
          batch_size: inputs read, and rows run through the model, at a time.

        Returns:
          for one file or pair: {task: {"probabilities": [p per label], "label": label}}
          ("labels": [labels above 0.5] for a multilabel task; a binary task's
          probabilities are [1 - p, p] over its two labels, its label the second when
          p > 0.5); for a folder or a list: {name: that}, name the file's path (a pair:
          "<signal k>"), in order.

        Raises:
          FileNotFoundError or AudioError naming a file that is missing, cannot be
          decoded, or is unusable (empty, silent, too short); ValueError for a folder
          without audio.
        """
        out = self.by_name(inputs, batch_size)
        return next(iter(out.values())) if _sources(inputs, look=False)[1] else out

    def by_name(self, inputs: Source | Sequence[Source], batch_size: int = 64) -> dict:
        """{name: {task: prediction}} for every input, one or many (see `__call__`)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        named, _ = _sources(inputs)
        out: dict[str, dict] = {}
        for begin in range(0, len(named), batch_size):
            chunk = named[begin : begin + batch_size]
            pooled = self.probabilities([self.features(s, n) for n, s in chunk], batch_size)
            for i, (name, _) in enumerate(chunk):
                out[name] = {t.name: _decision(t, pooled[t.name][i]) for t in self.tasks}
        return out

    def features(self, source: Source, name: str | None = None) -> np.ndarray:
        """float32 [T, F] features of one file or `(signal, rate)`, as `read` extracts them.

        Raises:
          AudioError naming the file (or `name`) when it cannot be used.
        """
        if not isinstance(source, tuple):
            return worker.features_of(os.fspath(source), self.extraction)
        signal, rate = source
        name = name or "<signal>"
        signal = loading.resample(loading.to_mono(signal), rate, self.extraction.sample_rate)
        loading.check_signal(
            signal, self.extraction.sample_rate, name, min_samples=self.extraction.min_samples
        )
        x = np.asarray(self.extraction(signal, self.extraction.sample_rate), np.float32)
        if x.ndim != 2 or not x.shape[0] or not np.isfinite(x).all():
            raise loading.AudioError(f"{name}: features of shape {x.shape} are empty or not finite")
        return x

    def prepared(self, features: Sequence[np.ndarray], *, scale: bool = True) -> Data:
        """The model's input rows of extracted features, prepared as recorded.

        Args:
          features: float32 [T_i, F] per input.
          scale: False leaves out the recorded scaling (what `mt.export`'s artifact takes).

        Returns:
          a TaskDataset without labels: x float32 [W, T, F], `clip` the input of each row.
        """
        n, longest = len(features), max(int(f.shape[0]) for f in features)
        x = np.zeros([n, longest, features[0].shape[1]], np.float32)
        for i, f in enumerate(features):
            x[i, : f.shape[0]] = f
        n_columns = sum(t.n_columns for t in self.tasks)
        ds = TaskDataset.from_arrays(
            x,
            np.zeros([n, n_columns], np.float32),
            self.tasks,
            lengths=np.array([f.shape[0] for f in features]),
            has_task=np.zeros([n, len(self.tasks)], bool),
            extraction=self.extraction.key,
        )
        steps = [r for r in self.preparation if scale or r.get("step") != "standardize"]
        return prepare.replay(ds, steps, dataset=self.dataset)

    def probabilities(self, features: Sequence[np.ndarray], batch_size: int = 64) -> dict:
        """{task: float [n, C_k]}: the model's probabilities per input, windows averaged."""
        ds = self.prepared(features)
        probs = evaluation.predict(self.trained, ds, batch_size=batch_size)
        return {name: _pooled(p, ds.clip) for name, p in probs.items()}


def _pooled(probs: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Mean of each input's rows (its windows), inputs in order."""
    return metrics.pool_clips(probs, clip)[0]


def _decision(task: Task, probs: np.ndarray) -> dict[str, Any]:
    """{"probabilities", "label" or "labels"} of one input's task probabilities [C]."""
    p = [float(v) for v in probs]
    if task.kind == "binary":
        return {"probabilities": [1.0 - p[0], p[0]], "label": task.labels[int(p[0] > THRESHOLD)]}
    if task.kind == "multiclass":
        return {"probabilities": p, "label": task.labels[int(np.argmax(probs))]}
    return {"probabilities": p, "labels": [lab for lab, v in zip(task.labels, p) if v > THRESHOLD]}


def _sources(inputs: Any, *, look: bool = True) -> tuple[list[tuple[str, Source]], bool]:
    """[(name, file or (signal, rate))] and whether `inputs` is one file or pair.

    `look=False` only answers the second (the list is then empty).
    """
    if _is_signal(inputs):
        return [("<signal>", (np.asarray(inputs[0]), int(inputs[1])))], True
    if isinstance(inputs, (str, os.PathLike)):
        path = Path(inputs)
        if not path.is_dir():
            return [(str(path), path)], True
        if not look:
            return [], False
        found = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        if not found:
            raise ValueError(f"{path}: no audio files ({', '.join(AUDIO_SUFFIXES)}) under it")
        return [(str(p), p) for p in found], False
    if not isinstance(inputs, Iterable):
        raise TypeError(
            f"a predictor takes a path, a folder, (signal, rate) or a list, got {inputs!r}"
        )
    if not look:
        return [], False
    named: list[tuple[str, Source]] = []
    for k, item in enumerate(inputs):
        if _is_signal(item):
            named.append((f"<signal {k}>", (np.asarray(item[0]), int(item[1]))))
        else:
            named.extend(_sources(item)[0])
    if not named:
        raise ValueError("a predictor was given an empty list of inputs")
    return named, False


def _is_signal(value: Any) -> bool:
    """Whether `value` is `(samples, rate)`: an array and a whole number of Hz."""
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and hasattr(value[0], "shape")
        and isinstance(value[1], numbers.Real)
        and float(value[1]).is_integer()
    )


# Loading a run


def load(
    run: Any,
    *,
    model: nn.Module | type[nn.Module] | None = None,
    models: Sequence[type[nn.Module]] = (),
    extraction: Extraction | type | None = None,
    dataset: str | None = None,
) -> Predictor:
    """`mt.load(run)`: the predictor of a run folder, at its chosen epoch.

    A run folder never chooses code: the model is one of mtjax's or given (as for
    `mt.evaluate(run, ...)`), and the extraction one of `mtjax.features` or given; nothing
    config.json names is imported.

    Args:
      run: a `mt.Run` or the run's folder.
      model: the module trained (the run's parameters go into it) or its class (built
        with the recorded settings); default: the class config.json names among mtjax's
        models and `models`.
      models: the caller's model classes config.json may name.
      extraction: for a run made with an extraction of your own: the extraction (its key
        must be the recorded one) or its class (built with the recorded fields).
      dataset: for a run whose data were scaled per dataset, the dataset whose statistics
        new audio gets (default: the only one).

    Raises:
      FileNotFoundError: the run has no config.json or no checkpoints.
      ValueError: config.json does not record the extraction or preparation (a run
        trained before mtjax recorded them), names an extraction or model that is not
        known, or `dataset` is needed or unknown.
    """
    run = run if isinstance(run, folder.Run) else folder.Run.at(run)
    config = folder.read_config(run)
    saved = _saved_epochs(run)
    tasks = tuple(Task.from_json(t) for t in config["tasks"])
    ext = _extraction(run, config, extraction)
    preparation = _preparation(run, config)
    if isinstance(model, type):
        described = {**config["model"], "name": model.__name__, "module": model.__module__}
        model = reevaluate.model_from_run_config({**config, "model": described}, models=(model,))
    elif model is None:
        model = reevaluate.model_from_run_config(config, models=models)
    chosen = folder.chosen_epoch(run, config, folder.read_history(run)).epoch
    epoch = saved[-1] if chosen is None else chosen
    manager = checkpoints.open_manager(run.checkpoints)
    try:
        state, _ = checkpoints.restore_arrays(manager, epoch)
    finally:
        checkpoints.close(manager)
    trained = Trained(
        model=model,
        tasks=tasks,
        params=state["params"]["model"],
        batch_stats=state.get("batch_stats") or {},
        opt_state=None,
        comb_state=None,
        comb_params={},
        history=(),
        best_epoch=epoch,
        loss_fns=losses.loss_functions(tasks),
    )
    n_features = int(config["data"]["train"]["x_shape"][1])
    predictor = Predictor(run.path, epoch, tasks, ext, preparation, trained, n_features, dataset)
    _ = predictor.frames  # replays the records on one row: a bad one fails here, not later
    return predictor


def _saved_epochs(run: folder.Run) -> list[int]:
    """The run's saved epochs; FileNotFoundError when there is none."""
    if run.checkpoints.is_dir():
        manager = checkpoints.open_manager(run.checkpoints)
        try:
            saved = checkpoints.epochs(manager)
        finally:
            checkpoints.close(manager)
        if saved:
            return saved
    raise FileNotFoundError(
        f"{run.path} has no checkpoints to predict with: train it with mt.fit(..., run=...)"
    )


def _extraction(run: folder.Run, config: dict, given: Any) -> Extraction:
    """The run's extraction, rebuilt from config.json's "features" (never imported)."""
    key = str(config.get("extraction", ""))
    recorded = config.get("features")
    if isinstance(given, Extraction):
        if given.key != key:
            raise ValueError(f"extraction= is {given.key}, but {run.path} was trained on {key}")
        return given
    if not isinstance(recorded, dict):
        raise ValueError(
            f"{run.path} records no extraction it can be rebuilt from (its key: {key!r});"
            " predict from features with mt.predict, or retrain with features from mt.read"
        )
    if isinstance(given, type):
        recorded = {**recorded, "name": given.__name__}
        known = {given.__name__: given}
    else:
        known = feature_classes.EXTRACTIONS
    name = recorded.get("name")
    if name not in known:
        raise ValueError(
            f"{run.path} was trained on extraction {name!r}, which mtjax does not know"
            f" (its: {', '.join(sorted(known))}); pass extraction=... (the class or value)"
        )
    try:
        if given is None:
            return feature_classes.from_config(recorded)
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items()}
        return given(**{k: v for k, v in fields.items() if k != "name"})
    except (TypeError, ValueError) as err:
        raise ValueError(f"{run.path}: cannot rebuild extraction {name} ({err})") from None


def _preparation(run: folder.Run, config: dict) -> tuple[dict, ...]:
    """The recorded prepare steps, framing to the run's input length first if none frames."""
    recorded = config.get("preparation")
    if not isinstance(recorded, list):
        raise ValueError(
            f"{run.path} records no preparation (trained before mtjax recorded its prepare"
            " steps): retrain it to predict from audio"
        )
    steps = tuple(dict(r) for r in recorded)
    if not any(r.get("step") in SHAPE_STEPS for r in steps):
        frames = int(config["data"]["train"]["x_shape"][0])
        steps = ({"step": "frame", "length": frames, "start": "begin"}, *steps)
    return steps


# Writing predictions


def predict_to_csv(
    predictor: Predictor,
    inputs: Source | Sequence[Source],
    out_path: str | os.PathLike,
    *,
    batch_size: int = 64,
) -> Path:
    """Predictions of `inputs` (see `Predictor.__call__`) as a CSV file, written atomically.

    Columns: "path", then per task "{task}" (the label; a multilabel task's labels joined
    by ";") and "{task}:{label}" (the probability of each label). One row per input.

    Returns:
      the file's path.
    """
    predictions = predictor.by_name(inputs, batch_size=batch_size)
    header = ["path"]
    for t in predictor.tasks:
        header += [t.name, *(f"{t.name}:{label}" for label in t.labels)]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    for name, per_task in predictions.items():
        row = [name]
        for t in predictor.tasks:
            got = per_task[t.name]
            label = got["label"] if "label" in got else ";".join(got["labels"])
            row += [label, *(f"{p:.6g}" for p in got["probabilities"])]
        writer.writerow(row)
    return files.write_bytes(out_path, text.getvalue().encode())
