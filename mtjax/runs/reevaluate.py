"""Re-evaluating a saved run: the model rebuilt from config.json, each epoch restored."""

from __future__ import annotations

import importlib

import flax.linen as nn

from mtjax.runs import checkpoints, folder
from mtjax.tasks import Task
from mtjax.train import evaluation, losses
from mtjax.train.step import Trained


def model_from_run_config(config: dict) -> nn.Module:
    """The Flax module a run was trained with, rebuilt from its config.json.

    Works for mtjax's models and for any module importable by its recorded module path
    whose settings are JSON values; raises ValueError saying to pass `model=` otherwise.
    """
    described = dict(config["model"])
    name, module_name = described.pop("name"), described.pop("module")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(
            f"cannot rebuild model {module_name}.{name} ({err}); pass model=... to evaluate"
        ) from None
    kwargs = {k: _from_json(k, v) for k, v in described.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"cannot rebuild model {name} from its config ({err}); pass model=... to evaluate"
        ) from None


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
    model: nn.Module | None = None,
    batch_size: int = 256,
    threshold: float = 0.5,
    split: str = "evaluation",
) -> dict:
    """`mt.evaluate(run, data)`: reports of every saved epoch, or of `epoch`.

    The reports are also written to the run under `split`. Returns {epoch: {task:
    report}}, or {task: report} for one epoch.
    """
    config = folder.read_config(run)
    tasks = tuple(Task.from_json(t) for t in config["tasks"])
    model = model if model is not None else model_from_run_config(config)
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
