"""Table helpers the public layouts share: CSV/TSV rows, label cells, fold cells."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from mtjax.readers.base import ReaderError, inside_root
from mtjax.tasks import Task

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
    return parse_multilabel(cell, separator)


def parse_multilabel(cell: str, separator: str | None = None) -> tuple[str, ...]:
    """Labels of one multilabel cell, deduplicated, in cell order; () for an empty cell.

    Args:
      cell: the stripped cell text.
      separator: splits the cell; None: the whole cell is one label.
    """
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


def dataset_folder(root: Path, marker: str, wrappers: Sequence[str]) -> Path:
    """The folder holding `marker`: `root` itself or one of its `wrappers` sub-folders.

    Args:
      root: the folder the user gave (absolute, resolved).
      marker: a file that the dataset folder holds, relative to it (e.g. "meta/esc50.csv").
      wrappers: names of the archive's top folder, tried below `root` in turn.

    Returns:
      the dataset folder; ReaderError naming `marker` and the places looked in when none has it.
    """
    candidates = [root, *(root / w for w in wrappers)]
    for folder in candidates:
        if (folder / marker).is_file():
            return folder.resolve()
    looked = ", ".join(str(c / marker) for c in candidates)
    raise ReaderError(f"{marker} not found; looked for {looked}")


def audio_path(root: Path, relative: str, where: str) -> Path:
    """`root / relative`, which must be an existing file inside `root`; errors name `where`."""
    path = inside_root(root, relative, where)
    if not path.is_file():
        raise ReaderError(f"{where}: audio file {relative!r} not found (looked for {path})")
    return path


def fold_cell(cell: str, where: str) -> int:
    """A 1-based fold number from a CSV cell; ReaderError naming `where` otherwise."""
    fold = int_cell(cell, "fold", where)
    if fold < 1:
        raise ReaderError(f"{where}: fold {fold} is not one of 1, 2, ... (1-based)")
    return fold


def int_cell(cell: str, column: str, where: str) -> int:
    """An integer cell, also written as a float ("3.0"); errors name the column and `where`."""
    try:
        value = float(cell)
    except ValueError:
        value = float("nan")
    if not value.is_integer():
        raise ReaderError(f"{where}: {column} {cell!r} is not an integer")
    return int(value)


def labels_by_index(rows: list[Row], index_column: str, label_column: str, where: str) -> list[str]:
    """Labels ordered by their integer id column, each id naming one label only.

    Args:
      rows: table rows (see `read_table`).
      index_column: column of integer class ids (ESC-50 `target`, UrbanSound8K `classID`).
      label_column: column of class names.
      where: the table's name for error messages.

    Returns:
      the distinct labels sorted by id; ReaderError naming the line where an id or a label
      first disagrees with an earlier row.
    """
    label_of: dict[int, tuple[str, int]] = {}
    id_of: dict[str, tuple[int, int]] = {}
    for line, cells in rows:
        at = f"{where} line {line}"
        index, label = int_cell(cells[index_column], index_column, at), cells[label_column]
        if not label:
            raise ReaderError(f"{at}: empty {label_column}")
        if index in label_of and label_of[index][0] != label:
            first, first_line = label_of[index]
            raise ReaderError(
                f"{at}: {index_column} {index} is {label!r}, but {first!r} at line {first_line}"
            )
        if label in id_of and id_of[label][0] != index:
            first_index, first_line = id_of[label]
            raise ReaderError(
                f"{at}: {label_column} {label!r} has {index_column} {index}, but {first_index} at"
                f" line {first_line}"
            )
        label_of.setdefault(index, (label, line))
        id_of.setdefault(label, (index, line))
    return [label_of[i][0] for i in sorted(label_of)]


def task_from_rows(
    name: str, rows: list[Row], index_column: str, label_column: str, where: str
) -> Task:
    """A multiclass Task whose labels are `labels_by_index` of the rows."""
    try:
        return Task(name, tuple(labels_by_index(rows, index_column, label_column, where)))
    except ValueError as e:
        if isinstance(e, ReaderError):
            raise
        raise ReaderError(f"{where}: {e}") from e
