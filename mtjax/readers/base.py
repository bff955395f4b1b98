"""The Reader protocol: a dataset layout is a name, its tasks and an iterator of items.

A reader only lists what is on disk; `mtjax.read` loads the audio and extracts features.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from mtjax.tasks import Task

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".au", ".opus", ".m4a")
SPLITS = ("train", "validation", "test")


class ReaderError(ValueError):
    """A dataset folder or manifest that cannot be read as its layout says."""


@dataclasses.dataclass(frozen=True)
class Item:
    """One audio clip of a dataset.

    Attributes:
      path: absolute path of the audio file.
      targets: task name -> the clip's labels for that task (a tuple; one label for
        binary and multiclass tasks, any number for multilabel). A task missing from
        the mapping is not labelled for this clip.
      id: stable identifier inside the dataset (the path relative to the root, as a
        posix string, unless the layout says otherwise).
      group: source id (speaker, recording, ...); clips of one group never land on both
        sides of a split. None: the clip is its own group.
      split: predefined partition, "train", "validation" or "test"; None when the
        dataset has none.
      fold: predefined cross-validation fold (0-based); None when the dataset has none.
    """

    path: str
    targets: Mapping[str, tuple[str, ...]]
    id: str
    group: str | None = None
    split: str | None = None
    fold: int | None = None


@runtime_checkable
class Reader(Protocol):
    """What `mtjax.read` needs from a dataset layout."""

    @property
    def name(self) -> str:
        """The dataset's name, as caches, errors and combined data show it."""
        ...

    @property
    def root(self) -> Path:
        """The dataset folder, absolute."""
        ...

    @property
    def tasks(self) -> tuple[Task, ...]:
        """The dataset's tasks, in target column order."""
        ...

    def items(self) -> Iterator[Item]:
        """Every clip of the dataset, in a stable order."""
        ...


def existing_root(root: str | os.PathLike, what: str = "dataset") -> Path:
    """`root` as an absolute Path; raises FileNotFoundError naming it when it is not a folder."""
    path = Path(root).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"{what} root {str(root)!r} does not exist")
    if not path.is_dir():
        raise NotADirectoryError(f"{what} root {str(root)!r} is not a folder")
    return path


def inside_root(root: Path, relative: str, where: str) -> Path:
    """Resolve `relative` under `root`, refusing anything that lands outside it.

    Args:
      root: the dataset folder (absolute, resolved).
      relative: a path from a manifest or list file.
      where: where the path came from, e.g. "meta.csv row 12", for the error message.
    """
    candidate = (root / relative).resolve()
    if candidate != root and root not in candidate.parents:
        raise ReaderError(f"{where}: path {relative!r} resolves outside the dataset root {root}")
    return candidate
