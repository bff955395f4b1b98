"""One registry of named parts: readers, extractions, models, combiners, schedules, stopping.

A part is a factory, a class or a function, that an experiment file calls with the keys of its
table. The file names a part in one of three ways:

    reader = "speech_commands"             # a built-in, by snake_case or class name
    reader = "my_lab.parts:NamedClips"     # an import path: module, colon, attribute
    modules = ["my_lab.parts"]             # top level: modules imported first, whose import
    reader = "named_clips"                 # calls register("reader", "named_clips", NamedClips)

Kinds and what their factories are called with:
  reader      the `[[datasets]]` keys           -> a Reader (name, root, tasks, items())
  extraction  the `[features]` keys             -> an Extraction value
  model       tasks=..., the `[model]` keys     -> a Flax module
  combiner    the `train.combine` keys          -> a Combiner
  schedule    the `train.batches` keys          -> a schedule `(key, data, batch_size)`
  stopping    the `train.early_stop` keys       -> a stopping rule
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from mtjax import readers, tables
from mtjax.audio import features
from mtjax.train import combiners, models, schedules, stopping

KINDS = ("reader", "extraction", "model", "combiner", "schedule", "stopping")

_PARTS: dict[str, dict[str, Callable[..., Any]]] = {kind: {} for kind in KINDS}


def register(kind: str, name: str, factory: Callable[..., Any]) -> None:
    """Makes `factory` the part of `kind` called `name` in experiment files.

    Registering the same factory under its name again does nothing (a module imported twice);
    another factory under a name already taken is refused, so a module cannot silently
    replace a built-in.

    Args:
      kind: one of `KINDS`.
      name: the name files use; not empty, without ":" (that marks an import path).
      factory: a class or function, called with the part's keys (see the module docstring).

    Raises:
      ValueError: an unknown kind, a bad name, or a name taken by another factory.
      TypeError: `factory` is not callable.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"a {kind} name must be a non-empty string without ':', got {name!r}")
    if not callable(factory):
        raise TypeError(f"{kind} {name!r}: the factory must be callable, got {factory!r}")
    taken = _PARTS[kind].get(name)
    if taken is not None and taken is not factory:
        raise ValueError(
            f"{kind} {name!r} is already registered as {_describe(taken)}; pick another name"
        )
    _PARTS[kind][name] = factory


def names(kind: str) -> list[str]:
    """The registered names of `kind`, sorted case-insensitively."""
    return sorted(_PARTS[kind], key=lambda n: (n.lower(), n))


def lookup(kind: str, name: str, *, also: Sequence[str] = ()) -> Callable[..., Any]:
    """The factory of the part of `kind` called `name`, or imported from "module:attribute".

    Args:
      kind: one of `KINDS`.
      name: a registered name or an import path.
      also: names the caller handles itself (e.g. the "demo" reader), listed as known in the
        message for an unknown name.

    Raises:
      ValueError: an unknown name (the message lists the known ones and the closest match),
        a module that does not import, or an attribute it lacks.
    """
    if ":" in name:
        return _imported(name)
    if name in _PARTS[kind]:
        return _PARTS[kind][name]
    known = sorted([*names(kind), *also], key=lambda n: (n.lower(), n))
    raise ValueError(
        f"unknown {kind} {name!r}; known: {', '.join(known)}{tables.closest(name, known)}"
    )


class Arguments(NamedTuple):
    """What a factory takes as keywords (from `inspect.signature`)."""

    accepted: tuple[str, ...]  # keyword parameters, in order
    required: tuple[str, ...]  # those without a default
    any_keyword: bool  # it takes **kwargs: every key is accepted


def arguments(factory: Callable[..., Any], *, supplied: Sequence[str] = ()) -> Arguments:
    """The keyword parameters of `factory`, less those the caller passes itself (`supplied`).

    A factory whose signature cannot be read accepts any key (its call then says what fails).
    """
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return Arguments((), (), True)
    keyword = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in supplied
    ]
    return Arguments(
        accepted=tuple(p.name for p in keyword),
        required=tuple(p.name for p in keyword if p.default is p.empty),
        any_keyword=any(p.kind is p.VAR_KEYWORD for p in params),
    )


def snake_case(name: str) -> str:
    """`LogMel` -> `log_mel`, `MelSpectrogram` -> `mel_spectrogram`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _imported(path: str) -> Callable[..., Any]:
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(
            f"{path!r}: an import path is module:attribute, e.g. 'my_lab.parts:NamedClips'"
        )
    try:
        value: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"cannot import {module_name!r} (from {path!r}): {err}") from err
    for part in attribute.split("."):
        if not hasattr(value, part):
            public = [n for n in dir(value) if not n.startswith("_")]
            raise ValueError(
                f"{module_name!r} has no attribute {attribute!r}{tables.closest(part, public)}"
            )
        value = getattr(value, part)
    if not callable(value):
        raise ValueError(f"{path!r} is a {type(value).__name__}, not a class or function")
    return value


def _describe(factory: Callable[..., Any]) -> str:
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', factory)}"


# The built-in parts


_READERS: dict[str, Callable[..., Any]] = {  # snake_case -> reader; class names too
    "folder": readers.FolderReader,
    "csv": readers.CsvReader,
    "esc50": readers.ESC50,
    "urbansound8k": readers.UrbanSound8K,
    "speech_commands": readers.SpeechCommands,
    "fsd_kaggle2018": readers.FSDKaggle2018,
    "fsd50k": readers.FSD50K,
    "ravdess": readers.RAVDESS,
    "dcase_scenes": readers.DCASEScenes,
    "dcase_events": readers.DCASEEvents,
    "asvspoof2015": readers.ASVspoof2015,
    "gtzan": readers.GTZAN,
    "audioset_csv": readers.AudioSetCsv,
}
_BUILT_IN: dict[str, dict[str, Callable[..., Any]]] = {
    "reader": _READERS,
    "extraction": {snake_case(n): cls for n, cls in features.EXTRACTIONS.items()},
    "model": dict(models.MODELS),
    "combiner": dict(combiners.COMBINERS),
    "schedule": dict(schedules.SCHEDULES),
    "stopping": {"patience": stopping.patience, "never": stopping.never},
}
for _kind, _table in _BUILT_IN.items():
    for _name, _factory in _table.items():
        register(_kind, _name, _factory)
        if isinstance(_factory, type):
            register(_kind, _factory.__name__, _factory)
