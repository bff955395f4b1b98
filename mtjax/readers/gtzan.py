"""GTZAN genre collection: 1000 30-second clips, 10 genres, folder per genre.

`genres.tar.gz` unpacks as

    genres/
      blues/blues.00000.wav ... blues.00099.wav     (some copies: .au)
      classical/ country/ disco/ hiphop/ jazz/ metal/ pop/ reggae/ rock/

The Kaggle copy has the same genre folders as `Data/genres_original/`. Task "genre":
multiclass, the 10 genres above in that (sorted) order. No official split and no groups
(`split`, `fold` and `group` are None).

The Kaggle copy's `jazz/jazz.00054.wav` cannot be decoded. The reader still lists it, and logs
a warning when it is present: `mtjax.read(..., on_error="skip")` leaves it out (with
`on_error="raise"` the read stops there, naming the file).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

from mtjax.readers.base import Item, existing_root
from mtjax.readers.folder import FolderReader
from mtjax.tasks import Task

log = logging.getLogger(__name__)

GENRES = (
    "blues",
    "classical",
    "country",
    "disco",
    "hiphop",
    "jazz",
    "metal",
    "pop",
    "reggae",
    "rock",
)
CORRUPT = ("jazz/jazz.00054.wav",)
WRAPPERS = ("genres", "genres_original", "Data/genres_original")


@dataclasses.dataclass(frozen=True)
class GTZAN:
    """The GTZAN layout.

    Attributes:
      root: the genres folder itself (`genres/`, `genres_original/`), or a folder holding
        `genres/`, `genres_original/` or `Data/genres_original/`; stored as the genres folder
        (absolute). FileNotFoundError when it does not exist.
      name: the dataset's name; "GTZAN" by default.

    Items come genre by genre, sorted by path inside one; `id` is `genre/genre.000NN.wav`
    (the form of the fault-filtered split lists). A folder that is not one of the 10 genres is
    a ReaderError.
    """

    root: Path
    _: dataclasses.KW_ONLY
    name: str = ""

    def __post_init__(self):
        root = existing_root(self.root, "GTZAN")
        for wrapper in WRAPPERS:
            if (root / wrapper).is_dir():
                root = (root / wrapper).resolve()
                break
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "name", self.name or "GTZAN")

    @property
    def tasks(self) -> tuple[Task, ...]:
        """("genre",): the 10 genres."""
        return (Task("genre", GENRES),)

    def items(self) -> Iterator[Item]:
        """Every audio file (.wav or .au) under a genre folder; known corrupt files logged."""
        folders = FolderReader(self.root, self.tasks[0], name=self.name, exclude=())
        for item in folders.items():
            if item.id in CORRUPT:
                log.warning(
                    "%s: %s is known to be undecodable in some copies of GTZAN; read it with"
                    " on_error='skip' to leave it out if it fails",
                    self.name,
                    item.path,
                )
            yield item
