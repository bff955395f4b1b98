"""Stopping rules: when to stop training, and which epoch to keep, from the history.

A rule is a small NamedTuple, optax's shape: `Rule(metric, decide)`, where
`decide(history) -> Decision(stop, best_epoch)` reads the history (a list of flat records,
`mtjax.train.history`) and says whether to stop now and which epoch's parameters are the
best so far (restored at the end). `metric` is the history key the rule watches (None for
none): `fit` carves validation rows out of train when it starts with "validation", and the
run folder keeps the checkpoint of the best epoch by it. A plain function `history -> bool`
(or `-> Decision`) is a rule too (`as_rule`); its best epoch is the last one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

from mtjax.train import history as records

History = Sequence[Mapping[str, Any]]


class Decision(NamedTuple):
    """What a rule decided after the latest epoch."""

    stop: bool
    best_epoch: int  # index into the history


class Rule(NamedTuple):
    """A stopping rule.

    Attributes:
      metric: the history key the rule reads, e.g. "validation/loss"; None for none.
      decide: history -> Decision, a pure function of the records so far.
    """

    metric: str | None
    decide: Callable[[History], Decision]


def metric_mode(metric: str) -> Literal["min", "max"]:
    """The mode of a metric: "min" for a name ending in "loss", else "max"."""
    return "min" if metric.rsplit("/", 1)[-1].endswith("loss") else "max"


def patience(
    metric: str = "validation/loss",
    patience: int = 10,
    min_delta: float = 0.0,
    *,
    mode: str = "auto",
    restore_best: bool = True,
) -> Rule:
    """Stop when `metric` has not improved by more than `min_delta` for `patience` epochs.

    Args:
      metric: a history key, e.g. "validation/loss", "validation/score" (mean of the
        tasks' headline metrics) or "validation/word/accuracy".
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

    def decide(history: History) -> Decision:
        best, best_value = 0, math.inf
        for e, record in enumerate(history):
            value = sign * float(records.value(record, metric))
            if value < best_value - min_delta:
                best, best_value = e, value
        last = len(history) - 1
        return Decision(stop=last - best >= patience, best_epoch=best if restore_best else last)

    return Rule(metric, decide)


def never() -> Rule:
    """Train every epoch; the last epoch is kept."""
    return Rule(None, lambda history: Decision(stop=False, best_epoch=len(history) - 1))


def as_rule(rule: Rule | Callable[[History], Any] | None) -> Rule:
    """A `Rule` from a rule, a plain function `history -> bool` (or -> Decision), or None.

    None is `never()`. A function's `metric` attribute, where it has one, is the rule's
    metric; else the rule watches none.
    """
    if rule is None:
        return never()
    if isinstance(rule, Rule):
        return rule
    if not callable(rule):
        raise TypeError(f"a stopping rule is a Rule, a function or None, got {rule!r}")
    fn = rule

    def decide(history: History) -> Decision:
        out = fn(history)
        if isinstance(out, tuple):
            return Decision(bool(out[0]), int(out[1]))
        return Decision(bool(out), len(history) - 1)

    return Rule(getattr(fn, "metric", None), decide)
