"""Run: the user's handle on one run, its Config and Summary, and ``init()`` that opens it.

    init() --> setup() --> Manager.inform_init [5]/[6] --> Run
    Run.log(data)          --> checks keys and values --> Interface.publish [7] (no wait)
    Run.config[...] = v    --> CONFIG record (fire-and-forget)
    Run.summary[...] = v   --> SUMMARY record; reading it asks the service (GetSummary)
    Run.define_metric(...) --> DEFINE_METRIC record
    Run.flush()            --> Manager.flush [8]: returns once all logged before it is stored
    Run.finish()           --> Manager.inform_finish [9]/[a]: the final state and summary

``log()`` does only what must happen at the call: it checks and copies the data
(keys must be strings; numpy/torch scalars become Python numbers and arrays
lists; nested dicts become dotted keys) and serialises it. The step rules and
the summary run in the service, in the run's Internal, so every process that
logs into the run counts.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import re
import socket
import sys
import time
from collections.abc import Iterator, Mapping, MutableMapping
from multiprocessing.context import get_spawning_popen
from typing import Any, NamedTuple

from . import messages as m
from .errors import Error, UsageError
from .internal import GOALS, SUMMARY_OPS
from .settings import Settings
from .setup import setup
from .store import make_dirs

log = logging.getLogger("mpbackend")
_PLAIN = frozenset({float, int, str, bool, type(None)})
_NUMBERS = frozenset({float, int, bool, type(None)})
_FLOATS = frozenset({float})
_HISTORY, _HISTORY_FLOATS = m.HISTORY, m.HISTORY_FLOATS
_time = time.time
_STR = frozenset({str})
_pickle_dumps = pickle.dumps
_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
MODES = ("online", "offline", "disabled")
STATES = ("running", "finished", "failed", "crashed", "interrupted")


class ConfigError(Error, ValueError):
    """A config key was changed without ``allow_val_change=True``."""


# -- checking what the user passes ----------------------------------------------


def _check_name(kind: str, value: Any) -> str:
    """A run id or project name that is safe as one path component."""
    if not isinstance(value, str) or not _SAFE_NAME.match(value) or ".." in value:
        raise ValueError(f"{kind} {value!r} is not valid: use 1-128 letters, digits, '_', "
                         "'-' or '.', starting with a letter or digit (no '..' or '/')")
    return value


def _new_id() -> str:
    """Eight random characters of [0-9a-z] (the modulo bias is below one in six million)."""
    n = int.from_bytes(os.urandom(8), "little") % 36**8
    out = []
    for _ in range(8):
        n, digit = divmod(n, 36)
        out.append(_ID_ALPHABET[digit])
    return "".join(out)


def _default_project() -> str:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path:
        stem = re.sub(r"[^A-Za-z0-9_.\-]", "_", os.path.splitext(os.path.basename(path))[0])
        if stem and _SAFE_NAME.match(stem):
            return stem
    return "uncategorized"


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (where init() finishes the previous run)."""
    if "ipykernel" not in sys.modules:
        return False
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def _value(value: Any, limit: int, depth: int = 0) -> Any:
    """A value as it is sent: numpy/torch scalars become numbers, arrays lists."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, io.IOBase):
        raise TypeError(f"an open file ({value!r}) cannot be logged; log its name or "
                        "contents instead")
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError("bytes cannot be logged as a value; decode them to a str first")
    if isinstance(value, (list, tuple)):
        if len(value) > limit:
            raise ValueError(f"a list of {len(value)} items is over the limit of {limit} "
                             "(Settings.max_array_size)")
        if depth >= 64:
            raise ValueError("lists or dicts nested more than 64 deep (or containing "
                             "themselves)")
        return [_value(v, limit, depth + 1) for v in value]
    if isinstance(value, Mapping):
        if depth >= 64:
            raise ValueError("lists or dicts nested more than 64 deep (or containing "
                             "themselves)")
        return {k if isinstance(k, str) else str(k): _value(v, limit, depth + 1)
                for k, v in value.items()}
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "tolist"):
        if len(shape) == 0:
            return value.item()  # numpy scalar, 0-d array or tensor
        numel = getattr(value, "numel", None)
        size = numel() if callable(numel) else getattr(value, "size", 0)
        if size > limit:
            raise ValueError(f"an array of {size} elements is over the limit of {limit} "
                             "(Settings.max_array_size); log a summary of it instead")
        if hasattr(value, "detach"):
            value = value.detach().cpu()
        return value.tolist()
    return value


def _flatten(prefix: str, value: Mapping, out: dict[str, Any], limit: int,
             path: tuple[int, ...] = ()) -> None:
    if id(value) in path:
        raise ValueError(f"log(): the dict under {prefix[:-1]!r} contains itself")
    if len(path) >= 64:
        raise ValueError(f"log(): dicts nested more than 64 deep (at {prefix[:-1]!r})")
    path = (*path, id(value))
    for key, item in value.items():
        if not isinstance(key, str):
            raise TypeError(f"log() keys must be str, not {type(key).__name__} "
                            f"({prefix}{key!r})")
        key = str.__str__(key)  # a str subclass (an Enum member) sends as its text
        if not key:
            raise ValueError(f"log() keys must not be empty (in {prefix or 'the top level'!r})")
        if isinstance(item, Mapping):
            _flatten(f"{prefix}{key}.", item, out, limit, path)
            continue
        try:
            out[prefix + key] = _value(item, limit)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"log(): the value of {prefix + key!r} cannot be sent: {exc}"
                            ) from None


def _normalize(data: Any, limit: int) -> dict[str, Any]:
    """The slow path of log(): check keys, convert values, flatten nested dicts."""
    if not isinstance(data, Mapping):
        raise TypeError(f"log() takes a dict, not {type(data).__name__}")
    out: dict[str, Any] = {}
    _flatten("", data, out, limit)
    return out


def _serialise(record: tuple, data: Mapping[str, Any], what: str) -> bytes:
    """dumps() a record, naming the key whose value cannot be sent."""
    from .interface import dumps  # not at import: a spawned service imports this module
    try:
        return dumps(record)
    except TypeError:
        for key, value in data.items():
            try:
                dumps(value)
            except TypeError as exc:
                raise TypeError(f"{what}: the value of {key!r} cannot be sent: {exc}") from None
        raise


def _check_step(step: Any) -> int:
    if isinstance(step, bool) or not hasattr(step, "__index__"):
        raise TypeError(f"step must be a non-negative int, not {step!r}")
    step = step.__index__()
    if step < 0:
        raise ValueError(f"step must be a non-negative int, not {step}")
    return step


def _as_mapping(data: Any) -> dict[str, Any]:
    """What config.update() accepts: a mapping, an argparse.Namespace, an object's vars."""
    if data is None:
        return {}
    if isinstance(data, Mapping):
        return dict(data)
    if hasattr(data, "__dict__"):  # an argparse.Namespace too
        return {k: v for k, v in vars(data).items() if not k.startswith("_")}
    raise TypeError(f"config takes a dict, an argparse.Namespace or an object with "
                    f"attributes, not {type(data).__name__}")


def _same(a: Any, b: Any) -> bool:
    return a is b or a == b or (a != a and b != b)


# -- config and summary -----------------------------------------------------------


class Config:
    """A run's config: ``config.lr``, ``config["lr"]``, and wandb's update rules.

    Setting a key that already holds a different value raises ConfigError unless
    ``update(..., allow_val_change=True)``. Every change is sent to the service
    and stored with the run.
    """

    def __init__(self, run: Run | None = None, data: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_run", run)
        object.__setattr__(self, "_items", dict(data or {}))

    def _set(self, data: Any, allow_val_change: bool, only_new: bool = False) -> None:
        items: dict[str, Any] = self._items
        new: dict[str, Any] = {}
        limit = self._run._max_array if self._run is not None else Settings.max_array_size
        for key, value in _as_mapping(data).items():
            if not isinstance(key, str) or not key:
                raise TypeError(f"config keys must be non-empty str, not {key!r}")
            key = str.__str__(key)
            value = _value(value, limit)
            if key in items:
                if only_new:
                    continue
                if not allow_val_change and not _same(items[key], value):
                    raise ConfigError(
                        f"config key {key!r} is already {items[key]!r}; to change it to "
                        f"{value!r} pass allow_val_change=True to config.update()")
            new[key] = value
        if not new:
            return
        if self._run is not None:
            self._run._send_record((m.CONFIG, self._run.id, new), new, "config")
        items.update(new)

    def update(self, data: Any = None, allow_val_change: bool = False) -> None:
        """Add keys from a mapping, an argparse.Namespace or an object's attributes."""
        self._set(data, allow_val_change)

    def setdefaults(self, data: Any) -> None:
        """Add only the keys that are not set yet."""
        self._set(data, False, only_new=True)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._items[key]
        except KeyError:
            raise AttributeError(f"config has no key {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self._set({key: value}, False)

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._set({key: value}, False)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str, default: Any = None) -> Any:
        return self._items.get(key, default)

    def keys(self) -> Any:
        return self._items.keys()

    def items(self) -> Any:
        return self._items.items()

    def values(self) -> Any:
        return self._items.values()

    def as_dict(self) -> dict[str, Any]:
        return dict(self._items)

    def __repr__(self) -> str:
        return f"Config({self._items!r})"


class Summary(MutableMapping):
    """A run's summary, kept by the service: last values, or what define_metric asks.

    Reading asks the service, so it sees everything logged before it; setting a
    key sends it, and a key the user set stays set. After the run ends, the final
    summary is read from memory.
    """

    def __init__(self, run: Run | None, final: Mapping[str, Any] | None = None) -> None:
        self._run = run
        self._final: dict[str, Any] | None = dict(final) if final is not None else None

    def _current(self) -> dict[str, Any]:
        run = self._run
        if run is None or run.state != "running":
            return dict(self._final or {})
        return run._get_summary()["summary"]

    def _send(self, data: Mapping[str, Any], deleted: list[str]) -> None:
        run = self._run
        if run is None or run.state != "running":
            final = self._final if self._final is not None else {}
            final.update(data)
            for key in deleted:
                final.pop(key, None)
            self._final = final
            return
        clean = {str.__str__(k) if isinstance(k, str) else k: _value(v, run._max_array)
                 for k, v in data.items()}
        for key in clean:
            if not isinstance(key, str) or not key:
                raise TypeError(f"summary keys must be non-empty str, not {key!r}")
        run._send_record((m.SUMMARY, run.id, clean, deleted), clean, "summary")

    def update(self, data: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self._send({**dict(data or {}), **kwargs}, [])

    def __getitem__(self, key: str) -> Any:
        return self._current()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._send({key: value}, [])

    def __delitem__(self, key: str) -> None:
        if key not in self._current():
            raise KeyError(key)
        self._send({}, [key])

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self._current()[key]
        except KeyError:
            raise AttributeError(f"summary has no key {key!r}") from None

    def __contains__(self, key: object) -> bool:
        return key in self._current()

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())

    def get(self, key: str, default: Any = None) -> Any:
        return self._current().get(key, default)

    def keys(self) -> Any:
        return self._current().keys()

    def items(self) -> Any:
        return self._current().items()

    def values(self) -> Any:
        return self._current().values()

    def as_dict(self) -> dict[str, Any]:
        return self._current()

    def __repr__(self) -> str:
        return f"Summary({self._current()!r})"


class Metric(NamedTuple):
    """What ``define_metric`` defined (its return value)."""

    name: str
    step_metric: str | None = None
    summary: tuple[str, ...] = ()
    goal: str | None = None
    hidden: bool = False
    step_sync: bool | None = None


def _metric(name: Any, step_metric: Any, summary: Any, goal: Any, hidden: Any,
            step_sync: Any) -> Metric:
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
    return Metric(name, step_metric, ops, goal, bool(hidden), step_sync)


# -- runs -------------------------------------------------------------------------


class Run:
    """A run: log to it, read and set its config and summary, flush it, finish it.

    Made by ``mpbackend.init()``. States: ``running``, then ``finished``,
    ``failed`` (an exception or a non-zero exit code), ``crashed`` (the process
    or the service died) or ``interrupted`` (KeyboardInterrupt).
    """

    def __init__(self, setup_: Any, spec: dict[str, Any], reply: dict[str, Any],
                 settings: Settings) -> None:
        self._manager = setup_.manager if setup_ is not None else None
        self._interface = self._manager.interface if self._manager is not None else None
        self._owner_pid = os.getpid()
        self._max_array = settings.max_array_size
        self.id: str = reply["id"]
        self.dir: str = reply["dir"]
        self.project: str = spec["project"]
        self.name: str = spec["name"] or self.id
        self.start_time: float = spec["start_time"]
        self.tags: tuple[str, ...] = tuple(spec.get("tags") or ())
        self.notes: str | None = spec.get("notes")
        self.group: str | None = spec.get("group")
        self.job_type: str | None = spec.get("job_type")
        self.resumed: bool = reply.get("resumed", False)
        self._spec = spec
        self._quiet = bool(settings.quiet)  # no end summary (mpbackend.end_summary)
        self.state = "running"
        self._final_step = reply.get("step", 0)
        self.config = Config(self, reply.get("config") or {})
        self.summary = Summary(self)

    @property
    def path(self) -> str:
        return f"{self.project}/{self.id}"

    @property
    def _in_child(self) -> bool:
        return os.getpid() != self._owner_pid

    def __reduce__(self) -> tuple:
        """A Run travels to a child process only as the child is created.

        It carries the run's identity and the service's rec_q, which a pipe can
        only hand over while a process starts (fork, spawn, forkserver).
        """
        if get_spawning_popen() is None:
            raise UsageError(
                f"run {self.id} can only be given to a child process as the process is "
                "created: in Process(args=...), a Pool or ProcessPoolExecutor "
                "initializer's initargs, or the Dataset of a DataLoader (forked children "
                "inherit it). It cannot be sent to a process that is already running, for "
                "example as a task argument of a started pool: give the run to the pool's "
                "initializer instead and keep it in a global there.")
        state = {name: getattr(self, name) for name in _RUN_FIELDS}
        state.update(owner_pid=self._owner_pid, max_array=self._max_array,
                     config=self.config.as_dict(), rec_q=self._interface.queue,
                     settings=self._interface.settings,
                     service_pid=self._interface.service_pid)
        return _child_run, (state,)

    @property
    def step(self) -> int:
        """The step the next committed row will get (asks the service while running)."""
        if self.state != "running":
            return self._final_step
        return self._get_summary()["step"]

    def __repr__(self) -> str:
        return f"<mpbackend.Run {self.path} ({self.state})>"

    def _repr_html_(self) -> str:
        """How a run shows itself in Jupyter: name, state, dir; the summary once ended."""
        import html

        rows = [("name", self.name), ("id", self.id), ("project", self.project),
                ("state", self.state), ("dir", self.dir)]
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                       f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
                       for k, v in rows)
        out = f"<div class='mpbackend-run'><b>mpbackend run</b><table>{body}</table>"
        if self.state != "running":
            summary = {k: v for k, v in dict(self.summary).items() if not k.startswith("_")}
            if summary:
                cells = "".join(f"<tr><td style='text-align:left'>{html.escape(k)}</td>"
                                f"<td style='text-align:right'>{html.escape(_short(v))}</td>"
                                "</tr>" for k, v in sorted(summary.items()))
                out += ("<table class='mpbackend-summary'><tr><th>summary</th><th></th></tr>"
                        f"{cells}</table>")
        return out + "</div>"

    def _check_running(self, what: str) -> None:
        if self.state != "running":
            raise UsageError(f"run {self.id} is {self.state}; {what} needs a running run")

    def _send_record(self, record: tuple, data: Mapping[str, Any], what: str) -> None:
        self._check_running(what)
        self._interface.put(_serialise(record, data, what), self.id)

    def _get_summary(self) -> dict[str, Any]:
        if self._manager is not None and not self._in_child:
            return self._manager.communicate(m.GetSummary(self.id))
        return self._interface.communicate(m.GetSummary(self.id))

    def log(self, data: Mapping[str, Any], step: int | None = None,
            commit: bool | None = None) -> None:
        """Log a dict of values as one history row; never waits for the service.

        ``step`` and ``commit`` follow wandb (see ``mpbackend.internal``). Raises
        TypeError or ValueError for a bad key or value, at the call.
        """
        if self.state != "running":
            raise UsageError(f"run {self.id} is {self.state}; log() needs a running run")
        if step is not None and (type(step) is not int or step < 0):
            step = _check_step(step)
        if type(data) is dict and _STR.issuperset(map(type, data)) and "" not in data:
            # Builtin str keys and numbers: nothing the pickler can fail on, nothing
            # that can change after a shallow copy. The sender thread pickles the
            # row with the rest of its batch.
            if _FLOATS.issuperset(map(type, data.values())):
                self._interface.put_row((_HISTORY_FLOATS, self.id, data.copy(), step, commit,
                                         _time()))
                return
            if _NUMBERS.issuperset(map(type, data.values())):
                self._interface.put_row((_HISTORY, self.id, data.copy(), step, commit, _time()))
                return
        if (type(data) is dict and _PLAIN.issuperset(map(type, data.values()))
                and _STR.issuperset(map(type, data)) and "" not in data):
            # Strings too: the C pickler cannot fail on them or refer to __main__;
            # pickled here so that a long text counts its size against the buffer.
            record = _pickle_dumps((m.HISTORY, self.id, data, step, commit, time.time()), 5)
        else:
            data = _normalize(data, self._max_array)
            record = _serialise((m.HISTORY_ANY, self.id, data, step, commit, time.time()),
                                data, "log()")
        self._interface.put(record, self.id)

    def define_metric(self, name: str, step_metric: str | None = None,
                      summary: str | None = None, goal: str | None = None,
                      hidden: bool = False, step_sync: bool | None = None) -> Metric:
        """Shape a metric's summary (``min``, ``max``, ``mean``, ``best``, ``last``,
        ``none``, comma-joined) and its x axis; ``name`` may be a glob (``"val/*"``)."""
        metric = _metric(name, step_metric, summary, goal, hidden, step_sync)
        spec = {"step_metric": metric.step_metric, "summary": list(metric.summary),
                "goal": metric.goal, "hidden": metric.hidden, "step_sync": metric.step_sync}
        self._send_record((m.DEFINE_METRIC, self.id, name, spec), spec, "define_metric()")
        return metric

    def flush(self, timeout: float | None = None) -> None:
        """Return once everything this process logged before the call is in the store.

        In a child process it returns once the child's records are in the queue
        to the service; the owner's ``flush()`` after that makes them durable.
        """
        if self._in_child:
            self._interface.drain(self._interface.request_timeout if timeout is None
                                  else timeout)
            return
        self._manager.flush(self.id, timeout)

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """End the run (idempotent): ``finished``, or ``failed`` for a non-zero exit code.

        Never raises because the service is gone or slow: it warns, and the run
        is then ``crashed`` here (what the store says depends on how far it got).
        In a terminal or Jupyter a short summary is shown (``mpbackend.end_summary``)
        unless ``quiet`` (default: ``Settings.quiet``) or ``MPBACKEND_SILENT=1``.
        """
        if self.state != "running":
            return
        if self._in_child:
            log.warning("mpbackend: finish() in a child process (pid %d) does nothing: "
                        "run %s is finished by the process that started it", os.getpid(),
                        self.id)
            return
        self._end("failed" if exit_code else "finished", exit_code, None, quiet)

    def _end(self, state: str, exit_code: int | None, timeout: float | None,
             quiet: bool | None = None) -> None:
        """Ask the service to end the run; bounded by ``timeout``, never raises Error."""
        try:
            reply = self._manager.inform_finish(self.id, state, exit_code, timeout,
                                                self._interface.dropped_by.get(self.id, 0))
        except Error as exc:
            log.warning("mpbackend: run %s could not be finished: %s", self.id, exc)
            self._ended("crashed")
            return
        self.summary._final = dict(reply["summary"])
        self._final_step = reply["step"]
        lost = reply["lost_rows"] + reply["dropped_records"]
        if lost:
            log.warning("mpbackend: run %s lost at least %d record(s): dropped while the "
                        "buffer was full (buffer_policy='drop') or the service was down, or "
                        "not writable to the store", self.id, lost)
        self._ended(reply["state"])
        from .end_summary import show  # the end summary: only when a run ends

        show(self, quiet)

    def _ended(self, state: str) -> None:
        """The run is over (finished here, or stopped with its service)."""
        self.state = state
        if self._manager is not None:
            self._manager.runs.pop(self.id, None)
        _forget(self)

    def _finish_at_exit(self, state: str, exit_code: int | None, timeout: float) -> None:
        if self.state == "running":
            self._end(state, exit_code, timeout)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: Any, tb: Any) -> None:
        if kind is None:
            self.finish()
        elif self.state == "running":
            self._end("interrupted" if issubclass(kind, KeyboardInterrupt) else "failed",
                      1, None)


class DisabledRun(Run):
    """``mode="disabled"``: a run that accepts every call and writes nothing."""

    def __init__(self, spec: dict[str, Any], settings: Settings) -> None:
        super().__init__(None, spec, {"id": spec["id"], "dir": spec["run_dir"],
                                      "config": spec["config"]}, settings)
        self._spec = spec
        self._settings = settings
        self.config = Config(None, spec["config"])
        self.summary = Summary(None, {})

    def __reduce__(self) -> tuple:
        return DisabledRun, (self._spec, self._settings)

    @property
    def step(self) -> int:
        return 0

    def log(self, data: Mapping[str, Any], step: int | None = None,
            commit: bool | None = None) -> None:
        """Accepted and dropped."""

    def define_metric(self, name: str, step_metric: str | None = None,
                      summary: str | None = None, goal: str | None = None,
                      hidden: bool = False, step_sync: bool | None = None) -> Metric:
        return _metric(name, step_metric, summary, goal, hidden, step_sync)

    def flush(self, timeout: float | None = None) -> None:
        """Nothing to flush."""

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        if self.state == "running":
            self._ended("failed" if exit_code else "finished")

    def _end(self, state: str, exit_code: int | None, timeout: float | None) -> None:
        self._ended(state)


_RUN_FIELDS = ("id", "dir", "project", "name", "start_time", "tags", "notes", "group",
               "job_type", "resumed", "state")
_child_interfaces: dict[int, Any] = {}


def _child_run(state: dict[str, Any]) -> Run:
    """A Run unpickled in a child process: it publishes into the parent's service."""
    import mpbackend

    from .interface import Interface

    key = state["service_pid"]
    interface = _child_interfaces.get(key)
    if interface is None or interface.pid != os.getpid():
        interface = _child_interfaces[key] = Interface(state["rec_q"], None, state["settings"],
                                                       service_pid=key)
    run = Run.__new__(Run)
    for name in _RUN_FIELDS:
        setattr(run, name, state[name])
    run._manager = None
    run._interface = interface
    run._owner_pid = state["owner_pid"]
    run._max_array = state["max_array"]
    run._final_step = 0
    run.config = Config(run, state["config"])
    run.summary = Summary(run)
    if mpbackend.run is None:
        mpbackend.run = run
        mpbackend.config = run.config
        mpbackend.summary = run.summary
    return run


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_short(v)}" for k, v in value.items())
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _forget(run: Run) -> None:
    import mpbackend

    if mpbackend.run is run:
        mpbackend.run = None


def init(project: str | None = None, name: str | None = None, id: str | None = None,
         config: Any = None, dir: str | None = None, mode: str | None = None,
         resume: bool | str | None = None, reinit: bool | str | None = None,
         tags: list[str] | None = None, notes: str | None = None, group: str | None = None,
         job_type: str | None = None,
         settings: Settings | dict[str, Any] | None = None) -> Run:
    """Start a run (after starting the service if needed) and make it ``mpbackend.run``.

    ``resume``: ``"allow"``/``True`` continues run ``id`` if it exists, ``"must"``
    requires it to, ``"never"`` refuses an existing one. ``reinit``: with a run
    already active in this process, ``False`` returns it, ``True`` finishes it
    first (the default in Jupyter), ``"create_new"`` opens another alongside it.
    ``mode="disabled"`` returns a run that writes nothing.
    """
    import mpbackend

    mode = mode or os.environ.get("MPBACKEND_MODE") or "online"
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if reinit is None:
        reinit = _in_notebook()
    if reinit not in (True, False, "finish_previous", "return_previous", "create_new"):
        raise ValueError(f"reinit must be a bool, 'finish_previous', 'return_previous' or "
                         f"'create_new', not {reinit!r}")
    current = mpbackend.run
    if current is not None and current.state == "running" and reinit != "create_new":
        if reinit in (False, "return_previous"):
            return current
        current.finish()
    settings = Settings.coerce(settings, dir=dir)
    project = _check_name("project", project if project is not None else _default_project())
    run_id = _check_name("run id", id if id is not None else _new_id())
    if resume not in (None, False, True, "allow", "must", "never", "auto"):
        raise ValueError(f"resume must be 'allow', 'must', 'never' or a bool, not {resume!r}")
    if tags is not None and (isinstance(tags, str) or
                             not all(isinstance(t, str) for t in tags)):
        raise TypeError(f"tags must be a list of str, not {tags!r}")
    run_dir = os.path.join(os.path.abspath(settings.dir), project, run_id)
    spec = {
        "id": run_id, "project": project, "name": name, "run_dir": run_dir,
        "config": {}, "resume": resume or None, "tags": list(tags or []),
        "notes": notes, "group": group, "job_type": job_type, "pid": os.getpid(),
        "host": socket.gethostname(), "start_time": time.time(),
    }
    staged = Config(None)
    staged.update(config)
    spec["config"] = staged.as_dict()
    if mode == "disabled":
        run: Run = DisabledRun(spec, settings)
    else:
        created = not os.path.isdir(run_dir)
        try:
            make_dirs(run_dir)
        except OSError as exc:
            raise PermissionError(f"cannot create the run directory {run_dir}: {exc}") from exc
        if not os.access(run_dir, os.W_OK):
            raise PermissionError(f"the run directory {run_dir} is not writable")
        setup_ = setup(settings)
        try:
            reply = setup_.manager.inform_init(spec)
        except BaseException:
            if created and not os.listdir(run_dir):
                os.rmdir(run_dir)
            raise
        run = Run(setup_, spec, reply, settings)
        setup_.manager.runs[run.id] = run
    mpbackend.run = run
    mpbackend.config = run.config
    mpbackend.summary = run.summary
    return run
