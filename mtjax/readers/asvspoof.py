"""ASVspoof 2015: spoofing countermeasures (genuine speech vs synthetic or converted speech).

    root/                                  (DS_10283_853 as Edinburgh DataShare unpacks)
      wav/T1/T1_1000001.wav                wav/<speaker>/<utterance>.wav
      CM_protocol/cm_train.trn             T1 T1_1000001 human human
      CM_protocol/cm_develop.ndx           D5 D5_1000123 S3 spoof
      CM_protocol/cm_evaluation.ndx        E2 E2_1000456 S8 spoof
      Joint_ASV_CM_protocol/...            (not read)

A protocol row is `speaker utterance attack key`, space-separated, no header: attack is `human`
or `S1` .. `S10`, key `human` (genuine speech; also accepted as `genuine`) or `spoof`. Some
copies name the protocol files with a `.txt` suffix (`cm_train.trn.txt`); both are read.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

from mtjax.readers.base import Item, ReaderError, existing_root, inside_root
from mtjax.tasks import Task

PROTOCOLS = (
    ("cm_train.trn", "train"),
    ("cm_develop.ndx", "validation"),
    ("cm_evaluation.ndx", "test"),
)
ATTACKS = ("human", *(f"S{i}" for i in range(1, 11)))
KEYS = {"human": "genuine", "genuine": "genuine", "spoof": "spoof"}
SPOOF = Task("spoof", ("genuine", "spoof"), "binary")

_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclasses.dataclass(frozen=True)
class ASVspoof2015:
    """ASVspoof 2015 countermeasure protocol: every utterance of the three CM protocol files.

    Tasks:
      spoof: binary, genuine / spoof (positive), from the key column.
      attack: multiclass, "human" and the attacks S1 .. S10 that the protocols use, in that
        order (S6 .. S10 occur only in the evaluation protocol).

    Items carry both tasks; `split` is "train" (cm_train.trn), "validation" (cm_develop.ndx) or
    "test" (cm_evaluation.ndx); `group` is the speaker; `id` the path relative to the root.
    Items come protocol by protocol, in row order.

    Attributes:
      root: the folder holding `CM_protocol/` and `wav/` (stored absolute).
      name: the dataset's name; "asvspoof2015" by default.

    Raises:
      ReaderError naming the protocol file and line of a row that does not have four cells, has
      an unknown attack or key, a key that contradicts the attack, a repeated utterance, or
      whose audio file is missing; FileNotFoundError naming a missing protocol file.
    """

    root: Path
    _: dataclasses.KW_ONLY
    name: str = ""

    def __post_init__(self):
        root = existing_root(self.root, "ASVspoof 2015")
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "name", self.name or "asvspoof2015")
        for protocol, _ in PROTOCOLS:
            self._protocol_path(protocol)

    @property
    def tasks(self) -> tuple[Task, ...]:
        """The tasks: spoof (binary) and attack (multiclass, the attacks present)."""
        present = {row[4] for row in self._rows()}
        attacks = tuple(a for a in ATTACKS if a in present)
        if len(attacks) < 2:
            raise ReaderError(f"{self.root}: the CM protocols use only the attack {attacks}")
        return (SPOOF, Task("attack", attacks, "multiclass"))

    def items(self) -> Iterator[Item]:
        """One item per protocol row: train, then validation, then test rows."""
        for where, split, speaker, utterance, attack, key in self._rows():
            path = inside_root(self.root, f"wav/{speaker}/{utterance}.wav", where)
            if not path.is_file():
                raise ReaderError(f"{where}: audio file not found (looked for {path})")
            yield Item(
                path=str(path),
                targets={"spoof": (key,), "attack": (attack,)},
                id=f"wav/{speaker}/{utterance}.wav",
                group=speaker,
                split=split,
            )

    def _protocol_path(self, protocol: str) -> Path:
        folder = self.root / "CM_protocol"
        for name in (protocol, protocol + ".txt"):
            if (folder / name).is_file():
                return folder / name
        raise FileNotFoundError(
            f"{self.root}: CM_protocol/{protocol} (or {protocol}.txt) not found; the three CM"
            f" protocols {[p for p, _ in PROTOCOLS]} give the official split"
        )

    def _rows(self) -> list[tuple[str, str, str, str, str, str]]:
        """(where, split, speaker, utterance, attack, key) per protocol row, key genuine/spoof."""
        rows: list[tuple[str, str, str, str, str, str]] = []
        seen: dict[str, str] = {}  # utterance -> where it was first
        for protocol, split in PROTOCOLS:
            path = self._protocol_path(protocol)
            shown = path.relative_to(self.root).as_posix()
            try:
                text = path.read_text(encoding="utf-8-sig")
            except UnicodeDecodeError as e:
                raise ReaderError(f"{shown}: not UTF-8 text ({e})") from e
            for number, line in enumerate(text.splitlines(), start=1):
                cells = line.split()
                if not cells:
                    continue
                where = f"{shown} line {number}"
                rows.append((where, split, *_parse_row(cells, where)))
                utterance = rows[-1][3]
                if utterance in seen:
                    raise ReaderError(
                        f"{where}: utterance {utterance!r} again, first at {seen[utterance]}"
                    )
                seen[utterance] = where
        return rows


def _parse_row(cells: list[str], where: str) -> tuple[str, str, str, str]:
    """(speaker, utterance, attack, key as genuine/spoof) of one protocol row."""
    if len(cells) != 4:
        raise ReaderError(
            f"{where}: {len(cells)} cells; expected `speaker utterance attack key`,"
            f" e.g. `T1 T1_1000001 human human`"
        )
    speaker, utterance, attack, key = cells
    for what, value in (("speaker", speaker), ("utterance", utterance)):
        if not _SAFE.match(value) or value in (".", ".."):
            raise ReaderError(f"{where}: {what} {value!r} is not a plain file name")
    if attack not in ATTACKS:
        raise ReaderError(f"{where}: attack {attack!r} is not one of {list(ATTACKS)}")
    if key not in KEYS:
        raise ReaderError(f"{where}: key {key!r} is not one of {sorted(KEYS)}")
    if (attack == "human") != (KEYS[key] == "genuine"):
        raise ReaderError(
            f"{where}: attack {attack!r} with key {key!r}; genuine speech has attack 'human'"
            f" and key human/genuine, spoofed speech an attack S1..S10 and key 'spoof'"
        )
    return speaker, utterance, attack, KEYS[key]
