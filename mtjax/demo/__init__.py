"""The demo: synthesised sounds written in real public layouts, and the main job.

sounds (numpy synthesis) -> layouts (a Speech-Commands tree, an ESC-50 manifest, a
multilabel CSV, and their readers) -> job (`mtjax demo`).
"""

from mtjax.demo.job import run_demo
from mtjax.demo.layouts import DATASETS, demo_readers, make_demo, speaker_split

__all__ = ["DATASETS", "demo_readers", "make_demo", "run_demo", "speaker_split"]
