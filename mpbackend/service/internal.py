"""Internal: one run inside the service process, the handler and writer of a stream.

    StreamMux --history/config/summary records--> Internal --rows--> store.RunWriter
              <--reply values (init, flush, finish)--

An Internal keeps the state that every process logging into the run shares: the
step counter, the rows not yet committed, the summary and the config. It applies
wandb's step rules:

* ``log(d)`` commits a row at the current ``_step`` and moves the step on;
* ``log(d, commit=False)`` merges ``d`` into the pending row;
* ``log(d, step=s)``: ``s`` equal to the current step merges into the pending row,
  a larger ``s`` commits the pending row and moves the step to ``s``, a smaller
  ``s`` is dropped with a warning; with a step given, ``commit`` defaults to False;
* ``log({})`` with ``commit`` not False commits the pending row, or else an empty
  row of its own: it takes a step, as in wandb.

Each process has its own pending row, so a DataLoader worker's partial row never
merges with the main loop's; every committed row, from any process, takes the
next step. Rows from a process other than the run's owner carry ``_pid`` (and
``_worker``, the DataLoader worker id, where there is one). A row logged with
nested dicts is flattened here (``{"n": {"a": 1}}`` is the history key ``n.a``).

The summary (``tree``) is what wandb 0.31 stores, written in order, the last
write winning: each committed row sets its keys (nested where the row nested
them; a None value sets nothing) to their values, or to what ``define_metric``
asks (``Metrics``): ``summary="min"`` (and ``max``, ``mean``, ``first``,
``last``, ``best`` by ``goal``, several joined by commas) stores ``{"min": ...}``
over every value the key had since the run began, and ``"none"`` writes nothing;
``run.summary[k] = v`` sets ``k``. A metric with a ``step_metric`` and
``step_sync`` gets the step metric's last numeric value (or 0) filled into rows
that lack it.

Rows, config, summary and state reach the database when the StreamMux calls
``commit()`` (every ``commit_interval``), on a flush barrier, and at finish.
"""

from __future__ import annotations

import functools
import math
import os
import time
import traceback
from typing import Any

from ..shared import messages as m
from ..shared.metrics import MetricDefs
from ..shared.paths import db_path, make_dirs
from ..store import blobs, files
from ..store.files import RunLock
from ..store.reader import RunReader
from ..store.writer import RunWriter

MAX_ERRORS = 20  # unexpected service errors kept, with tracebacks, per run
MAX_ALERTS = 1000  # run.alert()s kept per run


def _number(value: Any) -> bool:
    return (type(value) is int or type(value) is float) and value == value


# A process's row not committed yet: (row, its time, DataLoader worker id, the paths
# of its keys logged nested, as flatten_row gives them).
Pending = tuple[dict[str, Any], float, Any, dict[str, tuple[str, ...]]]
NO_PATHS: dict[str, tuple[str, ...]] = {}  # a row with no nested key (never written to)


def _paths_from(stored: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(stored, dict):
        return {}
    return {k: tuple(v) for k, v in stored.items() if isinstance(k, str)
            and isinstance(v, list) and v and all(isinstance(p, str) for p in v)}


def _pending_from(stored: Any) -> dict[int, Pending]:
    """The pending rows kept in a run's ``extra``, checked (nothing read is trusted)."""
    pending: dict[int, Pending] = {}
    if not isinstance(stored, dict):
        return pending
    for pid, entry in stored.items():
        if (isinstance(pid, str) and pid.isdigit() and isinstance(entry, list)
                and len(entry) in (3, 4) and isinstance(entry[0], dict)
                and isinstance(entry[1], (int, float)) and not isinstance(entry[1], bool)
                and (entry[2] is None or type(entry[2]) is int)):
            paths = _paths_from(entry[3]) if len(entry) == 4 else {}
            pending[int(pid)] = (dict(entry[0]), float(entry[1]), entry[2], paths)
    return pending


def flatten_row(row: dict[str, Any]) -> tuple[dict[str, Any], dict[str, tuple[str, ...]]]:
    """A logged row with nested dicts as a history row: ``{"n": {"a": 1}}`` becomes
    ``{"n.a": 1}``, and the paths of such keys (``{"n.a": ("n", "a")}``) say where
    they go in the (nested) summary. An empty dict leaves nothing, as in wandb."""
    flat: dict[str, Any] = {}
    paths: dict[str, tuple[str, ...]] = {}

    def walk(prefix: tuple[str, ...], value: dict[str, Any]) -> None:
        for key, item in value.items():
            path = (*prefix, key)
            if type(item) is dict:
                walk(path, item)
            else:
                name = ".".join(path)
                flat[name] = item
                paths[name] = path

    for key, value in row.items():
        if type(value) is dict:
            walk((key,), value)
        else:
            flat[key] = value
    return flat, paths


def set_path(tree: dict[str, Any], path: tuple[str, ...] | list[str], value: Any) -> None:
    """``tree[p0][p1]...= value``; a value in the way that is not a dict is replaced,
    as wandb replaces ``k: 1`` by ``k: {"a": 2}`` when ``{"k": {"a": 2}}`` is logged."""
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if type(child) is not dict:
            child = node[part] = {}
        node = child
    node[path[-1]] = value


class Metrics(MetricDefs):
    """One run's ``define_metric`` definitions, the aggregates they ask for, and the
    step metrics' last numeric values, kept as committed rows arrive.

    An aggregate (count, sum, min, max, first, last) covers every value of its key
    since the run began: a key logged before its ``define_metric`` has its earlier
    values read back from the store when it is defined (``Internal.define_metric``).
    """

    def __init__(self, defs: dict[str, dict] | None = None,
                 aggregates: dict[str, dict] | None = None,
                 step_values: dict[str, Any] | None = None) -> None:
        super().__init__(defs)
        self.aggregates: dict[str, dict[str, Any]] = dict(aggregates or {})
        self.step_values: dict[str, Any] = dict(step_values or {})

    def sync_steps(self, row: dict[str, Any]) -> set[str]:
        """Remember the step metrics' numeric values in ``row``, then fill the step
        metric into a row that logs a synced metric without it: its last numeric
        value, or 0 before it has one (wandb's ``step_sync``). A text value of a step
        metric is stored in its row but never filled into another. Returns the
        step metrics filled in."""
        values = self.step_values
        for x in self.step_metrics:
            if x in row and type(row[x]) in (int, float):  # NaN too, as in wandb
                values[x] = row[x]
        filled = set()
        for key in list(row):
            d = self.resolve(key)
            if d is not None and d.get("step_sync"):
                metric = d.get("step_metric")
                if metric and metric not in row:
                    row[metric] = values.get(metric, 0)
                    filled.add(metric)
        return filled

    def observe(self, row: dict[str, Any]) -> None:
        """Add one committed row's values to the aggregates of keys with summary ops,
        and of keys whose aggregate a summary set or delete restarted."""
        aggregates = self.aggregates
        for key, value in row.items():
            agg = aggregates.get(key)
            if agg is not None:  # kept (ops, or restarted by a summary set or delete)
                add_value(agg, value)
            elif self.ops(self.resolve(key)):
                add_value(aggregates.setdefault(key, new_aggregate()), value)

    def shaped(self, key: str, value: Any) -> Any:
        """What a committed value of ``key`` puts in the summary: the value itself, the
        ``{op: aggregate}`` dict its definition asks for, or ``NONE`` (nothing)."""
        d = self.resolve(key)
        ops = self.ops(d)
        if not ops:
            return value
        if ops == ["none"]:
            return NONE
        agg = self.aggregates.get(key, {})
        shaped: dict[str, Any] = {}
        for op in ops:
            if op == "mean":
                if agg.get("count"):
                    shaped["mean"] = agg["sum"] / agg["count"]
            elif op == "best":
                goal = "min" if d is not None and d.get("goal") == "minimize" else "max"
                if goal in agg:
                    shaped["best"] = agg[goal]
            elif op in ("first", "last"):
                shaped[op] = agg.get(op, value)
            elif op in agg:
                shaped[op] = agg[op]
        return shaped


NONE = object()  # shaped(): the key's definition leaves it out of the summary


def new_aggregate() -> dict[str, Any]:
    return {"count": 0, "sum": 0.0}


def add_value(agg: dict[str, Any], value: Any) -> None:
    """One value into an aggregate: ``first`` and ``last`` of any value (None, text and
    lists too, as in wandb), min/max/mean of numbers only (NaN and text are skipped,
    as README says)."""
    if "first" not in agg:
        agg["first"] = value
    agg["last"] = value
    if not _number(value):
        return
    try:
        total = agg["sum"] + value
    except OverflowError:  # an int too large for a float: the mean is infinite
        total = math.inf if value > 0 else -math.inf
    agg["count"] += 1
    agg["sum"] = total
    if "min" not in agg or value < agg["min"]:
        agg["min"] = value
    if "max" not in agg or value > agg["max"]:
        agg["max"] = value


class Internal:
    """The service-side state of one run (one stream of the StreamMux)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        """Open the run's store as ``spec`` (built by ``run.init``) describes it.

        Raises FileExistsError / FileNotFoundError for ``resume`` rules, and
        StoreError when the database cannot be written.
        """
        self.id: str = spec["id"]
        self.run_dir: str = spec["run_dir"]
        self.owner_pid: int = spec["pid"]
        # One writer per run, across processes and machines: taken before the store
        # is looked at, so two opens of one run cannot both find it new (or old).
        make_dirs(self.run_dir)
        files.check_links(self.run_dir)  # before the lock file is made in it
        lock = RunLock(self.run_dir, self.id, self.owner_pid)
        try:
            self._open(spec, lock)
        except BaseException:
            lock.close()
            raise

    def _open(self, spec: dict[str, Any], lock: RunLock) -> None:
        resume = spec.get("resume")
        path = db_path(self.run_dir)
        if files.empty(path):  # killed while SQLite made it, by an older version
            files.remove_empty(path)
        exists = os.path.exists(path)
        if resume == "must" and not exists:
            raise FileNotFoundError(
                f"resume='must' but run {self.id!r} does not exist in {self.run_dir}")
        if resume == "never" and exists:
            raise FileExistsError(
                f"resume='never' but run {self.id!r} already exists in {self.run_dir}")
        resuming = exists and resume in ("allow", "must", True, "auto")
        if exists and not resuming:
            raise FileExistsError(
                f"run {self.id!r} already exists in {self.run_dir}; pass resume='allow' "
                "to continue it or choose another id")
        self.step = 0
        self.config: dict[str, Any] = dict(spec.get("config") or {})
        self.last: dict[str, Any] = {}  # every key's last logged value, flat
        # The summary as wandb stores it: each committed row sets its keys (nested
        # where the row nested them; a None value sets nothing), shaped by
        # define_metric; run.summary[k] = v sets k. The last write wins.
        self.tree: dict[str, Any] = {}
        # The nested-key paths of the rows of one rows() batch (by id(row)), for _extend.
        self._row_paths: dict[int, dict[str, tuple[str, ...]]] = {}
        # Keys the user set on the summary: as in wandb, their later values are stored
        # plain, whatever define_metric asked (wandb's "explicit" summary keys).
        self.explicit: set[str] = set()
        self.metrics = Metrics()
        self.start_time: float = spec["start_time"]
        self.runtime_before = 0.0
        self.errors: list[dict[str, Any]] = []  # unexpected errors (note_error), the first few
        self.error_count = 0
        self.alerts: list[dict[str, Any]] = []
        self.preempting = False
        self.entity: str = spec.get("entity") or ""
        self.charts: dict[str, Any] = {}  # wandb.plot charts logged: key -> description
        self.project: str = spec["project"]
        self.sweep: str | None = spec.get("sweep")  # the sweep this run is a trial of
        # Artifacts this run logged and used ("name:vN"), and what each log_artifact()
        # came to (client id -> manifest, or {"error": text}) for Artifact.wait().
        self.logged_artifacts: list[str] = []
        self.used_artifacts: list[str] = []
        self._artifact_results: dict[str, dict[str, Any]] = {}
        self._media: Any = None  # media.encode.MediaStore, made at the first media value
        if resuming:
            with RunReader(self.run_dir) as reader:
                old = reader.info()
            extra = old["extra"]
            self.step = old["step"]
            self.config = {**old["config"], **self.config}
            self.metrics = Metrics(extra.get("metrics"), extra.get("aggregates"),
                                   extra.get("step_values"))
            self.tree = dict(old["summary"])
            self.last = dict(extra.get("last", old["summary"]))
            self.explicit = set(extra.get("explicit", []))
            self.runtime_before = float(self.last.get("_runtime", 0.0))
            self.errors = list(extra.get("service_errors", []))[:MAX_ERRORS]
            self.error_count = int(extra.get("service_error_count", len(self.errors)))
            self.alerts = list(extra.get("alerts", []))[:MAX_ALERTS]
            self.entity = self.entity or str(extra.get("entity") or "")
            charts = extra.get("charts")
            self.charts = dict(charts) if isinstance(charts, dict) else {}
            self.logged_artifacts = [a for a in extra.get("logged_artifacts", [])
                                     if isinstance(a, str)]
            self.used_artifacts = [a for a in extra.get("used_artifacts", [])
                                   if isinstance(a, str)]
        self.resumed = resuming
        self.writer = RunWriter(self.run_dir, {
            "id": self.id, "project": spec["project"], "name": spec.get("name"),
            "created_at": spec["start_time"], "step": self.step, "config": self.config,
            "tags": spec.get("tags") or [], "notes": spec.get("notes"),
            "run_group": spec.get("group"), "job_type": spec.get("job_type"),
            "host": spec.get("host"), "pid": self.owner_pid,
        }, resume=resuming, lock=lock)
        self.writer.time_base = self.runtime_before - self.start_time
        if resuming:
            self.writer.update_run(config=self.config)
        # Each process's row not committed yet (log(step=) / commit=False). It is kept
        # with the run's stored state at every commit, in the same transaction as the
        # replay mark, so a new service after a restart goes on with it.
        self._pending: dict[int, Pending] = {}
        self._pending_changed = False
        if resuming and old["pid"] == self.owner_pid:  # the same process: a restart
            self._pending = _pending_from(extra.get("pending"))
        self.dropped_steps = 0
        self.dropped_records = 0
        self.state = "running"

    # -- records ---------------------------------------------------------

    def rows(self, pid: int, worker: Any, records: list[tuple]
             ) -> tuple[list[str], list[tuple[Exception, str]]]:
        """Apply a run of ``log()`` records of one process, in order.

        Records without ``step`` or ``commit``, while no row is pending and no
        metric is defined, each make a row at the next step: they are handled
        here in one loop and handed to the store together. Any other record goes
        through ``history``; one that fails there costs only itself. Returns the
        warnings for the user and the failures (exception, traceback text).
        """
        warnings: list[str] = []
        failures: list[tuple[Exception, str]] = []
        simple = not self.metrics.defs and not self.metrics.aggregates
        child = pid != self.owner_pid
        batch: list[dict[str, Any]] = []
        times: list[float] = []
        floats = not child  # every row in batch holds floats only
        floats_op = m.HISTORY_FLOATS
        any_op = m.HISTORY_ANY
        media_op = m.HISTORY_MEDIA
        paths_of = self._row_paths
        for record in records:
            op, _, row, step, commit, ts = record
            paths = NO_PATHS
            if (op == any_op or op == media_op) and dict in set(map(type, row.values())):
                row, paths = flatten_row(row)  # the service flattens a nested row
            if op == media_op:
                try:
                    row = self._write_media(row)  # the files first; the row holds Refs
                except Exception as exc:
                    failures.append((exc, traceback.format_exc()))
                    continue
            if simple and step is None and commit is None and not self._pending:
                if op != floats_op:
                    floats = False
                if child:
                    row["_pid"] = pid
                    if worker is not None:
                        row["_worker"] = worker
                batch.append(row)  # log({}) too: an empty row takes a step, as in wandb
                times.append(ts)
                if paths:
                    paths_of[id(row)] = paths
                continue
            if batch:
                self._extend(batch, times, floats)
                batch, times = [], []
                floats = not child
            try:
                warning = self.history(pid, worker, row, step, commit, ts, paths)
            except Exception as exc:
                failures.append((exc, traceback.format_exc()))
                continue
            if warning:
                warnings.append(warning)
        if batch:
            self._extend(batch, times, floats)
        return warnings, failures

    def _extend(self, rows: list[dict[str, Any]], times: list[float], floats: bool) -> None:
        """Hand rows (their ``_timestamp``s in ``times``) to the store; update ``last``."""
        self.writer.extend(self.step, rows, times, floats)
        self.step += len(rows)
        last = self.last
        final = rows[-1]
        keys = final.keys()
        paths_of = self._row_paths
        if all(map(keys.__eq__, map(dict.keys, rows))):  # the same keys in every row
            last.update(final)
            if not paths_of and (floats or None not in final.values()):
                self.tree.update(final)  # no define_metric here: the values themselves
            else:
                for row in rows:
                    self._summarize(row, paths_of.get(id(row), NO_PATHS))
        else:
            for row in rows:
                last.update(row)
                self._summarize(row, paths_of.get(id(row), NO_PATHS))
        paths_of.clear()
        tree = self.tree
        tree["_runtime"] = last["_runtime"] = self.runtime_before + times[-1] - self.start_time
        tree["_timestamp"] = last["_timestamp"] = times[-1]
        tree["_step"] = last["_step"] = self.step - 1

    def _summarize(self, row: dict[str, Any], paths: dict[str, tuple[str, ...]],
                   filled: frozenset[str] | set[str] = frozenset()) -> None:
        """A committed row's values into the summary (``tree``), as wandb stores them:
        a key the row logged nested at its path (``paths``), any other as it is (a
        literal ``"n.a"`` is a key of its own, as in wandb). A step metric the row
        got filled in (``filled``) is stored plain unless it has a definition of its
        own: wandb applies a glob's summary ops to logged values only."""
        tree = self.tree
        metrics = self.metrics if self.metrics.defs else None
        for key, value in row.items():
            if (metrics is not None and key not in self.explicit
                    and (key not in filled or key in metrics.defs)
                    and metrics.ops(metrics.resolve(key))):
                value = metrics.shaped(key, value)  # {"last": None} too, as in wandb
                if value is NONE:
                    continue
            elif value is None:
                continue  # log({"x": None}) leaves the summary's x as it was
            path = paths.get(key) if paths else None
            if path is None:  # a key logged flat, a literal "n.a" too
                tree[key] = value
            else:
                set_path(tree, path, value)

    def history(self, pid: int, worker: Any, data: dict[str, Any], step: int | None,
                commit: bool | None, ts: float,
                paths: dict[str, tuple[str, ...]] = NO_PATHS) -> str | None:
        """Apply one ``log()`` call (``paths``: its nested keys, ``flatten_row``);
        returns a warning for the user, or None."""
        self._pending_changed = True
        if step is None and commit is None and not self._pending:
            self._commit_row(pid, worker, data, ts, paths)  # the common case: its own row
            return None
        pending = self._pending.get(pid)
        if step is not None:
            if step < self.step:
                self.dropped_steps += 1
                return (f"step {step} is less than the current step {self.step}: steps must "
                        f"increase, so the data logged with it ({sorted(data)}) was dropped")
            if step > self.step:
                self._commit_all()
                self.step = step
                pending = None
            if pending is None:
                self._pending[pid] = (data, ts, worker, dict(paths))
            else:
                self._merge(pending, data, paths)
                self._pending[pid] = (pending[0], ts, worker, pending[3])
            if commit:  # an explicit commit stores the row, an empty one too
                self._commit_pending(pid, empty=True)
            return None
        if commit is False:
            if pending is None:
                self._pending[pid] = (data, ts, worker, dict(paths))
            else:
                self._merge(pending, data, paths)
                self._pending[pid] = (pending[0], ts, worker, pending[3])
            return None
        if pending is not None:
            del self._pending[pid]
            self._merge(pending, data, paths)
            data, paths = pending[0], pending[3]
        self._commit_row(pid, worker, data, ts, paths)  # log({}) too: it takes a step
        return None

    @staticmethod
    def _merge(pending: Pending, data: dict[str, Any],
               paths: dict[str, tuple[str, ...]]) -> None:
        """Merge a log() call's row into a pending one as wandb merges them, by the
        keys the call logged at its top level: ``{"loss": 3}`` replaces a pending
        ``{"loss": {"a": 1}}`` whole (its ``loss.a`` goes), and the other way round.
        A literal ``"n.a"`` is a top-level key of its own: it leaves a pending
        ``{"n": {"b": 1}}`` as it is."""
        row, row_paths = pending[0], pending[3]
        if paths or row_paths:
            tops = {paths[k][0] if k in paths else k for k in data}
            for key in [k for k in row
                        if (row_paths[k][0] if k in row_paths else k) in tops]:
                del row[key]
                row_paths.pop(key, None)
        for key in data:
            if key in paths:
                row_paths[key] = paths[key]
            else:
                row_paths.pop(key, None)  # logged literally now
        row.update(data)

    def _commit_row(self, pid: int, worker: Any, row: dict[str, Any], ts: float,
                    paths: dict[str, tuple[str, ...]] = NO_PATHS) -> None:
        row["_runtime"] = self.runtime_before + ts - self.start_time
        row["_timestamp"] = ts
        metrics = self.metrics
        filled: set[str] | frozenset[str] = frozenset()
        if metrics.defs or metrics.aggregates:  # an aggregate a delete made counts too
            if metrics.aggregates:
                self._reshaped(row, paths)
            filled = metrics.sync_steps(row)
            metrics.observe(row)
        self.last.update(row)
        self.last["_step"] = self.step
        self._summarize(row, paths, filled)
        self.tree["_step"] = self.step
        if pid != self.owner_pid:
            row["_pid"] = pid
            if worker is not None:
                row["_worker"] = worker
        self.writer.append(self.step, row)
        self.step += 1

    def _reshaped(self, row: dict[str, Any], paths: dict[str, tuple[str, ...]]) -> None:
        """A key logged as a dict after values (or as a value after a dict) starts its
        aggregates again, as wandb's do: ``{"k": {"a": 1}}`` drops ``k``'s, and
        ``{"k": 1}`` after ``{"k": {"a": ..}}`` drops ``k.a``'s."""
        # Emptied, not removed: a later define_metric must not read the values from
        # before the change back from the store.
        aggregates = self.metrics.aggregates
        for path in paths.values():
            for i in range(1, len(path)):
                name = ".".join(path[:i])
                if name in aggregates:
                    aggregates[name] = new_aggregate()
        tree = self.tree
        for key in row:
            if key not in paths and type(tree.get(key)) is dict and key not in aggregates:
                prefix = key + "."
                for name in [k for k in aggregates if k.startswith(prefix)]:
                    aggregates[name] = new_aggregate()

    def _commit_pending(self, pid: int, empty: bool = False) -> None:
        """Commit ``pid``'s pending row; an empty one only if ``empty`` (a log() call
        that commits it), not when a later step or the finish does."""
        pending = self._pending.pop(pid, None)
        if pending is not None and (pending[0] or empty):
            self._commit_row(pid, pending[2], pending[0], pending[1], pending[3])

    def _commit_all(self) -> None:
        """Commit every process's pending row, the owner's first."""
        for pid in sorted(self._pending, key=lambda p: p != self.owner_pid):
            self._commit_pending(pid)

    def update_meta(self, data: dict[str, Any]) -> None:
        """``run.name = ...`` (and notes, tags, group, job_type): stored at the next commit.

        Checked again here (the record is data from another process): only the
        known fields, each a str or None (tags a list of str).
        """
        fields = {}
        for key, value in dict(data).items():
            if key == "preempting" and value is True:  # run.mark_preempting()
                self.preempting = True
                self._save_summary()
                continue
            column = m.META_FIELDS.get(key)
            ok = (isinstance(value, list) and all(isinstance(t, str) for t in value)
                  if key == "tags" else value is None or isinstance(value, str))
            if column is None or not ok:
                raise TypeError(f"a run attribute that cannot be set: {key!r}={value!r:.100}")
            fields[column] = value
        self.writer.update_run(**fields)

    def alert(self, alert: dict[str, Any]) -> None:
        """``run.alert()``: kept with the run (``extra["alerts"]``, the first MAX_ALERTS)."""
        if (not isinstance(alert, dict) or not isinstance(alert.get("title"), str)
                or not isinstance(alert.get("text"), str)):
            raise TypeError(f"a malformed alert: {alert!r:.200}")
        if len(self.alerts) < MAX_ALERTS:
            self.alerts.append(alert)
        self._save_summary()

    def update_config(self, data: dict[str, Any]) -> None:
        self.config.update(data)
        self.writer.update_run(config=self.config)

    def _write_media(self, row: dict[str, Any]) -> dict[str, Any]:
        """A row's media written as files (``mpbackend.media.encode``); the row of Refs."""
        if self._media is None:
            from ..media.encode import MediaStore  # the service imports it only for media

            self._media = MediaStore(functools.partial(blobs.put, self.run_dir))
            self._media.charts = self.charts
        return self._media.row(row)

    def log_artifact(self, client_id: str, spec: dict[str, Any]) -> None:
        """Store a logged artifact as the next version of its name (in this run's
        project); what it came to waits for ``artifact_result``. A failure (a file
        gone since add_file) is kept for it too, and raised by Artifact.wait()."""
        from ..artifacts import registry  # the service imports it only for artifacts

        try:
            manifest = registry.write_version(os.path.dirname(self.run_dir), spec, self.id,
                                              self.project)
        except Exception as exc:
            self._artifact_results[client_id] = {"error": f"{type(exc).__name__}: {exc}"}
            raise
        self._artifact_results[client_id] = manifest
        label = f"{manifest['name']}:v{manifest['version']}"
        if label not in self.logged_artifacts:  # the same contents again: one version
            self.logged_artifacts.append(label)
        self._save_summary()

    def artifact_result(self, client_id: str) -> dict[str, Any]:
        """The manifest stored for a log_artifact() (ValueError if it failed)."""
        result = self._artifact_results.get(client_id)
        if result is None:
            raise KeyError(f"no artifact was logged as {client_id!r} in run {self.id}")
        if "error" in result:
            raise ValueError(f"log_artifact() failed in the service: {result['error']}")
        return result

    def use_artifact(self, used: dict[str, Any]) -> None:
        """A run used ``project/name:v<N>``: kept with the run and with the version."""
        from ..artifacts import registry

        project, name, version = str(used["project"]), str(used["name"]), int(used["version"])
        project_dir = os.path.join(os.path.dirname(os.path.dirname(self.run_dir)), project)
        registry.add_usage(project_dir, name, version, {"id": self.id, "project": self.project})
        label = f"{name}:v{version}" if project == self.project else f"{project}/{name}:v{version}"
        if label not in self.used_artifacts:
            self.used_artifacts.append(label)
        self._save_summary()

    def update_summary(self, data: dict[str, Any], deleted: list[str]) -> None:
        """The user set (or deleted) summary keys: set as given (None too), until a
        later row logs the key again (the last write wins, as in wandb)."""
        if any(type(v) is m.Media or type(v) in (list, dict) for v in data.values()):
            data = self._write_media(data)
        self.tree.update(data)
        metrics = self.metrics
        for key in data:
            # As wandb: the key is stored plain from now on if a definition with summary
            # ops applies to it already (its own, or a glob that has matched it: the key
            # was logged); one defined, or first matched, after the set shapes it again.
            if metrics.ops(metrics.resolve(key)) and (key in metrics.defs or key in self.last):
                self.explicit.add(key)
            elif type(data[key]) is dict and "_type" not in data[key]:
                self._restart(key, data[key])
        for key in deleted:
            self.tree.pop(key, None)
            self._forget_first(key)
        self._save_summary()

    def _restart(self, key: str, value: dict[str, Any]) -> None:
        """A summary set of ``k`` to a dict restarts the aggregates of the keys under it
        that a definition shapes (``k.a`` for ``{"k": {"a": ..}}``): as wandb's, they
        cover what is logged after the set. (A set of a plain value restarts
        nothing: a definition made later still covers every value logged.)"""
        metrics = self.metrics
        for name in flatten_row({key: value})[0]:
            if metrics.ops(metrics.resolve(name)):
                metrics.aggregates[name] = new_aggregate()

    def _forget_first(self, key: str) -> None:
        """``del summary[k]``: as in wandb, ``first`` starts again (the next value
        logged is it); the other aggregates keep every value."""
        aggregates = self.metrics.aggregates
        agg = aggregates.get(key)
        if agg is None and key in self.last:
            agg = aggregates[key] = new_aggregate()
            for value in self.writer.logged_values([key]).get(key, ()):
                add_value(agg, value)
        if agg is not None:
            agg.pop("first", None)

    def define_metric(self, name: str, spec: dict[str, Any]) -> None:
        """Add a definition (merged into an earlier one of the name, see
        ``MetricDefs.define``). Its aggregates cover every value since the run
        began (or since a summary set restarted them): a key already logged has its
        values read back from the store here. An aggregate, once made, is kept up
        to date with every value, so a definition dropped and made again finds it.
        The summary is not reshaped until the key is logged again (as in wandb)."""
        metrics = self.metrics
        metrics.define(name, spec)
        missing = [key for key in self.last
                   if key not in metrics.aggregates and metrics.ops(metrics.resolve(key))]
        if missing:
            logged = self.writer.logged_values(missing)
            for key in missing:
                agg = metrics.aggregates[key] = new_aggregate()
                for value in logged.get(key, ()):
                    add_value(agg, value)
        self._save_summary()

    def summary(self) -> dict[str, Any]:
        """The summary as stored: see ``tree``."""
        return self.tree

    def close_after_failure(self, state: str) -> None:
        """Finishing failed: store the state if the store still takes it, and close."""
        self.state = state
        try:
            self.writer.update_run(state=state, updated_at=time.time())
            self._save_summary()
        finally:
            self.writer.close()

    def note_error(self, text: str, tb: str) -> None:
        """Keep an unexpected error of the service with the run (``extra["service_errors"]``).

        The first MAX_ERRORS are kept with their tracebacks, all are counted; they
        reach the store with the next commit.
        """
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"time": time.time(), "error": text, "traceback": tb})
        self._save_summary()

    def _save_summary(self) -> None:
        """Queue the summary and what it is computed from for the next commit."""
        self.writer.update_run(step=self.step, summary=self.summary(), extra={
            "metrics": self.metrics.defs, "aggregates": self.metrics.aggregates,
            "step_values": self.metrics.step_values, "last": self.last,
            "explicit": sorted(self.explicit),
            "dropped_steps": self.dropped_steps, "dropped_records": self.dropped_records,
            "lost_rows": self.writer.lost_rows, "service_errors": self.errors,
            "service_error_count": self.error_count, "alerts": self.alerts,
            "preempting": self.preempting, "entity": self.entity, "charts": self.charts,
            "logged_artifacts": self.logged_artifacts, "used_artifacts": self.used_artifacts,
            "sweep": self.sweep,
            "pending": {str(pid): [row, ts, worker, paths]
                        for pid, (row, ts, worker, paths) in self._pending.items()}})

    # -- transactions ----------------------------------------------------

    def commit(self, mark: tuple[str, int, int | None] | None = None) -> None:
        """Write the committed rows and the run's current state to the store.

        ``mark``: the user process's last batch applied (token, number), stored
        with the rows, so a replay after a restart skips what is already here.
        """
        if self.writer.rows_pending or self._pending_changed:
            self._save_summary()
            self._pending_changed = False
        if mark is not None:
            self.writer.mark = mark
        self.writer.commit()

    def take_problems(self) -> list[str]:
        """Why rows could not be stored since the last call (they are counted in
        ``lost_rows``); each is also kept with the run, as an unexpected error is."""
        problems, self.writer.unstorable = self.writer.unstorable, []
        for text in problems:
            self.note_error(text, "")
        return problems

    def take_events(self) -> list[str]:
        """What happened to the run's files since the last call (its database deleted
        and written anew, say); each is also kept with the run."""
        events, self.writer.events = self.writer.events, []
        for text in events:
            self.note_error(text, "")
        return events

    def stored_through(self, token: str) -> tuple[int, int | None]:
        """How far the store holds this run's records of the process ``token``:
        ``(seq, upto)``, every batch before ``seq`` and the first ``upto`` records of
        batch ``seq`` (None: all of them); ``(-1, None)`` if none."""
        mark = self.writer.stored_mark
        if mark is None or mark[0] != token:
            return -1, None
        return mark[1], mark[2]

    def flush(self, mark: tuple[str, int, int | None] | None = None) -> dict[str, Any]:
        """[8] Everything received so far is committed when this returns."""
        self.commit(mark)
        return {"step": self.step}

    def finish(self, state: str, exit_code: int | None, dropped: int = 0,
               mark: tuple[str, int, int | None] | None = None) -> dict[str, Any]:
        """[a] Commit pending rows, record the final state, close the store.

        ``dropped`` (records the user side dropped) and the rows the store could
        not take are stored in the run's ``extra`` and returned. ``mark`` is
        stored with the final rows, as at every commit (see ``commit``).
        """
        if mark is not None:
            self.writer.mark = mark
        self._commit_all()
        self.state = state
        self.dropped_records = dropped
        self._save_summary()
        self.writer.update_run(state=state, exit_code=exit_code, updated_at=time.time())
        self.writer.close()
        return {"state": state, "summary": self.summary(), "step": self.step,
                "dropped_steps": self.dropped_steps, "lost_rows": self.writer.lost_rows,
                "dropped_records": dropped}
