"""Experiments as TOML files: the frozen `Experiment` value, parsed and validated.

    name = "speech+sounds"      # runs go to output/name/[sweep parts/]fold{i}
    output = "runs"             # relative paths resolve against the TOML file's folder
    cache = "cache"             # feature cache (default output/cache; false: a temporary one)
    seed = 0                    # folds, initialisation, batches
    folds = 5                   # k of the k-fold split (datasets with predefined folds keep them)
    run_folds = 2               # optional: train only the first 2 folds (default all)
    jobs = 2                    # optional: extraction processes (default all cores)
    in_memory = true            # false: features stay on disk (index mode)
    max_frames = 400            # optional cap on T;  on_error = "raise" | "skip"
    demo = true                 # or {scale = 0.5, seed = 0}: the generated demo datasets
    [[datasets]]                # reader = "folder" | "csv" | "demo"; other keys: the reader's
    name = "commands"; reader = "folder"; root = "data/commands"; task = "word"
    group = '^(.+?)_nohash_'; predefined_folds = true   # false: ignore them; "auto": if k fits
    [features]                  # an extraction (mtjax.features) and its fields
    name = "LogMel"; sample_rate = 16000; n_mels = 40
    [prepare]                   # run in this order; each may be false
    limit = {caps = 50}         # or an int
    frame = "median"            # default "median"; an int, "min", "max"
    windows = {length = 50, hop = 25}
    standardize = "feature"     # default "feature"; "cell", or {per = .., by_dataset = true}
    [model]
    name = "cnn"                # "cnn" | "dnn", + the model's fields (channels = [8, 16], ...)
    [train]
    epochs = 30; batch_size = 32; max_to_keep = 3; validation_fraction = 0.1
    combine = "sum"             # or {name = "dwa", temperature = 2.0}
    batches = "mixed"           # or {name = "proportional", temperature = 2.0}
    optimizer = {name = "adamw", learning_rate = 1e-3}   # optax; learning_rate may be
                                # {schedule = "cosine_decay_schedule", init_value = .., ...}
    early_stop = {metric = "validation/loss", patience = 8}   # false: every epoch
    loss = {tags = "binary_cross_entropy"}                    # per-task loss overrides
    [sweep]                     # the cross product of listed choices
    "train.combine" = ["sum", "pcgrad"]
    datasets = "combinations"   # every non-empty subset of the datasets (or a list of lists)

`load` parses and validates a file into a frozen `Experiment`; errors name the dotted key.
Expanding sweeps, building the parts and running them is `mtjax.experiment`.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tomllib

from mtjax import demo
from mtjax.audio import features
from mtjax.data import prepare as prepare_steps
from mtjax.readers import CsvReader, FolderReader
from mtjax.tasks import Task
from mtjax.train import losses, models, stopping
from mtjax.train import schedules as batching

log = logging.getLogger("mtjax")

READERS = {"folder": FolderReader, "csv": CsvReader}
DEMO_DATASETS = ("commands", "sounds", "tagged")
LOSSES = {
    "binary_cross_entropy": losses.binary_cross_entropy,
    "softmax_cross_entropy": losses.softmax_cross_entropy,
    "multilabel_cross_entropy": losses.multilabel_cross_entropy,
}
TOP_KEYS = (
    "name",
    "output",
    "cache",
    "seed",
    "folds",
    "run_folds",
    "jobs",
    "in_memory",
    "max_frames",
    "on_error",
    "demo",
    "datasets",
    "features",
    "prepare",
    "model",
    "train",
    "sweep",
)
PREPARE_KEYS = ("limit", "frame", "windows", "standardize")
TRAIN_KEYS = (
    "epochs",
    "batch_size",
    "combine",
    "batches",
    "optimizer",
    "early_stop",
    "loss",
    "max_to_keep",
    "validation_fraction",
)
SWEEPABLE = ("seed", "folds", "in_memory", "max_frames", "features", "prepare", "model", "train")
DEFAULT_FEATURES = {
    "name": "LogMel",
    "sample_rate": 16000,
    "n_fft": 512,
    "hop_length": 160,
    "n_mels": 40,
}
# Parts of an experiment that change no number of a run (left out of the resume check).
_NOT_RESUMED = ("name", "output", "cache", "run_folds", "jobs", "in_memory", "sweep")


def _optax_names(suffix: str = "") -> list[str]:
    import optax

    if suffix:
        return sorted(n for n in dir(optax) if n.endswith(suffix) and n != "scale_by_schedule")
    return sorted(
        n
        for n in dir(optax)
        if not n.startswith("_")
        and getattr(getattr(optax, n), "__module__", "") == "optax._src.alias"
    )


class ExperimentError(ValueError):
    """A bad experiment file or value; the message names the file and the dotted key."""


# The value


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return types.MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _key(value: Any) -> str:
    return json.dumps(_thaw(value), sort_keys=True)


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One validated experiment; sections are read-only mappings in normalised form.

    Attributes:
      name: the run group's name, a relative folder under `output` ("a/b" allowed).
      output: folder of the runs (absolute). cache: feature cache folder, or None.
      seed, folds, run_folds, jobs, in_memory, max_frames, on_error: as in the file.
      datasets: one mapping per dataset: {"name", "reader", "predefined_folds", ...reader
        options, paths absolute}; demo ones {"name", "reader": "demo", "scale", "seed"}.
      features: {"name": extraction class, field: value, ...}.
      prepare: {"limit", "frame", "windows", "standardize"}, each None when off.
      model: {"name", ...fields}. train: {"epochs", "batch_size", "combine": {"name", ...},
        "batches": {"name", ...}, "optimizer": {"name", ...} or None (fit's default),
        "early_stop": {...}, None (never) or "default", "loss", "max_to_keep",
        "validation_fraction"}.
      sweep: {dotted path: values, "datasets": "combinations" or subsets}; {} once expanded.
      source: where the experiment came from, for messages. base: the folder relative paths
        resolve against.
    """

    name: str
    output: Path
    cache: Path | None
    seed: int
    folds: int
    run_folds: int | None
    jobs: int | None
    in_memory: bool
    max_frames: int | None
    on_error: str
    datasets: tuple[Mapping[str, Any], ...]
    features: Mapping[str, Any]
    prepare: Mapping[str, Any]
    model: Mapping[str, Any]
    train: Mapping[str, Any]
    sweep: Mapping[str, Any] = dataclasses.field(default_factory=lambda: types.MappingProxyType({}))
    source: str = "experiment"
    base: Path = Path(".")

    def to_dict(self) -> dict:
        """The experiment as JSON values (paths absolute); `parse` reads it back."""
        return {
            f.name: _thaw(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name not in ("source", "base")
        }

    @property
    def data_key(self) -> str:
        """What the prepared folds depend on: runs with one data key share their folds."""
        d = self.to_dict()
        return _key(
            {
                k: d[k]
                for k in (
                    "datasets",
                    "features",
                    "prepare",
                    "folds",
                    "seed",
                    "cache",
                    "in_memory",
                    "max_frames",
                    "on_error",
                )
            }
            | {"demo_root": str(self.output / "data")}
        )

    def __hash__(self) -> int:
        return hash(_key(self.to_dict()))


# Parsing and validation


class _Parser:
    """Checks one raw experiment mapping; every error names `source` and the dotted key."""

    def __init__(self, source: str, base: Path):
        self.source, self.base = source, base

    def fail(self, path: str, message: str) -> ExperimentError:
        return ExperimentError(f"{self.source}: {path}: {message}")

    def keys(self, table: Mapping, known: Sequence[str], path: str, what: str) -> None:
        for key in table:
            if key not in known:
                where = f"{path}.{key}" if path else str(key)
                raise self.fail(where, f"unknown key; {what} takes: {', '.join(known)}")

    def table(self, value: Any, path: str) -> Mapping:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a table, got {value!r} ({_type(value)})")
        return value

    def integer(self, value: Any, path: str, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected an integer, got {value!r} ({_type(value)})")
        if minimum is not None and value < minimum:
            raise self.fail(path, f"expected an integer >= {minimum}, got {value}")
        return value

    def number(self, value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path, f"expected a number, got {value!r} ({_type(value)})")
        return float(value)

    def string(self, value: Any, path: str, choices: Sequence[str] | None = None) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {value!r} ({_type(value)})")
        if choices is not None and value not in choices:
            raise self.fail(path, f"{value!r} is not one of: {', '.join(choices)}")
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {value!r} ({_type(value)})")
        return value

    def path(self, value: Any, path: str) -> Path:
        return (self.base / Path(self.string(value, path)).expanduser()).resolve()

    def named(self, value: Any, path: str, known: Sequence[str], what: str) -> dict:
        """A `"name"` or `{name = "...", option = ...}` choice, as {"name", ...options}."""
        table = {"name": value} if isinstance(value, str) else dict(self.table(value, path))
        if "name" not in table:
            raise self.fail(f"{path}.name", f"missing; known {what}s: {', '.join(known)}")
        name = self.string(table["name"], f"{path}.name")
        if name not in known:
            raise self.fail(
                f"{path}.name" if not isinstance(value, str) else path,
                f"unknown {what} {name!r}; known: {', '.join(known)}",
            )
        return table

    def options(self, table: Mapping, fn: Callable, path: str) -> None:
        """Every key but "name" must be a parameter of `fn`."""
        params = inspect.signature(fn).parameters
        accepted = [
            p
            for p in params
            if params[p].kind
            not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        ]
        self.keys(
            {k: v for k, v in table.items() if k != "name"},
            accepted,
            path,
            f"{table['name']!r}" + ("" if accepted else " (no options)"),
        )

    def build(self, path: str, make: Callable[[], Any]) -> Any:
        try:
            return make()
        except (TypeError, ValueError) as err:
            raise self.fail(path, str(err)) from None


def _type(value: Any) -> str:
    return {dict: "table", list: "array", types.MappingProxyType: "table", tuple: "array"}.get(
        type(value), type(value).__name__
    )


def load(path: str | os.PathLike) -> Experiment:
    """Reads and validates an experiment file; relative paths resolve against its folder."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"no experiment file {path}") from None
    except tomllib.TOMLDecodeError as err:
        raise ExperimentError(f"{path}: not valid TOML: {err}") from None
    return parse(raw, base=path.resolve().parent, source=str(path))


def parse(
    raw: Mapping[str, Any], *, base: str | os.PathLike = ".", source: str = "experiment"
) -> Experiment:
    """Validates a raw experiment mapping (a parsed TOML file, or `Experiment.to_dict()`).

    Raises:
      ExperimentError naming the bad key by its dotted path and what is accepted.
    """
    p = _Parser(source, Path(base).resolve())
    raw = p.table(raw, "(top level)")
    p.keys(raw, TOP_KEYS, "", "the top level")
    name = p.string(raw.get("name", Path(source).stem), "name")
    if not name or name.startswith("/") or "\\" in name or ".." in Path(name).parts:
        raise p.fail("name", f"{name!r} must be a relative folder name, without '..' or '\\'")
    output = p.path(raw.get("output", "runs"), "output")
    cache = raw.get("cache", str(output / "cache"))
    cache = None if cache in (False, None) else p.path(cache, "cache")
    folds = p.integer(raw.get("folds", 5), "folds", 2)
    run_folds = raw.get("run_folds")
    jobs, max_frames = raw.get("jobs"), raw.get("max_frames")
    experiment = Experiment(
        name=name,
        output=output,
        cache=cache,
        seed=p.integer(raw.get("seed", 0), "seed", 0),
        folds=folds,
        run_folds=None if run_folds is None else p.integer(run_folds, "run_folds", 1),
        jobs=None if jobs is None else p.integer(jobs, "jobs", 1),
        in_memory=p.boolean(raw.get("in_memory", True), "in_memory"),
        max_frames=None if max_frames is None else p.integer(max_frames, "max_frames", 1),
        on_error=p.string(raw.get("on_error", "raise"), "on_error", ("raise", "skip")),
        datasets=_freeze(_datasets(p, raw)),
        features=_freeze(_features(p, raw.get("features", DEFAULT_FEATURES))),
        prepare=_freeze(_prepare(p, p.table(raw.get("prepare", {}), "prepare"))),
        model=_freeze(_model(p, raw.get("model", {"name": "cnn"}))),
        train=_freeze(_train(p, p.table(raw.get("train", {}), "train"))),
        sweep=_freeze(_sweep(p, p.table(raw.get("sweep", {}), "sweep"))),
        source=source,
        base=p.base,
    )
    return experiment


def _datasets(p: _Parser, raw: Mapping) -> list[dict]:
    shared = raw.get("demo", False)
    if not isinstance(shared, bool):
        shared = dict(p.table(shared, "demo"))
        p.keys(shared, ("scale", "seed"), "demo", "demo")
    given = raw.get("datasets")
    if given is None:
        if shared is False:
            raise p.fail("datasets", "no datasets: add [[datasets]] tables, or demo = true")
        given = [{"name": n, "reader": "demo"} for n in DEMO_DATASETS]
    if not isinstance(given, (list, tuple)) or not given:
        raise p.fail("datasets", "expected a non-empty array of tables ([[datasets]])")
    defaults = shared if isinstance(shared, dict) else {}
    out, names, demo_settings = [], {}, set()
    for i, entry in enumerate(given):
        path = f"datasets[{i}]"
        entry = dict(p.table(entry, path))
        reader = p.string(entry.get("reader", "missing"), f"{path}.reader", (*READERS, "demo"))
        if reader == "demo":
            p.keys(
                entry,
                ("name", "reader", "scale", "seed", "predefined_folds"),
                path,
                "a demo dataset",
            )
            spec = {
                "name": p.string(entry.get("name", "missing"), f"{path}.name", DEMO_DATASETS),
                "reader": "demo",
                "scale": p.number(entry.get("scale", defaults.get("scale", 1.0)), f"{path}.scale"),
                "seed": p.integer(entry.get("seed", defaults.get("seed", 0)), f"{path}.seed", 0),
            }
            if spec["scale"] <= 0:
                raise p.fail(f"{path}.scale", f"must be positive, got {spec['scale']}")
            demo_settings.add((spec["scale"], spec["seed"]))
            if len(demo_settings) > 1:
                raise p.fail(
                    f"{path}.scale",
                    "the demo datasets share one folder (output/data):"
                    " give them one scale and seed",
                )
            folds_default = "auto"
        else:
            fields = [f.name for f in dataclasses.fields(READERS[reader]) if f.name != "_"]
            p.keys(entry, ("reader", "predefined_folds", *fields), path, f"a {reader} dataset")
            required = [
                f.name
                for f in dataclasses.fields(READERS[reader])
                if f.default is dataclasses.MISSING and f.name != "_"
            ]
            for key in required:
                if key not in entry:
                    raise p.fail(
                        f"{path}.{key}", f"missing; a {reader} dataset needs {', '.join(required)}"
                    )
            spec = {"reader": reader, **entry, "root": str(p.path(entry["root"], f"{path}.root"))}
            spec["name"] = p.string(entry.get("name", Path(spec["root"]).name), f"{path}.name")
            for key in (
                "manifest",
                "path_column",
                "task",
                "group",
                "audio_dir",
                "kind",
                "split_column",
                "fold_column",
                "group_column",
                "validation_list",
                "testing_list",
                "delimiter",
            ):
                if key in entry:
                    p.string(entry[key], f"{path}.{key}")
            folds_default = True
        spec["predefined_folds"] = entry.get("predefined_folds", folds_default)
        if spec["predefined_folds"] not in (True, False, "auto"):
            raise p.fail(
                f"{path}.predefined_folds",
                f'expected true, false or "auto", got {spec["predefined_folds"]!r}',
            )
        if not spec["name"] or "/" in spec["name"]:
            raise p.fail(f"{path}.name", f"{spec['name']!r} cannot name a folder")
        if spec["name"] in names:
            raise p.fail(
                f"{path}.name",
                f"{spec['name']!r} is already the name of datasets[{names[spec['name']]}]",
            )
        names[spec["name"]] = i
        out.append(spec)
    return out


def _features(p: _Parser, value: Any) -> dict:
    table = p.named(value, "features", sorted(features.EXTRACTIONS), "extraction")
    cls = features.EXTRACTIONS[table["name"]]
    p.keys(table, ["name", *(f.name for f in dataclasses.fields(cls))], "features", table["name"])
    p.build("features", lambda: features.from_config(_thaw(table)))
    return table


def _length(p: _Parser, value: Any, path: str) -> int | str:
    if isinstance(value, str):
        return p.string(value, path, ("median", "min", "max"))
    return p.integer(value, path, 1)


def _prepare(p: _Parser, raw: Mapping) -> dict:
    p.keys(raw, PREPARE_KEYS, "prepare", "[prepare]")
    out: dict[str, Any] = {}
    limit = raw.get("limit", False)
    if limit not in (False, None):
        table = {"caps": limit} if not isinstance(limit, Mapping) else dict(limit)
        p.keys(table, ("caps", "task", "seed"), "prepare.limit", "limit")
        caps = table.get("caps")
        if isinstance(caps, Mapping):
            for label, cap in caps.items():
                p.integer(cap, f"prepare.limit.caps.{label}", 1)
        else:
            p.integer(caps, "prepare.limit.caps", 1)
        out["limit"] = {
            "caps": caps,
            "task": table.get("task"),
            "seed": p.integer(table.get("seed", 0), "prepare.limit.seed", 0),
        }
        if out["limit"]["task"] is not None:
            p.string(out["limit"]["task"], "prepare.limit.task")
    else:
        out["limit"] = None
    frame = raw.get("frame", "median")
    out["frame"] = None if frame in (False, None) else _length(p, frame, "prepare.frame")
    win = raw.get("windows", False)
    if win in (False, None):
        out["windows"] = None
    else:
        table = dict(win) if isinstance(win, Mapping) else {"length": win}
        p.keys(table, ("length", "hop"), "prepare.windows", "windows")
        hop = table.get("hop")
        out["windows"] = {
            "length": _length(p, table.get("length"), "prepare.windows.length"),
            "hop": None if hop is None else p.integer(hop, "prepare.windows.hop", 1),
        }
    std = raw.get("standardize", "feature")
    if std in (False, None):
        out["standardize"] = None
    else:
        table = (
            {"per": "feature" if std is True else std}
            if not isinstance(std, Mapping)
            else dict(std)
        )
        p.keys(table, ("per", "by_dataset"), "prepare.standardize", "standardize")
        out["standardize"] = {
            "per": p.string(
                table.get("per", "feature"),
                "prepare.standardize" + (".per" if isinstance(std, Mapping) else ""),
                ("feature", "cell"),
            ),
            "by_dataset": p.boolean(
                table.get("by_dataset", False), "prepare.standardize.by_dataset"
            ),
        }
    return out


def _model(p: _Parser, value: Any) -> dict:
    table = p.named(value, "model", sorted(models.MODELS), "model")
    cls = models.MODELS[table["name"]]
    fields = [f.name for f in dataclasses.fields(cls) if f.name not in ("parent", "name", "tasks")]
    p.keys(table, ["name", *fields], "model", f"model {table['name']!r}")
    probe = (Task("probe", ("a", "b")),)
    p.build("model", lambda: build_model(table, probe))
    return table


def _train(p: _Parser, raw: Mapping) -> dict:
    p.keys(raw, TRAIN_KEYS, "train", "[train]")
    out: dict[str, Any] = {
        "epochs": p.integer(raw.get("epochs", 30), "train.epochs", 1),
        "batch_size": p.integer(raw.get("batch_size", 32), "train.batch_size", 1),
    }
    combine = p.named(
        raw.get("combine", "sum"), "train.combine", sorted(losses.COMBINERS), "combiner"
    )
    p.options(combine, losses.COMBINERS[combine["name"]], "train.combine")
    p.build("train.combine", lambda: build_combiner(combine))
    out["combine"] = combine
    batches = p.named(
        raw.get("batches", "mixed"), "train.batches", sorted(batching.SCHEDULES), "schedule"
    )
    p.build("train.batches", lambda: build_schedule(batches))
    out["batches"] = batches
    optimizer = raw.get("optimizer")
    if optimizer is not None:
        optimizer = p.named(optimizer, "train.optimizer", _optax_names(), "optimizer")
        import optax

        p.options(optimizer, getattr(optax, optimizer["name"]), "train.optimizer")
        lr = optimizer.get("learning_rate")
        if isinstance(lr, Mapping):
            lr = dict(lr)
            if "schedule" not in lr:
                raise p.fail(
                    "train.optimizer.learning_rate.schedule",
                    f"missing; known: {', '.join(_optax_names('_schedule'))}",
                )
            name = p.string(
                lr["schedule"], "train.optimizer.learning_rate.schedule", _optax_names("_schedule")
            )
            p.options(
                {"name": name, **{k: v for k, v in lr.items() if k != "schedule"}},
                getattr(optax, name),
                "train.optimizer.learning_rate",
            )
        p.build("train.optimizer", lambda: build_optimizer(optimizer))
    out["optimizer"] = optimizer
    stop = raw.get("early_stop", "default")
    if stop in (False, None):
        stop = None
    elif stop != "default":
        stop = dict(p.table(stop, "train.early_stop"))
        p.options({"name": "early_stop", **stop}, stopping.patience, "train.early_stop")
        p.build("train.early_stop", lambda: stopping.patience(**stop))
    out["early_stop"] = stop
    loss = dict(p.table(raw.get("loss", {}), "train.loss"))
    for task, fn in loss.items():
        p.string(fn, f"train.loss.{task}", sorted(LOSSES))
    out["loss"] = loss
    keep = raw.get("max_to_keep")
    out["max_to_keep"] = None if keep is None else p.integer(keep, "train.max_to_keep", 1)
    fraction = p.number(raw.get("validation_fraction", 0.1), "train.validation_fraction")
    if not 0 < fraction < 1:
        raise p.fail("train.validation_fraction", f"must be in (0, 1), got {fraction}")
    out["validation_fraction"] = fraction
    return out


def _sweep(p: _Parser, raw: Mapping) -> dict:
    out: dict[str, Any] = {}
    for key, values in raw.items():
        path = f"sweep.{key}" if "." not in key else f'sweep."{key}"'
        if key == "datasets":
            if values == "combinations":
                out[key] = values
                continue
            if (
                not isinstance(values, list)
                or not values
                or not all(
                    isinstance(v, list) and v and all(isinstance(n, str) for n in v) for v in values
                )
            ):
                raise p.fail(
                    path,
                    'expected "combinations" or an array of arrays of dataset '
                    'names, e.g. [["commands"], ["commands", "sounds"]]',
                )
            out[key] = values
            continue
        if key.split(".")[0] not in SWEEPABLE:
            raise p.fail(
                path,
                "not a sweepable choice; a sweep key is a dotted path starting "
                f"with one of: {', '.join(SWEEPABLE)}, or datasets",
            )
        if not isinstance(values, list) or not values:
            raise p.fail(path, f"expected a non-empty array of choices, got {values!r}")
        out[key] = values
    return out


# Building the parts


def build_model(config: Mapping, tasks: Sequence[Task]):
    kwargs = {
        k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in config.items() if k != "name"
    }
    return models.model_from_config(config["name"], tasks, **kwargs)


def build_combiner(config: Mapping) -> losses.Combiner:
    return losses.combiner_from_config(**_thaw(config))


def build_schedule(config: Mapping) -> Callable:
    return batching.schedule_from_config(**_thaw(config))


def build_optimizer(config: Mapping | None):
    """`optax.inject_hyperparams(optax.<name>)(**options)`, so the learning rate is logged."""
    if config is None:
        return None
    import optax

    kwargs = _thaw(config)
    name = kwargs.pop("name")
    lr = kwargs.get("learning_rate")
    if isinstance(lr, dict):
        kwargs["learning_rate"] = getattr(optax, lr.pop("schedule"))(**lr)
    static = [k for k, v in kwargs.items() if v is None or isinstance(v, (bool, str))]
    return optax.inject_hyperparams(getattr(optax, name), static_args=static)(**kwargs)


def build_early_stop(config: Any):
    if config is None or config == "default":
        return config
    return stopping.patience(**_thaw(config))


def build_prepare(prepare: Mapping) -> list[Callable]:
    steps = []
    if prepare["limit"] is not None:
        limit = _thaw(prepare["limit"])
        steps.append(prepare_steps.limit(limit["caps"], task=limit["task"], seed=limit["seed"]))
    if prepare["frame"] is not None:
        steps.append(prepare_steps.frame(prepare["frame"]))
    if prepare["windows"] is not None:
        steps.append(prepare_steps.windows(prepare["windows"]["length"], prepare["windows"]["hop"]))
    if prepare["standardize"] is not None:
        steps.append(prepare_steps.standardize(**prepare["standardize"]))
    return steps


def build_readers(experiment: Experiment) -> list:
    """The experiment's readers; demo data are made under `output/data` first."""
    out = []
    for i, spec in enumerate(experiment.datasets):
        options = {
            k: tuple(v) if isinstance(v, (list, tuple)) else v
            for k, v in _thaw(spec).items()
            if k not in ("reader", "predefined_folds")
        }
        try:
            if spec["reader"] == "demo":
                paths = demo.make_demo(
                    experiment.output / "data", seed=spec["seed"], scale=spec["scale"]
                )
                out.append({r.name: r for r in demo.demo_readers(paths)}[spec["name"]])
            else:
                out.append(READERS[spec["reader"]](**options))
        except (TypeError, ValueError, OSError) as err:
            raise ExperimentError(
                f"{experiment.source}: datasets[{i}] ({spec['name']}): {err}"
            ) from err
    return out
