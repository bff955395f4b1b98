"""Names of a package imported on first use (PEP 562), so importing it stays light."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any


def attribute(namespace: MutableMapping[str, Any], name: str, homes: Mapping[str, str]) -> Any:
    """`name` from its home module (`homes[name]`, a module path), kept in `namespace`.

    A home ending in ":" names a module that is itself the value (`"mtjax.train.losses:"`).

    Raises:
      AttributeError for a name with no home, as for any missing module attribute.
    """
    if name not in homes:
        raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
    home = homes[name]
    if home.endswith(":"):
        value = importlib.import_module(home[:-1])
    else:
        value = getattr(importlib.import_module(home), name)
    namespace[name] = value
    return value


def names(namespace: Mapping[str, Any], public: Iterable[str]) -> list[str]:
    """What `dir()` lists: the names already bound and the public ones."""
    return sorted(set(namespace) | set(public))
