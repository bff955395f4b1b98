# What `mtjax/__init__.py` exports lazily, spelled out for type checkers and editors.
from mtjax import audio as audio
from mtjax import cli as cli
from mtjax import data as data
from mtjax import demo as demo
from mtjax import experiments as experiments
from mtjax import inference as inference
from mtjax import readers as readers
from mtjax import runs as runs
from mtjax import tables as tables
from mtjax import tasks as tasks
from mtjax import train as train
from mtjax.audio import features as features
from mtjax.audio.cache import read as read
from mtjax.data.arrays import DiskArray as DiskArray
from mtjax.data.prepare import frame as frame
from mtjax.data.prepare import limit as limit
from mtjax.data.prepare import splits as splits
from mtjax.data.prepare import standardize as standardize
from mtjax.data.prepare import windows as windows
from mtjax.data.values import MultiTaskData as MultiTaskData
from mtjax.data.values import Split as Split
from mtjax.data.values import TaskDataset as TaskDataset
from mtjax.data.values import concat as concat
from mtjax.inference.artifact import export as export
from mtjax.inference.hear import hear_module as hear_module
from mtjax.inference.predictor import load as load
from mtjax.runs.folder import Run as Run
from mtjax.tasks import Task as Task
from mtjax.train import augment as augment
from mtjax.train import combiners as combiners
from mtjax.train import losses as losses
from mtjax.train import metrics as metrics
from mtjax.train import models as models
from mtjax.train import schedules as batching
from mtjax.train import stopping as early_stopping
from mtjax.train.augment import Augment as Augment
from mtjax.train.evaluation import evaluate as evaluate
from mtjax.train.evaluation import predict as predict
from mtjax.train.loop import fit as fit
from mtjax.train.step import Trained as Trained

__version__: str

__all__ = [
    "Augment",
    "DiskArray",
    "MultiTaskData",
    "Run",
    "Split",
    "Task",
    "TaskDataset",
    "Trained",
    "audio",
    "augment",
    "batching",
    "cli",
    "combiners",
    "concat",
    "data",
    "demo",
    "early_stopping",
    "evaluate",
    "experiments",
    "export",
    "features",
    "fit",
    "frame",
    "hear_module",
    "inference",
    "limit",
    "load",
    "losses",
    "metrics",
    "models",
    "predict",
    "read",
    "readers",
    "runs",
    "splits",
    "standardize",
    "tables",
    "tasks",
    "train",
    "windows",
]
