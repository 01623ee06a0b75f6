"""A trial's side of a sweep, for both agents (``agent()`` in a script, and the
command line's ``mpbackend agent``): the loop that claims and records trials, the
variables a trial's ``init()`` reads, and its metric value read back from its run."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from typing import Any

from . import store


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


def run_trials(store_dir: str, project: str, sweep_id: str, count: int | None,
               run_one: Callable[[dict[str, Any], dict[str, str]], str]) -> int:
    """Claim trials (up to ``count``, or until the sweep is done) and run each with
    ``run_one(trial, its variables)``, which returns ``finished`` or ``failed``;
    record each with its metric value. Returns how many ran."""
    config = store.load(store_dir, project, sweep_id)["config"]
    ran = 0
    with tempfile.TemporaryDirectory(prefix="mpbackend-sweep-") as folder:
        while count is None or ran < count:
            trial = store.claim(store_dir, project, sweep_id)
            if trial is None:
                break
            state = run_one(trial, trial_env(store_dir, project, sweep_id, trial, folder))
            store.finish(store_dir, project, sweep_id, trial, state,
                         metric_value(store_dir, project, trial["run_id"], config))
            ran += 1
    return ran
