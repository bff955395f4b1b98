"""AudioSet: segment CSVs, a label map and a local folder of clips downloaded by the user.

There is no official audio archive (see `../shared/LAYOUTS.md`, section 11): the reader takes
the official segment CSVs, the ontology or the class index, and whatever clips are on disk.
Segments whose clip is not on disk (deleted videos, failed downloads) are listed, not fatal.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NamedTuple, cast

from mtjax.readers import _tables
from mtjax.readers.base import Item, ReaderError, existing_root
from mtjax.readers.folder import audio_files
from mtjax.tasks import Task

log = logging.getLogger("mtjax")

ONTOLOGY = "ontology.json"
CLASS_INDEX = "class_labels_indices.csv"
N_MISSING_SHOWN = 5  # missing ids named in the warning


class Segment(NamedTuple):
    """One row of a segment CSV."""

    ytid: str  # YouTube video id (may start with "-")
    start: str  # start_seconds as written, e.g. "30.000"
    end: str  # end_seconds as written
    labels: tuple[str, ...]  # positive label ids (MIDs), in row order
    split: str | None  # "train", "validation", "test"; None for a single CSV
    where: str  # "balanced_train_segments.csv line 4"


@dataclasses.dataclass(frozen=True)
class AudioSetCsv:
    """AudioSet segments whose clips were downloaded into a local folder.

    Layout::

        root/balanced_train_segments.csv   (and unbalanced_train_segments.csv, eval_segments.csv)
            # Segments csv created Sun Mar  5 10:54:31 2017
            # num_ytids=22160, num_segs=22160, num_unique_labels=527, num_positive_labels=52882
            # YTID, start_seconds, end_seconds, positive_labels
            --PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"
        root/class_labels_indices.csv      index,mid,display_name   (or root/ontology.json)
        root/audio/<clip files>

    Lines starting with "#" and blank lines are skipped; a plain `YTID,start_seconds,...`
    header line is tolerated, as are fields without the space after the comma.

    A segment's clip is the audio file under `audio_dir` (at any depth, any audio suffix)
    whose name without suffix is one of
      `{YTID}`, `Y{YTID}` (PANNs), `{YTID}_{start}`, `{YTID}_{start}_{end}`
    (also `Y`-prefixed), with start/end written as in the CSV ("30.000"), as whole seconds
    ("30") when whole, with 1 or 2 decimals ("30.0", "30.00"), or as integer milliseconds
    ("30000"). A segment with no such file is missing: `missing()` lists them, and `items()`
    logs one warning with their count and the first few ids. A file claimed by two segments,
    or two files for one segment, is an error.

    Tasks: "labels", multilabel. Its labels are the display names of the label ids that occur
    in the segment CSVs (all rows, downloaded or not, so the task does not change as clips
    arrive), in label map order; a name shared by two ids becomes "name (mid)". A row naming
    an id that is not in the label map is an error naming the CSV line. `Item.id` is the
    clip's path relative to the root; `Item.group` is the YTID (segments of one video stay on
    one side of a split).

    Attributes:
      root: the dataset folder (stored absolute); FileNotFoundError when it is missing.
      segments_csv: one segment CSV (items get no split), or a mapping split -> CSV, e.g.
        `{"train": "balanced_train_segments.csv", "test": "eval_segments.csv"}`; split names
        as `CsvReader` accepts them (train, val/validation, test/eval). Stored as a tuple of
        (split, CSV) pairs. Paths are relative to `root` or absolute.
      ontology: `ontology.json` (a JSON array of nodes with `id` and `name`) as the label map.
      label_map: `class_labels_indices.csv` (`index,mid,display_name`) as the label map,
        ordered by `index`. Give at most one of the two; with neither, the root's
        class_labels_indices.csv, else its ontology.json, is used.
      audio_dir: folder of the clips, relative to `root` or absolute.
      name: the dataset's name; "AudioSet" by default.
    """

    root: Path
    segments_csv: str | os.PathLike | Mapping[str, str | os.PathLike]
    _: dataclasses.KW_ONLY
    ontology: str | os.PathLike | None = None
    label_map: str | os.PathLike | None = None
    audio_dir: str | os.PathLike = "audio"
    name: str = ""

    def __post_init__(self):
        root = existing_root(self.root, "AudioSet")
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "name", self.name or "AudioSet")
        if isinstance(self.segments_csv, Mapping):
            pairs = []
            for split, file in self.segments_csv.items():
                if str(split).lower() not in _tables.SPLIT_NAMES:
                    raise ValueError(
                        f"segments_csv: split {split!r} is not one of {sorted(_tables.SPLIT_NAMES)}"
                    )
                pairs.append((_tables.SPLIT_NAMES[str(split).lower()], str(file)))
            if not pairs:
                raise ValueError("segments_csv: an empty mapping")
            object.__setattr__(self, "segments_csv", tuple(pairs))
        elif isinstance(self.segments_csv, (str, os.PathLike)):
            object.__setattr__(self, "segments_csv", str(self.segments_csv))
        else:
            object.__setattr__(
                self, "segments_csv", tuple((s, str(f)) for s, f in self.segments_csv)
            )
        for _, file in self._csvs():
            if not (root / file).is_file():
                raise FileNotFoundError(f"AudioSet: segment CSV {file!r} not found in {root}")
        if self.ontology is not None and self.label_map is not None:
            raise ValueError("AudioSet: give ontology= or label_map=, not both")
        map_file = self.ontology if self.ontology is not None else self.label_map
        if map_file is None:
            if (root / CLASS_INDEX).is_file():
                map_file = CLASS_INDEX
                object.__setattr__(self, "label_map", map_file)
            elif (root / ONTOLOGY).is_file():
                map_file = ONTOLOGY
                object.__setattr__(self, "ontology", map_file)
            else:
                raise FileNotFoundError(
                    f"AudioSet: no label map: neither {CLASS_INDEX!r} nor {ONTOLOGY!r} in {root}"
                )
        if not (root / map_file).is_file():
            raise FileNotFoundError(f"AudioSet: label map {str(map_file)!r} not found in {root}")
        if not (root / self.audio_dir).is_dir():
            raise FileNotFoundError(
                f"AudioSet: audio folder {str(self.audio_dir)!r} not found in {root}"
            )

    @property
    def tasks(self) -> tuple[Task, ...]:
        """The one task "labels" over the label ids that occur in the segment CSVs."""
        return (self._task(self.segments())[0],)

    def segments(self) -> list[Segment]:
        """Every row of the segment CSVs, CSV by CSV, in row order."""
        out = []
        for split, file in self._csvs():
            out += read_segments(self.root / file, file, split)
        return out

    def missing(self) -> tuple[Segment, ...]:
        """Segments whose clip is not in `audio_dir`, in CSV order."""
        return tuple(s for s, path in self._clips(self.segments()) if path is None)

    def items(self) -> Iterator[Item]:
        """One item per segment whose clip is on disk, in CSV order; missing ones logged."""
        segments = self.segments()
        task, names = self._task(segments)
        clips = self._clips(segments)
        missing = [s for s, path in clips if path is None]
        if missing:
            shown = ", ".join(s.ytid for s in missing[:N_MISSING_SHOWN])
            log.warning(
                "%s: %d of %d segments have no clip in %s (e.g. %s); see missing()",
                self.name,
                len(missing),
                len(segments),
                self.root / self.audio_dir,
                shown,
            )
        for segment, path in clips:
            if path is None:
                continue
            yield Item(
                path=path,
                targets={task.name: tuple(dict.fromkeys(names[m] for m in segment.labels))},
                id=Path(path).relative_to(self.root).as_posix(),
                group=segment.ytid,
                split=segment.split,
            )

    def _csvs(self) -> tuple[tuple[str | None, str], ...]:
        """(split or None, CSV path) of each segment CSV."""
        if isinstance(self.segments_csv, str):
            return ((None, self.segments_csv),)
        # __post_init__ stored anything but one CSV as (split, CSV) pairs
        return cast("tuple[tuple[str | None, str], ...]", self.segments_csv)

    def _label_map(self) -> dict[str, str]:
        """Each label's mid -> its display name, in label map order."""
        if self.ontology is not None:
            return read_ontology(self.root / self.ontology, str(self.ontology))
        # __post_init__ made sure that one of the two is set
        label_map = cast("str | os.PathLike", self.label_map)
        return read_class_index(self.root / label_map, str(label_map))

    def _task(self, segments: list[Segment]) -> tuple[Task, dict[str, str]]:
        """The task and mid -> task label of every mid in the label map."""
        label_map = self._label_map()
        used = set()
        for segment in segments:
            for mid in segment.labels:
                if mid not in label_map:
                    raise ReaderError(
                        f"{segment.where}: label id {mid!r} is not in the label map"
                        f" {self.ontology or self.label_map} ({len(label_map)} ids)"
                    )
                used.add(mid)
        counts: dict[str, int] = {}
        for display in label_map.values():
            counts[display] = counts.get(display, 0) + 1
        names = {m: d if counts[d] == 1 else f"{d} ({m})" for m, d in label_map.items()}
        labels = tuple(names[m] for m in label_map if m in used)
        if not labels:
            raise ReaderError(f"AudioSet {self.root}: the segment CSVs name no labels")
        return Task("labels", labels, "multilabel"), names

    def _clips(self, segments: list[Segment]) -> list[tuple[Segment, str | None]]:
        """Each segment with its clip's path, or None when no clip is on disk."""
        folder = (self.root / self.audio_dir).resolve()
        by_stem: dict[str, list[str]] = {}
        for path in audio_files(folder):
            by_stem.setdefault(os.path.splitext(os.path.basename(path))[0], []).append(path)
        out: list[tuple[Segment, str | None]] = []
        owner: dict[str, Segment] = {}
        for segment in segments:
            found = [p for stem in clip_stems(segment) for p in by_stem.get(stem, ())]
            found = list(dict.fromkeys(found))
            if len(found) > 1:
                raise ReaderError(f"{segment.where}: several clips for {segment.ytid!r}: {found}")
            clip = found[0] if found else None
            if clip is not None:
                if clip in owner:
                    raise ReaderError(
                        f"{segment.where}: clip {clip} also matches {owner[clip].where}; name"
                        " clips {YTID}_{start}.wav when a video has several segments"
                    )
                owner[clip] = segment
            out.append((segment, clip))
        return out


def clip_stems(segment: Segment) -> list[str]:
    """File names without suffix that the clip of `segment` may have, most specific first."""
    starts, ends = _seconds_forms(segment.start), _seconds_forms(segment.end)
    stems = [f"{segment.ytid}_{s}_{e}" for s in starts for e in ends]
    stems += [f"{segment.ytid}_{s}" for s in starts]
    stems.append(segment.ytid)
    return stems + ["Y" + stem for stem in stems]


def _seconds_forms(text: str) -> list[str]:
    """Ways a time may be written: "30.000" -> ["30.000", "30", "30.0", "30.00", "30000"]."""
    value = float(text)
    forms = [text]
    if value.is_integer():
        forms.append(str(int(value)))
    forms += [f"{value:.1f}", f"{value:.2f}", f"{value:.3f}", str(round(value * 1000))]
    return list(dict.fromkeys(forms))


def read_segments(path: Path, where: str, split: str | None) -> list[Segment]:
    """Rows of an AudioSet segment CSV (`YTID, start_seconds, end_seconds, "mid,mid"`).

    Args:
      path: the CSV file.
      where: its name for error messages.
      split: the split of every row.

    Returns:
      one Segment per data row; "#" lines, blank lines and a `YTID,...` header skipped.
    """
    out = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ReaderError(f"{where}: not UTF-8 text ({e})") from e
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        at = f"{where} line {number}"
        try:
            cells = [c.strip() for c in next(csv.reader([line], skipinitialspace=True))]
        except csv.Error as e:
            raise ReaderError(f"{at}: {e}") from e
        if cells[0].upper() == "YTID":
            continue
        if len(cells) != 4:
            raise ReaderError(
                f"{at}: {len(cells)} cells, expected YTID, start_seconds, end_seconds,"
                ' "positive_labels"'
            )
        ytid, start, end, labels = cells
        for cell in (start, end):
            try:
                float(cell)
            except ValueError:
                raise ReaderError(f"{at}: time {cell!r} is not a number of seconds") from None
        if not ytid:
            raise ReaderError(f"{at}: empty YTID")
        mids = tuple(dict.fromkeys(m.strip() for m in labels.split(",") if m.strip()))
        out.append(Segment(ytid, start, end, mids, split, at))
    return out


def read_ontology(path: Path, where: str) -> dict[str, str]:
    """Map of id -> name of each node of an AudioSet `ontology.json`, in file order."""
    try:
        nodes = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise ReaderError(f"{where} line {e.lineno}: not JSON ({e.msg})") from e
    except UnicodeDecodeError as e:
        raise ReaderError(f"{where}: not UTF-8 text ({e})") from e
    if not isinstance(nodes, list):
        raise ReaderError(f"{where}: expected a JSON array of nodes, got {type(nodes).__name__}")
    out: dict[str, str] = {}
    for i, node in enumerate(nodes):
        if not isinstance(node, dict) or "id" not in node or "name" not in node:
            raise ReaderError(f"{where}: node {i} has no 'id' and 'name'")
        if node["id"] in out:
            raise ReaderError(f"{where}: node {i}: id {node['id']!r} repeats")
        out[str(node["id"])] = str(node["name"])
    return out


def read_class_index(path: Path, where: str) -> dict[str, str]:
    """Map of mid -> display_name of an AudioSet `class_labels_indices.csv`, by index."""
    rows = _tables.read_table(path, where, ",", ["index", "mid", "display_name"])
    entries = []
    seen: dict[str, int] = {}
    for line, cells in rows:
        if not cells["index"].isdigit():
            raise ReaderError(f"{where} line {line}: index {cells['index']!r} is not an integer")
        if cells["mid"] in seen:
            raise ReaderError(
                f"{where} line {line}: mid {cells['mid']!r} repeats line {seen[cells['mid']]}"
            )
        seen[cells["mid"]] = line
        entries.append((int(cells["index"]), cells["mid"], cells["display_name"]))
    return {mid: name for _, mid, name in sorted(entries)}
