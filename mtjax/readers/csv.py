"""CSV manifest layout: one row per clip, a path column and one column per task.

    path,label,tags,split,speaker
    clips/a.wav,dog,bark;growl,train,s1
    clips/b.wav,cat,,test,s2

Cells are read as UTF-8 (a BOM is dropped), CRLF or LF line ends, spaces around a cell ignored.
Errors name the manifest and the 1-based line of the row.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from mtjax.readers import _tables
from mtjax.readers.base import Item, ReaderError, existing_root, inside_root
from mtjax.tasks import KINDS, LabelError, Task


@dataclasses.dataclass(frozen=True)
class CsvReader:
    """A dataset described by a CSV manifest.

    Each label column is one task, named after the column, labels sorted, unless a `Task` is
    given for it. A column's kind is, in order: its `Task`'s, the kind given in `label_columns`
    or `kinds`, "multilabel" when a separator applies to it, else "multiclass". An inferred
    binary task needs exactly two distinct values; the second in sorted order is the positive
    label ("no"/"yes", "0"/"1", "False"/"True").

    An empty label cell means the clip is not labelled for that task (the task is missing from
    `Item.targets`), except in a multilabel column, where it means "none of the labels" (an
    empty tuple).

    Attributes:
      root: the dataset folder (stored absolute); FileNotFoundError when it does not exist.
      manifest: the CSV file, relative to `root` or absolute.
      name: the dataset's name; the root folder's name by default.
      path_column: column with each clip's path, relative to `root / audio_dir`.
      label_columns: label column names, or a mapping column -> `Task` or kind.
      kinds: column -> kind, for columns named without a kind.
      separator: multilabel separator (e.g. ";"), for every label column, or a mapping
        column -> separator. Only multilabel columns are split.
      split_column: predefined partition, case-insensitive: train/training,
        val/valid/validation/dev, test/testing/eval/evaluation.
      fold_column: integer fold ids, renumbered 0, 1, ... in sorted order of the values.
      group_column: source id (speaker, recording); an empty cell: the clip is its own group.
      delimiter: the cell delimiter.
      audio_dir: folder, relative to `root`, that the paths are relative to.
    """

    root: Path
    manifest: str | os.PathLike
    _: dataclasses.KW_ONLY
    name: str = ""
    path_column: str = "path"
    label_columns: Sequence[str] | Mapping[str, Task | str] = ("label",)
    kinds: Mapping[str, str] | None = None
    separator: str | Mapping[str, str] | None = None
    split_column: str | None = None
    fold_column: str | None = None
    group_column: str | None = None
    delimiter: str = ","
    audio_dir: str = ""

    def __post_init__(self):
        root = existing_root(self.root)
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "name", self.name or root.name)
        columns = self.label_columns
        if isinstance(columns, str):
            object.__setattr__(self, "label_columns", (columns,))
        elif not isinstance(columns, Mapping):
            object.__setattr__(self, "label_columns", tuple(columns))
        if not self.label_columns:
            raise ValueError(f"{self.manifest}: no label columns given")
        for column, kind in (self.kinds or {}).items():
            if column not in self.label_columns:
                raise ValueError(f"kinds names {column!r}, not a label column {self._columns()}")
            if kind not in KINDS:
                raise ValueError(f"kinds[{column!r}] = {kind!r} is not one of {KINDS}")
        if not (root / self.manifest).is_file():
            raise FileNotFoundError(f"manifest {str(self.manifest)!r} not found in {root}")
        names = [t.name for t in self._given_tasks().values()]
        names += [c for c in self._columns() if c not in self._given_tasks()]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.manifest}: two label columns give the same task name {names}")

    @property
    def tasks(self) -> tuple[Task, ...]:
        """One task per label column, in column order."""
        return tuple(self._tasks(self._rows()).values())

    def items(self) -> Iterator[Item]:
        """One item per manifest row, in row order."""
        rows = self._rows()
        tasks = self._tasks(rows)
        folds = self._folds(rows)
        given = self._given_tasks()
        seen: dict[str, int] = {}
        for (line, cells), fold in zip(rows, folds):
            where = f"{self.manifest} line {line}"
            path = self._audio_path(cells[self.path_column], where)
            clip_id = path.relative_to(self.root).as_posix()
            if clip_id in seen:
                first = seen[clip_id]
                raise ReaderError(f"{where}: {clip_id!r} is listed again, first at line {first}")
            seen[clip_id] = line
            targets = {}
            for column, task in tasks.items():
                labels = _tables.parse_labels(cells[column], task.kind, self._separator(column))
                if labels is None:
                    continue
                if column in given:
                    for label in labels:
                        try:
                            task.index(label)
                        except LabelError as e:
                            raise ReaderError(f"{where}: column {column!r}: {e}") from e
                targets[task.name] = labels
            yield Item(
                path=str(path),
                targets=targets,
                id=clip_id,
                group=(cells[self.group_column] or None) if self.group_column else None,
                split=self._split(cells, where),
                fold=fold,
            )

    def _columns(self) -> tuple[str, ...]:
        return tuple(self.label_columns)

    def _given_tasks(self) -> dict[str, Task]:
        if not isinstance(self.label_columns, Mapping):
            return {}
        return {c: t for c, t in self.label_columns.items() if isinstance(t, Task)}

    def _kind(self, column: str) -> str:
        if isinstance(self.label_columns, Mapping):
            spec = self.label_columns[column]
            if isinstance(spec, Task):
                return spec.kind
            if spec is not None:
                return spec
        if self.kinds and column in self.kinds:
            return self.kinds[column]
        return "multilabel" if self._separator(column) else "multiclass"

    def _separator(self, column: str) -> str | None:
        if isinstance(self.separator, Mapping):
            return self.separator.get(column)
        return self.separator

    def _rows(self) -> list[_tables.Row]:
        needed = [self.path_column, *self._columns()]
        needed += [c for c in (self.split_column, self.fold_column, self.group_column) if c]
        rows = _tables.read_table(
            self.root / self.manifest, str(self.manifest), self.delimiter, needed
        )
        if not rows:
            raise ReaderError(f"{self.manifest}: no rows after the header")
        return rows

    def _tasks(self, rows: list[_tables.Row]) -> dict[str, Task]:
        """Label column -> its task, given or inferred from every row's labels."""
        given = self._given_tasks()
        out = {}
        for column in self._columns():
            if column in given:
                out[column] = given[column]
                continue
            kind, separator = self._kind(column), self._separator(column)
            labels: set[str] = set()
            for _, cells in rows:
                labels.update(_tables.parse_labels(cells[column], kind, separator) or ())
            try:
                out[column] = Task(column, tuple(sorted(labels)), kind)
            except ValueError as e:
                raise ReaderError(f"{self.manifest}: column {column!r}: {e}") from e
        return out

    def _folds(self, rows: list[_tables.Row]) -> list[int | None]:
        if self.fold_column is None:
            return [None] * len(rows)
        column = self.fold_column
        values = [
            _tables._integer(cells[column], f"{self.manifest} line {line}") for line, cells in rows
        ]
        index = {v: i for i, v in enumerate(sorted(set(values)))}
        return [index[v] for v in values]

    def _split(self, cells: dict[str, str], where: str) -> str | None:
        if self.split_column is None:
            return None
        value = cells[self.split_column]
        try:
            return _tables.SPLIT_NAMES[value.lower()]
        except KeyError:
            raise ReaderError(
                f"{where}: split {value!r} in column {self.split_column!r} is not one of"
                f" {sorted(_tables.SPLIT_NAMES)} (any case)"
            ) from None

    def _audio_path(self, cell: str, where: str) -> Path:
        if not cell:
            raise ReaderError(f"{where}: empty path in column {self.path_column!r}")
        path = inside_root(self.root, str(Path(self.audio_dir) / cell), where)
        if not path.is_file():
            raise ReaderError(f"{where}: audio file {cell!r} not found (looked for {path})")
        return path
