"""Checking an experiment file: every error names the file and the dotted key.

A part (reader, extraction, model, ...) is checked by building it: its name is looked up in
the registry, its keys are matched against the factory's signature (so an unknown or missing
key is named), then the factory is called and what it raises is passed on under the key.
What only the file knows (structural keys, their types, paths) is checked here by hand.
Each option's value is checked against its parameter's annotation (else its default's type)
before the call (`admits`), so `learning_rate = "2e-3"` is refused under its key, not deep
inside optax. An unknown key or name comes with the closest known one.
"""

from __future__ import annotations

import collections.abc as abc
import enum
import inspect
import numbers
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mtjax import files, tables
from mtjax.experiments import registry

# What a factory raises for a bad value: TypeError, ValueError (ReaderError, LabelError, ...),
# OSError (a missing root or manifest).
BUILD_ERRORS = (TypeError, ValueError, OSError)


class ExperimentError(ValueError):
    """A bad experiment file or value; the message names the file and the dotted key."""


class Checker:
    """Checks the values of one raw experiment mapping.

    Attributes:
      source: the file (or "experiment"), the first part of every message.
      base: the folder relative paths resolve against.
    """

    def __init__(self, source: str, base: Path):
        self.source, self.base = source, base

    def fail(self, path: str, message: str) -> ExperimentError:
        """The error `source: path: message` (to raise)."""
        return ExperimentError(f"{self.source}: {path}: {message}")

    def keys(self, table: Mapping, known: Sequence[str], path: str, what: str) -> None:
        """Every key of `table` is one of `known`."""
        for key in table:
            if key not in known:
                where = f"{path}.{key}" if path else str(key)
                close = tables.closest(str(key), known)
                raise self.fail(where, f"unknown key; {what} takes: {', '.join(known)}{close}")

    def table(self, value: Any, path: str) -> Mapping:
        """`value`, which must be a table."""
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a table, got {value!r} ({_type(value)})")
        return value

    def integer(self, value: Any, path: str, minimum: int | None = None) -> int:
        """`value`, an integer (not a bool) at least `minimum`."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected an integer, got {value!r} ({_type(value)})")
        if minimum is not None and value < minimum:
            raise self.fail(path, f"expected an integer >= {minimum}, got {value}")
        return value

    def number(self, value: Any, path: str) -> float:
        """`value` as a float; an int or a float, not a bool."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path, f"expected a number, got {value!r} ({_type(value)})")
        return float(value)

    def string(self, value: Any, path: str, choices: Sequence[str] | None = None) -> str:
        """`value`, a string, one of `choices` when given."""
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {value!r} ({_type(value)})")
        if choices is not None and value not in choices:
            raise self.fail(path, f"{value!r} is not one of: {', '.join(choices)}")
        return value

    def boolean(self, value: Any, path: str) -> bool:
        """`value`, true or false."""
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {value!r} ({_type(value)})")
        return value

    def file_part(self, value: Any, path: str, what: str) -> str:
        """`value`, a name that becomes one part of a path (`mtjax.files.file_part`)."""
        try:
            return files.file_part(value, what)
        except ValueError as err:
            raise self.fail(path, str(err)) from None

    def path(self, value: Any, path: str) -> Path:
        """A path string, resolved against `base` when relative."""
        return (self.base / Path(self.string(value, path)).expanduser()).resolve()

    def named(
        self,
        value: Any,
        path: str,
        kind: str,
        lookup: Callable[[str], Callable] | None = None,
    ) -> tuple[dict, Callable]:
        """A `"name"` or `{name = "...", key = ...}` choice: ({"name", ...keys}, its factory).

        Args:
          value: the choice as the file gives it.
          path: its dotted key.
          kind: what it names ("combiner"); a registry kind unless `lookup` is given.
          lookup: name -> factory, raising ValueError for an unknown name; default the
            registry's lookup of `kind`.
        """
        table = {"name": value} if isinstance(value, str) else dict(self.table(value, path))
        where = path if isinstance(value, str) else f"{path}.name"
        if "name" not in table:
            known = f"; known: {', '.join(registry.names(kind))}" if lookup is None else ""
            raise self.fail(where, f"missing: the {kind}'s name{known}")
        return table, self.factory(table["name"], where, kind, lookup)

    def factory(
        self,
        name: Any,
        path: str,
        kind: str,
        lookup: Callable[[str], Callable] | None = None,
        *,
        also: Sequence[str] = (),
    ) -> Callable:
        """The factory of the part `name` (at `path`): see `named`."""
        name = self.string(name, path)
        try:
            if lookup is not None:
                return lookup(name)
            return registry.lookup(kind, name, also=also)
        except ValueError as err:
            raise self.fail(path, str(err)) from err

    def options(
        self,
        table: Mapping,
        factory: Callable,
        path: str,
        what: str,
        *,
        fixed: Sequence[str] = ("name",),
        supplied: Sequence[str] = (),
    ) -> None:
        """The keys of `table` (but `fixed`, the file's own) are the keywords `factory` takes.

        Args:
          table: the part's table.
          factory: what builds the part.
          path: the table's dotted key.
          what: the part in messages ("model 'cnn'", "a folder dataset").
          fixed: keys the file itself reads ("name", "reader"); allowed, not passed.
          supplied: parameters the caller passes itself (a model's `tasks`): not keys.
        """
        taken = registry.arguments(factory, supplied=(*supplied, *fixed))
        if not taken.any_keyword:
            listed = [*fixed, *taken.accepted]
            takes = f"takes: {', '.join(listed)}" if listed else "takes no keys"
            for key in table:
                if key not in fixed and key not in taken.accepted:
                    close = tables.closest(str(key), taken.accepted)
                    raise self.fail(f"{path}.{key}", f"unknown key; {what} {takes}{close}")
        for key in taken.required:
            if key not in table:
                needs = ", ".join(taken.required)
                raise self.fail(f"{path}.{key}", f"missing; {what} needs {needs}")
        parameters = _parameters(factory)
        for key, value in table.items():
            if key in fixed or key in supplied or key not in parameters:
                continue
            expected = expected_type(factory, parameters[key])
            if admits(expected, value) is False:
                wanted = f"expected {describe_type(expected)} for {what}"
                raise self.fail(f"{path}.{key}", f"{wanted}, got {value!r} ({_type(value)})")

    def build(self, path: str, make: Callable[[], Any], keys: Sequence[str] = ()) -> Any:
        """`make()`; what it raises (`BUILD_ERRORS`) becomes an error under `path`.

        Under `path.key` when the message names exactly one of `keys` as a word
        ("LogMel: n_mels must be ..." -> features.n_mels).
        """
        try:
            return make()
        except BUILD_ERRORS as err:
            raise self.fail(_blamed(str(err), path, keys), str(err)) from err


def _blamed(message: str, path: str, keys: Sequence[str]) -> str:
    """`path.key` for the one key `message` names as a word (not inside a file path)."""
    named = [
        k for k in keys if re.search(rf"(?<![\w./\\-]){re.escape(str(k))}(?![\w/\\-])", message)
    ]
    return f"{path}.{named[0]}" if len(named) == 1 else path


# Types of option values


def _parameters(factory: Callable) -> Mapping[str, inspect.Parameter]:
    try:
        return inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}


def expected_type(factory: Callable, parameter: inspect.Parameter) -> Any:
    """The annotation of `parameter` of `factory`, evaluated; else its default's type.

    A string annotation (`from __future__ import annotations`) is evaluated in the factory's
    module, typing's names at hand; one that does not evaluate (a name imported only for type
    checkers) is `Any`. Without annotation: `float` for a numeric default, `bool` for a
    boolean one, else `Any`.
    """
    annotation = parameter.annotation
    if isinstance(annotation, str):
        module = sys.modules.get(getattr(factory, "__module__", None) or "")
        try:
            namespace = {**vars(typing), **(vars(module) if module else {})}
            annotation = eval(annotation, namespace)
        except Exception:
            return Any
    if annotation is not parameter.empty:
        return annotation
    default = parameter.default
    if isinstance(default, bool):
        return bool
    return float if isinstance(default, (int, float)) else Any


def admits(expected: Any, value: Any) -> bool | None:
    """Whether a value from a TOML file fits the type `expected`; None when it cannot tell.

    Exact for scalars: a string is no number, a bool no number (but a bool's own type),
    an int a float (as PEP 484 has it), a path string a `Path`; a type with `__array__`
    (jax.Array, np.ndarray) takes numbers and arrays. Arrays are checked item by item where
    the annotation gives the item type (`Sequence[int]`, `tuple[float, ...]`); a table, or
    anything against a type it cannot test (a Protocol, a Callable for a table), is None.
    """
    if expected is Any or expected is object or isinstance(expected, (str, typing.TypeVar)):
        return None
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin is typing.Annotated:
        return admits(args[0], value)
    if origin is typing.Union or origin is types.UnionType:
        answers = [admits(a, value) for a in args]
        return True if True in answers else None if None in answers else False
    if origin is typing.Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if expected is type(None):
        return value is None
    if isinstance(origin, type):
        return _admits_generic(origin, args, value)
    return _admits_class(expected, value) if isinstance(expected, type) else None


def _admits_generic(origin: type, args: tuple, value: Any) -> bool | None:
    sequence = issubclass(origin, (list, tuple, abc.Sequence, abc.Set))
    if sequence and isinstance(value, str) and args and admits(args[0], "a") is False:
        return False  # a string is a Sequence, of strings
    if not sequence or not isinstance(value, (list, tuple)):
        return _admits_class(origin, value)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            return False
        answers = [admits(a, v) for a, v in zip(args, value)]
    else:
        answers = [admits(args[0], v) for v in value] if args else []
    return False not in answers


_SCALARS = (bool, int, float, complex, str)


def _admits_class(expected: type, value: Any) -> bool | None:
    """Whether `value` fits the class `expected` (see `admits`)."""
    array = hasattr(expected, "__array__")
    if isinstance(value, bool):
        if expected is bool:
            return True
        if array or issubclass(expected, numbers.Number):
            return False
        return _instance(value, expected)
    if isinstance(value, (int, float)):
        if array or expected is complex or (expected is float and isinstance(value, int)):
            return True
        return _instance(value, expected)
    if isinstance(value, str):
        if issubclass(expected, (os.PathLike, enum.Enum)):
            return True if issubclass(expected, os.PathLike) else None  # an Enum may parse it
        return _instance(value, expected)
    if isinstance(value, (list, tuple)):
        if array or issubclass(expected, (list, tuple, abc.Sequence, abc.Set)):
            return not issubclass(expected, str)
        return False if issubclass(expected, (*_SCALARS, Mapping)) else None
    if isinstance(value, Mapping):
        if issubclass(expected, Mapping):
            return True
        return False if array or issubclass(expected, (*_SCALARS, list, tuple)) else None
    return None


def _instance(value: Any, expected: type) -> bool | None:
    try:
        return isinstance(value, expected)
    except TypeError:  # a Protocol without runtime_checkable, a subscripted alias
        return None


_KINDS: tuple[tuple[str, Any], ...] = (
    ("an integer", 1),
    ("a number", 0.5),
    ("a string", "text"),
    ("true or false", True),
    ("an array", []),
    ("a table", {}),
)


def describe_type(expected: Any) -> str:
    """What a TOML file may give for `expected`: "a number or a table", "an integer"."""
    kinds = [name for name, sample in _KINDS if admits(expected, sample) is not False]
    if "a number" in kinds:
        kinds.remove("an integer")
    if not kinds:
        return inspect.formatannotation(expected)
    return kinds[0] if len(kinds) == 1 else f"{', '.join(kinds[:-1])} or {kinds[-1]}"


def _type(value: Any) -> str:
    names: dict[type, str] = {
        dict: "table",
        types.MappingProxyType: "table",
        list: "array",
        tuple: "array",
    }
    return names.get(type(value), type(value).__name__)
