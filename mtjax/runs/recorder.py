"""What `fit` writes into a run folder as it trains, and reads back to resume.

A `Recorder` holds the two open handles a run needs (the TensorBoard writer and the Orbax
checkpoint manager); everything it writes goes through `mtjax.runs.folder` and
`mtjax.runs.checkpoints`. Per epoch it writes the events, the JSON reports and the history
first and the checkpoint last, so a run killed at any moment resumes from a checkpoint
whose history is complete. When the run ends, `close` records the epoch the stopping rule
chose in config.json: every summary and comparison reports the run at that epoch.

While open, a recorder holds the run folder's lock (`folder.lock`): a second process
starting the same run is refused at once, naming the run and this process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from mtjax.runs import checkpoints, events, folder, plots
from mtjax.tasks import Task
from mtjax.train import history as records
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
    max_to_keep: int | None = None  # the newest epochs kept besides the best; None: all
    rule: stopping.Rule | None = None  # the stopping rule, which names the best epoch
    locked: bool = False  # holds the run's lock (`open`), until `close` or until collected

    @classmethod
    def open(
        cls,
        run: folder.Run,
        config: dict,
        tasks: Sequence[Task],
        *,
        max_to_keep: int | None = None,
        keep_best: str | None = None,
        rule: stopping.Rule | None = None,
    ) -> Recorder:
        """Locks the run, checks `config` against the run's, writes it, opens checkpoints.

        config.json gets, besides `config`, what the recorder is given: "max_to_keep" and
        "stopping_metric" (the metric the stopping rule watches, or None); the keys an
        earlier writer added (an experiment's record, say) stay, but the chosen epoch of an
        earlier end, which `close` writes again.

        Checkpoints kept: the newest `max_to_keep` (all when None), and always the best
        epoch: the one `rule` chooses, or without a rule the first best by `keep_best`.

        Raises:
          RuntimeError naming the run and the process holding it when another process has
          it open (`folder.lock`).
          ValueError naming the settings that differ when the run folder was written by
          a run with other settings (`folder.check_resumable`: its checkpoints would not
          continue this one).
        """
        folder.lock(run)
        try:
            folder.check_resumable(run, config["resume_key"])
            previous = folder.read_config(run) if (run.path / folder.CONFIG).exists() else {}
            for key in ("chosen_epoch", "chosen_by"):
                previous.pop(key, None)
            metric = rule.metric if rule is not None else keep_best
            folder.write_config(
                run, {**previous, "max_to_keep": max_to_keep, "stopping_metric": metric, **config}
            )
            manager = checkpoints.open_manager(run.checkpoints)  # mtjax prunes, Orbax keeps all
        except BaseException:
            folder.unlock(run)
            raise
        return cls(
            run,
            tuple(tasks),
            manager,
            writer=None,
            seed=int(config.get("seed", 0)),
            stopping_metric=metric,
            max_to_keep=max_to_keep,
            rule=rule,
            locked=True,
        )

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
        """`state` with the model parameters and batch statistics saved after `epoch`.

        The rest (step, optimizer and combiner state, combiner parameters) stays as in
        `state`, the last epoch's, as `fit` keeps it when the best epoch is in memory: a
        run ends with the same value whether or not it was resumed.
        """
        saved = checkpoints.restore(self.manager, epoch, state)[0]
        return state.replace(
            params={**state.params, "model": saved.params["model"]},
            batch_stats=saved.batch_stats,
        )

    def best_epoch(self, history: list[dict]) -> int:
        """The epoch kept whatever `max_to_keep` says: the rule's choice, or the metric's.

        Without a rule, the first epoch with the best `stopping_metric` (missing and NaN
        rank worst), which is what `patience` chooses; without a metric, the last.
        """
        if self.rule is not None:
            return int(self.rule.decide(history).best_epoch)
        metric = self.stopping_metric
        if metric is None:
            return len(history) - 1
        sign = 1.0 if stopping.metric_mode(metric) == "min" else -1.0

        def rank(e: int) -> float:
            value = records.value(history[e], metric, default=None)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return math.inf
            return math.inf if math.isnan(value) else sign * float(value)

        return min(range(len(history)), key=rank)

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
        best = int(history[self.best_epoch(history)]["epoch"])
        checkpoints.prune(self.manager, keep={best}, newest=self.max_to_keep)
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
        try:
            plots.write_plots(self.run, history, self.tasks, self.last_reports)
            events.close_events(self.writer)
            checkpoints.close(self.manager)
        finally:
            self._unlock()

    def _unlock(self) -> None:
        if self.locked:
            self.locked = False
            folder.unlock(self.run)

    def __del__(self):  # a `fit` that raised never closes its recorder; its lock goes here
        with contextlib.suppress(Exception):  # at exit modules may be gone; the OS unlocks
            self._unlock()
