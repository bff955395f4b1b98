"""What `fit` writes into a run folder as it trains, and reads back to resume.

A `Recorder` holds the two open handles a run needs (the TensorBoard writer and the Orbax
checkpoint manager); everything it writes goes through `mtjax.runs.folder` and
`mtjax.runs.checkpoints`. Per epoch it writes the events, the JSON reports and the history
first and the checkpoint last, so a run killed at any moment resumes from a checkpoint
whose history is complete. When the run ends, `close` records the epoch the stopping rule
chose in config.json: every summary and comparison reports the run at that epoch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from mtjax.runs import checkpoints, events, folder, plots
from mtjax.tasks import Task
from mtjax.train import stopping


@dataclasses.dataclass
class Recorder:
    """A run folder open for writing: its TensorBoard writer and checkpoint manager."""

    run: folder.Run
    tasks: tuple[Task, ...]
    manager: Any
    writer: Any
    seed: int = 0
    stopping_metric: str | None = None  # the history key the stopping rule watches
    last_reports: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def open(
        cls,
        run: folder.Run,
        config: dict,
        tasks: Sequence[Task],
        *,
        max_to_keep: int | None = None,
        keep_best: str | None = None,
    ) -> Recorder:
        """Checks `config` against the run's, writes it, and opens events and checkpoints.

        config.json gets, besides `config`, what the recorder is given: "max_to_keep" and
        "stopping_metric" (`keep_best`, the metric the stopping rule watches, or None).

        Raises:
          ValueError naming the settings that differ when the run folder was written by
          a run with other settings (`folder.check_resumable`: its checkpoints would not
          continue this one).
        """
        folder.check_resumable(run, config["resume_key"])
        folder.write_config(
            run, {"max_to_keep": max_to_keep, "stopping_metric": keep_best, **config}
        )
        metric = keep_best
        if max_to_keep is None:
            keep_best = None  # every epoch is kept, the best among them
        manager = checkpoints.open_manager(
            run.checkpoints,
            max_to_keep=max_to_keep,
            keep_best=keep_best,
            best_mode=stopping.metric_mode(keep_best) if keep_best else "min",
        )
        seed = int(config.get("seed", 0))
        return cls(run, tuple(tasks), manager, writer=None, seed=seed, stopping_metric=metric)

    def restore(self, state) -> tuple[Any, list[dict]] | None:
        """(state, history) after the last complete epoch, or None for a new run.

        Opens the TensorBoard events too, dropping any written after that epoch (by a
        run killed before its checkpoint), so a resumed run's curves have no doubles.
        """
        restored = checkpoints.restore_latest(self.manager, state)
        if restored is None:
            self.writer = events.open_events(self.run)
            return None
        state, meta = restored
        history = list(meta["history"])
        self.writer = events.open_events(self.run, purge_step=len(history))
        return state, history

    def restore_epoch(self, state, epoch: int):
        """The state saved after `epoch` (`state` gives the structure)."""
        return checkpoints.restore(self.manager, epoch, state)[0]

    def epoch(
        self,
        epoch: int,
        state,
        history: list[dict],
        reports: dict[str, dict],
        *,
        conflicts: dict[tuple[str, str], float] | None,
    ) -> None:
        """Writes one finished epoch: events, reports, the history, then the checkpoint.

        Args:
          epoch: the epoch.
          state: the train state after it.
          history: every record so far, this epoch's last.
          reports: split -> task name -> `evaluate` report of this epoch.
          conflicts: (task a, task b) -> cosine of their gradients on one batch.
        """
        events.log_epoch(self.writer, history[-1], self.tasks, reports, conflicts=conflicts)
        for split, split_reports in reports.items():
            folder.write_reports(self.run, epoch, split, split_reports)
        folder.write_history(self.run, history)
        meta = {
            "epoch": epoch,
            "history": history,
            # every key of the run derives from the seed: batches from (seed, epoch), the
            # step's dropout and combiner keys from (seed, step)
            "seed": self.seed,
            "schedule_position": {"next_epoch": epoch + 1, "step": int(state.step)},
        }
        checkpoints.save(self.manager, epoch, state, meta)
        self.last_reports = reports

    def close(self, history: list[dict], *, chosen_epoch: int | None = None) -> None:
        """Records the chosen epoch, writes the plots, closes the events and the checkpoints.

        Args:
          history: every record of the run.
          chosen_epoch: the epoch the stopping rule chose (the one `fit` restored); None
            means the last epoch. config.json gets it as "chosen_epoch", with "chosen_by":
            the stopping metric, else "last epoch" (or "stopping rule" for a rule that
            watches no metric and chose an earlier epoch).
        """
        if history:
            last = int(history[-1]["epoch"])
            epoch = last if chosen_epoch is None else int(chosen_epoch)
            if chosen_epoch is not None and self.stopping_metric is not None:
                by = self.stopping_metric
            else:
                by = "last epoch" if epoch == last else "stopping rule"
            folder.write_chosen_epoch(self.run, epoch, by=by)
        plots.write_plots(self.run, history, self.tasks, self.last_reports)
        events.close_events(self.writer)
        checkpoints.close(self.manager)
