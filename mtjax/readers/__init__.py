"""Dataset layouts: each reader lists a dataset's clips, their labels and predefined splits.

Generic layouts: `FolderReader` (a folder per class), `CsvReader` (a manifest). Public
datasets, read exactly as their archives unpack, with their official tasks and splits or
folds: `ESC50`, `UrbanSound8K`, `SpeechCommands`, `FSDKaggle2018`, `FSD50K`, `RAVDESS`,
`DCASEScenes`, `DCASEEvents`, `ASVspoof2015`, `GTZAN`, `AudioSetCsv`.
"""

from mtjax.readers.asvspoof import ASVspoof2015
from mtjax.readers.audioset import AudioSetCsv
from mtjax.readers.base import Item, Reader, ReaderError
from mtjax.readers.csv import CsvReader
from mtjax.readers.dcase import DCASEEvents, DCASEScenes
from mtjax.readers.esc50 import ESC50
from mtjax.readers.folder import FolderReader
from mtjax.readers.fsd import FSD50K, FSDKaggle2018
from mtjax.readers.gtzan import GTZAN
from mtjax.readers.ravdess import RAVDESS
from mtjax.readers.speech_commands import SpeechCommands
from mtjax.readers.urbansound8k import UrbanSound8K

__all__ = [
    "ASVspoof2015",
    "AudioSetCsv",
    "CsvReader",
    "DCASEEvents",
    "DCASEScenes",
    "ESC50",
    "FSD50K",
    "FSDKaggle2018",
    "FolderReader",
    "GTZAN",
    "Item",
    "RAVDESS",
    "Reader",
    "ReaderError",
    "SpeechCommands",
    "UrbanSound8K",
]
