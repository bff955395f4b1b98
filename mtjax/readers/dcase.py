"""DCASE / TUT / TAU datasets: acoustic scenes and sound events, with their fold files.

Acoustic scenes, TUT Acoustic Scenes 2016/2017 development:

    TUT-acoustic-scenes-2017-development/
      audio/b123_40_50.wav                 10 s segment of recording b123
      meta.txt                             audio/b123_40_50.wav<TAB>park<TAB>b123   (no header)
      evaluation_setup/fold1_train.txt     audio/b123_40_50.wav<TAB>park
      evaluation_setup/fold1_evaluate.txt  audio/b020_90_100.wav<TAB>beach
      evaluation_setup/fold1_test.txt      audio/b020_90_100.wav
      ... fold2 .. fold4

TAU Urban Acoustic Scenes 2019 / 2020 Mobile development (tab-separated despite `.csv`):

    TAU-urban-acoustic-scenes-2019-development/
      audio/park-vienna-205-6150-a.wav     <scene>-<city>-<location>-<segment>-<device>
      meta.csv                             filename<TAB>scene_label<TAB>identifier<TAB>source_label
      evaluation_setup/fold1_train.csv     filename<TAB>scene_label      (header line)
      evaluation_setup/fold1_test.csv      filename
      evaluation_setup/fold1_evaluate.csv  filename<TAB>scene_label

Sound events, TUT Sound Events 2016/2017 development:

    TUT-sound-events-2017-development/
      audio/street/a001.wav
      meta/street/a001.ann                 onset<TAB>offset<TAB>label, one row per event
                                           (or file<TAB>scene<TAB>onset<TAB>offset<TAB>label...)
      evaluation_setup/street_fold1_train.txt     file<TAB>scene<TAB>onset<TAB>offset<TAB>label
      evaluation_setup/street_fold1_evaluate.txt  same columns
      evaluation_setup/street_fold1_test.txt      file<TAB>scene

Fold files: fold N's test side is its `_evaluate` list (its `_test` list when there is no
`_evaluate`); its train side its `_train` list. A clip's `fold` is the 0-based position of the fold
whose test side lists it (fold1 -> 0). With `fold=N` a reader yields the predefined split of
fold N instead: `split` "train" or "test" from that fold's lists.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator
from pathlib import Path

from mtjax.readers.base import AUDIO_SUFFIXES, Item, ReaderError, existing_root, inside_root
from mtjax.readers.folder import audio_files
from mtjax.tasks import Task

Line = tuple[int, list[str]]  # (1-based line number, tab-separated cells, stripped)

_FOLD_FILE = re.compile(r"^(?:(.+)_)?fold(\d+)_(train|evaluate|test)\.(txt|csv)$")
_HEADER_CELLS = ("filename", "file")
_TAU_NAME = re.compile(r"^[^-]+-([^-]+-[^-]+)-[^-]+-[^-]+$")  # scene-city-location-segment-device
_TUT_NAME = re.compile(r"^(.+?)_\d+_\d+$")  # recording_start_end


@dataclasses.dataclass(frozen=True)
class DCASEScenes:
    """Acoustic scene classification: TUT Acoustic Scenes 2016/2017, TAU Urban 2019/2020.

    Task "scene", multiclass; labels are the scenes of the meta file, sorted (TUT 2017 has
    "cafe/restaurant", with its slash). See the module docstring for the layouts.

    Labels come from `meta.txt` (no header: file, scene, recording identifier) or `meta.csv`
    (header `filename scene_label identifier ...`), tab-separated. `group` is the recording
    location: the meta file's identifier column when it has one, else the file name's
    `<city>-<location>` for TAU names (`park-vienna-205-6150-a` -> "vienna-205") or
    `<recording>` for TUT names (`b123_40_50` -> "b123"); None for other names.

    Without fold files every meta row is an item with `fold` and `split` None. With
    `evaluation_setup/fold{N}_*` files, only clips that some fold file lists are items (TAU
    2019's unused segments are not), each with `fold` = the 0-based fold whose test side lists it,
    or, when `fold=N`, with `split` "train" / "test" from fold N's lists.

    Attributes:
      root: the dataset folder (stored absolute).
      fold: None, or the fold number of the file names (1 for `fold1_train.txt`) whose
        train/test lists become the predefined split.
      name: the dataset's name; the root folder's name by default.

    Raises:
      ReaderError naming the file and line of a malformed row, a clip a fold file lists that
      the meta file lacks, or a missing audio file.
    """

    root: Path
    _: dataclasses.KW_ONLY
    fold: int | None = None
    name: str = ""

    def __post_init__(self):
        root = existing_root(self.root, "DCASE scenes")
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "name", self.name or root.name)
        _check_fold(root, self.fold)

    @property
    def tasks(self) -> tuple[Task, ...]:
        """The one task "scene", labels from the meta file."""
        return (_scene_task(self.root, self._meta()),)

    def items(self) -> Iterator[Item]:
        """One item per clip, in meta-file order."""
        meta = self._meta()
        task = _scene_task(self.root, meta)
        placement = fold_placement(self.root, self.fold, known=meta)
        for clip_id, (where, scene, group) in meta.items():
            if placement is not None and clip_id not in placement:
                continue
            path = self.root / clip_id
            if not path.is_file():
                raise ReaderError(f"{where}: audio file {clip_id!r} not found (looked for {path})")
            fold, split = placement[clip_id] if placement is not None else (None, None)
            yield Item(
                path=str(path),
                targets={task.name: (scene,)},
                id=clip_id,
                group=group,
                split=split,
                fold=fold,
            )

    def _meta(self) -> dict[str, tuple[str, str, str | None]]:
        """Clip id -> ("meta.txt line N", scene, group), in file order."""
        for meta_name in ("meta.csv", "meta.txt"):
            if (self.root / meta_name).is_file():
                break
        else:
            raise ReaderError(f"{self.root}: no meta.txt or meta.csv (file<TAB>scene[<TAB>id])")
        lines = read_tab_file(self.root / meta_name, meta_name)
        header = _header(lines)
        if header is not None:
            if "scene_label" not in header:
                raise ReaderError(
                    f"{meta_name} line {lines[0][0]}: no column 'scene_label' in the header"
                    f" {header}; expected filename<TAB>scene_label[<TAB>identifier...]"
                )
            lines = lines[1:]
        out: dict[str, tuple[str, str, str | None]] = {}
        for line, cells in lines:
            where = f"{meta_name} line {line}"
            if header is not None:
                row = dict(zip(header, cells))
                if len(cells) != len(header):
                    raise ReaderError(f"{where}: {len(cells)} cells, the header has {len(header)}")
                file, scene = row.get("filename", row.get("file", "")), row.get("scene_label", "")
                identifier = row.get("identifier", "")
            else:
                if len(cells) < 2:
                    raise ReaderError(
                        f"{where}: {len(cells)} cell(s); expected file<TAB>scene[<TAB>identifier]"
                    )
                file, scene = cells[0], cells[1]
                identifier = cells[2] if len(cells) > 2 else ""
            if not file or not scene:
                raise ReaderError(f"{where}: empty file name or scene label")
            clip_id = clip_id_of(self.root, file, where)
            if clip_id in out:
                raise ReaderError(f"{where}: {file!r} is listed again, first at {out[clip_id][0]}")
            out[clip_id] = (where, scene, identifier or _group_from_name(clip_id))
        if not out:
            raise ReaderError(f"{meta_name}: no rows")
        return out


@dataclasses.dataclass(frozen=True)
class DCASEEvents:
    """Sound events as clip-level tags: TUT Sound Events 2016/2017.

    Task "events", multilabel: a clip's targets are the event labels that occur in it at least
    once (sorted; an empty tuple for a clip without events); the task's labels are every event
    label of the annotation files, sorted (labels may contain spaces: "people walking").

    Every audio file under `audio/` (e.g. `audio/street/a001.wav`) needs its annotation file at
    the same place under `meta/` (`meta/street/a001.ann`, or `.txt`). Annotation rows are
    tab-separated; the first two cells that are numbers are onset and offset in seconds and the
    next cell is the label, so both `onset offset label` and `file scene onset offset label ...`
    rows are read. A row without tabs is split on whitespace as `onset offset label words`.
    `non_verified/` is not read. `group` is None: each clip is its own recording.

    Folds from `evaluation_setup/<scene>_fold{N}_{train,evaluate,test}.txt` as for
    `DCASEScenes` (module docstring): with fold files only listed clips are items.

    Attributes:
      root: the dataset folder (stored absolute).
      fold: None, or the fold number of the file names whose lists become the predefined split.
      name: the dataset's name; the root folder's name by default.

    Raises:
      ReaderError naming the annotation file and line of a malformed row, or the audio file
      whose annotation is missing.
    """

    root: Path
    _: dataclasses.KW_ONLY
    fold: int | None = None
    name: str = ""

    def __post_init__(self):
        root = existing_root(self.root, "DCASE events")
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "name", self.name or root.name)
        _check_fold(root, self.fold)

    @property
    def tasks(self) -> tuple[Task, ...]:
        """The one task "events", labels from the annotation files."""
        return (_events_task(self.root, self._clips()),)

    def items(self) -> Iterator[Item]:
        """One item per annotated audio file, sorted by path."""
        clips = self._clips()
        task = _events_task(self.root, clips)
        placement = fold_placement(self.root, self.fold, known={c for c, _ in clips})
        for clip_id, events in clips:
            if placement is not None and clip_id not in placement:
                continue
            fold, split = placement[clip_id] if placement is not None else (None, None)
            yield Item(
                path=str(self.root / clip_id),
                targets={task.name: events},
                id=clip_id,
                split=split,
                fold=fold,
            )

    def _clips(self) -> list[tuple[str, tuple[str, ...]]]:
        """(clip id, its sorted event labels) per audio file under `audio/`."""
        audio = self.root / "audio"
        if not audio.is_dir():
            raise ReaderError(f"{self.root}: no audio/ folder (audio/<scene>/<file>.wav expected)")
        out = []
        for path in audio_files(audio, AUDIO_SUFFIXES):
            relative = Path(path).relative_to(audio)
            for suffix in (".ann", ".txt"):
                annotation = self.root / "meta" / relative.with_suffix(suffix)
                if annotation.is_file():
                    break
            else:
                raise ReaderError(
                    f"{path}: no annotation file meta/{relative.with_suffix('.ann').as_posix()}"
                    f" (or .txt)"
                )
            shown = annotation.relative_to(self.root).as_posix()
            events = {label for _, _, label in read_annotation(annotation, shown)}
            out.append(("audio/" + relative.as_posix(), tuple(sorted(events))))
        if not out:
            raise ReaderError(f"{audio}: no audio files")
        return out


def read_annotation(path: Path, where: str) -> list[tuple[float, float, str]]:
    """Events of one annotation file.

    Args:
      path: the `.ann` / `.txt` file.
      where: its name for error messages.

    Returns:
      (onset, offset, label) per non-blank row, seconds. The first two numeric cells are onset
      and offset, the next cell the label (see `DCASEEvents`).
    """
    events = []
    for line, cells in read_tab_file(path, where, whitespace=True):
        at = next(
            (i for i in range(len(cells) - 2) if _number(cells[i]) and _number(cells[i + 1])),
            None,
        )
        if at is None or not cells[at + 2]:
            raise ReaderError(
                f"{where} line {line}: expected onset<TAB>offset<TAB>label (optionally after"
                f" file<TAB>scene), got {cells}"
            )
        onset, offset = float(cells[at]), float(cells[at + 1])
        if offset < onset:
            raise ReaderError(f"{where} line {line}: offset {offset} is before onset {onset}")
        events.append((onset, offset, cells[at + 2]))
    return events


def read_tab_file(path: Path, where: str, whitespace: bool = False) -> list[Line]:
    """Non-blank lines of a tab-separated text file, cells stripped.

    Args:
      path: the file.
      where: its name for error messages.
      whitespace: a line without a tab is split on runs of whitespace into at most three
        cells (`onset offset label with spaces`) instead of being one cell.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ReaderError(f"{where}: not UTF-8 text ({e})") from e
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if "\t" in line or not whitespace:
            cells = [c.strip() for c in line.split("\t")]
        else:
            cells = line.split(None, 2)
        out.append((number, cells))
    return out


def clip_id_of(root: Path, file: str, where: str) -> str:
    """The clip's path relative to `root`, posix, as ids are; refuses paths outside `root`."""
    return inside_root(root, file, where).relative_to(root).as_posix()


def fold_files(root: Path) -> dict[int, dict[str, list[Path]]]:
    """Fold number -> {"train": list files, "test": list files} from `root/evaluation_setup`.

    The test side is the `_evaluate` list, else the `_test` list. Files of several scenes
    (`home_fold1_train.txt`, `residential_area_fold1_train.txt`) are gathered per fold; {} when
    there is no `evaluation_setup` folder or no fold file in it.
    """
    setup = root / "evaluation_setup"
    if not setup.is_dir():
        return {}
    found: dict[int, dict[str, list[Path]]] = {}
    for path in sorted(setup.iterdir()):
        match = _FOLD_FILE.match(path.name)
        if match is None or not path.is_file():
            continue
        _, number, side, _ = match.groups()
        found.setdefault(int(number), {}).setdefault(side, []).append(path)
    out = {}
    for number, sides in sorted(found.items()):
        test = sides.get("evaluate") or sides.get("test") or []
        out[number] = {"train": sides.get("train", []), "test": test}
    return out


def fold_placement(
    root: Path, fold: int | None, known
) -> dict[str, tuple[int | None, str | None]] | None:
    """Clip id -> (fold, split) from the fold files; None when there are none.

    Args:
      root: the dataset folder.
      fold: None: a clip that fold N's test list names gets (N's 0-based position, None); a clip
        only in train lists gets (None, None). A fold number: that fold's clips get
        (None, "train") or (None, "test"); other clips are absent.
      known: the clip ids the dataset has; a listed clip outside them is an error.

    Raises:
      ReaderError naming the file and line of a clip in two folds' test lists, or (with `fold`)
      on both sides of the fold.
    """
    files = fold_files(root)
    if not files:
        return None
    out: dict[str, tuple[int | None, str | None]] = {}
    first: dict[str, str] = {}
    for position, (number, sides) in enumerate(files.items()):
        if fold is not None and number != fold:
            continue
        for side in ("test", "train"):
            for clip_id, where in _listed(root, sides[side], known):
                if fold is None and side == "train":
                    if clip_id not in out:
                        out[clip_id], first[clip_id] = (None, None), where
                    continue
                place = (position, None) if fold is None else (None, side)
                before = out.get(clip_id, (None, None))
                if before != (None, None) and before != place:
                    if fold is None:
                        raise ReaderError(
                            f"{where}: {clip_id!r} is also in another fold's test list, at"
                            f" {first[clip_id]}"
                        )
                    raise ReaderError(
                        f"{where}: {clip_id!r} is on both sides of fold {fold}, also at"
                        f" {first[clip_id]}"
                    )
                if before != place:
                    out[clip_id], first[clip_id] = place, where
    return out


def _listed(root: Path, paths: list[Path], known) -> Iterator[tuple[str, str]]:
    """(clip id, "file line N") per row of the list files (a header line skipped)."""
    for path in paths:
        shown = path.relative_to(root).as_posix()
        lines = read_tab_file(path, shown)
        if _header(lines) is not None:
            lines = lines[1:]
        for line, cells in lines:
            where = f"{shown} line {line}"
            clip_id = clip_id_of(root, cells[0], where)
            if clip_id not in known:
                raise ReaderError(f"{where}: {cells[0]!r} is not a clip of the dataset")
            yield clip_id, where


def _check_fold(root: Path, fold: int | None) -> None:
    if fold is None:
        return
    files = fold_files(root)
    if fold not in files:
        raise ValueError(
            f"{root}: fold {fold!r} has no evaluation_setup/fold{fold}_* files; folds present:"
            f" {sorted(files) or 'none'}"
        )
    for side in ("train", "test"):
        if not files[fold][side]:
            raise ValueError(f"{root}: fold {fold} has no {side} list in evaluation_setup")


def _header(lines: list[Line]) -> list[str] | None:
    if lines and lines[0][1][0].lower() in _HEADER_CELLS:
        return lines[0][1]
    return None


def _group_from_name(clip_id: str) -> str | None:
    stem = os.path.splitext(os.path.basename(clip_id))[0]
    for pattern in (_TAU_NAME, _TUT_NAME):
        match = pattern.match(stem)
        if match:
            return match.group(1)
    return None


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _scene_task(root: Path, meta: dict[str, tuple[str, str, str | None]]) -> Task:
    return _task(root, "scene", {scene for _, scene, _ in meta.values()}, "multiclass")


def _events_task(root: Path, clips: list[tuple[str, tuple[str, ...]]]) -> Task:
    return _task(root, "events", {label for _, events in clips for label in events}, "multilabel")


def _task(root: Path, name: str, labels: set[str], kind: str) -> Task:
    try:
        return Task(name, tuple(sorted(labels)), kind)
    except ValueError as e:
        raise ReaderError(f"{root}: {e}") from e
