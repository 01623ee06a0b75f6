"""``sweep()`` and ``agent()`` (user process): wandb's local sweep loop.

    sweep(config, project) --store.create--> the sweep's id
    agent(id, function, count):
        store.claim() --> trial n (its parameters, its run's id)
        MPBACKEND_SWEEP_ID / _SWEEP_PARAM_PATH / _RUN_ID / _PROJECT set, function() called:
            its init() takes the parameters as its config (user/init.py)
        the run finished if function() left it open; its summary metric read back
        store.finish(): the trial's state and value, for the next claim (bayes)
    with early_terminate, trials.Watch judges the running trial (hyperband): told to
        stop, its next log() raises TrialStopped, which ends function(); the trial is
        recorded ``stopped`` and its run finished

Several agents (threads, processes, machines sharing the directory) can work on
one sweep: each trial is claimed once (``store``).
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from typing import Any

from ..shared import environ
from ..shared.errors import TrialStopped
from ..shared.settings import Settings
from . import store
from .trials import Watch, run_trials

SWEEP_VARIABLES = ("MPBACKEND_SWEEP_ID", "MPBACKEND_SWEEP_PARAM_PATH", "MPBACKEND_RUN_ID",
                   "MPBACKEND_PROJECT", "MPBACKEND_DIR")


def _where(sweep_id: str, project: str | None) -> tuple[str, str, str]:
    """(store dir, project, id) of ``id``, ``project/id`` or ``entity/project/id``."""
    parts = [p for p in str(sweep_id).split("/") if p]
    if not parts:
        raise ValueError(f"a sweep id, not {sweep_id!r}")
    store_dir = os.path.abspath(Settings().dir)
    if len(parts) >= 2:
        project = parts[-2]
    elif not project:
        # As wandb finds a sweep by its id: the project that holds it, else the default.
        project = store.project_of(store_dir, parts[-1]) or environ.value("PROJECT") \
            or "uncategorized"
    return store_dir, project, parts[-1]


def sweep(sweep: dict[str, Any] | Callable[[], dict[str, Any]], entity: str | None = None,
          project: str | None = None, prior_runs: list[str] | None = None) -> str:
    """Store a sweep (wandb's configuration format); its id, for ``agent()``."""
    config = sweep() if callable(sweep) else sweep
    project = project or (config.get("project") if isinstance(config, dict) else None) \
        or environ.value("PROJECT") or "uncategorized"
    return store.create(os.path.abspath(Settings().dir), project, dict(config))


def _stop_at_next_log(run_id: str, reason: str) -> bool:
    """Stop the trial whose run is ``run_id``: its next ``log()`` raises TrialStopped.
    False if that run is not the current one (``mpbackend.run``).

    Called from the watch's thread. The run's ``log`` is replaced on the instance
    (one attribute store, atomic under the GIL), so a running trial's log() costs
    nothing more while no stop is asked, and the trial stops at a call of its own
    rather than at an exception raised into it between any two bytecodes.
    """
    import mpbackend

    run = mpbackend.run
    if run is None or run.id != run_id:
        return False  # not this trial's run (yet): the watch asks again

    def stopped(*args: Any, **kwargs: Any) -> None:
        raise TrialStopped(f"sweep trial {run_id} stopped by early_terminate: {reason}")

    run.log = stopped  # type: ignore[method-assign]
    return True


def agent(sweep_id: str, function: Callable[[], Any] | None = None,
          entity: str | None = None, project: str | None = None,
          count: int | None = None) -> int:
    """Run trials of the sweep in this process, each by calling ``function()`` (which
    calls ``init()``), up to ``count`` or until the sweep is done. A trial whose
    function raises is recorded ``failed`` (its traceback printed) and the next
    one runs. With ``early_terminate``, a trial hyperband stops gets TrialStopped
    from its next ``log()``; it is recorded ``stopped``. Returns how many trials this agent ran."""
    if function is None:
        raise ValueError("agent() in a script needs function=; the command line "
                         "`mpbackend agent SWEEP_ID` runs the sweep's program")
    import mpbackend

    store_dir, project, sweep_id = _where(sweep_id, project)

    def run_one(trial: dict[str, Any], variables: dict[str, str], watch: Watch) -> str:
        saved = {k: os.environ.get(k) for k in SWEEP_VARIABLES}
        os.environ.update(variables)
        state = "finished"
        watch.start(lambda reason: _stop_at_next_log(trial["run_id"], reason))
        try:
            function()
        except TrialStopped:
            state = "finished"  # the run ends as it would; the trial is recorded stopped
        except Exception:
            state = "failed"
            traceback.print_exc()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            run = mpbackend.run
            if run is not None and run.id == trial["run_id"]:
                run.finish(exit_code=0 if state == "finished" else 1)
        return state

    return run_trials(store_dir, project, sweep_id, count, run_one)
