"""Sweeps: one experiment per point of a `[sweep]`'s cross product, and dotted overrides.

`expand` names each point after its choices, e.g. `speech+sounds/commands+sounds/combine=pcgrad`;
every point is parsed again, so a bad choice fails naming its sweep point.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import types
from collections.abc import Mapping
from typing import Any

from mtjax.experiments import config


def set_dotted(table: dict, dotted: str, value: Any) -> None:
    """Sets `table[a][b][c] = value` for "a.b.c"; a "name" shorthand on the way becomes a table.

    Args:
      table: a JSON-like mapping (`Experiment.to_dict()`), changed in place.
      dotted: the path, e.g. "train.combine.temperature".
      value: the new value.
    """
    *parents, last = dotted.split(".")
    node = table
    for part in parents:
        child = node.get(part)
        if isinstance(child, str):  # a "name" shorthand (combine = "sum"), or "default"
            child = {} if child == "default" else {"name": child}
        node[part] = child = dict(child) if isinstance(child, Mapping) else {}
        node = child
    node[last] = value


def label(value: Any) -> str:
    """A choice as a folder-safe label: `{name = "dwa", temperature = 2.0}` -> `dwa,temperature=2`.

    Characters other than letters, digits and `.+,=-` become "_".
    """
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, Mapping):
        rest = [f"{k}={label(v)}" for k, v in value.items() if k != "name"]
        text = ",".join(([str(value["name"])] if "name" in value else []) + rest)
    elif isinstance(value, (list, tuple)):
        text = "-".join(label(v) for v in value)
    else:
        text = str(value)
    return re.sub(r"[^\w.+,=-]", "_", text) or "_"


def expand(experiment: config.Experiment) -> list[config.Experiment]:
    """One experiment per point of the sweep's cross product, without a sweep.

    Names: `{name}/{datasets joined by "+"}/{key}={value}/...`, key the last part of the
    dotted path (the whole path when two sweep keys end alike). No sweep: `[experiment]`.

    Raises:
      ExperimentError: a sweep subset names no dataset, or a point does not parse (the
        message names the point).
    """
    sweep = dict(experiment.sweep)
    base = experiment.to_dict()
    base.pop("sweep")
    if not sweep:
        return [dataclasses.replace(experiment, sweep=types.MappingProxyType({}))]
    names = [d["name"] for d in base["datasets"]]
    subsets: list[list[str] | None] = [None]
    chosen = sweep.pop("datasets", None)
    if chosen == "combinations":
        subsets = [
            list(c) for r in range(1, len(names) + 1) for c in itertools.combinations(names, r)
        ]
    elif chosen is not None:
        for i, subset in enumerate(chosen):
            for n in subset:
                if n not in names:
                    raise config.ExperimentError(
                        f"{experiment.source}: sweep.datasets[{i}]: no dataset"
                        f" {n!r}; datasets: {', '.join(names)}"
                    )
        subsets = [list(s) for s in chosen]
    ends = [k.split(".")[-1] for k in sweep]
    labels = [end if ends.count(end) == 1 else k for k, end in zip(sweep, ends)]
    out = []
    for subset in subsets:
        for point in itertools.product(*sweep.values()):
            raw = json.loads(json.dumps(base))
            parts = [experiment.name]
            if subset is not None:
                raw["datasets"] = [d for d in raw["datasets"] if d["name"] in subset]
                parts.append("+".join(subset))
            for key, text, value in zip(sweep, labels, point):
                set_dotted(raw, key, value)
                parts.append(f"{text}={label(value)}")
            raw["name"] = "/".join(parts)
            try:
                out.append(config.parse(raw, base=experiment.base, source=experiment.source))
            except config.ExperimentError as err:
                raise config.ExperimentError(f"{err} (in sweep point {raw['name']})") from None
    return out


def override(experiment: config.Experiment, changes: Mapping[str, Any]) -> config.Experiment:
    """The experiment with dotted-path choices replaced, e.g. {"train.epochs": 2}."""
    raw = experiment.to_dict()
    for key, value in changes.items():
        set_dotted(raw, key, value)
    return config.parse(raw, base=experiment.base, source=experiment.source)
