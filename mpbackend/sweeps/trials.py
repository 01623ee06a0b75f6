"""A trial's side of a sweep, for both agents (``agent()`` in a script, and the
command line's ``mpbackend agent``): the loop that claims and records trials, the
variables a trial's ``init()`` reads, its metric value read back from its run, and
the hyperband watch that stops it early.

    run_trials: store.claim() --trial--> run_one(trial, variables, watch)
                   the agent starts the trial, then watch.start(stop)
                   Watch thread, every POLL s: each trial's new metric values
                       (read back from the runs, as any reader reads them)
                       --hyperband.verdict--> stop(reason) once
                --state (finished / failed / stopped)--> store.finish()
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from ..shared import environ
from . import hyperband, store

# How often a running trial's watch reads the sweep's metric values. A read is
# one small query per unfinished trial's run, on its store, read-only.
POLL_SECONDS = 1.0


def trial_env(store_dir: str, project: str, sweep_id: str, trial: dict[str, Any],
              folder: str) -> dict[str, str]:
    """The variables a trial's init() reads: its run id, project, the parameters' file."""
    path = os.path.join(folder, f"trial-{trial['n']}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(trial["params"], f)
    return {"MPBACKEND_SWEEP_ID": sweep_id, "MPBACKEND_SWEEP_PARAM_PATH": path,
            "MPBACKEND_RUN_ID": trial["run_id"], "MPBACKEND_PROJECT": project,
            "MPBACKEND_DIR": store_dir}


def metric_value(store_dir: str, project: str, run_id: str, config: dict[str, Any]
                 ) -> float | None:
    """The sweep metric of a trial's run, from its stored summary (None if absent)."""
    metric = config.get("metric") or {}
    name = metric.get("name")
    if not name:
        return None
    from ..read.api import Api  # the run, read back as any reader reads it
    from ..read.format import flat_summary

    try:
        summary = flat_summary(Api(store_dir).run(f"{project}/{run_id}").summary)
    except Exception:
        return None
    value = summary.get(name)
    if isinstance(value, dict):  # shaped by define_metric
        goal = "min" if metric.get("goal", "minimize") == "minimize" else "max"
        value = value.get(goal, value.get("last"))
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


class Watch:
    """The hyperband watch over one running trial (a sweep with ``early_terminate``).

    ``start(stop)`` starts one thread that, every ``POLL_SECONDS``, reads the new
    values of the sweep's metric from every trial's run and calls ``stop(reason)``
    once if hyperband says this trial should stop; ``close()`` ends it. Without
    ``early_terminate`` both do nothing. The thread never raises: a run that cannot
    be read this time (not made yet, being written) is read next time.
    """

    def __init__(self, store_dir: str, project: str, sweep_id: str, config: dict[str, Any],
                 trial: dict[str, Any]) -> None:
        self.store_dir, self.project, self.sweep_id = store_dir, project, sweep_id
        self.spec: dict[str, Any] = config.get("early_terminate") or {}
        metric = config.get("metric") or {}
        self.metric: str = metric.get("name") or ""
        self.goal: str = metric.get("goal", "minimize")
        self.run_id = trial["run_id"]
        self.reason: str | None = None  # set (once) when the trial was told to stop
        self._histories: dict[str, list[float]] = {}
        self._next_step: dict[str, int] = {}
        self._ended: set[str] = set()  # runs of ended trials read to their end
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, stop: Callable[[str], bool]) -> None:
        """Watch from now on; ``stop(reason)`` stops the trial and says whether it
        could (a trial whose run is not found yet is judged again next time)."""
        if not self.spec or not self.metric or self._thread is not None:
            return
        text = environ.value("SWEEP_POLL_SECONDS")
        try:
            interval = float(text) if text else POLL_SECONDS
        except ValueError:
            raise ValueError(f"MPBACKEND_SWEEP_POLL_SECONDS is a number of seconds, not "
                             f"{text!r}") from None
        self._thread = threading.Thread(target=self._watch, args=(stop, interval),
                                        name="mpbackend-sweep-watch", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._done.set()
        if self._thread is not None:
            # A stop() in progress (a program given SIGTERM) takes up to its own bound.
            self._thread.join(timeout=STOP_WAIT + 5.0)

    def _watch(self, stop: Callable[[str], bool], interval: float) -> None:
        while not self._done.wait(interval):
            try:
                reason = self.check()
            except Exception:  # a store being written or replaced: read it next time
                continue
            if reason is not None and not self._done.is_set() and stop(reason):
                self.reason = reason
                return

    def check(self) -> str | None:
        """Read what is new in every trial's run; why this trial should stop, or None."""
        from ..read.api import Api  # the runs, read back as any reader reads them
        from ..shared.errors import NoSuchRun

        api = Api(self.store_dir)
        for trial in store.trials(self.store_dir, self.project, self.sweep_id):
            run_id = trial.get("run_id")
            if not isinstance(run_id, str) or run_id in self._ended:
                continue
            ended = trial.get("state") != "running"  # read once more, then no more
            try:
                run = api.run(f"{self.project}/{run_id}")
            except NoSuchRun:
                continue
            values = self._histories.setdefault(run_id, [])
            last = self._next_step.get(run_id, 0)
            for row in run.scan_history(keys=[self.metric], min_step=last):
                last = max(last, int(row["_step"]) + 1)
                if hyperband.valid(row[self.metric]):
                    values.append(float(row[self.metric]))
            self._next_step[run_id] = last
            if ended:
                self._ended.add(run_id)
        return hyperband.verdict(self._histories, self.run_id, self.spec, self.goal)


# How long a trial's program has, after SIGTERM, to write what it logged and end.
STOP_WAIT = 30.0


def run_trials(store_dir: str, project: str, sweep_id: str, count: int | None,
               run_one: Callable[[dict[str, Any], dict[str, str], Watch], str]) -> int:
    """Claim trials (up to ``count``, or until the sweep is done) and run each with
    ``run_one(trial, its variables, its watch)``, which returns ``finished`` or
    ``failed`` and starts the watch with how to stop the trial; record each (as
    ``stopped`` if the watch stopped it) with its metric value. Returns how many ran."""
    config = store.load(store_dir, project, sweep_id)["config"]
    ran = 0
    with tempfile.TemporaryDirectory(prefix="mpbackend-sweep-") as folder:
        while count is None or ran < count:
            trial = store.claim(store_dir, project, sweep_id)
            if trial is None:
                break
            watch = Watch(store_dir, project, sweep_id, config, trial)
            try:
                state = run_one(trial, trial_env(store_dir, project, sweep_id, trial, folder),
                                watch)
            finally:
                watch.close()
            if watch.reason is not None:
                state, trial = "stopped", {**trial, "stopped": watch.reason}
            store.finish(store_dir, project, sweep_id, trial, state,
                         metric_value(store_dir, project, trial["run_id"], config))
            ran += 1
    return ran
