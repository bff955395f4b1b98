"""Stopping rules: functions of the training history.

A rule takes the history (a list of per-epoch records, each a nested dict such as
`{"epoch": 3, "train": {"loss": ...}, "validation": {"loss": ..., "score": ...}}`) and
returns `(stop, best_epoch)`: whether to stop now, and which epoch's parameters are the
best so far (restored at the end when the rule says so). A plain function
`history -> bool` works too; its best epoch is the last one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple


class Decision(NamedTuple):
    stop: bool
    best_epoch: int  # index into the history


def metric_value(record: dict, metric: str) -> float:
    """The number at `metric`, a "/"-separated path into one history record.

    >>> metric_value({"validation": {"loss": 0.5}}, "validation/loss")
    0.5
    """
    value = record
    for part in metric.split("/"):
        if not isinstance(value, dict) or part not in value:
            known = ", ".join(_paths(record))
            raise KeyError(f"metric {metric!r} is not in the history; known metrics: {known}")
        value = value[part]
    return float(value)


def _paths(record: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in record.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(_paths(value, path + "/"))
        elif isinstance(value, (int, float)):
            out.append(path)
    return out


def metric_mode(metric: str) -> str:
    """"min" for a metric whose name ends in "loss", else "max"."""
    return "min" if metric.rsplit("/", 1)[-1].endswith("loss") else "max"


def patience(
    metric: str = "validation/loss",
    patience: int = 10,
    min_delta: float = 0.0,
    *,
    mode: str = "auto",
    restore_best: bool = True,
) -> Callable[[Sequence[dict]], Decision]:
    """Stop when `metric` has not improved by more than `min_delta` for `patience` epochs.

    Args:
      metric: path into each history record, e.g. "validation/loss",
        "validation/score" (mean of the tasks' headline metrics) or
        "validation/word/accuracy".
      patience: epochs without improvement before stopping.
      min_delta: the least change that counts as an improvement.
      mode: "min", "max", or "auto" ("min" for metrics whose name ends in "loss").
      restore_best: report the best epoch (else the last), so fit restores it.
    """
    if patience < 1:
        raise ValueError(f"patience must be >= 1, got {patience}")
    if mode == "auto":
        mode = metric_mode(metric)
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
    sign = 1.0 if mode == "min" else -1.0

    def rule(history: Sequence[dict]) -> Decision:
        best, best_value = 0, math.inf
        for e, record in enumerate(history):
            value = sign * metric_value(record, metric)
            if value < best_value - min_delta:
                best, best_value = e, value
        last = len(history) - 1
        return Decision(stop=last - best >= patience, best_epoch=best if restore_best else last)

    rule.metric = metric  # type: ignore[attr-defined]
    return rule


def never() -> Callable[[Sequence[dict]], Decision]:
    """Train every epoch; the last epoch is kept."""
    return lambda history: Decision(stop=False, best_epoch=len(history) - 1)


def as_rule(rule) -> Callable[[Sequence[dict]], Decision]:
    """A rule from a stopping rule, a plain `history -> bool` function, or None (never)."""
    if rule is None:
        return never()

    def wrapped(history: Sequence[dict]) -> Decision:
        out = rule(history)
        if isinstance(out, tuple):
            return Decision(bool(out[0]), int(out[1]))
        return Decision(bool(out), len(history) - 1)

    wrapped.metric = getattr(rule, "metric", None)  # type: ignore[attr-defined]
    return wrapped
