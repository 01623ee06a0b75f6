"""define_metric's rules: checked at the call in the user process, applied in the service.

    Run.define_metric(name, ...) --check_metric()--> Metric --DEFINE_METRIC record--> rec_q
    service: Internal.metrics (a MetricDefs with aggregates) --define()/resolve()--> summary
    readers: MetricDefs(stored defs).resolve(key) --> hidden metrics left out of summaries

A definition is stored as ``{"step_metric", "summary": [ops], "goal", "hidden",
"step_sync"}`` under a metric name or a glob (``"val/*"``).
"""

from __future__ import annotations

import fnmatch
from typing import Any, NamedTuple

SUMMARY_OPS = ("min", "max", "mean", "best", "first", "last", "none")
GOALS = {"minimize": "minimize", "min": "minimize", "maximize": "maximize", "max": "maximize"}


class Metric(NamedTuple):
    """What ``define_metric`` defined (its return value)."""

    name: str
    step_metric: str | None = None
    summary: tuple[str, ...] = ()
    goal: str | None = None
    hidden: bool | None = None
    step_sync: bool | None = None
    overwrite: bool | None = None


def check_metric(name: Any, step_metric: Any, summary: Any, goal: Any, hidden: Any,
                 step_sync: Any, overwrite: Any = None) -> Metric:
    """Check define_metric's arguments at the call."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"define_metric() needs a non-empty str name, not {name!r}")
    if step_metric is not None and (not isinstance(step_metric, str) or not step_metric):
        raise TypeError(f"step_metric must be a non-empty str, not {step_metric!r}")
    ops: tuple[str, ...] = ()
    if summary is not None:
        if not isinstance(summary, str):
            raise TypeError(f"summary must be a str such as 'min' or 'min,max', not {summary!r}")
        ops = tuple(op.strip() for op in summary.split(",") if op.strip())
        bad = [op for op in ops if op not in SUMMARY_OPS]
        if bad:
            raise ValueError(f"unknown summary op(s) {bad}; use {', '.join(SUMMARY_OPS)}")
    if goal is not None:
        if goal not in GOALS:
            raise ValueError(f"goal must be 'minimize' or 'maximize', not {goal!r}")
        goal = GOALS[goal]
    if "best" in ops and goal is None:
        raise ValueError("summary='best' needs goal='minimize' or goal='maximize'")
    return Metric(name, step_metric, ops, goal, None if hidden is None else bool(hidden),
                  None if step_sync is None else bool(step_sync),
                  None if overwrite is None else bool(overwrite))


class MetricDefs:
    """One run's ``define_metric`` definitions, and which one applies to a key.

    A definition is ``{"step_metric", "summary": [ops], "goal", "hidden",
    "step_sync"}`` under a metric name or a glob (``"val/*"``); an exact name
    wins over a glob, a longer glob over a shorter one. A glob never matches a
    key that starts with ``_`` (``_step``, ``_runtime``, a user's ``_foo``), as in
    wandb; an exact name does.
    """

    def __init__(self, defs: dict[str, dict] | None = None) -> None:
        self.defs: dict[str, dict[str, Any]] = dict(defs or {})
        self._resolved: dict[str, dict[str, Any] | None] = {}
        self.step_metrics = self._step_metrics()

    def define(self, name: str, spec: dict[str, Any]) -> None:
        """Add a definition. As in wandb 0.31, a later call for the same name merges
        into the earlier one: what it leaves out (None) stays, its summary ops are
        added (``"min"`` then ``"max"`` is both; ops without ``"none"`` drop an earlier
        ``"none"``); with ``overwrite`` it replaces it."""
        old = {} if spec.get("overwrite") else self.defs.get(name, {})
        given = {k: v for k, v in spec.items() if v is not None and k != "overwrite"}
        new_ops = list(spec.get("summary") or [])
        old_ops = list(old.get("summary", []))
        if new_ops and "none" not in new_ops:
            old_ops = [op for op in old_ops if op != "none"]  # ops given again re-enable it
        ops = [*old_ops, *new_ops]
        merged = {**old, **given, "summary": list(dict.fromkeys(ops))}
        if merged.get("step_metric") and merged.get("step_sync") is None:
            merged["step_sync"] = True
        self.defs[name] = merged
        self._resolved.clear()
        self.step_metrics = self._step_metrics()

    @staticmethod
    def ops(d: dict[str, Any] | None) -> list[str]:
        """The summary ops a definition asks for; ``["none"]`` if ``none`` is among
        them (as in wandb, ``summary="last,none"`` leaves the key out)."""
        found = d.get("summary") if d is not None else None
        if not found:
            return []
        return ["none"] if "none" in found else list(found)

    def _step_metrics(self) -> frozenset[str]:
        return frozenset(d["step_metric"] for d in self.defs.values()
                         if isinstance(d, dict) and isinstance(d.get("step_metric"), str))

    def resolve(self, key: str) -> dict[str, Any] | None:
        """The definition that applies to ``key``, or None (cached per key)."""
        try:
            return self._resolved[key]
        except KeyError:
            pass
        found = self.defs.get(key)
        if found is None and not key.startswith("_"):
            globs = [g for g in self.defs if ("*" in g or "?" in g) and fnmatch.fnmatchcase(key, g)]
            if globs:
                found = self.defs[max(globs, key=len)]
        self._resolved[key] = found
        return found
