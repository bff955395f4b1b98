"""Stopping rules: when to stop training, and which epoch to keep, from the history.

A rule is a small NamedTuple, optax's shape: `Rule(metric, decide)`, where
`decide(history) -> Decision(stop, best_epoch)` reads the history (a list of flat records,
`mtjax.train.history`) and says whether to stop now and which epoch's parameters are the
best so far (restored at the end). `metric` is the history key the rule watches (None for
none): `fit` carves validation rows out of train when it starts with "validation", and the
run folder keeps the checkpoint of the best epoch by it. A plain function `history -> bool`
(or `-> Decision`) is a rule too (`as_rule`); its best epoch is the last one. No rule may
watch a "test/..." metric: the test side is reported, never used for a choice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

from mtjax.train import history as records
from mtjax.train import metrics

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


def check_metric(metric: str | None) -> None:
    """Refuses a metric of the test side: it is never used for a choice.

    Raises:
      ValueError for a metric whose first part is "test", e.g. "test/loss".
    """
    if isinstance(metric, str) and metric.split("/", 1)[0] == "test":
        raise ValueError(
            f"a stopping rule may not watch {metric!r}: the test side is never used for a "
            "choice (when to stop, which epoch to keep); watch a validation metric, e.g. "
            f"{'validation/' + metric.split('/', 1)[-1]!r}"
        )


def metric_mode(metric: str) -> Literal["min", "max"]:
    """The mode of a metric: "min" where lower is better (losses, EER), else "max"."""
    return "min" if metrics.lower_is_better(metric) else "max"


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

    Raises:
      ValueError for a "test/..." metric (see `check_metric`), patience < 1 or a bad mode.
    """
    check_metric(metric)
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

    Raises:
      ValueError for a rule whose metric is a "test/..." one (see `check_metric`).
    """
    if rule is None:
        return never()
    if isinstance(rule, Rule):
        check_metric(rule.metric)
        return rule
    if not callable(rule):
        raise TypeError(f"a stopping rule is a Rule, a function or None, got {rule!r}")
    fn = rule
    check_metric(getattr(fn, "metric", None))

    def decide(history: History) -> Decision:
        out = fn(history)
        if isinstance(out, tuple):
            return Decision(bool(out[0]), int(out[1]))
        return Decision(bool(out), len(history) - 1)

    return Rule(getattr(fn, "metric", None), decide)
