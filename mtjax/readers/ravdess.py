"""RAVDESS (Ryerson Audio-Visual Database of Emotional Speech and Song), audio-only.

    root/                                  (Audio_Speech_Actors_01-24, Audio_Song_Actors_01-24,
      Actor_01/03-01-05-02-01-02-01.wav     either or both, at any depth: the search is recursive)
      ...
      Actor_24/...

Everything is in the file name `MM-VV-EE-II-SS-RR-AA.wav`, two digits each:

    MM modality         01 full audio-video, 02 video-only, 03 audio-only (01, 02 are skipped)
    VV vocal channel    01 speech, 02 song
    EE emotion          01 neutral 02 calm 03 happy 04 sad 05 angry 06 fearful 07 disgust
                        08 surprised (song has no disgust or surprised)
    II intensity        01 normal, 02 strong (neutral is never strong)
    SS statement        01 "Kids are talking by the door", 02 "Dogs are sitting by the door"
    RR repetition       01, 02
    AA actor            01-24; odd actors are male, even actors female

There is no official split; clips are grouped by actor so a split never puts one actor on both
sides.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import cast

from mtjax.readers.base import Item, ReaderError, existing_root
from mtjax.readers.folder import audio_files
from mtjax.tasks import Task

EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
TASKS = {
    "emotion": Task("emotion", EMOTIONS, "multiclass"),
    "intensity": Task("intensity", ("normal", "strong"), "binary"),
    "sex": Task("sex", ("female", "male"), "binary"),
    "statement": Task("statement", ("kids", "dogs"), "binary"),
}

_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_ACTOR_FOLDER = re.compile(r"^Actor_(\d+)$")


@dataclasses.dataclass(frozen=True)
class RAVDESS:
    """RAVDESS audio-only speech and/or song clips, labelled from their file names.

    Tasks (in the order of `tasks`):
      emotion: multiclass, neutral calm happy sad angry fearful disgust surprised (all eight
        labels even when only song clips, which lack the last two, are read).
      intensity: binary, normal / strong (positive); neutral clips are all normal.
      sex: binary, female / male (positive); odd actor numbers are male.
      statement: binary, kids ("Kids are talking by the door") / dogs (positive).

    Every item carries every chosen task; `group` is the actor ("Actor_17"); `split` and `fold`
    are None (RAVDESS has no official split). Items are sorted by path.

    Attributes:
      root: folder holding the `Actor_NN` folders, at any depth (stored absolute).
      tasks: the tasks to yield, a subset of "emotion", "intensity", "sex", "statement", in that
        order or any other; stored as their `Task` values (which are accepted back).
      speech: read the speech clips (vocal channel 01).
      song: read the song clips (vocal channel 02).
      name: the dataset's name; "ravdess" by default.

    Raises:
      ReaderError naming the file when an audio file's name is not a valid RAVDESS name, or when
      no clip of the chosen vocal channels is found.
    """

    root: Path
    _: dataclasses.KW_ONLY
    tasks: tuple[str | Task, ...] = ("emotion", "intensity", "sex", "statement")
    speech: bool = True
    song: bool = False
    name: str = ""

    def __post_init__(self):
        object.__setattr__(self, "root", existing_root(self.root, "RAVDESS"))
        object.__setattr__(self, "name", self.name or "ravdess")
        given = (self.tasks,) if isinstance(self.tasks, (str, Task)) else tuple(self.tasks)
        names = tuple(t.name if isinstance(t, Task) else t for t in given)
        unknown = [t for t in names if t not in TASKS]
        if unknown or not names or len(set(names)) != len(names):
            raise ValueError(
                f"RAVDESS tasks {names}: each must be one of {list(TASKS)}, at least one, no"
                " repeats"
            )
        if not (self.speech or self.song):
            raise ValueError("RAVDESS: speech and song are both False, nothing to read")
        # The Reader protocol's `tasks` are Task values: the chosen names become theirs.
        object.__setattr__(self, "tasks", tuple(TASKS[t] for t in names))

    def items(self) -> Iterator[Item]:
        """One item per audio-only clip of the chosen vocal channels, sorted by path."""
        channels = {"01"} if not self.song else ({"01", "02"} if self.speech else {"02"})
        prefix = len(str(self.root)) + 1
        n_found = 0
        tasks = cast(tuple[Task, ...], self.tasks)  # __post_init__ stored the Task values
        for path in audio_files(self.root):
            fields = parse_name(path)
            if fields is None:  # video modality, not audio-only
                continue
            if fields["channel"] not in channels:
                continue
            n_found += 1
            yield Item(
                path=path,
                targets={task.name: (fields[task.name],) for task in tasks},
                id=path[prefix:].replace(os.sep, "/"),
                group=f"Actor_{fields['actor']}",
            )
        if not n_found:
            wanted = " and ".join(
                w for w, on in (("speech", self.speech), ("song", self.song)) if on
            )
            raise ReaderError(
                f"{self.root}: no RAVDESS {wanted} clips (MM-VV-EE-II-SS-RR-AA.wav with"
                f" modality 03) found"
            )


def parse_name(path: str) -> dict[str, str] | None:
    """Labels of one RAVDESS file from its name.

    Args:
      path: the file's path; its stem must be `MM-VV-EE-II-SS-RR-AA`.

    Returns:
      {"channel": "01"|"02", "actor": "NN", "emotion", "intensity", "sex", "statement": label}
      for an audio-only file (modality 03); None for the video modalities 01 and 02.

    Raises:
      ReaderError naming the file and the field when the name is malformed.
    """
    stem = Path(path).stem
    match = _NAME.match(stem)
    if match is None:
        raise ReaderError(
            f"{path}: not a RAVDESS file name; expected MM-VV-EE-II-SS-RR-AA.wav, seven"
            f" two-digit fields, e.g. 03-01-05-02-01-02-17.wav"
        )
    modality, channel, emotion, intensity, statement, repetition, actor = match.groups()

    def check(field: str, value: str, accepted: tuple[str, ...]) -> None:
        if value not in accepted:
            raise ReaderError(
                f"{path}: {field} {value!r} is not one of {list(accepted)} in the RAVDESS name"
                f" MM-VV-EE-II-SS-RR-AA"
            )

    check("modality (MM)", modality, ("01", "02", "03"))
    check("vocal channel (VV)", channel, ("01", "02"))
    check("emotion (EE)", emotion, tuple(f"{i:02d}" for i in range(1, 9)))
    check("intensity (II)", intensity, ("01", "02"))
    check("statement (SS)", statement, ("01", "02"))
    check("repetition (RR)", repetition, ("01", "02"))
    check("actor (AA)", actor, tuple(f"{i:02d}" for i in range(1, 25)))
    if emotion == "01" and intensity == "02":
        raise ReaderError(f"{path}: emotion 01 (neutral) has no strong intensity (II 02)")
    folder = _ACTOR_FOLDER.match(Path(path).parent.name)
    if folder is not None and int(folder.group(1)) != int(actor):
        raise ReaderError(f"{path}: actor {actor} in the name, but the folder is Actor_{folder[1]}")
    if modality != "03":
        return None
    return {
        "channel": channel,
        "actor": actor,
        "emotion": EMOTIONS[int(emotion) - 1],
        "intensity": ("normal", "strong")[int(intensity) - 1],
        "sex": "male" if int(actor) % 2 else "female",
        "statement": ("kids", "dogs")[int(statement) - 1],
    }
