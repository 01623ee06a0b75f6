"""Run: the user's handle on one run, and ``init()`` that opens it.

    init() --> setup() --> Manager.inform_init [5]/[6] --> Run
    Run.log(data)   --> checks keys and values, --> Interface.publish [7]  (no wait)
    Run.flush()     --> Manager.flush [8]: returns once all logged before it is stored
    Run.finish()    --> Manager.inform_finish [9]/[a]: the final state and summary

``log()`` does only what must happen at the call: it checks and copies the data
(keys must be strings; numpy/torch scalars become Python numbers; nested dicts
become dotted keys) and serialises it. The step rules run in the service, in the
run's Internal, so every process that logs into the run counts.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import re
import secrets
import socket
import string
import sys
import time
from collections.abc import Mapping
from typing import Any

from . import messages as m
from .errors import Error, UsageError
from .interface import dumps
from .settings import Settings
from .setup import setup

log = logging.getLogger("mpbackend")
_PLAIN = frozenset({float, int, str, bool, type(None)})
_STR = frozenset({str})
_pickle_dumps = pickle.dumps
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
STATES = ("running", "finished", "failed", "crashed", "interrupted")


def _check_name(kind: str, value: Any) -> str:
    """A run id or project name that is safe as one path component."""
    if not isinstance(value, str) or not _SAFE_NAME.match(value) or ".." in value:
        raise ValueError(f"{kind} {value!r} is not valid: use 1-128 letters, digits, '_', "
                         "'-' or '.', starting with a letter or digit (no '..' or '/')")
    return value


def _new_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def _default_project() -> str:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path:
        stem = re.sub(r"[^A-Za-z0-9_.\-]", "_", os.path.splitext(os.path.basename(path))[0])
        if stem and _SAFE_NAME.match(stem):
            return stem
    return "uncategorized"


def _flatten(prefix: str, value: Mapping, out: dict[str, Any]) -> None:
    for key, item in value.items():
        if not isinstance(key, str):
            raise TypeError(f"log() keys must be str, not {type(key).__name__} "
                            f"({prefix}{key!r})")
        key = str.__str__(key)  # a str subclass (an Enum member) sends as its text
        if not key:
            raise ValueError(f"log() keys must not be empty (in {prefix or 'the top level'!r})")
        if isinstance(item, Mapping):
            _flatten(f"{prefix}{key}.", item, out)
            continue
        try:
            out[prefix + key] = _value(item)
        except TypeError as exc:
            raise TypeError(f"log(): the value of {prefix + key!r} cannot be sent: {exc}"
                            ) from None


def _value(value: Any) -> Any:
    """A value as it is sent: numpy/torch scalars and 0-d arrays become Python numbers."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, io.IOBase):
        raise TypeError(f"an open file ({value!r}) cannot be logged; log its name or "
                        "contents instead")
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "ndim", None) == 0:
        return item()
    return value


def _normalize(data: Any) -> dict[str, Any]:
    """The slow path of log(): check keys, convert values, flatten nested dicts."""
    if not isinstance(data, Mapping):
        raise TypeError(f"log() takes a dict, not {type(data).__name__}")
    out: dict[str, Any] = {}
    _flatten("", data, out)
    return out


def _serialise(record: tuple, data: dict[str, Any]) -> bytes:
    """dumps() a record, naming the key whose value cannot be sent."""
    try:
        return dumps(record)
    except TypeError:
        for key, value in data.items():
            try:
                dumps(value)
            except TypeError as exc:
                raise TypeError(f"log(): the value of {key!r} cannot be sent: {exc}") from None
        raise


def _check_step(step: Any) -> int:
    if isinstance(step, bool) or not hasattr(step, "__index__"):
        raise TypeError(f"step must be a non-negative int, not {step!r}")
    step = step.__index__()
    if step < 0:
        raise ValueError(f"step must be a non-negative int, not {step}")
    return step


class Run:
    """A run: log to it, flush it, finish it. Made by ``mpbackend.init()``."""

    def __init__(self, setup_: Any, spec: dict[str, Any], reply: dict[str, Any]) -> None:
        self._manager = setup_.manager
        self._interface = self._manager.interface
        self._owner_pid = os.getpid()
        self.id: str = reply["id"]
        self.dir: str = reply["dir"]
        self.project: str = spec["project"]
        self.name: str = spec["name"] or self.id
        self.start_time: float = spec["start_time"]
        self.tags: tuple[str, ...] = tuple(spec.get("tags") or ())
        self.notes: str | None = spec.get("notes")
        self.group: str | None = spec.get("group")
        self.job_type: str | None = spec.get("job_type")
        self.config: dict[str, Any] = dict(reply.get("config") or {})
        self.summary: dict[str, Any] = dict(reply.get("summary") or {})
        self.state = "running"
        self.resumed: bool = reply.get("resumed", False)

    @property
    def path(self) -> str:
        return f"{self.project}/{self.id}"

    def __repr__(self) -> str:
        return f"<mpbackend.Run {self.path} ({self.state})>"

    def log(self, data: Mapping[str, Any], step: int | None = None,
            commit: bool | None = None) -> None:
        """Log a dict of values as one history row; never waits for the service.

        ``step`` and ``commit`` follow wandb (see ``mpbackend.internal``). Raises
        TypeError for a non-string key or a value that cannot be sent, at the call.
        """
        if self.state != "running":
            raise UsageError(f"run {self.id} is {self.state}; log() needs a running run")
        if step is not None and (type(step) is not int or step < 0):
            step = _check_step(step)
        if (type(data) is dict and _PLAIN.issuperset(map(type, data.values()))
                and _STR.issuperset(map(type, data)) and "" not in data):
            # Only builtin str keys and scalars: the C pickler cannot fail on them
            # or refer to __main__.
            record = _pickle_dumps((m.HISTORY, self.id, data, step, commit, time.time()), 5)
        else:
            data = _normalize(data)
            record = _serialise((m.HISTORY_ANY, self.id, data, step, commit, time.time()),
                                data)
        self._interface.put(record)

    def flush(self, timeout: float | None = None) -> None:
        """Return once everything this process logged before the call is in the store."""
        self._manager.flush(self.id, timeout)

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """End the run (idempotent): ``finished``, or ``failed`` for a non-zero exit code.

        Never raises because the service is gone or slow: it warns, and the run
        is then ``crashed`` here (what the store says depends on how far it got).
        """
        if self.state != "running":
            return
        if os.getpid() != self._owner_pid:
            raise UsageError("finish() is for the process that started the run")
        self._end("failed" if exit_code else "finished", exit_code, None)

    def _end(self, state: str, exit_code: int | None, timeout: float | None) -> None:
        """Ask the service to end the run; bounded by ``timeout``, never raises Error."""
        try:
            reply = self._manager.inform_finish(self.id, state, exit_code, timeout)
        except Error as exc:
            log.warning("mpbackend: run %s could not be finished: %s", self.id, exc)
            self._ended("crashed")
            return
        self.summary = reply["summary"]
        self._ended(reply["state"])

    def _ended(self, state: str) -> None:
        """The run is over (finished here, or stopped with its service)."""
        self.state = state
        self._manager.runs.pop(self.id, None)
        _forget(self)

    def _finish_at_exit(self, state: str, timeout: float) -> None:
        if self.state == "running":
            self._end(state, 1 if state == "failed" else None, timeout)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: Any, tb: Any) -> None:
        if kind is None:
            self.finish()
        elif self.state == "running":
            self._end("interrupted" if issubclass(kind, KeyboardInterrupt) else "failed",
                      1, None)


def _forget(run: Run) -> None:
    import mpbackend

    if mpbackend.run is run:
        mpbackend.run = None


def init(project: str | None = None, name: str | None = None, id: str | None = None,
         config: Mapping[str, Any] | None = None, dir: str | None = None,
         mode: str | None = None, resume: bool | str | None = None,
         reinit: bool | None = None, tags: list[str] | None = None, notes: str | None = None,
         group: str | None = None, job_type: str | None = None,
         settings: Settings | dict[str, Any] | None = None) -> Run:
    """Start a run (after starting the service if needed) and make it ``mpbackend.run``."""
    import mpbackend

    settings = Settings.coerce(settings, dir=dir)
    project = _check_name("project", project if project is not None else _default_project())
    run_id = _check_name("run id", id if id is not None else _new_id())
    if resume not in (None, False, True, "allow", "must", "never", "auto"):
        raise ValueError(f"resume must be 'allow', 'must', 'never' or a bool, not {resume!r}")
    base = os.path.abspath(settings.dir)
    run_dir = os.path.join(base, project, run_id)
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as exc:
        raise PermissionError(f"cannot create the run directory {run_dir}: {exc}") from exc
    if not os.access(run_dir, os.W_OK):
        raise PermissionError(f"the run directory {run_dir} is not writable")
    setup_ = setup(settings)
    spec = {
        "id": run_id, "project": project, "name": name, "run_dir": run_dir,
        "config": dict(config or {}), "resume": resume or None, "tags": list(tags or []),
        "notes": notes, "group": group, "job_type": job_type, "pid": os.getpid(),
        "host": socket.gethostname(), "start_time": time.time(),
    }
    reply = setup_.manager.inform_init(spec)
    run = Run(setup_, spec, reply)
    setup_.manager.runs[run.id] = run
    mpbackend.run = run
    return run
