"""Sweeps: one experiment per point of a `[sweep]`'s cross product and seed, and overrides.

`expand` names each point after its choices, e.g. `speech+sounds/commands+sounds/combine=pcgrad`,
and each seed of `seeds` but the experiment's own `seed` after it (`.../seed1`); every point is
parsed again, so a bad choice fails naming its sweep point. A point with one task runs its
combiner choices once, with the first (one task: every combiner gives the same run), and the
points skipped are logged. `reference_key` says which multi- and single-task groups are
compared with each other.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import re
import types
from collections.abc import Mapping, Sequence
from typing import Any

from mtjax.experiments import config, parts

log = logging.getLogger("mtjax")

COMBINE = "train.combine"


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


def dataset_tasks(experiment: config.Experiment) -> dict[str, tuple[str, ...]]:
    """Dataset name -> its task names.

    A demo dataset's as `config.DEMO_TASKS` lists them; a reader's from the reader, which
    may read its root's listing or manifest.

    Raises:
      ExperimentError naming the dataset whose reader cannot say.
    """
    out = {}
    for i, spec in enumerate(experiment.datasets):
        try:
            if spec["reader"] == "demo":
                out[spec["name"]] = config.DEMO_TASKS[spec["name"]]
            else:
                out[spec["name"]] = tuple(t.name for t in parts.build_reader(spec).tasks)
        except (TypeError, ValueError, OSError) as err:
            raise config.ExperimentError(
                f"{experiment.source}: datasets[{i}] ({spec['name']}): its tasks: {err}"
            ) from err
    return out


def expand(
    experiment: config.Experiment, *, tasks: Mapping[str, Sequence[str]] | None = None
) -> list[config.Experiment]:
    """One experiment per point of the sweep's cross product and seed, without a sweep.

    Names: `{name}/{datasets joined by "+"}/{key}={value}/.../seed{s}`, key the last part of
    the dotted path (the whole path when two sweep keys end alike); the seed part only for a
    seed of `seeds` other than `seed`, so the runs of `seed` keep the paths they had before
    `seeds` existed. Each point's `group` is its name without the seed part, `seed` its seed.
    A point whose datasets have one task between them keeps only the first value of each
    sweep key under "train.combine"; the others are skipped and logged. No sweep and one
    seed: `[experiment]`.

    Args:
      experiment: the experiment.
      tasks: dataset name -> its task names, for telling single-task points; default
        `dataset_tasks(experiment)`, asked only when the sweep varies the combiner.

    Raises:
      ExperimentError: a sweep subset names no dataset, or a point does not parse (the
        message names the point).
    """
    sweep = dict(experiment.sweep)
    if not sweep and len(experiment.seeds) == 1:
        return [dataclasses.replace(experiment, sweep=types.MappingProxyType({}))]
    base = experiment.to_dict()
    base.pop("sweep")
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
    combine = [k == COMBINE or k.startswith(COMBINE + ".") for k in sweep]
    if tasks is None and any(combine):
        tasks = dataset_tasks(experiment)
    ends = [k.split(".")[-1] for k in sweep]
    labels = [end if ends.count(end) == 1 else k for k, end in zip(sweep, ends)]
    out, skipped = [], []
    for subset in subsets:
        held = {t for n in (subset or names) for t in (tasks or {}).get(n, ())}
        for point in itertools.product(*(list(enumerate(v)) for v in sweep.values())):
            raw = json.loads(json.dumps(base))
            pieces = [experiment.name]
            if subset is not None:
                raw["datasets"] = [d for d in raw["datasets"] if d["name"] in subset]
                pieces.append("+".join(subset))
            for key, text, (_, value) in zip(sweep, labels, point):
                set_dotted(raw, key, value)
                pieces.append(f"{text}={label(value)}")
            group = "/".join(pieces)
            if len(held) == 1 and any(i for c, (i, _) in zip(combine, point) if c):
                _seeded(dataclasses.replace(experiment, seeds=(experiment.seed,)), raw, group)
                skipped.append(group)  # checked all the same, above
                continue
            out.extend(_seeded(experiment, raw, group))
    if skipped:
        log.info(
            "%s: %d sweep point(s) skipped: one task each, so their combiner choices give the"
            " same run as the first choice: %s",
            experiment.source,
            len(skipped),
            ", ".join(skipped),
        )
    return out


def _seeded(experiment: config.Experiment, raw: dict, group: str) -> list[config.Experiment]:
    """The point `raw` (named `group`) once per seed of the experiment, parsed.

    A sweep over "seed" names its seeds itself: its point runs its own seed only.
    """
    own = "seed" in experiment.sweep
    out = []
    for seed in (raw["seed"],) if own else experiment.seeds:
        point = {**raw, "seed": seed, "seeds": [seed]}
        point["name"] = group if own or seed == experiment.seed else f"{group}/seed{seed}"
        try:
            parsed = config.parse(point, base=experiment.base, source=experiment.source)
        except config.ExperimentError as err:
            raise config.ExperimentError(f"{err} (in sweep point {point['name']})") from None
        out.append(dataclasses.replace(parsed, group=group))
    return out


def reference_key(experiment: Mapping[str, Any]) -> str:
    """What a multi-task group and its single-task references share, as a stable string.

    The choices of an experiment (`Experiment.to_dict()`, as config.json's "experiment"
    holds it) besides its datasets, name, seeds, the combiner (single-task points run only
    the first, see `expand`) and what changes no number (`config.NOT_RESUMED`).
    """
    left_out = {"datasets", "name", "seed", "seeds", *config.NOT_RESUMED}
    kept = {k: v for k, v in experiment.items() if k not in left_out}
    if isinstance(kept.get("train"), Mapping):
        kept["train"] = {k: v for k, v in kept["train"].items() if k != "combine"}
    return config.key(kept)


def override(experiment: config.Experiment, changes: Mapping[str, Any]) -> config.Experiment:
    """The experiment with dotted-path choices replaced, e.g. {"train.epochs": 2}.

    An expanded seed point keeps its `group`; otherwise the group follows the name.
    """
    raw = experiment.to_dict()
    for key, value in changes.items():
        set_dotted(raw, key, value)
    changed = config.parse(raw, base=experiment.base, source=experiment.source)
    if experiment.group != experiment.name:
        changed = dataclasses.replace(changed, group=experiment.group)
    return changed
