"""Dataset layouts: each reader lists a dataset's clips, their labels and predefined splits."""

from mtjax.readers.base import Item, Reader, ReaderError
from mtjax.readers.csv import CsvReader
from mtjax.readers.folder import FolderReader

__all__ = ["CsvReader", "FolderReader", "Item", "Reader", "ReaderError"]
