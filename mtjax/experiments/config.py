"""Experiments as TOML files: the frozen `Experiment` value, parsed and checked.

    name = "speech+sounds"      # runs go to output/name/[sweep parts/][seed{s}/]fold{i}
    output = "runs"             # relative paths resolve against the TOML file's folder
    cache = "cache"             # feature cache (default output/cache; false: a temporary one)
    seed = 0                    # folds, initialisation, batches, the validation carve
    seeds = [0, 1]              # optional: one run of every point and fold per seed (the
                                # runs of `seed` keep the plain path, others add seed{s})
    folds = 5                   # k of the k-fold split (datasets with predefined folds keep them)
    run_folds = 2               # optional: train only the first 2 folds (default all)
    jobs = 2                    # optional: extraction processes (default all cores)
    in_memory = true            # false: features stay on disk (index mode)
    max_frames = 400            # optional cap on T;  on_error = "raise" | "skip"
    modules = ["my_lab.parts"]  # optional: imported first; they may register parts by name
    demo = true                 # or {scale = 0.5, seed = 0}: the generated demo datasets
    [[datasets]]                # reader: a registered reader ("speech_commands", "esc50",
    reader = "speech_commands"  # "folder", "csv", ... or the class name), "module:attribute",
    root = "data/speech"        # or "demo"; every other key is the reader's keyword argument
    name = "commands"           # default: the reader's own name
    predefined_folds = true     # false: ignore them; "auto": keep them if k fits
    [features]                  # an extraction ("LogMel" or "log_mel", ...) and its fields
    name = "LogMel"; sample_rate = 16000; n_mels = 40
    [prepare]                   # run in this order; each may be false
    limit = {caps = 50}         # or an int
    frame = "median"            # default "median"; an int, "min", "max"
    windows = {length = 50, hop = 25}
    standardize = "feature"     # default "feature"; "cell", or {per = .., by_dataset = true}
    [model]
    name = "cnn"                # "cnn" | "dnn" (or the class names), + the model's fields
    [train]
    epochs = 30; batch_size = 32; max_to_keep = 3; validation_fraction = 0.1
    combine = "sum"             # or {name = "dwa", temperature = 2.0}
    batches = "mixed"           # or {name = "proportional", temperature = 2.0}
    optimizer = {name = "adamw", learning_rate = 1e-3}   # optax; learning_rate may be
                                # {schedule = "cosine_decay_schedule", init_value = .., ...}
    early_stop = {metric = "validation/loss", patience = 8}   # "never" or false: every epoch
    loss = {tags = "binary_cross_entropy"}                    # per-task loss overrides
    [sweep]                     # the cross product of listed choices
    "train.combine" = ["sum", "pcgrad"]
    datasets = "combinations"   # every non-empty subset of the datasets (or a list of lists)

`load` parses and checks a file into a frozen `Experiment`; errors name the file and the
dotted key. Each part is checked by building it (the model, whose tasks are known only after
reading, by its signature); `mtjax.experiments.registry` says how parts are named.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import os
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mtjax.experiments import checks, parts, registry

ExperimentError = checks.ExperimentError

TOP_KEYS = (
    "name",
    "output",
    "cache",
    "seed",
    "seeds",
    "folds",
    "run_folds",
    "jobs",
    "in_memory",
    "max_frames",
    "on_error",
    "modules",
    "demo",
    "datasets",
    "features",
    "prepare",
    "model",
    "train",
    "sweep",
)
DEMO_DATASETS = ("commands", "sounds", "tagged")
DEMO_TASKS = {"commands": ("word",), "sounds": ("category",), "tagged": ("tags", "loud")}
SWEEPABLE = ("seed", "folds", "in_memory", "max_frames", "features", "prepare", "model", "train")
DEFAULT_FEATURES = {
    "name": "LogMel",
    "sample_rate": 16000,
    "n_fft": 512,
    "hop_length": 160,
    "n_mels": 40,
}
# Parts of an experiment that change no number of a run (left out of the resume check).
# `seeds` is left out too: a run's own seed is `seed`.
NOT_RESUMED = (
    "name",
    "output",
    "cache",
    "run_folds",
    "jobs",
    "in_memory",
    "sweep",
    "modules",
    "seeds",
)


# The value


def freeze(value: Any) -> Any:
    """Read-only mappings and tuples, all the way down."""
    if isinstance(value, Mapping):
        return types.MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """JSON values (dicts, lists, path strings) from a frozen one."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def key(value: Any) -> str:
    """A stable string of a value, for comparing and memoising."""
    return json.dumps(thaw(value), sort_keys=True)


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One checked experiment; sections are read-only mappings in normalised form.

    Attributes:
      name: the runs' folder under `output`, a relative one ("a/b" allowed); each part, and
        each dataset's name, passes `mtjax.files.file_part` (no "..", slash or backslash).
      output: folder of the runs (absolute). cache: feature cache folder, or None.
      seed, folds, run_folds, jobs, in_memory, max_frames, on_error: as in the file.
      seeds: the seeds to run, each a separate run of every point and fold (`seed` alone
        when the file lists none); one seed once expanded, then equal to `seed`.
      datasets: one mapping per dataset: {"name", "reader", "predefined_folds", ...reader
        keywords, root absolute}; demo ones {"name", "reader": "demo", "scale", "seed"}.
      features: {"name": extraction, field: value, ...}.
      prepare: {"limit", "frame", "windows", "standardize"}, each None when off.
      model: {"name", ...fields}. train: {"epochs", "batch_size", "combine": {"name", ...},
        "batches": {"name", ...}, "optimizer": {"name", ...} or None (fit's default),
        "early_stop": a table, None (never) or "default", "loss", "max_to_keep",
        "validation_fraction"}.
      sweep: {dotted path: values, "datasets": "combinations" or subsets}; {} once expanded.
      modules: modules imported before the parts are looked up.
      source: where the experiment came from, for messages. base: the folder relative paths
        resolve against.
      group: the group its runs are compared in (config.json "group"): `name` without the
        seed part `sweeps.expand` adds; `name` itself unless given. Like `source` and
        `base`, not part of `to_dict`.
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
    modules: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    source: str = "experiment"
    base: Path = Path(".")
    group: str = ""

    def __post_init__(self):
        if not self.seeds:
            object.__setattr__(self, "seeds", (self.seed,))
        if not self.group:
            object.__setattr__(self, "group", self.name)

    def to_dict(self) -> dict:
        """The experiment as JSON values (paths absolute); `parse` reads it back."""
        return {
            f.name: thaw(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name not in ("source", "base", "group")
        }

    @property
    def data_key(self) -> str:
        """What the prepared folds depend on: runs with one data key share their folds."""
        d = self.to_dict()
        shared = ("datasets", "features", "prepare", "folds", "seed", "cache", "in_memory")
        return key(
            {k: d[k] for k in (*shared, "max_frames", "on_error")}
            | {"demo_root": str(self.output / "data")}
        )

    def __hash__(self) -> int:
        return hash(key(self.to_dict()))


# Parsing


def load(path: str | os.PathLike) -> Experiment:
    """Reads and checks an experiment file; relative paths resolve against its folder.

    A run folder of `mtjax run` gives the experiment (its point and seed) it recorded.
    """
    path = Path(path)
    if path.is_dir():
        return _recorded(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"no experiment file {path}") from None
    except tomllib.TOMLDecodeError as err:
        raise ExperimentError(f"{path}: not valid TOML: {err}") from None
    return parse(raw, base=path.resolve().parent, source=str(path))


def _recorded(run: Path) -> Experiment:
    """The experiment `mtjax run` recorded in `run/config.json`."""
    record_path = run / "config.json"
    if not record_path.is_file():
        raise FileNotFoundError(f"{run} is a folder, not a run (no config.json)")
    try:
        raw = json.loads(record_path.read_text()).get("experiment")
    except (OSError, ValueError, AttributeError) as err:
        raise ExperimentError(f"{record_path}: cannot read it: {err}") from None
    if not isinstance(raw, dict):
        raise ExperimentError(
            f"{record_path} records no experiment (only runs of `mtjax run` do):"
            " give the experiment file"
        )
    return parse(raw, base=run, source=str(record_path))


def parse(
    raw: Mapping[str, Any], *, base: str | os.PathLike = ".", source: str = "experiment"
) -> Experiment:
    """Checks a raw experiment mapping (a parsed TOML file, or `Experiment.to_dict()`).

    The `modules` are imported first; then every part is looked up and built (the model is
    checked against its signature), so a wrong value fails here, not after reading.

    Raises:
      ExperimentError naming the bad key by its dotted path and what is accepted.
    """
    c = checks.Checker(source, Path(base).resolve())
    raw = c.table(raw, "(top level)")
    c.keys(raw, TOP_KEYS, "", "the top level")
    modules = _modules(c, raw.get("modules", []))
    name = _folder_name(c, c.string(raw.get("name", Path(source).stem), "name"))
    output = c.path(raw.get("output", "runs"), "output")
    cache = raw.get("cache", str(output / "cache"))
    run_folds, jobs, max_frames = raw.get("run_folds"), raw.get("jobs"), raw.get("max_frames")
    seed = c.integer(raw.get("seed", 0), "seed", 0)
    sweep = _sweep(c, c.table(raw.get("sweep", {}), "sweep"))
    return Experiment(
        name=name,
        output=output,
        cache=None if cache in (False, None) else c.path(cache, "cache"),
        seed=seed,
        seeds=_seeds(c, raw.get("seeds"), seed, sweep),
        folds=c.integer(raw.get("folds", 5), "folds", 2),
        run_folds=None if run_folds is None else c.integer(run_folds, "run_folds", 1),
        jobs=None if jobs is None else c.integer(jobs, "jobs", 1),
        in_memory=c.boolean(raw.get("in_memory", True), "in_memory"),
        max_frames=None if max_frames is None else c.integer(max_frames, "max_frames", 1),
        on_error=c.string(raw.get("on_error", "raise"), "on_error", ("raise", "skip")),
        datasets=freeze(_datasets(c, raw)),
        features=freeze(parts.features(c, raw.get("features", DEFAULT_FEATURES))),
        prepare=freeze(parts.prepare(c, c.table(raw.get("prepare", {}), "prepare"))),
        model=freeze(parts.model(c, raw.get("model", {"name": "cnn"}))),
        train=freeze(parts.train(c, c.table(raw.get("train", {}), "train"))),
        sweep=freeze(sweep),
        modules=modules,
        source=source,
        base=c.base,
    )


def _folder_name(c: checks.Checker, name: str) -> str:
    """`name`, a relative folder of one or more parts ("a/b"), each a `files.file_part`."""
    for part in name.split("/"):
        c.file_part(part, "name", f"experiment name {name!r}: part")
    return name


def _seeds(c: checks.Checker, value: Any, seed: int, sweep: Mapping) -> tuple[int, ...]:
    """`seeds` checked: distinct integers >= 0; `(seed,)` when not given."""
    if value is None:
        return (seed,)
    if not isinstance(value, (list, tuple)) or not value:
        raise c.fail("seeds", f"expected a non-empty array of integers >= 0, got {value!r}")
    seeds = tuple(c.integer(s, f"seeds[{i}]", 0) for i, s in enumerate(value))
    if len(set(seeds)) < len(seeds):
        raise c.fail("seeds", f"{list(seeds)} lists a seed twice")
    if "seed" in sweep and seeds != (seed,):
        raise c.fail("seeds", "sweep.seed varies the seed too: give the seeds in one of them")
    return seeds


def _modules(c: checks.Checker, value: Any) -> tuple[str, ...]:
    """Imports each listed module (a module registers its parts as it is imported)."""
    if not isinstance(value, (list, tuple)):
        raise c.fail("modules", f"expected an array of module names, got {value!r}")
    for i, module in enumerate(value):
        c.string(module, f"modules[{i}]")
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise c.fail(f"modules[{i}]", f"cannot import {module!r}: {err}") from err
        except (TypeError, ValueError) as err:  # e.g. a name registered twice
            raise c.fail(f"modules[{i}]", f"importing {module!r} failed: {err}") from err
    return tuple(value)


def _datasets(c: checks.Checker, raw: Mapping) -> list[dict]:
    shared = raw.get("demo", False)
    if not isinstance(shared, bool):
        shared = dict(c.table(shared, "demo"))
        c.keys(shared, ("scale", "seed"), "demo", "demo")
    given = raw.get("datasets")
    if given is None:
        if shared is False:
            raise c.fail("datasets", "no datasets: add [[datasets]] tables, or demo = true")
        given = [{"name": n, "reader": "demo"} for n in DEMO_DATASETS]
    if not isinstance(given, (list, tuple)) or not given:
        raise c.fail("datasets", "expected a non-empty array of tables ([[datasets]])")
    defaults = shared if isinstance(shared, dict) else {}
    out: list[dict] = []
    names: dict[str, int] = {}
    demo_settings: set[tuple[float, int]] = set()
    for i, entry in enumerate(given):
        path = f"datasets[{i}]"
        entry = dict(c.table(entry, path))
        if "reader" not in entry:
            known = ", ".join([*registry.names("reader"), "demo"])
            raise c.fail(f"{path}.reader", f"missing; known readers: {known}")
        demo = c.string(entry["reader"], f"{path}.reader") == "demo"
        folds = entry.get("predefined_folds", "auto" if demo else True)
        if folds not in (True, False, "auto"):
            raise c.fail(
                f"{path}.predefined_folds", f'expected true, false or "auto", got {folds!r}'
            )
        spec = _demo(c, entry, path, defaults) if demo else _reader(c, entry, path)
        spec["predefined_folds"] = folds
        if demo:
            demo_settings.add((spec["scale"], spec["seed"]))
            if len(demo_settings) > 1:
                raise c.fail(
                    f"{path}.scale",
                    "the demo datasets share one folder (output/data):"
                    " give them one scale and seed",
                )
        c.file_part(spec["name"], f"{path}.name", "dataset name")
        if spec["name"] in names:
            raise c.fail(
                f"{path}.name",
                f"{spec['name']!r} is already the name of datasets[{names[spec['name']]}]",
            )
        names[spec["name"]] = i
        out.append(spec)
    return out


def _demo(c: checks.Checker, entry: dict, path: str, defaults: Mapping) -> dict:
    c.keys(entry, ("name", "reader", "scale", "seed", "predefined_folds"), path, "a demo dataset")
    spec: dict[str, Any] = {
        "name": c.string(entry.get("name", "missing"), f"{path}.name", DEMO_DATASETS),
        "reader": "demo",
        "scale": c.number(entry.get("scale", defaults.get("scale", 1.0)), f"{path}.scale"),
        "seed": c.integer(entry.get("seed", defaults.get("seed", 0)), f"{path}.seed", 0),
    }
    if spec["scale"] <= 0:
        raise c.fail(f"{path}.scale", f"must be positive, got {spec['scale']}")
    return spec


def _reader(c: checks.Checker, entry: dict, path: str) -> dict:
    """A reader's entry, checked by building the reader: {"reader", ...keywords, "name"}."""
    name = entry["reader"]
    factory = c.factory(name, f"{path}.reader", "reader", also=("demo",))
    takes = registry.arguments(factory)
    named = "name" in takes.accepted or takes.any_keyword
    fixed = ("reader", "predefined_folds", *(() if named else ("name",)))
    c.options(entry, factory, path, f"a {name} dataset", fixed=fixed)
    options = {k: v for k, v in entry.items() if k not in ("reader", "predefined_folds")}
    if isinstance(options.get("root"), str):
        options["root"] = str(c.path(options["root"], f"{path}.root"))
    if "name" in options:
        c.string(options["name"], f"{path}.name")
    spec = {"reader": name, **options}
    reader = c.build(path, lambda: parts.build_reader(spec), keys=list(options))
    missing = [a for a in ("name", "root", "tasks", "items") if not _has(reader, a)]
    if missing:
        raise c.fail(
            f"{path}.reader",
            f"{name!r} made a {type(reader).__name__} without {', '.join(missing)};"
            " a reader has a name, a root, tasks and items()",
        )
    if not named and options.get("name", reader.name) != reader.name:
        raise c.fail(f"{path}.name", f"{name!r} takes no name; its dataset is {reader.name!r}")
    return {**spec, "name": reader.name}


def _has(value: Any, attribute: str) -> bool:
    """Whether `value` has `attribute`, without running a property (`tasks` reads the disk)."""
    try:
        inspect.getattr_static(value, attribute)
    except AttributeError:
        return False
    return True


def _sweep(c: checks.Checker, raw: Mapping) -> dict:
    out: dict[str, Any] = {}
    for name, values in raw.items():
        path = f"sweep.{name}" if "." not in name else f'sweep."{name}"'
        if name == "datasets":
            if values != "combinations" and not (
                isinstance(values, list)
                and values
                and all(
                    isinstance(v, list) and v and all(isinstance(n, str) for n in v) for v in values
                )
            ):
                raise c.fail(
                    path,
                    'expected "combinations" or an array of arrays of dataset '
                    'names, e.g. [["commands"], ["commands", "sounds"]]',
                )
        elif name.split(".")[0] not in SWEEPABLE:
            raise c.fail(
                path,
                "not a sweepable choice; a sweep key is a dotted path starting "
                f"with one of: {', '.join(SWEEPABLE)}, or datasets",
            )
        elif not isinstance(values, list) or not values:
            raise c.fail(path, f"expected a non-empty array of choices, got {values!r}")
        out[name] = values
    return out
