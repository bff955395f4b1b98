"""Re-evaluating a saved run: the model rebuilt from config.json, each epoch restored.

A run folder never chooses code: config.json names its model's class, and only a class
mtjax ships (`mtjax.train.models.MODELS`) or one the caller passes (`model=`, `models=`) is
built from it, with the recorded settings as plain JSON values; nothing is imported.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn

from mtjax.runs import checkpoints, folder
from mtjax.tasks import Task
from mtjax.train import evaluation, losses
from mtjax.train import models as mtjax_models
from mtjax.train.step import Trained


def model_from_run_config(config: dict, *, models: Sequence[type[nn.Module]] = ()) -> nn.Module:
    """The Flax module a run was trained with, rebuilt from its config.json.

    Nothing is imported: the class is looked up by the name config.json records among
    mtjax's models and `models`, never by its recorded module path.

    Args:
      config: the run's config.json (`folder.read_config`).
      models: the caller's own model classes (nn.Module subclasses) that may be rebuilt;
        one whose module and name config.json records, else the only one of that name.

    Raises:
      ValueError: config.json names a class that is neither mtjax's nor in `models`, or
        its recorded settings do not build it; the message says to pass `model=` or
        `models=[...]`.
    """
    described = config.get("model")
    if not isinstance(described, dict):
        raise ValueError(f"config.json's model is {described!r}, not a table; pass model=...")
    name, module_name = str(described.get("name", "")), str(described.get("module", ""))
    return _build(_known_class(name, module_name, models), config)


def _build(cls: type[nn.Module], config: dict) -> nn.Module:
    """`cls` built with config.json's recorded model settings (JSON values, tasks as Task)."""
    settings = {k: v for k, v in config["model"].items() if k not in ("name", "module", "parent")}
    try:
        return cls(**{k: _from_json(k, v) for k, v in settings.items()})
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"cannot rebuild model {cls.__name__} from its config ({err}); pass model=..."
            " to evaluate"
        ) from None


def _known_class(name: str, module_name: str, given: Sequence[type[nn.Module]]) -> type[nn.Module]:
    """The class called `name` among `given` and mtjax's models; ValueError if none is."""
    bad = [m for m in given if not (isinstance(m, type) and issubclass(m, nn.Module))]
    if bad:
        raise ValueError(f"models= takes nn.Module subclasses, got {bad[0]!r}")
    known = [*given, *mtjax_models.MODELS.values()]
    exact = [m for m in known if (m.__module__, m.__name__) == (module_name, name)]
    named = [m for m in known if m.__name__ == name]
    if exact or len(named) == 1:
        return (exact or named)[0]
    if named:
        raise ValueError(
            f"the run names model {module_name}.{name}; models= holds several classes called"
            f" {name!r}: pass the one it was trained with as model=..."
        )
    raise ValueError(
        f"the run names model {module_name}.{name}, which is not a known model (mtjax's:"
        f" {', '.join(sorted(m.__name__ for m in mtjax_models.MODELS.values()))}); a run folder"
        " never chooses code: pass model=... (the module, or its class) or models=[...]"
    )


def _from_json(name: str, value):
    if name == "tasks":
        return tuple(Task.from_json(t) for t in value)
    if isinstance(value, list):
        return tuple(_from_json("", v) for v in value)
    return value


def evaluate_run(
    run: folder.Run,
    data,
    *,
    epoch: int | None = None,
    model: nn.Module | type[nn.Module] | None = None,
    models: Sequence[type[nn.Module]] = (),
    batch_size: int = 256,
    threshold: float = 0.5,
    split: str = "evaluation",
) -> dict:
    """`mt.evaluate(run, data)`: reports of every saved epoch, or of `epoch`.

    The reports are also written to the run under `split`. Returns {epoch: {task:
    report}}, or {task: report} for one epoch.

    Args:
      run: the run folder.
      data: rows to evaluate (see `mtjax.train.evaluate`).
      epoch: the one epoch to evaluate; None: every saved one.
      model: the module to restore the parameters into, or a class (nn.Module subclass)
        built from config.json's settings; default: the class config.json names, if it is
        one of mtjax's models or of `models` (a run folder never chooses code).
      models: the caller's model classes config.json may name (`model_from_run_config`).
      batch_size: rows per forward pass.
      threshold: probability above which a multilabel or binary label is predicted.
      split: the name the reports are written under.

    Raises:
      ValueError: the run names a model that is not known (see `model_from_run_config`).
      FileNotFoundError: the run has no checkpoints, or none of `epoch`.
    """
    config = folder.read_config(run)
    tasks = tuple(Task.from_json(t) for t in config["tasks"])
    if isinstance(model, type):
        model = _build(_known_class(model.__name__, model.__module__, (model,)), config)
    elif model is None:
        model = model_from_run_config(config, models=models)
    manager = checkpoints.open_manager(run.checkpoints)
    try:
        chosen = checkpoints.epochs(manager) if epoch is None else [epoch]
        if not chosen:
            raise FileNotFoundError(f"{run.path} has no checkpoints to evaluate")
        out = {}
        for e in chosen:
            saved, meta = checkpoints.restore_arrays(manager, e)
            trained = Trained(
                model=model,
                tasks=tasks,
                params=saved["params"]["model"],
                batch_stats=saved.get("batch_stats") or {},
                opt_state=None,
                comb_state=None,
                comb_params=saved["params"].get("combiner", {}),
                history=tuple(meta["history"]),
                best_epoch=e,
                loss_fns=losses.loss_functions(tasks),
            )
            out[e] = evaluation.evaluate(trained, data, batch_size=batch_size, threshold=threshold)
            folder.write_reports(run, e, split, out[e])
    finally:
        checkpoints.close(manager)
    return out if epoch is None else out[epoch]
