"""Folder-per-class layout: every sub-folder of the root is one class.

    root/
      dog/a.wav, dog/more/b.flac     -> label "dog"
      cat/c.wav                      -> label "cat"
      _background_noise_/...         -> skipped (see `exclude`)
      .cache/...                     -> skipped (hidden)

Speech Commands is this layout plus two list files that name the validation and test clips.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from mtjax.readers.base import AUDIO_SUFFIXES, Item, ReaderError, existing_root, inside_root
from mtjax.tasks import Task

log = logging.getLogger("mtjax")
# (root, dropped, kept) empty class folders already warned of: once per process, not once
# per `tasks`/`items()` call.
_WARNED: set[tuple[Path, tuple[str, ...], tuple[str, ...]]] = set()


@dataclasses.dataclass(frozen=True)
class FolderReader:
    """A dataset with one sub-folder per class.

    The class of a clip is the name of the top-level folder it sits under (at any depth);
    labels are the class folder names, sorted. Items come class by class, and inside a class
    sorted by path, so the order never depends on the file system.

    A class folder without audio files is left out of the labels, with a warning naming it
    (logger "mtjax"; once per process): a label no clip has would only drag macro averages.
    When `task` is a `Task` that lists it, it stays a label (the task says so), with a
    warning too. When every class folder is empty, `tasks` keeps them all and `items()`
    raises ReaderError.

    Attributes:
      root: the dataset folder (stored absolute); FileNotFoundError when it does not exist.
      task: the task's name, or a `Task` whose labels must include every class folder
        that holds audio.
      name: the dataset's name; the root folder's name by default.
      kind: kind of the inferred task when `task` is a name. "binary" needs exactly two
        folders, and the second in sorted order is the positive label (pass a `Task` to choose).
      exclude: folder names that are not classes. Hidden folders and files (".x") are always
        skipped.
      group: how a clip's group (speaker, source) is found: None (each clip its own group), a
        regular expression whose first capture group, searched in the file name, is the group
        (a file name it does not match is an error), or a function of the file's Path.
      suffixes: audio file suffixes, compared case-insensitively.
      validation_list, testing_list: file names, relative to the root, of Speech-Commands-style
        lists (one `class/file.wav` per line). When either is given, listed clips get split
        "validation" / "test" and every other clip "train"; otherwise `split` is None.
    """

    root: Path
    task: str | Task = "class"
    _: dataclasses.KW_ONLY
    name: str = ""
    kind: str = "multiclass"
    exclude: tuple[str, ...] = ("_background_noise_",)
    group: str | Callable[[Path], str] | None = None
    suffixes: tuple[str, ...] = AUDIO_SUFFIXES
    validation_list: str | None = None
    testing_list: str | None = None

    def __post_init__(self):
        root = existing_root(self.root)
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "name", self.name or root.name)
        object.__setattr__(self, "exclude", _as_tuple(self.exclude))
        object.__setattr__(self, "suffixes", tuple(s.lower() for s in _as_tuple(self.suffixes)))
        if isinstance(self.group, str):
            _group_pattern(self.group)

    @property
    def tasks(self) -> tuple[Task, ...]:
        """The one task, from the class folders on disk."""
        return (self._task(self._class_names()),)

    def items(self) -> Iterator[Item]:
        """Every audio file under a class folder, class by class, sorted by path."""
        names = self._class_names()
        task = self._task(names)
        splits = self._splits()
        group_of = _group_function(self.group)
        prefix = len(str(self.root)) + 1
        n_found = 0
        for label in names:
            for path in audio_files(self.root / label, self.suffixes):
                relative = path[prefix:].replace(os.sep, "/")
                n_found += 1
                yield Item(
                    path=path,
                    targets={task.name: (label,)},
                    id=relative,
                    group=group_of(path),
                    split=None if splits is None else splits.get(relative, "train"),
                )
        if not n_found:
            raise ReaderError(
                f"{self.root}: no audio files ({', '.join(self.suffixes)}) under the class folders"
                f" {names}"
            )

    def _class_names(self) -> list[str]:
        """The class folders holding audio, and empty ones `task` lists; warns of empty ones."""
        names = sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and p.name not in self.exclude
        )
        if not names:
            raise ReaderError(
                f"{self.root}: no class folders (one sub-folder per class expected; hidden"
                f" folders and {list(self.exclude)} are skipped)"
            )
        empty = [n for n in names if not holds_audio(self.root / n, self.suffixes)]
        if len(empty) == len(names):  # nothing to tell apart: `items()` says there is no audio
            return names
        listed = self.task.labels if isinstance(self.task, Task) else ()
        kept = tuple(n for n in empty if n in listed)
        dropped = tuple(n for n in empty if n not in listed)
        if empty and (self.root, dropped, kept) not in _WARNED:
            _WARNED.add((self.root, dropped, kept))
            if dropped:
                log.warning(
                    "%s: class folder(s) %s hold no audio files (%s): left out of the labels",
                    self.root,
                    list(dropped),
                    ", ".join(self.suffixes),
                )
            if kept:
                log.warning(
                    "%s: class folder(s) %s hold no audio files: kept as labels, as task %r"
                    " lists them, but no clip has them",
                    self.root,
                    list(kept),
                    getattr(self.task, "name", self.task),
                )
        return [n for n in names if n not in dropped]

    def _task(self, names: list[str]) -> Task:
        if isinstance(self.task, Task):
            unknown = [n for n in names if n not in self.task.labels]
            if unknown:
                raise ReaderError(
                    f"{self.root}: folder {unknown[0]!r} is not a label of task"
                    f" {self.task.name!r}; labels: {list(self.task.labels)}"
                )
            return self.task
        if self.kind == "binary" and len(names) != 2:
            raise ReaderError(
                f"{self.root}: a binary task needs exactly two class folders, found {names}"
            )
        try:
            return Task(self.task, tuple(names), self.kind)
        except ValueError as e:
            raise ReaderError(f"{self.root}: {e}") from e

    def _splits(self) -> dict[str, str] | None:
        """Relative posix path -> "validation" / "test" of every listed clip; None without lists."""
        if self.validation_list is None and self.testing_list is None:
            return None
        out: dict[str, str] = {}
        where: dict[str, str] = {}
        for list_name, split in ((self.validation_list, "validation"), (self.testing_list, "test")):
            if list_name is None:
                continue
            for path, line_where in read_list(self.root, list_name):
                relative = path.relative_to(self.root).as_posix()
                if relative in out and out[relative] != split:
                    raise ReaderError(f"{line_where}: {path} is also listed at {where[relative]}")
                out[relative], where[relative] = split, line_where
        return out


def audio_files(folder: Path, suffixes: tuple[str, ...] = AUDIO_SUFFIXES) -> list[str]:
    """Audio files anywhere below `folder`, hidden ones skipped, sorted by relative path.

    Args:
      folder: the folder to search.
      suffixes: lower-case suffixes (".wav") to keep; compared case-insensitively.

    Returns:
      paths as strings (absolute when `folder` is), sorted by their path below `folder`.
    """
    found = []
    for directory, subfolders, files in os.walk(folder):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in suffixes:
                found.append(os.path.join(directory, name))
    top = len(str(folder)) + 1
    return sorted(found, key=lambda path: path[top:].replace(os.sep, "/"))


def holds_audio(folder: Path, suffixes: tuple[str, ...] = AUDIO_SUFFIXES) -> bool:
    """Whether an audio file (not hidden, in no hidden folder) is anywhere below `folder`.

    Stops at the first one found, so a full folder costs one directory read.
    """
    pending = [folder]
    while pending:
        try:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    if entry.is_dir():  # as `audio_files` (os.walk): linked folders not entered
                        if not entry.is_symlink():
                            pending.append(Path(entry.path))
                    elif os.path.splitext(entry.name)[1].lower() in suffixes:
                        return True
        except OSError:  # an unreadable folder, skipped as os.walk skips it
            continue
    return False


def read_list(root: Path, list_name: str) -> list[tuple[Path, str]]:
    """Entries of a Speech-Commands-style list file (one relative path per line).

    Args:
      root: the dataset folder (absolute, resolved).
      list_name: the list file's name relative to `root`.

    Returns:
      (resolved path, "list_name line N") per non-blank line. A path that resolves outside
      `root` or does not exist raises ReaderError naming the list file and the line.
    """
    list_path = root / list_name
    if not list_path.is_file():
        raise ReaderError(f"list file {list_name!r} not found in {root}")
    out = []
    text = list_path.read_text(encoding="utf-8-sig")
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if not entry:
            continue
        where = f"{list_name} line {number}"
        path = inside_root(root, entry, where)
        if not path.is_file():
            raise ReaderError(f"{where}: {entry!r} does not exist in {root}")
        out.append((path, where))
    return out


def _as_tuple(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _group_pattern(pattern: str) -> re.Pattern:
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise ValueError(f"group pattern {pattern!r} is not a regular expression: {e}") from e
    if compiled.groups < 1:
        raise ValueError(f"group pattern {pattern!r} needs a capture group, e.g. r'^(.+?)_nohash_'")
    return compiled


def _group_function(group: str | Callable[[Path], str] | None) -> Callable[[str], str | None]:
    if group is None:
        return lambda path: None
    if callable(group):
        return lambda path: str(group(Path(path)))
    pattern = _group_pattern(group)

    def of(path: str) -> str:
        match = pattern.search(os.path.basename(path))
        if match is None:
            raise ReaderError(f"{path}: file name does not match group pattern {group!r}")
        return match.group(1)

    return of
