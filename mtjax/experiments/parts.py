"""The parts of an experiment: its sections checked by building, and built again to train.

`features`, `model`, `prepare` and `train` check one section of a raw file and return it in
normalised form; the `build_*` functions turn a normalised section into the part itself, and
`resolved_train` writes `[train]` out with every part's defaults, for a run's config.json.
Every named part comes from the registry (`mtjax.experiments.registry`); the optimizer is
optax's, by its function name.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mtjax.data import ops
from mtjax.data import prepare as prepare_steps
from mtjax.experiments import checks, registry
from mtjax.tasks import Task
from mtjax.train import augment as augmentation
from mtjax.train import losses
from mtjax.train.step import PER_TASK_GRADS, PRECISIONS

LOSSES = {
    "binary_cross_entropy": losses.binary_cross_entropy,
    "softmax_cross_entropy": losses.softmax_cross_entropy,
    "multilabel_cross_entropy": losses.multilabel_cross_entropy,
}
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
    "augment",
    "precision",
    "per_task_grads",
)
# What a model factory is given besides its keys (`tasks`), and Flax's own module fields.
MODEL_SUPPLIED = ("tasks", "parent", "name")


# Checking the sections


def features(c: checks.Checker, value: Any) -> dict:
    """`[features]`: an extraction by name and its fields, checked by building it."""
    table, factory = c.named(value, "features", "extraction")
    c.options(table, factory, "features", table["name"])
    c.build("features", lambda: build_extraction(table), keys=_keys(table))
    return table


def model(c: checks.Checker, value: Any) -> dict:
    """`[model]`: a model by name and its keys, checked against the factory's signature.

    The model is built when the tasks are known, after reading (`build_model`).
    """
    table, factory = c.named(value, "model", "model")
    given = registry.arguments(factory)
    if "tasks" not in given.accepted and not given.any_keyword:
        raise c.fail("model.name", f"{table['name']!r} takes no `tasks` argument")
    c.options(table, factory, "model", f"model {table['name']!r}", supplied=MODEL_SUPPLIED)
    return table


def _length(c: checks.Checker, value: Any, path: str) -> int | str:
    try:
        return ops.check_frame_length(value)
    except ValueError as err:
        raise c.fail(path, str(err)) from None


def prepare(c: checks.Checker, raw: Mapping) -> dict:
    """`[prepare]`: limit, frame, windows, standardize, each None when off."""
    c.keys(raw, PREPARE_KEYS, "prepare", "[prepare]")
    out: dict[str, Any] = {}
    limit = raw.get("limit", False)
    if limit not in (False, None):
        table = {"caps": limit} if not isinstance(limit, Mapping) else dict(limit)
        c.keys(table, ("caps", "task", "seed"), "prepare.limit", "limit")
        caps = table.get("caps")
        if isinstance(caps, Mapping):
            for label, cap in caps.items():
                c.integer(cap, f"prepare.limit.caps.{label}", 1)
        else:
            c.integer(caps, "prepare.limit.caps", 1)
        task = table.get("task")
        out["limit"] = {
            "caps": caps,
            "task": None if task is None else c.string(task, "prepare.limit.task"),
            "seed": c.integer(table.get("seed", 0), "prepare.limit.seed", 0),
        }
    else:
        out["limit"] = None
    frame = raw.get("frame", "median")
    out["frame"] = None if frame in (False, None) else _length(c, frame, "prepare.frame")
    win = raw.get("windows", False)
    if win in (False, None):
        out["windows"] = None
    else:
        table = dict(win) if isinstance(win, Mapping) else {"length": win}
        c.keys(table, ("length", "hop"), "prepare.windows", "windows")
        hop = table.get("hop")
        out["windows"] = {
            "length": _length(c, table.get("length"), "prepare.windows.length"),
            "hop": None if hop is None else c.integer(hop, "prepare.windows.hop", 1),
        }
    std = raw.get("standardize", "feature")
    if std in (False, None):
        out["standardize"] = None
    else:
        is_table = isinstance(std, Mapping)
        table = dict(std) if is_table else {"per": "feature" if std is True else std}
        c.keys(table, ("per", "by_dataset"), "prepare.standardize", "standardize")
        per_path = "prepare.standardize" + (".per" if is_table else "")
        by_path = "prepare.standardize.by_dataset"
        out["standardize"] = {
            "per": c.string(table.get("per", "feature"), per_path, ("feature", "cell")),
            "by_dataset": c.boolean(table.get("by_dataset", False), by_path),
        }
    return out


def train(c: checks.Checker, raw: Mapping) -> dict:
    """`[train]`: epochs, batch size and the parts, each checked by building it.

    The parts: combiner, schedule, optimizer (optax's) and stopping rule.
    """
    c.keys(raw, TRAIN_KEYS, "train", "[train]")
    out: dict[str, Any] = {
        "epochs": c.integer(raw.get("epochs", 30), "train.epochs", 1),
        "batch_size": c.integer(raw.get("batch_size", 32), "train.batch_size", 1),
    }
    for key, kind, default, build in (
        ("combine", "combiner", "sum", build_combiner),
        ("batches", "schedule", "mixed", build_schedule),
    ):
        table, factory = c.named(raw.get(key, default), f"train.{key}", kind)
        c.options(table, factory, f"train.{key}", f"{table['name']!r}")
        c.build(f"train.{key}", functools.partial(build, table), keys=_keys(table))
        out[key] = table
    out["optimizer"] = _optimizer(c, raw.get("optimizer"))
    out["early_stop"] = _early_stop(c, raw.get("early_stop", "default"))
    loss = dict(c.table(raw.get("loss", {}), "train.loss"))
    for task, fn in loss.items():
        c.file_part(task, f"train.loss.{task}", "task name")
        c.string(fn, f"train.loss.{task}", sorted(LOSSES))
    out["loss"] = loss
    keep = raw.get("max_to_keep")
    out["max_to_keep"] = None if keep is None else c.integer(keep, "train.max_to_keep", 1)
    fraction = c.number(raw.get("validation_fraction", 0.1), "train.validation_fraction")
    if not 0 < fraction < 1:
        raise c.fail("train.validation_fraction", f"must be in (0, 1), got {fraction}")
    out["validation_fraction"] = fraction
    out["augment"] = _augment(c, raw.get("augment"))
    precision = c.string(raw.get("precision", "float32"), "train.precision", PRECISIONS)
    if precision != "float32":  # the default is left out, as runs recorded before it
        out["precision"] = precision
    mode = c.string(raw.get("per_task_grads", "jacobian"), "train.per_task_grads", PER_TASK_GRADS)
    if mode != "jacobian":
        out["per_task_grads"] = mode
    return out


def _augment(c: checks.Checker, value: Any) -> dict | None:
    """`train.augment`: a table of `mt.Augment` fields (unset ones off), or none."""
    if value is None:
        return None
    table = dict(c.table(value, "train.augment"))
    fields = [f.name for f in dataclasses.fields(augmentation.Augment)]
    c.keys(table, fields, "train.augment", "[train.augment]")
    c.build("train.augment", functools.partial(augmentation.Augment.from_json, table), fields)
    return table


def _optimizer(c: checks.Checker, value: Any) -> dict | None:
    if value is None:
        return None  # fit's default
    table, factory = c.named(value, "train.optimizer", "optimizer", _optax_lookup("optimizer"))
    c.options(table, factory, "train.optimizer", f"{table['name']!r}")
    lr = table.get("learning_rate")
    if isinstance(lr, Mapping):
        path = "train.optimizer.learning_rate"
        if "schedule" not in lr:
            raise c.fail(f"{path}.schedule", f"missing; known: {', '.join(_optax_names(True))}")
        name = c.string(lr["schedule"], f"{path}.schedule", _optax_names(True))
        import optax

        c.options(lr, getattr(optax, name), path, f"{name!r}", fixed=("schedule",))
    c.build("train.optimizer", lambda: build_optimizer(table), keys=_keys(table))
    return table


def _early_stop(c: checks.Checker, value: Any) -> Any:
    """None (every epoch), "default" (fit's), or a stopping rule's table as given.

    A table without a name holds the options of "patience".
    """
    if value in (False, None):
        return None
    if value == "default":
        return value
    table = {"name": value} if isinstance(value, str) else dict(c.table(value, "train.early_stop"))
    path = "train.early_stop" + ("" if isinstance(value, str) else ".name")
    factory = c.factory(table.get("name", "patience"), path, "stopping")
    c.options(table, factory, "train.early_stop", f"{table.get('name', 'patience')!r}")
    c.build("train.early_stop", lambda: build_early_stop(table), keys=_keys(table))
    return table


def _optax_names(schedules: bool = False) -> list[str]:
    import optax

    if schedules:
        return sorted(n for n in dir(optax) if n.endswith("_schedule") and n != "scale_by_schedule")
    return sorted(
        n
        for n in dir(optax)
        if not n.startswith("_")
        and getattr(getattr(optax, n), "__module__", "") == "optax._src.alias"
    )


def _optax_lookup(kind: str) -> Callable[[str], Callable]:
    def lookup(name: str) -> Callable:
        import optax

        known = _optax_names()
        if name not in known:
            raise ValueError(f"unknown {kind} {name!r}; known: {', '.join(known)}")
        return getattr(optax, name)

    return lookup


def _keys(table: Mapping) -> list[str]:
    return [k for k in table if k != "name"]


def _thaw(value: Any) -> Any:
    """Plain dicts and tuples from a normalised (read-only) section."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_thaw(v) for v in value)
    return value


def _options(table: Mapping, *, without: Sequence[str] = ("name",)) -> dict:
    """A table's keys as keyword arguments: arrays as tuples, tables as dicts."""
    return {k: _thaw(v) for k, v in table.items() if k not in without}


# Building the parts


def build_extraction(config: Mapping) -> Any:
    """The extraction `config["name"]` with the other keys as its fields."""
    return registry.lookup("extraction", config["name"])(**_options(config))


def build_reader(spec: Mapping) -> Any:
    """The reader of a normalised `[[datasets]]` entry (not a demo one).

    A reader whose factory takes no `name` is built without it (the entry's name is then the
    reader's own).
    """
    factory = registry.lookup("reader", spec["reader"])
    options = _options(spec, without=("reader", "predefined_folds"))
    takes = registry.arguments(factory)
    if "name" not in takes.accepted and not takes.any_keyword:
        options.pop("name", None)
    return factory(**options)


def build_model(config: Mapping, tasks: Sequence[Task], *, source: str = "experiment") -> Any:
    """The model `config["name"]` for `tasks`; its error as an ExperimentError naming `model`.

    Raises:
      ExperimentError: `source: model: ...` for what the model's constructor refuses.
    """
    factory = registry.lookup("model", config["name"])
    try:
        return factory(tasks=tuple(tasks), **_options(config))
    except checks.BUILD_ERRORS as err:
        raise checks.ExperimentError(f"{source}: model: {err}") from err


def build_combiner(config: Mapping) -> Any:
    """The loss combiner `config["name"]` with its options."""
    return registry.lookup("combiner", config["name"])(**_options(config))


def build_schedule(config: Mapping) -> Callable:
    """The batch schedule `config["name"]` with its options."""
    return registry.lookup("schedule", config["name"])(**_options(config))


def build_optimizer(config: Mapping | None) -> Any:
    """`optax.inject_hyperparams(optax.<name>)(**options)`, so the learning rate is logged."""
    if config is None:
        return None
    import optax

    kwargs = _options(config)
    lr = kwargs.get("learning_rate")
    if isinstance(lr, dict):
        kwargs["learning_rate"] = getattr(optax, lr.pop("schedule"))(**lr)
    static = [k for k, v in kwargs.items() if v is None or isinstance(v, (bool, str))]
    return optax.inject_hyperparams(getattr(optax, config["name"]), static_args=static)(**kwargs)


def build_augment(table: Mapping | None) -> Any:
    """`mt.Augment` from a normalised `train.augment`, or None."""
    return None if table is None else augmentation.Augment.from_json(dict(table))


def build_early_stop(config: Any) -> Any:
    """None (every epoch), "default" (fit's default rule) or the rule `config` names."""
    if config is None or config == "default":
        return config
    return registry.lookup("stopping", config.get("name", "patience"))(**_options(config))


def build_prepare(config: Mapping) -> list[Callable]:
    """The prepare steps of a normalised `[prepare]`, in order."""
    steps = []
    if config["limit"] is not None:
        limit = _thaw(config["limit"])
        steps.append(prepare_steps.limit(limit["caps"], task=limit["task"], seed=limit["seed"]))
    if config["frame"] is not None:
        steps.append(prepare_steps.frame(config["frame"]))
    if config["windows"] is not None:
        steps.append(prepare_steps.windows(config["windows"]["length"], config["windows"]["hop"]))
    if config["standardize"] is not None:
        steps.append(prepare_steps.standardize(**config["standardize"]))
    return steps


# Recording the resolved choices


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return repr(value)


def with_defaults(table: Mapping, factory: Callable) -> dict:
    """A part's table with each keyword option of `factory` it leaves out at its default.

    JSON values: a default that is not one (an object, a function) is given as its repr.
    """
    out = {k: _json_value(v) for k, v in table.items()}
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return out
    for p in params:
        keyword = p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        if keyword and p.default is not p.empty and p.name not in out:
            out[p.name] = _json_value(p.default)
    return out


def resolved_train(train: Mapping) -> dict:
    """A normalised `[train]` with every part at its resolved options, defaults included.

    The combiner and the schedule get their factories' defaults; the stopping rule too,
    "default" being `fit`'s own rule, `patience` at its defaults (validation/loss, 10);
    None (train every epoch) stays None, and so does a None optimizer (`fit`'s default,
    which `fit` describes itself); an optax optimizer and its learning-rate schedule get
    optax's defaults.
    """
    out = _json_value(train)
    for key, kind in (("combine", "combiner"), ("batches", "schedule")):
        out[key] = with_defaults(train[key], registry.lookup(kind, train[key]["name"]))
    rule = train["early_stop"]
    if rule is not None:
        table = {"name": "patience"} if rule == "default" else dict(rule)
        table.setdefault("name", "patience")
        out["early_stop"] = with_defaults(table, registry.lookup("stopping", table["name"]))
    if train["optimizer"] is not None:
        import optax

        optimizer = with_defaults(train["optimizer"], getattr(optax, train["optimizer"]["name"]))
        lr = optimizer.get("learning_rate")
        if isinstance(lr, dict):
            optimizer["learning_rate"] = with_defaults(lr, getattr(optax, lr["schedule"]))
        out["optimizer"] = optimizer
    return out
