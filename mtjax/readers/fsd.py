"""Freesound datasets: FSDKaggle2018 (single-label, 41 classes) and FSD50K (multi-label, 200).

Both are read exactly as their Zenodo archives unpack (see `../shared/LAYOUTS.md`, sections 4
and 5). CSV files are UTF-8 (a BOM is dropped), CRLF or LF; errors name the file and the line.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterator
from pathlib import Path

from mtjax.readers import _tables
from mtjax.readers.base import Item, ReaderError, existing_root, inside_root
from mtjax.tasks import Task

# FSDKaggle2018 layouts: (meta CSV for train, meta CSV for test, train audio, test audio).
KAGGLE2018_ZENODO = (
    "FSDKaggle2018.meta/train_post_competition.csv",
    "FSDKaggle2018.meta/test_post_competition_scoring_clips.csv",
    "FSDKaggle2018.audio_train",
    "FSDKaggle2018.audio_test",
)
KAGGLE2018_KAGGLE = ("train.csv", "test_post_competition.csv", "audio_train", "audio_test")
USAGES = ("public", "private", "ignored")

FSD50K_DEV = "FSD50K.ground_truth/dev.csv"
FSD50K_EVAL = "FSD50K.ground_truth/eval.csv"
FSD50K_VOCABULARY = "FSD50K.ground_truth/vocabulary.csv"
FSD50K_SPLITS = {"train": "train", "val": "validation"}


@dataclasses.dataclass(frozen=True)
class FSDKaggle2018:
    """FSDKaggle2018 (DCASE 2018 Task 2): 41 sound classes, one label per clip.

    Zenodo 2552860 layout (read when its train CSV exists)::

        root/FSDKaggle2018.meta/train_post_competition.csv
            fname,label,manually_verified,freesound_id,license
        root/FSDKaggle2018.meta/test_post_competition_scoring_clips.csv
            fname,label,usage,freesound_id,license
        root/FSDKaggle2018.audio_train/<fname>     root/FSDKaggle2018.audio_test/<fname>

    Kaggle competition layout (otherwise)::

        root/train.csv                    fname,label,manually_verified
        root/test_post_competition.csv    fname,label,usage,...  (usage "Ignored" rows skipped)
        root/audio_train/<fname>          root/audio_test/<fname>

    Tasks: "label", multiclass; its labels are the train CSV's labels, sorted (the 41 classes
    on the real data, whatever `verified_only` keeps). A test row whose label is not among them
    is an error. Splits: train CSV rows -> "train", test CSV rows -> "test" (or "validation",
    see `public_as_validation`). There is no official validation set. `Item.id` is the path
    relative to the root; `Item.group` is the `freesound_id` cell when the CSV has that column
    (clips cut from one Freesound sound share it), else None.

    Attributes:
      root: the dataset folder (stored absolute); FileNotFoundError when it or the two CSVs of
        both layouts are missing.
      verified_only: keep only train rows with `manually_verified` = 1 (test rows are all
        verified). The train labels, and so the task, are unchanged.
      public_as_validation: test rows with `usage` "Public" (the Kaggle public leaderboard)
        get split "validation", "Private" ones stay "test" (the DCASE-models convention).
        Off by default: every scored test clip is "test".
      name: the dataset's name; "FSDKaggle2018" by default.
    """

    root: Path
    _: dataclasses.KW_ONLY
    verified_only: bool = False
    public_as_validation: bool = False
    name: str = ""

    def __post_init__(self):
        root = existing_root(self.root, "FSDKaggle2018")
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "name", self.name or "FSDKaggle2018")
        self._layout()

    @property
    def tasks(self) -> tuple[Task, ...]:
        """The one task "label", from the train CSV's labels."""
        train_csv, _, _, _ = self._layout()
        return (self._task(train_csv, self._train_rows(train_csv)),)

    def items(self) -> Iterator[Item]:
        """Train rows, then test rows, each in CSV order."""
        train_csv, test_csv, train_audio, test_audio = self._layout()
        train_rows = self._train_rows(train_csv)
        task = self._task(train_csv, train_rows)
        for line, cells in train_rows:
            where = f"{train_csv} line {line}"
            if self.verified_only and _flag(cells["manually_verified"], where) != 1:
                continue
            yield self._item(cells, train_audio, "train", task, where)
        needed = ["fname", "label"] + (["usage"] if self.public_as_validation else [])
        for line, cells in _tables.read_table(self.root / test_csv, test_csv, ",", needed):
            where = f"{test_csv} line {line}"
            usage = _usage(cells, where)
            if usage == "ignored":
                continue
            split = "validation" if self.public_as_validation and usage == "public" else "test"
            yield self._item(cells, test_audio, split, task, where)

    def _layout(self) -> tuple[str, str, str, str]:
        for layout in (KAGGLE2018_ZENODO, KAGGLE2018_KAGGLE):
            if (self.root / layout[0]).is_file():
                if not (self.root / layout[1]).is_file():
                    raise FileNotFoundError(
                        f"FSDKaggle2018: {layout[1]!r} not found in {self.root}"
                    )
                return layout
        raise FileNotFoundError(
            f"FSDKaggle2018: neither {KAGGLE2018_ZENODO[0]!r} (Zenodo layout) nor"
            f" {KAGGLE2018_KAGGLE[0]!r} (Kaggle layout) found in {self.root}"
        )

    def _train_rows(self, train_csv: str) -> list[_tables.Row]:
        needed = ["fname", "label"] + (["manually_verified"] if self.verified_only else [])
        rows = _tables.read_table(self.root / train_csv, train_csv, ",", needed)
        if not rows:
            raise ReaderError(f"{train_csv}: no rows after the header")
        return rows

    def _task(self, train_csv: str, rows: list[_tables.Row]) -> Task:
        labels = set()
        for line, cells in rows:
            if not cells["label"]:
                raise ReaderError(f"{train_csv} line {line}: empty label")
            labels.add(cells["label"])
        try:
            return Task("label", tuple(sorted(labels)), "multiclass")
        except ValueError as e:
            raise ReaderError(f"{train_csv}: {e}") from e

    def _item(self, cells: dict[str, str], audio: str, split: str, task: Task, where: str) -> Item:
        label = cells["label"]
        if label not in task.labels:
            raise ReaderError(
                f"{where}: label {label!r} is not one of the train CSV's labels {list(task.labels)}"
            )
        path = clip_path(self.root, audio, cells["fname"], where)
        return Item(
            path=str(path),
            targets={task.name: (label,)},
            id=path.relative_to(self.root).as_posix(),
            group=cells.get("freesound_id") or None,
            split=split,
        )


@dataclasses.dataclass(frozen=True)
class FSD50K:
    """FSD50K: 51,197 Freesound clips tagged with 200 AudioSet classes (multi-label).

    Layout (Zenodo 4060432, the split zips joined and unpacked)::

        root/FSD50K.ground_truth/vocabulary.csv   no header; rows index,label,mid (200)
        root/FSD50K.ground_truth/dev.csv          fname,labels,mids,split  (split: train/val)
        root/FSD50K.ground_truth/eval.csv         fname,labels,mids
        root/FSD50K.dev_audio/<fname>.wav         root/FSD50K.eval_audio/<fname>.wav

    `labels` cells are quoted comma lists of vocabulary labels (already smeared to the
    ontology root). Tasks: "labels", multilabel, its labels the vocabulary's in file order.
    A label outside the vocabulary is an error naming the CSV line. Splits: dev rows with
    split "train" -> "train", "val" -> "validation" (the official validation set); eval rows
    -> "test". `Item.id` is the path relative to the root. `Item.group` is the `uploader`
    cell when a CSV has that column; the official CSVs do not (uploaders are in
    `FSD50K.metadata/*_clips_info_FSD50K.json`, not read here), so it is None.

    Attributes:
      root: the dataset folder (stored absolute); FileNotFoundError when it or one of the
        three ground-truth CSVs is missing.
      name: the dataset's name; "FSD50K" by default.
    """

    root: Path
    _: dataclasses.KW_ONLY
    name: str = ""

    def __post_init__(self):
        root = existing_root(self.root, "FSD50K")
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "name", self.name or "FSD50K")
        for file in (FSD50K_VOCABULARY, FSD50K_DEV, FSD50K_EVAL):
            if not (root / file).is_file():
                raise FileNotFoundError(f"FSD50K: {file!r} not found in {root}")

    @property
    def tasks(self) -> tuple[Task, ...]:
        """The one task "labels" over the vocabulary."""
        return (self._task(),)

    def items(self) -> Iterator[Item]:
        """dev.csv rows (train and validation), then eval.csv rows (test), in CSV order."""
        task = self._task()
        dev = _tables.read_table(
            self.root / FSD50K_DEV, FSD50K_DEV, ",", ["fname", "labels", "split"]
        )
        for line, cells in dev:
            where = f"{FSD50K_DEV} line {line}"
            split = FSD50K_SPLITS.get(cells["split"].lower())
            if split is None:
                raise ReaderError(
                    f"{where}: split {cells['split']!r} is not one of {list(FSD50K_SPLITS)}"
                )
            yield self._item(cells, "FSD50K.dev_audio", split, task, where)
        for line, cells in _tables.read_table(
            self.root / FSD50K_EVAL, FSD50K_EVAL, ",", ["fname", "labels"]
        ):
            yield self._item(cells, "FSD50K.eval_audio", "test", task, f"{FSD50K_EVAL} line {line}")

    def _task(self) -> Task:
        vocabulary = read_vocabulary(self.root / FSD50K_VOCABULARY, FSD50K_VOCABULARY)
        labels = [label for label, _ in vocabulary]
        try:
            return Task("labels", tuple(labels), "multilabel")
        except ValueError as e:
            raise ReaderError(f"{FSD50K_VOCABULARY}: {e}") from e

    def _item(self, cells: dict[str, str], audio: str, split: str, task: Task, where: str) -> Item:
        labels = _tables.parse_multilabel(cells["labels"], ",")
        for label in labels:
            if label not in task.labels:
                raise ReaderError(
                    f"{where}: label {label!r} is not in {FSD50K_VOCABULARY}"
                    f" ({len(task.labels)} labels, e.g. {list(task.labels[:3])})"
                )
        fname = cells["fname"]
        path = clip_path(self.root, audio, fname if "." in fname else f"{fname}.wav", where)
        return Item(
            path=str(path),
            targets={task.name: labels},
            id=path.relative_to(self.root).as_posix(),
            group=cells.get("uploader") or None,
            split=split,
        )


def read_vocabulary(path: Path, where: str) -> list[tuple[str, str]]:
    """(label, mid) of each row of an FSD50K `vocabulary.csv` (`index,label,mid`, no header).

    A first line whose index cell is not an integer is taken as a header and skipped.
    """
    out: list[tuple[str, str]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, skipinitialspace=True)
            for cells in reader:
                cells = [c.strip() for c in cells]
                if not any(cells):
                    continue
                line = f"{where} line {reader.line_num}"
                if len(cells) != 3:
                    raise ReaderError(f"{line}: {len(cells)} cells, expected index,label,mid")
                if not cells[0].isdigit():
                    if not out and reader.line_num == 1:
                        continue
                    raise ReaderError(f"{line}: index {cells[0]!r} is not an integer")
                if not cells[1]:
                    raise ReaderError(f"{line}: empty label")
                out.append((cells[1], cells[2]))
    except UnicodeDecodeError as e:
        raise ReaderError(f"{where}: not UTF-8 text ({e})") from e
    except csv.Error as e:
        raise ReaderError(f"{where}: {e}") from e
    if not out:
        raise ReaderError(f"{where}: no labels")
    return out


def clip_path(root: Path, audio_dir: str, fname: str, where: str) -> Path:
    """The existing audio file `root/audio_dir/fname`; ReaderError naming `where` otherwise."""
    if not fname:
        raise ReaderError(f"{where}: empty fname")
    path = inside_root(root, f"{audio_dir}/{fname}", where)
    if not path.is_file():
        raise ReaderError(f"{where}: audio file {fname!r} not found (looked for {path})")
    return path


def _flag(cell: str, where: str) -> int:
    if cell not in ("0", "1"):
        raise ReaderError(f"{where}: manually_verified {cell!r} is not 0 or 1")
    return int(cell)


def _usage(cells: dict[str, str], where: str) -> str | None:
    if "usage" not in cells:
        return None
    usage = cells["usage"].lower()
    if usage not in USAGES:
        raise ReaderError(
            f"{where}: usage {cells['usage']!r} is not one of Public, Private, Ignored"
        )
    return usage
