"""ESC-50 (and its ESC-10 subset): environmental sounds, 5 official folds.

The GitHub archive `ESC-50-master.zip` unpacks as

    ESC-50-master/
      audio/1-100032-A-0.wav ...      2000 clips, flat: {fold}-{freesound id}-{take}-{target}.wav
      meta/esc50.csv                  filename,fold,target,category,esc10,src_file,take
      meta/esc50-human.xlsx, README.md, ...

Task "category": multiclass, 50 labels (the `category` names, in `target` order). ESC-10 keeps
the rows whose `esc10` cell is `True`: 10 labels, in the order of their original `target`.
Folds: the `fold` column (1-5) minus one. Group: `src_file`, the Freesound recording a clip
was cut from (the dataset keeps one recording's clips in one fold).

`int_cell`, `labels_by_index` and `dataset_folder` are shared with the other CSV-described
public datasets (UrbanSound8K).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

from mtjax.readers.base import Item, ReaderError, existing_root, inside_root
from mtjax.readers.csv import Row, read_table
from mtjax.tasks import Task

META = "meta/esc50.csv"
COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")


@dataclasses.dataclass(frozen=True)
class ESC50:
    """The ESC-50 layout, or its ESC-10 subset.

    Attributes:
      root: `ESC-50-master/`, or a folder that contains it; stored as the dataset folder
        itself (absolute). FileNotFoundError when it does not exist.
      esc10: read only the ESC-10 rows (`esc10` == True), re-indexed to 10 labels.
      name: the dataset's name; "ESC-10" or "ESC-50" by default.

    Items come in CSV row order; `id` is the path below the dataset folder
    (`audio/1-100032-A-0.wav`), `fold` is 0-4, `group` the `src_file`, `split` None.
    """

    root: Path
    _: dataclasses.KW_ONLY
    esc10: bool = False
    name: str | None = None

    def __post_init__(self):
        root = dataset_folder(existing_root(self.root, "ESC-50"), META, ("ESC-50-master",))
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "name", self.name or ("ESC-10" if self.esc10 else "ESC-50"))

    @property
    def tasks(self) -> tuple[Task, ...]:
        """("category",): 50 labels, or 10 with `esc10`, in `target` order."""
        return (self._task(self._rows()),)

    def items(self) -> Iterator[Item]:
        """One item per CSV row (ESC-10 rows only with `esc10`), in row order."""
        rows = self._rows()
        task = self._task(rows)
        for line, cells in rows:
            where = f"{META} line {line}"
            fold = fold_cell(cells["fold"], where)
            path = audio_path(self.root, f"audio/{cells['filename']}", where)
            yield Item(
                path=str(path),
                targets={task.name: (cells["category"],)},
                id=path.relative_to(self.root).as_posix(),
                group=cells["src_file"] or None,
                fold=fold - 1,
            )

    def _rows(self) -> list[Row]:
        rows = read_table(self.root / META, META, ",", COLUMNS)
        if not self.esc10:
            return rows
        flags = {"true": True, "false": False}
        for line, cells in rows:
            if cells["esc10"].lower() not in flags:
                raise ReaderError(
                    f"{META} line {line}: esc10 {cells['esc10']!r} is not True or False"
                )
        return [(line, cells) for line, cells in rows if flags[cells["esc10"].lower()]]

    def _task(self, rows: list[Row]) -> Task:
        if not rows:
            what = "no ESC-10 rows (esc10 == True)" if self.esc10 else "no rows after the header"
            raise ReaderError(f"{self.root / META}: {what}")
        return task_from_rows("category", rows, "target", "category", META)


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
            first, first_line = id_of[label]
            raise ReaderError(
                f"{at}: {label_column} {label!r} has {index_column} {index}, but {first} at line"
                f" {first_line}"
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
