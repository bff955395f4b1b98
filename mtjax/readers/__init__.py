"""Dataset layouts: each reader lists a dataset's clips, their labels and predefined splits.

Generic layouts: `FolderReader` (a folder per class), `CsvReader` (a manifest). Public
datasets, read exactly as their archives unpack: `ESC50`, `UrbanSound8K`,
`SpeechCommands`, `GTZAN`, `FSDKaggle2018`, `FSD50K`, `AudioSetCsv` (and more as they land).
"""

from mtjax.readers.audioset import AudioSetCsv
from mtjax.readers.base import Item, Reader, ReaderError
from mtjax.readers.csv import CsvReader
from mtjax.readers.esc50 import ESC50
from mtjax.readers.folder import FolderReader
from mtjax.readers.fsd import FSD50K, FSDKaggle2018
from mtjax.readers.gtzan import GTZAN
from mtjax.readers.speech_commands import SpeechCommands
from mtjax.readers.urbansound8k import UrbanSound8K

__all__ = [
    "AudioSetCsv",
    "CsvReader",
    "ESC50",
    "FSD50K",
    "FSDKaggle2018",
    "FolderReader",
    "GTZAN",
    "Item",
    "Reader",
    "ReaderError",
    "SpeechCommands",
    "UrbanSound8K",
]
