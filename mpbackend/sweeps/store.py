"""A sweep on disk, and the claim of its next trial (any process, any number of agents).

    <dir>/<project>/.sweeps/<sweep id>/sweep.json     its configuration
    <dir>/<project>/.sweeps/<sweep id>/.lock          flock: one claim at a time
    <dir>/<project>/.sweeps/<sweep id>/trials/<n>.json  {n, params, run_id, state, value}

``claim`` takes the sweep's lock, reads the trials there, picks the next
parameters (``plan``) and writes trial ``n`` before it lets go: two agents, in
two processes or on two machines sharing the directory, never run one trial
twice. ``finish`` records the trial's state and its run's metric value.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from ..shared.errors import StoreError
from ..shared.jsonfiles import locked, read_json, write_json
from ..shared.paths import check_name, make_dirs, new_id
from . import plan

ROOT = ".sweeps"


def sweep_dir(store_dir: str, project: str, sweep_id: str) -> str:
    return os.path.join(store_dir, check_name("project", project), ROOT,
                        check_name("sweep id", sweep_id))


def create(store_dir: str, project: str, config: dict[str, Any]) -> str:
    """Store a new sweep (its configuration checked); its id."""
    config = plan.check(config)
    sweep_id = new_id()
    where = sweep_dir(store_dir, project, sweep_id)
    make_dirs(os.path.join(where, "trials"))
    write_json(os.path.join(where, "sweep.json"), {"id": sweep_id, "project": project,
                                               "config": config, "created_at": time.time()})
    return sweep_id


def project_of(store_dir: str, sweep_id: str) -> str | None:
    """The project under ``store_dir`` that holds sweep ``sweep_id``, if one does."""
    try:
        projects = sorted(os.listdir(store_dir))
    except OSError:
        return None
    for project in projects:
        if os.path.isfile(os.path.join(store_dir, project, ROOT, sweep_id, "sweep.json")):
            return project
    return None


def load(store_dir: str, project: str, sweep_id: str) -> dict[str, Any]:
    doc = read_json(os.path.join(sweep_dir(store_dir, project, sweep_id), "sweep.json"))
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise StoreError(f"no sweep {sweep_id!r} in project {project!r} under {store_dir}")
    return doc


def trials(store_dir: str, project: str, sweep_id: str) -> list[dict[str, Any]]:
    """The sweep's trials, in order."""
    folder = os.path.join(sweep_dir(store_dir, project, sweep_id), "trials")
    out = []
    for name in os.listdir(folder) if os.path.isdir(folder) else ():
        if name.endswith(".json") and name[:-5].isdigit():
            doc = read_json(os.path.join(folder, name))
            if isinstance(doc, dict) and isinstance(doc.get("params"), dict):
                out.append(doc)
    return sorted(out, key=lambda t: t.get("n", 0))


def claim(store_dir: str, project: str, sweep_id: str) -> dict[str, Any] | None:
    """The next trial (written, state ``running``), or None when the sweep is done
    (its grid exhausted, ``run_cap`` trials made, or a trial reached the metric's
    ``target``)."""
    config = load(store_dir, project, sweep_id)["config"]
    where = sweep_dir(store_dir, project, sweep_id)
    with locked(where):
        made = trials(store_dir, project, sweep_id)
        n = len(made)
        cap = config.get("run_cap")
        if isinstance(cap, int) and n >= cap or _reached_target(config, made):
            return None
        method = config["method"]
        if method == "grid":
            combos = plan.grid(config)
            if n >= len(combos):
                return None
            params = combos[n]
        elif method == "random":
            params = plan.random_params(config, f"{sweep_id}:{n}")
        else:
            # A trial hyperband stopped is an observation too: the value it had.
            done = [(plan.flat_values(t["params"]), float(t["value"])) for t in made
                    if t.get("state") in ("finished", "stopped")
                    and isinstance(t.get("value"), (int, float))]
            params = plan.bayes_params(config, done, seed=n)
        trial = {"n": n, "params": params, "run_id": new_id(), "state": "running",
                 "value": None, "agent": f"{socket.gethostname()}:{os.getpid()}",
                 "started": time.time()}
        write_json(os.path.join(where, "trials", f"{n}.json"), trial)
    return trial


def _reached_target(config: dict[str, Any], made: list[dict[str, Any]]) -> bool:
    """A trial's value reached the metric's ``target``: wandb then starts no new trial."""
    metric = config.get("metric") or {}
    target = metric.get("target")
    if not isinstance(target, (int, float)):
        return False
    sign = -1.0 if metric.get("goal") == "maximize" else 1.0
    return any(isinstance(t.get("value"), (int, float)) and sign * t["value"] <= sign * target
               for t in made)


def finish(store_dir: str, project: str, sweep_id: str, trial: dict[str, Any], state: str,
           value: float | None) -> None:
    """Record how a trial ended, and its metric value."""
    where = sweep_dir(store_dir, project, sweep_id)
    with locked(where):
        write_json(os.path.join(where, "trials", f"{int(trial['n'])}.json"),
               {**trial, "state": state, "value": value, "ended": time.time()})
