"""Checkpoints: one Orbax checkpoint per epoch, the train state beside JSON metadata.

A run's `checkpoints/` folder holds one step folder per saved epoch (the step number is
the epoch). Each holds two items:

  state/  the `TrainState` pytree (step, params, optimizer and combiner state,
          batch statistics), written by Orbax's `StandardSave` as array files;
  meta/   a JSON object: {"epoch", "history", "seed", "schedule_position"}, written by
          `JsonSave`; "history" holds the flat records of `mtjax.train.history`
          (nested ones, from mtjax 0.1, are made flat when read back).

Nothing is pickled. Orbax writes a step into a temporary folder, marks it committed
(`commit_success.txt`, and a commit time in `_CHECKPOINT_METADATA`) and renames it. Once
it is complete, `save` writes `sha256.json` into it (atomically): the sha256 of every
other file of the step folder. `restore` checks them first and refuses a checkpoint whose
files differ (a flipped bit, a truncated file), naming the file; a checkpoint without a
checksum file (from an older mtjax, or killed between the two writes) restores
with a warning. `restore_latest` tries each epoch newest first and skips, with a warning
naming the epoch, one that lacks both commit marks, fails its checksum or whose files fail
to read, so a resume survives a damaged newest checkpoint.

Over several processes (`mtjax.train.distributed`) every process calls each function
in the same order on the same shared folder: Orbax saves, deletes and restores
collectively, and process 0 alone writes the checksum files.

Usage, as `fit` does it:

  manager = open_manager(run_dir / "checkpoints")
  found = restore_latest(manager, state)
  ...
  save(manager, epoch, state, meta)
  prune(manager, keep={best_epoch}, newest=3)  # the best and the newest three stay
  close(manager)
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Literal

import jax
import orbax.checkpoint as ocp

from mtjax import files
from mtjax.train import distributed
from mtjax.train import history as records

log = logging.getLogger("mtjax")

COMMIT_FILE = "commit_success.txt"  # orbax's commit mark in a finished step folder
STEP_METADATA_FILE = "_CHECKPOINT_METADATA"  # orbax's JSON step metadata, with commit time
STATE = "state"  # item name of the train state in each step folder
META = "meta"  # item name of the JSON metadata in each step folder
CHECKSUMS = "sha256.json"  # in each step folder, written last: sha256 of its other files


def open_manager(
    directory: str | os.PathLike,
    *,
    max_to_keep: int | None = None,
    keep_best: str | None = None,
    best_mode: Literal["min", "max"] = "min",
) -> ocp.CheckpointManager:
    """A checkpoint manager for one run's checkpoint folder, created if absent.

    Which epochs survive each save:

    - `keep_best=None`: the newest `max_to_keep` (all of them when None).
    - `keep_best="validation/loss"` (a key of the last record of `meta["history"]`):
      the `max_to_keep` best epochs by that metric (1 when `max_to_keep` is None), the
      lowest values for `best_mode="min"`, highest for "max", plus always the newest
      epoch so a run can resume; so up to `max_to_keep + 1`.
      An epoch whose record lacks the metric, or holds NaN, ranks worst.

    Args:
      directory: the checkpoint folder (a run's `checkpoints/`).
      max_to_keep: how many epochs to keep, as above; None keeps all (with `keep_best`,
        the single best plus the newest).
      keep_best: a history key, e.g. "validation/loss".
      best_mode: "min" if lower values of `keep_best` are better, else "max".

    Returns:
      An `ocp.CheckpointManager`; pass it to `save`, `restore_latest`, `restore`,
      `epochs` and `close`.
    """
    if best_mode not in ("min", "max"):
        raise ValueError(f"best_mode must be 'min' or 'max', got {best_mode!r}")
    if max_to_keep is not None and max_to_keep < 1:
        raise ValueError(f"max_to_keep must be a positive int or None, got {max_to_keep!r}")
    if keep_best is None:
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    else:
        best_fn = _metric_reader(keep_best, best_mode=best_mode)
        options = ocp.CheckpointManagerOptions(
            best_fn=best_fn,
            best_mode=best_mode,
            preservation_policy=_best_and_latest(best_fn, best_mode, max_to_keep or 1),
            create=True,
        )
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def _best_and_latest(
    best_fn: Callable[[Mapping[str, Any]], float], best_mode: str, n_best: int
) -> ocp.checkpoint_managers.PreservationPolicy:
    """Orbax preservation policy keeping the `n_best` best steps and the newest one.

    Orbax's own `best_fn` with `max_to_keep` keeps the best only, and may delete the
    newest step that a resume needs; this policy adds it back.
    """
    policies = ocp.checkpoint_managers
    best = policies.BestN(
        get_metric_fn=best_fn,
        reverse=best_mode == "min",  # BestN keeps the tail of the sorted list
        n=n_best,
        keep_checkpoints_without_metrics=False,
    )
    return policies.AnyPreservationPolicy([best, policies.LatestN(n=1)])


def _metric_reader(path: str, *, best_mode: str) -> Callable[[Mapping[str, Any]], float]:
    """A `best_fn` reading key `path` from saved metrics; missing or NaN ranks worst."""
    worst = math.inf if best_mode == "min" else -math.inf

    def best_fn(metrics: Mapping[str, Any]) -> float:
        value = records.value(metrics or {}, path, default=None)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return worst
        return worst if math.isnan(value) else float(value)

    return best_fn


def save(
    manager: ocp.CheckpointManager, epoch: int, state: Any, meta: dict, *, wait: bool = True
) -> None:
    """Saves `state` and `meta` as step `epoch`; with `wait`, until it is on disk.

    Orbax writes into a temporary folder and renames it when complete, so a crash
    leaves either the whole checkpoint or none. An existing checkpoint of the same
    epoch (one `restore_latest` skipped as unreadable, say) is replaced, with a warning.
    The last record of `meta["history"]` is also given to Orbax as the step's metrics,
    which rank epochs when the manager has `keep_best`.

    Args:
      manager: from `open_manager`.
      epoch: the epoch just finished; the step number on disk.
      state: the train state pytree (arrays, NamedTuples, dicts; empty nodes allowed).
      meta: JSON-serializable dict (lists, dicts, str, int, float, bool, None).
      wait: False returns once Orbax holds a host copy of `state` and writes the files in
        the background (training goes on meanwhile); `finish(manager, epoch)` must then
        follow before the next save, a prune or a restore. Until it has, the epoch lacks
        its checksum file, so a run killed meanwhile resumes from the epoch before.
    """
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as error:
        raise TypeError(f"checkpoint metadata for epoch {epoch} is not JSON: {error}") from error
    if epoch in manager.all_steps():
        log.warning("replacing the existing checkpoint of epoch %d in %s", epoch, manager.directory)
        manager.delete(epoch)
    history = meta.get("history") or [{}]
    last = records.flat(history[-1]) if isinstance(history[-1], Mapping) else {}
    numbers = {
        k: float(v)
        for k, v in last.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    args = ocp.args.Composite(
        **{STATE: ocp.args.StandardSave(state), META: ocp.args.JsonSave(meta)}
    )
    if not manager.save(epoch, args=args, metrics=numbers, force=True):
        raise RuntimeError(f"orbax did not save epoch {epoch} in {manager.directory}")
    if wait:
        finish(manager, epoch)


def finish(manager: ocp.CheckpointManager, epoch: int) -> None:
    """Waits until the save of `epoch` is on disk, then writes its checksum file.

    Over several processes every one calls it; process 0 writes the file, and each
    returns once it is written.
    """
    manager.wait_until_finished()
    if epoch not in manager.all_steps():
        raise RuntimeError(f"orbax did not save epoch {epoch} in {manager.directory}")
    if distributed.is_primary():
        folder = Path(_step_folder(manager, epoch))
        checksums = {"epoch": epoch, "files": _file_hashes(folder)}
        files.write_bytes(folder / CHECKSUMS, json.dumps(checksums, indent=1).encode())
    distributed.barrier(f"mtjax checksums of epoch {epoch}")


def prune(manager: ocp.CheckpointManager, *, keep: Collection[int], newest: int | None) -> None:
    """Deletes every saved epoch but those in `keep` and the `newest` most recent ones.

    The newest epoch always stays (a resume starts there), whatever `newest` says.

    Args:
      manager: from `open_manager` (with `max_to_keep=None`, so Orbax deletes nothing).
      keep: epochs kept whatever their age (the best one, say).
      newest: how many of the most recent epochs stay; None keeps every epoch.
    """
    if newest is None:
        return
    saved = epochs(manager)
    kept = set(keep) | set(saved[-max(newest, 1) :])
    for epoch in saved:
        if epoch not in kept:
            manager.delete(epoch)


def _file_hashes(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under `folder` but the checksums' own."""
    out = {}
    ours = (CHECKSUMS, f".{CHECKSUMS}.")  # the file, and its writer's temporary files
    found = (p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(ours))
    for path in sorted(found):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(2**20), b""):
                digest.update(block)
        out[path.relative_to(folder).as_posix()] = digest.hexdigest()
    return out


def verify(manager: ocp.CheckpointManager, epoch: int) -> None:
    """Checks the files of `epoch`'s checkpoint against the checksums written with it.

    A checkpoint without a checksum file passes with a warning (it cannot be checked).

    Raises:
      ValueError naming the epoch and the first file that is missing or differs.
    """
    folder = Path(_step_folder(manager, epoch))
    path = folder / CHECKSUMS
    try:
        recorded = json.loads(path.read_text())["files"]
    except FileNotFoundError:
        log.warning(
            "checkpoint %s (epoch %d) has no checksum file %s: not verified",
            folder,
            epoch,
            path.name,
        )
        return
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"checkpoint of epoch {epoch}: its checksum file {path} does not read: {err}"
        ) from None
    found = _file_hashes(folder)
    for name, digest in recorded.items():
        if found.get(name) != digest:
            what = "is missing" if name not in found else "does not match its checksum"
            raise ValueError(
                f"checkpoint of epoch {epoch}: {name} in {folder} {what} (recorded in"
                f" {path}); the checkpoint is damaged"
            )


def restore(manager: ocp.CheckpointManager, epoch: int, target: Any) -> tuple[Any, dict]:
    """The state and metadata saved for `epoch`.

    Args:
      manager: from `open_manager`.
      epoch: a saved epoch (see `epochs`).
      target: a pytree of the saved structure, concrete arrays or
        `jax.ShapeDtypeStruct`s; restored arrays take its dtypes and shardings.

    Returns:
      (state, meta): state with `target`'s structure, meta the JSON dict.

    Raises:
      FileNotFoundError: no checkpoint of `epoch`; the message lists the saved ones.
      ValueError: its folder lacks orbax's commit marks (a copy cut short, say), or a
        file fails its checksum (`verify`).
    """
    available = epochs(manager)
    if epoch not in available:
        raise FileNotFoundError(
            f"no checkpoint of epoch {epoch} in {manager.directory}; saved epochs: {available}"
        )
    folder = _step_folder(manager, epoch)
    if not _is_committed(folder):
        raise ValueError(
            f"checkpoint folder {folder} (epoch {epoch}) lacks orbax's commit marks "
            f"({COMMIT_FILE}, commit_timestamp_nsecs in {STEP_METADATA_FILE})"
        )
    verify(manager, epoch)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    args = ocp.args.Composite(
        **{STATE: ocp.args.StandardRestore(abstract), META: ocp.args.JsonRestore()}
    )
    restored = manager.restore(epoch, args=args)
    return restored[STATE], _read_meta(restored[META])


def _read_meta(meta: Any) -> dict:
    """Saved metadata with its history records flat (`mtjax.train.history.flat`)."""
    meta = dict(meta)
    if isinstance(meta.get("history"), list):
        meta["history"] = [
            records.flat(r) if isinstance(r, Mapping) else r for r in meta["history"]
        ]
    return meta


def restore_latest(manager: ocp.CheckpointManager, target: Any) -> tuple[Any, dict] | None:
    """The newest checkpoint that restores cleanly, or None when there is none.

    A newest checkpoint whose files fail their checksum or to read (deleted, truncated,
    not JSON) is skipped with a warning naming its folder and epoch, and the one before
    it is tried.

    Args:
      manager: from `open_manager`.
      target: as for `restore`.

    Returns:
      (state, meta) of the newest readable epoch; None if no epoch is saved.

    Raises:
      RuntimeError: epochs are saved but none restores (also the case when `target`
        does not match their structure), rather than silently starting over.
    """
    manager.reload()
    saved = epochs(manager)
    last_error: Exception | None = None
    for epoch in reversed(saved):
        try:
            return restore(manager, epoch, target)
        except Exception as error:  # any read failure makes it unusable
            log.warning(
                "checkpoint %s (epoch %d) does not restore, trying an earlier one: %s: %s",
                _step_folder(manager, epoch),
                epoch,
                type(error).__name__,
                error,
            )
            last_error = error
    if saved:
        raise RuntimeError(
            f"none of the checkpoints in {manager.directory} restores (epochs {saved}); "
            "see the warnings above"
        ) from last_error
    return None


def _step_folder(manager: ocp.CheckpointManager, epoch: int) -> str:
    """The folder holding `epoch`'s checkpoint, for messages."""
    return os.path.join(os.fspath(manager.directory), str(epoch))


def _is_committed(folder: str | os.PathLike) -> bool:
    """Whether orbax finished writing `folder`.

    It holds `commit_success.txt`, or (older orbax on local disks writes only this) its
    step metadata records a commit time.
    """
    if os.path.exists(os.path.join(folder, COMMIT_FILE)):
        return True
    try:
        with open(os.path.join(folder, STEP_METADATA_FILE)) as f:
            return json.load(f).get("commit_timestamp_nsecs") is not None
    except (OSError, ValueError, AttributeError):
        return False


def epochs(manager: ocp.CheckpointManager) -> list[int]:
    """The saved epochs, ascending."""
    return sorted(manager.all_steps())


def close(manager: ocp.CheckpointManager) -> None:
    """Waits for pending writes, then releases the manager."""
    manager.wait_until_finished()
    manager.close()


def restore_arrays(manager: ocp.CheckpointManager, epoch: int) -> tuple[dict, dict]:
    """(state as nested dicts of arrays, meta) of one epoch, without a target tree.

    For reading a run's parameters back when its optimizer is not at hand (evaluating a
    saved run): keys "params" ({"model", "combiner"}), "batch_stats", "opt_state", ...
    """
    saved = epochs(manager)
    if epoch not in saved:
        raise FileNotFoundError(
            f"no checkpoint of epoch {epoch} in {manager.directory}; saved epochs: {saved}"
        )
    verify(manager, epoch)
    out = manager.restore(
        epoch,
        args=ocp.args.Composite(state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()),
    )
    return out["state"], _read_meta(out["meta"])
