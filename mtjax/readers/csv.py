"""CSV manifest layout: one row per clip, a path column and one column per task.

    path,label,tags,split,speaker
    clips/a.wav,dog,bark;growl,train,s1
    clips/b.wav,cat,,test,s2

Cells are read as UTF-8 (a BOM is dropped), CRLF or LF line ends, spaces around a cell ignored.
Errors name the manifest and the 1-based line of the row.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from mtjax.readers.base import Item, ReaderError, existing_root, inside_root
from mtjax.tasks import KINDS, LabelError, Task

SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
    "eval": "test",
    "evaluation": "test",
}

Row = tuple[int, dict[str, str]]  # (1-based line, column -> stripped cell)


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
    name: str | None = None
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
                labels = parse_labels(cells[column], task.kind, self._separator(column))
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

    def _rows(self) -> list[Row]:
        needed = [self.path_column, *self._columns()]
        needed += [c for c in (self.split_column, self.fold_column, self.group_column) if c]
        rows = read_table(self.root / self.manifest, str(self.manifest), self.delimiter, needed)
        if not rows:
            raise ReaderError(f"{self.manifest}: no rows after the header")
        return rows

    def _tasks(self, rows: list[Row]) -> dict[str, Task]:
        """Label column -> its task, given or inferred from every row's labels."""
        given = self._given_tasks()
        out = {}
        for column in self._columns():
            if column in given:
                out[column] = given[column]
                continue
            kind, separator = self._kind(column), self._separator(column)
            labels = set()
            for _, cells in rows:
                labels.update(parse_labels(cells[column], kind, separator) or ())
            try:
                out[column] = Task(column, tuple(sorted(labels)), kind)
            except ValueError as e:
                raise ReaderError(f"{self.manifest}: column {column!r}: {e}") from e
        return out

    def _folds(self, rows: list[Row]) -> list[int | None]:
        if self.fold_column is None:
            return [None] * len(rows)
        column = self.fold_column
        values = [_integer(cells[column], f"{self.manifest} line {line}") for line, cells in rows]
        index = {v: i for i, v in enumerate(sorted(set(values)))}
        return [index[v] for v in values]

    def _split(self, cells: dict[str, str], where: str) -> str | None:
        if self.split_column is None:
            return None
        value = cells[self.split_column]
        try:
            return SPLIT_NAMES[value.lower()]
        except KeyError:
            raise ReaderError(
                f"{where}: split {value!r} in column {self.split_column!r} is not one of"
                f" {sorted(SPLIT_NAMES)} (any case)"
            ) from None

    def _audio_path(self, cell: str, where: str) -> Path:
        if not cell:
            raise ReaderError(f"{where}: empty path in column {self.path_column!r}")
        path = inside_root(self.root, str(Path(self.audio_dir) / cell), where)
        if not path.is_file():
            raise ReaderError(f"{where}: audio file {cell!r} not found (looked for {path})")
        return path


def parse_labels(cell: str, kind: str, separator: str | None = None) -> tuple[str, ...] | None:
    """Labels of one cell.

    Args:
      cell: the stripped cell text.
      kind: the column's task kind.
      separator: splits a multilabel cell; None: the whole cell is one label.

    Returns:
      a tuple of labels (deduplicated, in cell order); for a single-label kind an empty
      cell gives None (not labelled), for multilabel an empty tuple (no label).
    """
    if kind != "multilabel":
        return (cell,) if cell else None
    parts = cell.split(separator) if separator else [cell]
    return tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))


def read_table(path: Path, where: str, delimiter: str, needed: Sequence[str]) -> list[Row]:
    """Rows of a CSV file with a header line, blank lines skipped.

    Args:
      path: the CSV file.
      where: its name for error messages.
      delimiter: the cell delimiter.
      needed: columns that must be in the header.

    Returns:
      (1-based line, column -> cell stripped of surrounding spaces) for each row.
    """
    header, header_line, rows = None, 0, []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter, skipinitialspace=True)
            for cells in reader:
                cells = [c.strip() for c in cells]
                if not any(cells):
                    continue
                if header is None:
                    header, header_line = cells, reader.line_num
                    continue
                if len(cells) != len(header):
                    raise ReaderError(
                        f"{where} line {reader.line_num}: {len(cells)} cells, the header has"
                        f" {len(header)}"
                    )
                rows.append((reader.line_num, dict(zip(header, cells))))
    except UnicodeDecodeError as e:
        raise ReaderError(f"{where}: not UTF-8 text ({e})") from e
    except csv.Error as e:
        raise ReaderError(f"{where}: {e}") from e
    if header is None:
        raise ReaderError(f"{where}: empty manifest, no header line")
    named = [c for c in header if c]
    if len(set(named)) != len(named):
        raise ReaderError(f"{where} line {header_line}: a column name repeats in {header}")
    for column in needed:
        if column not in header:
            raise ReaderError(
                f"{where} line {header_line}: no column {column!r}; columns present: {named}"
            )
    return rows


def _integer(cell: str, where: str) -> int:
    try:
        return int(cell)
    except ValueError:
        pass
    try:
        value = float(cell)
    except ValueError:
        value = float("nan")
    if not value.is_integer():
        raise ReaderError(f"{where}: fold {cell!r} is not an integer")
    return int(value)
