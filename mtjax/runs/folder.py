"""Runs on disk: one folder per run, and the comparison of runs.

`Run(root, name)` owns `root/name/`:

  config.json                         what rebuilds the run (`write_config`), and the
                                      epoch its stopping rule chose (`write_chosen_epoch`)
  history.json                        the trainer's records, one per epoch (`write_history`)
  events/                             TensorBoard event files (`open_events`, `log_epoch`)
  reports/epoch_003/test/{task}.json  an `evaluate` report per epoch, split and task
  plots/*.png                         learning curves, scores, weights, confusion matrices
  checkpoints/                        Orbax checkpoints (written by the trainer)
  .lock                               held by the process writing the run (`lock`)

Everything is JSON or PNG; nothing is ever pickled (a NaN is written as Python's json writes
it, `NaN`, and read back as a float). Files are written to a temporary file in
their folder and moved into place with `os.replace`, so a reader sees the old file or the new
one, never half of one. Folders are made by the functions that write into them; one that
cannot be made or written raises an OSError that names it.

History records are `fit`'s, flat {"split/task/metric": number} dicts
(`mtjax.train.history`); `read_history` turns the nested records of mtjax 0.1 run folders
into that form. `check_resumable` refuses a folder written with other settings, and `lock`
one that another process is writing.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import operator
import os
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from mtjax import files
from mtjax.files import file_part
from mtjax.tasks import Task
from mtjax.train import history as records

CONFIG = "config.json"
HISTORY = "history.json"
LOCK = ".lock"
_EPOCH_FOLDER = re.compile(r"epoch_(\d+)")


@dataclasses.dataclass(frozen=True)
class Run:
    """The folder `root/name` of one run; a value, nothing is made on disk until written.

    Attributes:
      root: the folder holding runs.
      name: the run's folder under `root` (relative, may have several parts, no "..").
    """

    root: Path
    name: str

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))
        name = Path(self.name)
        if not str(self.name) or name.is_absolute() or ".." in name.parts or name == Path("."):
            raise ValueError(
                f"run name {self.name!r} must be a relative folder under {self.root},"
                " not empty, '.', absolute or with '..'"
            )
        object.__setattr__(self, "name", str(self.name))

    @classmethod
    def at(cls, path: str | os.PathLike) -> Run:
        """The run whose folder is `path`."""
        path = Path(path)
        if path.name in ("", ".", ".."):
            path = Path(os.path.abspath(path))
        return cls(path.parent, path.name)

    @property
    def path(self) -> Path:
        """`root/name`, the run's folder."""
        return self.root / self.name

    @property
    def events(self) -> Path:
        """TensorBoard event files."""
        return self.path / "events"

    @property
    def reports(self) -> Path:
        """JSON reports, per epoch, split and task."""
        return self.path / "reports"

    @property
    def plots(self) -> Path:
        """PNG figures."""
        return self.path / "plots"

    @property
    def checkpoints(self) -> Path:
        """Orbax checkpoints, one per epoch."""
        return self.path / "checkpoints"

    def recorder(self, config: Mapping[str, Any], tasks: Sequence[Task], **options: Any) -> Any:
        """What `fit(run=self)` writes through: a `mtjax.runs.recorder.Recorder`, opened.

        `fit` reaches the run folder only through this method, so `mtjax.train` imports
        nothing from `mtjax.runs`.
        """
        from mtjax.runs import recorder  # imports JAX and Orbax; reading a run needs neither

        return recorder.Recorder.open(self, dict(config), tasks, **options)

    def evaluate(self, data: Any, **options: Any) -> dict:
        """`mt.evaluate(run, data)`: see `mtjax.runs.reevaluate.evaluate_run`."""
        from mtjax.runs import reevaluate  # imports JAX and Orbax; reading a run needs neither

        return reevaluate.evaluate_run(self, data, **options)


# Files.


def _write_json(path: Path, value: Any) -> Path:
    try:
        text = json.dumps(value, indent=2)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{path}: only JSON values (dict, list, str, number, bool, None) can be written: {err}"
        ) from None
    return files.write_bytes(path, (text + "\n").encode())


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"no {what}: {path} does not exist") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({what}): {err}") from None


def write_config(run: Run, config: Mapping[str, Any]) -> Path:
    """Writes `config.json` (JSON values only; tuples come back as lists); returns its path."""
    if not isinstance(config, Mapping):
        raise TypeError(f"a run's config is a dict, got {type(config).__name__}")
    return _write_json(run.path / CONFIG, dict(config))


def read_config(run: Run) -> dict:
    """The run's `config.json`."""
    return _read_json(run.path / CONFIG, "run config")


def write_history(run: Run, history: Sequence[Mapping]) -> Path:
    """Writes `history.json`, the list of per-epoch records; returns its path."""
    return _write_json(run.path / HISTORY, [dict(r) for r in history])


def read_history(run: Run) -> list[dict]:
    """The run's `history.json`, one flat record per epoch.

    Records in the nested form of mtjax 0.1 come back flat (`mtjax.train.history.flat`).
    """
    path = run.path / HISTORY
    found = _read_json(path, "run history")
    if not isinstance(found, list) or not all(isinstance(r, Mapping) for r in found):
        raise ValueError(f"{path} is not a run history: a JSON list of per-epoch records")
    return [records.flat(r) for r in found]


class Chosen(NamedTuple):
    """The epoch a run is reported at (`chosen_epoch`): one model per run.

    Attributes:
      epoch: the epoch (as in the history's "epoch"); None for an empty history.
      by: what chose it: the stopping rule's metric ("validation/loss"), "stopping rule"
        (a rule watching no metric), "last epoch", or "last epoch (none recorded)" for a
        run folder whose config.json records no chosen epoch (written before mtjax did,
        or by a run that has not finished).
      recorded: whether config.json records it.
    """

    epoch: int | None
    by: str
    recorded: bool


def write_chosen_epoch(run: Run, epoch: int, *, by: str) -> Path:
    """Records in config.json the epoch the run's stopping rule chose (the restored one).

    Adds "chosen_epoch" (int) and "chosen_by" (see `Chosen.by`) to the config.json there,
    through the atomic writer; returns its path.
    """
    epoch = operator.index(epoch)
    if epoch < 0:
        raise ValueError(f"the chosen epoch must be >= 0, got {epoch}")
    config = read_config(run)
    config.update(chosen_epoch=epoch, chosen_by=str(by))
    return write_config(run, config)


def chosen_epoch(run: Run, config: Mapping[str, Any], history: Sequence[Mapping]) -> Chosen:
    """The epoch the run is reported at: the one config.json records, else the last.

    Args:
      run: the run, for messages.
      config: its config.json (`read_config`).
      history: its history (`read_history`).

    Raises:
      ValueError: config.json records an epoch the history does not hold.
    """
    epochs = [int(r["epoch"]) for r in history if "epoch" in r]
    recorded = config.get("chosen_epoch")
    if recorded is None:
        return Chosen(epochs[-1] if epochs else None, "last epoch (none recorded)", False)
    if int(recorded) not in epochs:
        raise ValueError(
            f"{run.path / CONFIG} records chosen epoch {recorded}, but {run.path / HISTORY}"
            f" holds epochs {epochs}"
        )
    return Chosen(int(recorded), str(config.get("chosen_by", "stopping rule")), True)


def check_resumable(
    run: Run,
    settings: Mapping[str, Any],
    *,
    entry: str = "resume_key",
    ignore: Collection[str] = (),
) -> None:
    """Refuses a run folder whose config.json records other settings.

    `fit(run=...)` calls it with the run's `resume_key` (the settings a resume must share
    to end where an uninterrupted run would); an experiment runner may call it with its
    own entry. A folder without config.json, or whose config.json has no `entry` yet, is
    new to these settings and passes.

    Args:
      run: the run folder.
      settings: the settings of the run about to write there, JSON values.
      entry: the key of config.json the settings are recorded under.
      ignore: top-level keys of the settings left out of the comparison (on both sides).

    Raises:
      ValueError naming every setting that differs, as a dotted path ("model_settings.
      hidden"), and the folder.
    """
    if not (run.path / CONFIG).exists():
        return
    previous = read_config(run).get(entry)
    if previous is None:
        return

    def kept(side: Any) -> Any:
        if not isinstance(side, Mapping):
            return side
        return {k: v for k, v in side.items() if k not in ignore}

    differ = _differences(kept(previous), kept(settings))
    if differ:
        raise ValueError(
            f"{run.path} holds a run with other settings ({', '.join(differ)} differ); it"
            " cannot be resumed with these. Use another run name, or delete the folder."
        )


def _differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Paths where two JSON values differ ("model.hidden", "optimizer.update_fns[1].tx.eps").

    Lists of plain values differ as a whole, lists holding dicts item by item; "(all)"
    when the values differ at the top.
    """
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return [
            d
            for k in sorted(set(old) | set(new))
            for d in _differences(old.get(k), new.get(k), f"{path}.{k}" if path else str(k))
        ]
    lists = (list, tuple)
    if (
        isinstance(old, lists)
        and isinstance(new, lists)
        and len(old) == len(new)
        and any(isinstance(v, Mapping) for v in (*old, *new))
    ):  # a list of settings, such as optax's chained transformations; else one value
        return [
            d for i, (a, b) in enumerate(zip(old, new)) for d in _differences(a, b, f"{path}[{i}]")
        ]
    return [] if _json(old) == _json(new) else [path or "(all)"]


def _json(value: Any) -> Any:
    """`value` as JSON reads it back: tuples are lists."""
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    return value


# One process at a time.

_HELD: dict[str, list[int]] = {}  # run folder (real path) -> [lock file descriptor, holds]


def lock(run: Run) -> None:
    """Holds the run folder for this process, until as many `unlock`s.

    An exclusive `fcntl.flock` on `.lock` in the folder, which holds the holder's pid. The
    operating system releases it when the holder ends, killed or not, so a lock is never
    left behind. Within one process a run can be locked again (a `fit` that raised
    before it closed its run, say). Where `fcntl` is missing (Windows) nothing is locked.

    Raises:
      RuntimeError naming the run and the process that holds it.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return
    key = os.path.realpath(run.path)
    if key in _HELD:
        _HELD[key][1] += 1
        return
    files.writable_folder(run.path)
    path = run.path / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise files.named_error(err, f"cannot open the lock file {path}") from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise files.named_error(err, f"cannot lock {path}") from err
        raise RuntimeError(
            f"run {run.path} is in use by process {holder} (it holds {path}); wait until it"
            " ends, or use another run name"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = [fd, 1]


def unlock(run: Run) -> None:
    """Gives back one `lock` of this process; the last one releases the folder."""
    key = os.path.realpath(run.path)
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] <= 0:
        del _HELD[key]
        os.close(held[0])  # closing the descriptor releases the flock


# Reports.


def report_folder(run: Run, epoch: int, split: str) -> Path:
    """`reports/epoch_{epoch:03d}/{split}` of the run."""
    epoch = operator.index(epoch)
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    return run.reports / f"epoch_{epoch:03d}" / file_part(split, "split")


def write_reports(run: Run, epoch: int, split: str, reports: Mapping[str, Mapping]) -> Path:
    """Writes one JSON file per task, `{task}.json`, under `report_folder`; returns the folder.

    Args:
      run: the run.
      epoch: the epoch the reports are of (0-based, as in the history).
      split: "validation", "test" or any split name.
      reports: task name -> report (`mtjax.metrics.evaluation_report`).
    """
    folder = report_folder(run, epoch, split)
    names = [file_part(name, "task name") for name in reports]
    files.writable_folder(folder)
    for name in names:
        _write_json(folder / f"{name}.json", reports[name])
    return folder


def report_epochs(run: Run) -> list[int]:
    """The epochs that have reports, ascending."""
    if not run.reports.is_dir():
        return []
    found = (_EPOCH_FOLDER.fullmatch(p.name) for p in run.reports.iterdir() if p.is_dir())
    return sorted(int(m.group(1)) for m in found if m)


def report_splits(run: Run, epoch: int) -> list[str]:
    """The splits that have reports at `epoch`, sorted."""
    folder = run.reports / f"epoch_{operator.index(epoch):03d}"
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def read_reports(run: Run, epoch: int, split: str) -> dict[str, dict]:
    """Task name -> report, as written by `write_reports` (tasks in name order)."""
    folder = report_folder(run, epoch, split)
    if not folder.is_dir():
        raise FileNotFoundError(
            errno.ENOENT,
            f"no reports of split {split!r} at epoch {epoch}: {folder} does not exist; epochs"
            f" with reports: {report_epochs(run)}",
        )
    return {p.stem: _read_json(p, "report") for p in sorted(folder.glob("*.json"))}
