"""What `fit` writes into a run folder as it trains, and reads back to resume.

A `Recorder` holds the two open handles a run needs (the TensorBoard writer and the Orbax
checkpoint manager); everything it writes goes through `mtjax.runs.folder` and
`mtjax.runs.checkpoints`. Per epoch it writes the scalar events, the JSON reports and the
history first and the checkpoint last, so a run killed at any moment resumes from a
checkpoint whose history is complete. When the run ends, `close` records the epoch the
stopping rule chose in config.json: every summary and comparison reports the run at that
epoch. Figures cost more than an epoch of a small model, so they are drawn once, in
`close`: the curves, and the confusion matrices of the chosen and the last epoch only
(PNG and TensorBoard images at their epoch's step), with the run's HParams.

Checkpoints kept: the last epoch's (a resume starts there) and the chosen one's, plus the
newest `max_to_keep` when given.

Over several processes (`mtjax.train.distributed`) each process opens a recorder on the
same shared folder; process 0 alone locks it and writes its files, and all of them save
and restore the checkpoints together.

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
from mtjax.train import distributed, stopping
from mtjax.train import history as records


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
    max_to_keep: int | None = None  # the newest epochs kept besides the best; None: the last
    rule: stopping.Rule | None = None  # the stopping rule, which names the best epoch
    locked: bool = False  # holds the run's lock (`open`), until `close` or until collected
    config: dict = dataclasses.field(default_factory=dict)  # config.json as `open` wrote it
    recorded: int = 0  # epochs recorded by this recorder (0: none yet, or a finished run)
    closed_before: bool = False  # config.json had a chosen epoch: an earlier `close` ran
    pending: tuple[int, int] | None = None  # (epoch, best) of a checkpoint still being written
    primary: bool = True  # writes the run's files: the only process, or process 0 of several

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

        Checkpoints kept: the newest `max_to_keep` (the last alone when None), and always
        the best epoch: the one `rule` chooses, or without a rule the first best by
        `keep_best`. So by default the last and the chosen epoch.

        Raises:
          RuntimeError naming the run and the process holding it when another process has
          it open (`folder.lock`).
          ValueError naming the settings that differ when the run folder was written by
          a run with other settings (`folder.check_resumable`: its checkpoints would not
          continue this one).
        """
        primary = distributed.is_primary()
        if primary:
            folder.lock(run)
        try:
            folder.check_resumable(run, config["resume_key"])
            previous = folder.read_config(run) if (run.path / folder.CONFIG).exists() else {}
            closed_before = previous.get("chosen_epoch") is not None
            for key in ("chosen_epoch", "chosen_by"):
                previous.pop(key, None)
            metric = rule.metric if rule is not None else keep_best
            written = {**previous, "max_to_keep": max_to_keep, "stopping_metric": metric, **config}
            if primary:
                folder.write_config(run, written)
            manager = checkpoints.open_manager(run.checkpoints)  # mtjax prunes, Orbax keeps all
        except BaseException:
            if primary:
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
            locked=primary,
            config=written,
            closed_before=closed_before,
            primary=primary,
        )

    def restore(self, state) -> tuple[Any, list[dict]] | None:
        """(state, history) after the last complete epoch, or None for a new run.

        Opens the TensorBoard events too, dropping any written after that epoch (by a
        run killed before its checkpoint), so a resumed run's curves have no doubles.
        """
        restored = checkpoints.restore_latest(self.manager, state)
        history = [] if restored is None else list(restored[1]["history"])
        if self.primary:
            self.writer = events.open_events(self.run, purge_step=len(history) or None)
        return None if restored is None else (restored[0], history)

    def _finish_saving(self) -> None:
        """Completes the last epoch's checkpoint (checksums), then prunes the older ones.

        Pruning waits for it: until a newer checkpoint is complete, the last complete one
        is what a resume starts from.
        """
        if self.pending is None:
            return
        epoch, best = self.pending
        checkpoints.finish(self.manager, epoch)
        self.pending = None
        newest = 1 if self.max_to_keep is None else self.max_to_keep
        checkpoints.prune(self.manager, keep={best}, newest=newest)

    def restore_epoch(self, state, epoch: int):
        """`state` with the model parameters and batch statistics saved after `epoch`.

        The rest (step, optimizer and combiner state, combiner parameters) stays as in
        `state`, the last epoch's, as `fit` keeps it when the best epoch is in memory: a
        run ends with the same value whether or not it was resumed.
        """
        self._finish_saving()
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

        Events are scalars only (the epoch's time among them); the first epoch a recorder
        writes also logs the config as text and the Custom Scalars layout. Checkpoints of
        epochs now neither the chosen one nor among the newest `max_to_keep` (the last
        when None) are deleted.

        Args:
          epoch: the epoch.
          state: the train state after it.
          history: every record so far, this epoch's last.
          reports: split -> task name -> `evaluate` report of this epoch.
          conflicts: (task a, task b) -> cosine of their gradients on one batch.
        """
        record = history[-1]
        if self.primary:  # the files: process 0's alone
            if not self.recorded:  # this writer's first epoch
                events.log_config(self.writer, self.config, epoch)
                tags = [*events.scalars(record, self.tasks), events.EPOCH_SECONDS]
                events.log_layout(self.writer, tags, self.tasks)
            events.log_epoch(self.writer, record, self.tasks, conflicts=conflicts, timed=True)
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
        self._finish_saving()
        checkpoints.save(self.manager, epoch, state, meta, wait=False)  # on disk meanwhile
        self.pending = epoch, int(history[self.best_epoch(history)]["epoch"])
        self.last_reports = reports
        self.recorded += 1

    def close(self, history: list[dict], *, chosen_epoch: int | None = None) -> None:
        """Records the chosen epoch, draws the figures, closes the events and checkpoints.

        Figures: the PNG curves; the confusion matrices of the chosen epoch
        (`plots/confusion_{split}_{task}.png`) and, when it is another, of the last
        (`..._last.png`), each also a TensorBoard image at its epoch's step, read back
        from the epoch's JSON reports; and the HParams session (`events.log_hparams`):
        the config's settings, the chosen epoch's metrics. A finished run opened again
        and closed without training draws none: the earlier close did.

        Args:
          history: every record of the run.
          chosen_epoch: the epoch the stopping rule chose (the one `fit` restored); None
            means the last epoch. config.json gets it as "chosen_epoch", with "chosen_by":
            the stopping metric, else "last epoch" (or "stopping rule" for a rule that
            watches no metric and chose an earlier epoch).
        """
        epoch = last = None
        if history and self.primary:
            last = int(history[-1]["epoch"])
            epoch = last if chosen_epoch is None else int(chosen_epoch)
            if chosen_epoch is not None and self.stopping_metric is not None:
                by = self.stopping_metric
            else:
                by = "last epoch" if epoch == last else "stopping rule"
            folder.write_chosen_epoch(self.run, epoch, by=by)
        try:
            self._finish_saving()
            if self.primary and (self.recorded or not self.closed_before):
                plots.write_plots(self.run, history, self.tasks)
                if epoch is not None and last is not None:
                    self._figures_of(history, epoch, last)
            if self.primary:
                events.close_events(self.writer)
            checkpoints.close(self.manager)
        finally:
            self._unlock()

    def _figures_of(self, history: list[dict], chosen: int, last: int) -> None:
        """Confusion images of the chosen and the last epoch, and the HParams session."""
        drawn = [(chosen, "", "chosen" if chosen != last else "chosen, last")]
        if chosen != last:
            drawn.append((last, "_last", "last"))
        else:  # an earlier close's last-epoch figures are no longer the last's
            for stale in self.run.plots.glob("confusion_*_last.png"):
                stale.unlink(missing_ok=True)
        for epoch, suffix, what in drawn:
            images = plots.confusion_images(
                self._reports_of(epoch, last), self.tasks, note=f"epoch {epoch}, {what}"
            )
            events.log_images(self.writer, epoch, images)
            plots.write_confusions(self.run, images, suffix=suffix)
        record = next(r for r in history if int(r["epoch"]) == chosen)
        metrics = events.chosen_metrics(record, self.tasks)
        events.log_hparams(self.writer, events.hparams(self.config), metrics, chosen)

    def _reports_of(self, epoch: int, last: int) -> dict[str, dict]:
        """Split -> task name -> report of `epoch`: the last one's in memory, else the JSON."""
        if self.recorded and epoch == last:
            return self.last_reports
        return {
            split: folder.read_reports(self.run, epoch, split)
            for split in folder.report_splits(self.run, epoch)
            if split in records.SPLITS
        }

    def _unlock(self) -> None:
        if self.locked:
            self.locked = False
            folder.unlock(self.run)

    def __del__(self):  # a `fit` that raised never closes its recorder; its lock goes here
        with contextlib.suppress(Exception):  # at exit modules may be gone; the OS unlocks
            self._unlock()
