"""UrbanSound8K: urban sound slices, 10 official folds.

`UrbanSound8K.tar.gz` unpacks as

    UrbanSound8K/
      audio/fold1/ ... audio/fold10/   [fsID]-[classID]-[occurrenceID]-[sliceID].wav
      metadata/UrbanSound8K.csv        slice_file_name,fsID,start,end,salience,fold,classID,class
      FREESOUNDCREDITS.txt, README ...

Task "class": multiclass, 10 labels (the `class` names, in `classID` order). Folds: the `fold`
column (1-10) minus one; the clip is read from `audio/fold{fold}/{slice_file_name}`. The
dataset's authors ask for 10-fold cross-validation over exactly these folds: never reshuffle
clips across them (slices of one recording would leak). Group: `fsID`, the Freesound recording.
Numbers may be written as `3` or `3.0`; both are read. Sample rates and channel counts vary per
file; `mtjax.read` resamples and downmixes.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

from mtjax.readers import _tables
from mtjax.readers.base import Item, ReaderError, existing_root
from mtjax.tasks import Task

META = "metadata/UrbanSound8K.csv"
COLUMNS = ("slice_file_name", "fsID", "fold", "classID", "class")


@dataclasses.dataclass(frozen=True)
class UrbanSound8K:
    """The UrbanSound8K layout.

    Attributes:
      root: `UrbanSound8K/`, or a folder that contains it; stored as the dataset folder itself
        (absolute). FileNotFoundError when it does not exist.
      name: the dataset's name; "UrbanSound8K" by default.

    Items come in CSV row order; `id` is `audio/fold{N}/{slice_file_name}`, `fold` 0-9,
    `group` the `fsID`, `split` None.
    """

    root: Path
    _: dataclasses.KW_ONLY
    name: str = ""

    def __post_init__(self):
        root = _tables.dataset_folder(
            existing_root(self.root, "UrbanSound8K"), META, ("UrbanSound8K",)
        )
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "name", self.name or "UrbanSound8K")

    @property
    def tasks(self) -> tuple[Task, ...]:
        """("class",): 10 labels in `classID` order."""
        return (self._task(self._rows()),)

    def items(self) -> Iterator[Item]:
        """One item per CSV row, in row order."""
        rows = self._rows()
        task = self._task(rows)
        for line, cells in rows:
            where = f"{META} line {line}"
            fold = _tables.fold_cell(cells["fold"], where)
            path = _tables.audio_path(
                self.root, f"audio/fold{fold}/{cells['slice_file_name']}", where
            )
            source = cells["fsID"]
            with contextlib.suppress(ReaderError):  # a non-numeric id is still an id
                source = str(_tables.int_cell(source, "fsID", where))
            yield Item(
                path=str(path),
                targets={task.name: (cells["class"],)},
                id=path.relative_to(self.root).as_posix(),
                group=source or None,
                fold=fold - 1,
            )

    def _rows(self) -> list[_tables.Row]:
        rows = _tables.read_table(self.root / META, META, ",", COLUMNS)
        if not rows:
            raise ReaderError(f"{self.root / META}: no rows after the header")
        return rows

    def _task(self, rows: list[_tables.Row]) -> Task:
        return _tables.task_from_rows("class", rows, "classID", "class", META)
