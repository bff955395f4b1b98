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

`_tables.int_cell`, `_tables.labels_by_index` and `_tables.dataset_folder` are shared with the
other CSV-described public datasets (UrbanSound8K).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

from mtjax.readers import _tables
from mtjax.readers.base import Item, ReaderError, existing_root
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
    name: str = ""

    def __post_init__(self):
        root = _tables.dataset_folder(existing_root(self.root, "ESC-50"), META, ("ESC-50-master",))
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
            fold = _tables.fold_cell(cells["fold"], where)
            path = _tables.audio_path(self.root, f"audio/{cells['filename']}", where)
            yield Item(
                path=str(path),
                targets={task.name: (cells["category"],)},
                id=path.relative_to(self.root).as_posix(),
                group=cells["src_file"] or None,
                fold=fold - 1,
            )

    def _rows(self) -> list[_tables.Row]:
        rows = _tables.read_table(self.root / META, META, ",", COLUMNS)
        if not self.esc10:
            return rows
        flags = {"true": True, "false": False}
        for line, cells in rows:
            if cells["esc10"].lower() not in flags:
                raise ReaderError(
                    f"{META} line {line}: esc10 {cells['esc10']!r} is not True or False"
                )
        return [(line, cells) for line, cells in rows if flags[cells["esc10"].lower()]]

    def _task(self, rows: list[_tables.Row]) -> Task:
        if not rows:
            what = "no ESC-10 rows (esc10 == True)" if self.esc10 else "no rows after the header"
            raise ReaderError(f"{self.root / META}: {what}")
        return _tables.task_from_rows("category", rows, "target", "category", META)
