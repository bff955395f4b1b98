"""Speech Commands v0.01 / v0.02: one-second spoken words, with a predefined split.

`speech_commands_v0.0X.tar.gz` has no wrapping folder; it unpacks as

    <root>/
      yes/1a2b3c4d_nohash_0.wav ...    one folder per word (30 in v0.01, 35 in v0.02)
      _background_noise_/*.wav         six long noise recordings: not items
      validation_list.txt              `word/file.wav` per line
      testing_list.txt                 `word/file.wav` per line
      README.md, LICENSE

torchaudio extracts the same tree into `SpeechCommands/speech_commands_v0.0X/`; that nesting
(or just `speech_commands_v0.0X/`) below the given root is found too.

Split: clips named in `validation_list.txt` get split "validation", those in
`testing_list.txt` "test", every other clip "train" (the lists were made by hashing the
speaker, so a speaker stays in one partition). Group: the speaker, the file name's part
before `_nohash_`.

Tasks:
  - "word" (default): multiclass over the word folders, sorted.
  - "keyword" (`keyword_spotting=True`): the keyword-spotting labels in the tfds/HEAR order,
    down go left no off on right stop up yes, then `_unknown_` for every other word: 11
    classes. The 12th canonical class, `_silence_`, is not produced: its clips are 1 s
    windows cut from `_background_noise_`, and an `Item` names a whole file, not a window.
    (The separate `speech_commands_test_set_v0.0X` archive, tfds's test set, is folder per
    class and can be read with `FolderReader`.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

from mtjax.readers.base import Item, ReaderError, existing_root
from mtjax.readers.folder import FolderReader
from mtjax.tasks import Task

KEYWORDS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes")
UNKNOWN = "_unknown_"
NOISE = "_background_noise_"
VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"
SPEAKER = r"^(.+?)_nohash_"
VERSIONS = (1, 2)


@dataclasses.dataclass(frozen=True)
class SpeechCommands:
    """The Speech Commands layout (v0.01 or v0.02).

    Attributes:
      root: the unpacked archive (the folder holding `testing_list.txt`), or a folder holding
        `speech_commands_v0.0X/` or `SpeechCommands/speech_commands_v0.0X/`; stored as the
        dataset folder itself (absolute). FileNotFoundError when it does not exist.
      version: 1 or 2: which `speech_commands_v0.0X` folder to take below `root`; None takes
        `root` itself when it holds the lists, else the one version folder found (an error
        when there are both).
      words: word folders to read (e.g. ("yes", "no")); None: every word folder.
      keyword_spotting: the "keyword" task (10 keywords + `_unknown_`, no `_silence_`)
        instead of the "word" task.
      name: the dataset's name; "SpeechCommands" by default.

    Items come word folder by word folder (sorted), sorted by path inside one; `id` is
    `word/file.wav` as in the list files.
    """

    root: Path
    _: dataclasses.KW_ONLY
    version: int | None = None
    words: Sequence[str] | None = None
    keyword_spotting: bool = False
    name: str = ""

    def __post_init__(self):
        if self.version is not None and self.version not in VERSIONS:
            raise ValueError(f"version must be one of {VERSIONS} or None, got {self.version!r}")
        root = _dataset_folder(existing_root(self.root, "Speech Commands"), self.version)
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "name", self.name or "SpeechCommands")
        if self.words is not None:
            words = (self.words,) if isinstance(self.words, str) else tuple(self.words)
            object.__setattr__(self, "words", words)

    @property
    def tasks(self) -> tuple[Task, ...]:
        """("word",) over the chosen word folders, or ("keyword",) with `keyword_spotting`."""
        if self.keyword_spotting:
            return (Task("keyword", (*KEYWORDS, UNKNOWN)),)
        return self._folders().tasks

    def items(self) -> Iterator[Item]:
        """Every clip under a chosen word folder, with its predefined split and speaker."""
        task = self.tasks[0]
        for item in self._folders().items():
            if self.keyword_spotting:
                (word,) = item.targets["word"]
                label = word if word in KEYWORDS else UNKNOWN
                item = dataclasses.replace(item, targets={task.name: (label,)})
            yield item

    def _folders(self) -> FolderReader:
        on_disk = sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and p.name != NOISE
        )
        chosen = on_disk if self.words is None else list(self.words)
        missing = [w for w in chosen if w not in on_disk]
        if missing:
            raise ReaderError(
                f"{self.root}: no word folder {missing[0]!r}; word folders present: {on_disk}"
            )
        return FolderReader(
            self.root,
            "word",
            name=self.name,
            exclude=(NOISE, *(w for w in on_disk if w not in chosen)),
            group=SPEAKER,
            validation_list=VALIDATION_LIST,
            testing_list=TESTING_LIST,
        )


def _dataset_folder(root: Path, version: int | None) -> Path:
    """The folder holding the word folders and list files (see `SpeechCommands.root`)."""
    if (root / TESTING_LIST).is_file():
        return root
    found = []
    for v in (version,) if version else VERSIONS:
        for parent in (root, root / "SpeechCommands"):
            folder = parent / f"speech_commands_v0.0{v}"
            if (folder / TESTING_LIST).is_file():
                found.append(folder)
    if len(found) > 1:
        raise ReaderError(
            f"{root}: holds both {found[0]} and {found[1]}; pass version=1 or version=2"
        )
    if not found:
        wanted = f"speech_commands_v0.0{version}" if version else "speech_commands_v0.0X"
        raise ReaderError(
            f"{TESTING_LIST} not found in {root}, nor in {wanted}/ or SpeechCommands/{wanted}/"
            " below it (root must be the unpacked Speech Commands archive)"
        )
    return found[0].resolve()
