"""Run: the user's handle on one run, in the process that opened it or in a child.

    Run.log(data)          --> values: checked, copied --> Interface.put_row / put [7]
    Run.config[...] = v    --> Config: CONFIG record (fire-and-forget)
    Run.summary[...] = v   --> Summary: SUMMARY record; reading it asks the service
    Run.define_metric(...) --> shared.metrics.check_metric --> DEFINE_METRIC record
    Run.flush()            --> Manager.flush [8]: returns once all logged before it is stored
    Run.finish()           --> Manager.inform_finish [9]/[a]: the final state and summary
                           --> read.end_summary.show (a terminal or Jupyter)
    pickled for a child    --> child.rebuild: the same constructor, with the child's
                               own Interface on the same rec_q and no Manager

``log()`` does only what must happen at the call: it checks and copies the data
and, where it is not a row of plain numbers, serialises it. The step rules and
the summary run in the service, in the run's Internal, so every process that
logs into the run counts. ``init()`` (``mpbackend.user.init``) makes Runs.
"""

from __future__ import annotations

import datetime
import logging
import os
import pickle
import signal
import time
from collections.abc import Callable, Mapping
from multiprocessing.context import get_spawning_popen
from typing import IO, TYPE_CHECKING, Any, cast

from ..shared import messages as m
from ..shared.errors import UsageError
from ..shared.metrics import Metric, check_metric
from ..shared.settings import Settings
from ..shared.states import RUNNING
from .config import Config
from .summary import Summary
from .values import (
    FLOATS,
    MAX_STEP,
    NUMBERS,
    PLAIN,
    check_exit_code,
    check_step,
    check_text,
    learn_keys,
    normalize,
    serialise,
)

if TYPE_CHECKING:
    from ..artifacts.artifact import Artifact
    from .interface import Interface
    from .manager import Manager

log = logging.getLogger("mpbackend")
# Bound at module level: log() looks them up once per call, as globals.
_HISTORY, _HISTORY_FLOATS = m.HISTORY, m.HISTORY_FLOATS
_time = time.time
_pickle_dumps = pickle.dumps


ALERT_LEVELS = ("INFO", "WARN", "ERROR")


def _settable(field: str, doc: str) -> property:
    """A run attribute a user may set after init() (``Run._set_meta`` stores it)."""
    return property(lambda run: run._meta[field],
                    lambda run, value: run._set_meta(field, value), doc=doc)


class Run:
    """A run: log to it, read and set its config and summary, flush it, finish it.

    Made by ``mpbackend.init()``. States: ``running``, then ``finished``,
    ``failed`` (an exception or a non-zero exit code), ``crashed`` (the process
    or the service died) or ``interrupted`` (KeyboardInterrupt).
    """

    def __init__(self, spec: dict[str, Any], reply: dict[str, Any], settings: Settings,
                 manager: Manager | None, interface: Interface | None,
                 owner_pid: int | None = None) -> None:
        """The one way a Run is made: by ``init()`` in the process that opens the run,
        by ``child.rebuild`` in a child it is handed to, and for ``DisabledRun``.

        ``spec`` is what ``init()`` sent to the service ([5]), ``reply`` the
        service's answer ([6]: id, dir, step, resumed, config); ``manager`` is
        None in a child (which cannot ask the service anything) and for a
        disabled run, ``interface`` None for a disabled run only. ``owner_pid``
        is the process that opened the run (default: this one).
        """
        self._manager = manager
        # None only for a DisabledRun, which overrides every method that uses it.
        self._interface = cast("Interface", interface)
        self._owner_pid = os.getpid() if owner_pid is None else owner_pid
        self._settings = settings
        self._max_array = settings.max_array_size
        self._keys: set[str] = set()  # log() keys checked once (values.learn_keys)
        self._spec = spec
        self._quiet = bool(settings.quiet)  # no end summary (mpbackend.read.end_summary)
        self.id: str = reply["id"]
        self.dir: str = reply["dir"]
        self.project: str = spec["project"]
        self.start_time: float = spec["start_time"]
        # name, notes, tags, group, job_type: properties (see _set_meta).
        self._meta: dict[str, Any] = {
            "name": spec["name"], "notes": spec.get("notes"),
            "tags": tuple(spec.get("tags") or ()), "group": spec.get("group"),
            "job_type": spec.get("job_type")}
        self.entity: str = spec.get("entity") or ""
        self.resumed: bool = reply.get("resumed", False)
        self._at_end: list[tuple[str, str]] = []  # save(policy="live"/"end"): copied at the end
        self._artifacts: list[Artifact] = []  # logged, their versions not yet seen here
        self._watchers: list[Any] = []  # watch(): hooks on torch models
        self._labels: dict[str, str] = {}  # _label(): wandb's telemetry labels
        self.state = RUNNING
        self._final_step = reply.get("step", 0)
        self.config = Config(self, reply.get("config") or {})
        self.summary = Summary(self)

    @property
    def path(self) -> str:
        """``entity/project/id`` (``project/id`` without an entity), as wandb's."""
        return "/".join(p for p in (self.entity, self.project, self.id) if p)

    @property
    def url(self) -> str:
        """A ``file://`` URL of the run's directory (wandb's is its web page)."""
        import pathlib  # (with urllib.parse: not worth its import time in every init())

        return pathlib.Path(self.dir).absolute().as_uri()

    def get_url(self) -> str:
        """``run.url``."""
        return self.url

    def get_project_url(self) -> str:
        """A ``file://`` URL of the project's directory."""
        import pathlib

        return pathlib.Path(self.dir).absolute().parent.as_uri()

    @property
    def offline(self) -> bool:
        """True: every run is stored locally (wandb's offline mode is the only one)."""
        return True

    @property
    def disabled(self) -> bool:
        return False

    def mark_preempting(self) -> None:
        """Record that the run is about to be preempted (stored with the run as
        ``preempting``): its end is then a preemption, not a failure to look into."""
        self._send_record((m.RUN_META, self.id, {"preempting": True}), {}, "mark_preempting()")

    def _label(self, code: str | None = None, repo: str | None = None,
                code_version: str | None = None, **kwargs: Any) -> None:
        """wandb's telemetry label, which integrations set for the run they make
        (``run._label(code="transformers_trainer")``). There is no telemetry here:
        the labels are kept on this object (``_labels``) and stored nowhere."""
        self._labels.update({k: v for k, v in (("code", code), ("repo", repo),
                                               ("code_version", code_version))
                             if v is not None})

    def watch(self, models: Any, criterion: Any = None, log: str | None = "gradients",
              log_freq: int = 1000, idx: int | None = None, log_graph: bool = False) -> None:
        """Log histograms of a torch model's gradients and/or parameters (``log=
        "gradients" | "parameters" | "all"``) every ``log_freq`` batches, as wandb does
        (``mpbackend.integrations.torch_watch``)."""
        self._check_running("watch()")
        from ..integrations.torch_watch import watch

        self._watchers.extend(watch(self, models, criterion, log, log_freq, idx, log_graph))

    def unwatch(self, models: Any = None) -> None:
        """Take the hooks ``watch()`` put on ``models`` (all, if None) off."""
        items = models if isinstance(models, (list, tuple)) or models is None else [models]
        keep = []
        for watcher in self._watchers:
            if items is None or any(watcher.model is m for m in items):
                watcher.remove()
            else:
                keep.append(watcher)
        self._watchers = keep

    def log_artifact(self, artifact_or_path: Any, name: str | None = None,
                     type: str | None = None, aliases: list[str] | None = None,
                     tags: list[str] | None = None) -> Artifact:
        """Store an Artifact (or a file or directory, made into one) as the next
        version of its name in this project; ``latest`` and ``aliases`` move to it.
        Returns at once: the service stores the files (``artifact.wait()``)."""
        self._check_running("log_artifact()")
        from . import runartifacts

        return runartifacts.log_artifact(self, artifact_or_path, name, type, aliases, tags)

    def use_artifact(self, artifact_or_name: Any, type: str | None = None,
                     aliases: list[str] | None = None, use_as: str | None = None) -> Artifact:
        """A logged artifact (``"name:latest"``, ``"name:v3"``, ``"project/name:alias"``),
        recorded as used by this run (its lineage)."""
        self._check_running("use_artifact()")
        from . import runartifacts

        return runartifacts.use_artifact(self, artifact_or_name, type, aliases, use_as)

    def log_model(self, path: str | os.PathLike, name: str | None = None,
                  aliases: list[str] | None = None) -> None:
        """A model file or directory as an artifact of type ``model``."""
        self._check_running("log_model()")
        from . import runartifacts

        runartifacts.log_model(self, path, name, aliases)

    def use_model(self, name: str) -> str:
        """Download a model artifact; the local path of its file."""
        self._check_running("use_model()")
        from . import runartifacts

        return runartifacts.use_model(self, name)

    def link_artifact(self, artifact: Artifact, target_path: str,
                      aliases: list[str] | None = None) -> Artifact:
        """Accepted: the version gets ``aliases`` (default ``linked``); no registry here."""
        self._check_running("link_artifact()")
        from . import runartifacts

        return runartifacts.link_artifact(self, artifact, target_path, aliases)

    def save(self, glob_str: str | os.PathLike, base_path: str | os.PathLike | None = None,
             policy: str = "live", glob: bool = True) -> list[str]:
        """Copy files into the run's files (``run.dir``, kept by name relative to
        ``base_path``): ``policy="now"`` copies them now, ``"live"`` now and again
        when the run ends, ``"end"`` when it ends. Returns the stored paths."""
        self._check_running("save()")
        from . import runfiles

        return runfiles.save(self, glob_str, base_path, policy, glob)

    def restore(self, name: str, run_path: str | None = None, replace: bool = False,
                root: str | None = None) -> IO[str]:
        """A saved file of this run (or of ``run_path``), opened for reading."""
        from . import runfiles

        return runfiles.restore(name, run_path, replace, root, self,
                                os.path.abspath(self._settings.dir))

    def log_code(self, root: str | None = ".", name: str | None = None,
                 include_fn: Callable[..., bool] | None = None,
                 exclude_fn: Callable[..., bool] | None = None) -> Artifact | None:
        """Save the code under ``root`` (``*.py`` unless ``include_fn`` says otherwise)
        as wandb does: an artifact of type ``code`` (``name``, default
        ``source-<project>-<script>``), its files also copied to ``<run dir>/code/``;
        None if no file matched."""
        self._check_running("log_code()")
        from . import runartifacts, runfiles

        saved = runfiles.log_code(self, root, include_fn or runfiles.is_code, exclude_fn)
        if not saved:
            return None
        return runartifacts.log_code_artifact(self, saved, name)

    def alert(self, title: str, text: str, level: str | None = None,
              wait_duration: float | datetime.timedelta | None = None) -> None:
        """Store an alert with the run (``extra["alerts"]``) and print it.

        ``level`` is ``INFO`` (default), ``WARN`` or ``ERROR`` (or wandb's
        ``AlertLevel``); ``wait_duration`` is stored with it.
        """
        for what, value in (("title", title), ("text", text)):
            if not isinstance(value, str):
                raise TypeError(f"alert(): {what} must be a str, not {value!r}")
            check_text(value, f"alert(): the {what}")
        level = getattr(level, "value", level) or "INFO"
        if level not in ALERT_LEVELS:
            raise ValueError(f"alert(): level must be one of {ALERT_LEVELS}, not {level!r}")
        if isinstance(wait_duration, datetime.timedelta):
            wait_duration = wait_duration.total_seconds()
        alert = {"title": str.__str__(title), "text": str.__str__(text), "level": level,
                 "wait_duration": wait_duration, "time": time.time()}
        self._send_record((m.ALERT, self.id, alert), alert, "alert()")
        from .everyday import termwarn

        termwarn(f"alert ({level}) {title}: {text}")

    notes = _settable("notes", "Free text about the run; settable, and stored.")
    tags = _settable("tags", "The run's tags (a tuple); settable to a list or tuple of str, "
                 "and stored.")
    group = _settable("group", "The run's group; settable, and stored.")
    job_type = _settable("job_type", "The run's job type; settable, and stored.")

    @property
    def name(self) -> str:
        """The run's display name (its id if none was given); settable, and stored."""
        return self._meta["name"] or self.id

    @name.setter
    def name(self, value: str | None) -> None:
        self._set_meta("name", value)

    def _set_meta(self, field: str, value: Any) -> None:
        """``run.name = "x"`` and the like, as wandb allows: checked here, sent to the
        service (RUN_META), stored with the run at the next commit."""
        sent: Any
        if field == "tags":
            if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
                    isinstance(t, str) for t in value):
                raise TypeError(f"run.tags must be a list of str, not {value!r}")
            value = tuple(check_text(str.__str__(t), "run.tags: a tag") for t in value)
            sent = list(value)
        else:
            if value is not None:
                if not isinstance(value, str):
                    raise TypeError(f"run.{field} must be a str or None, not {value!r}")
                value = check_text(str.__str__(value), f"run.{field}")
            sent = value
        if self._interface is not None:  # a DisabledRun keeps it here only
            self._send_record((m.RUN_META, self.id, {field: sent}), {field: sent},
                              f"run.{field}")
        self._meta[field] = value

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
        from .child import rebuild

        assert self._interface is not None
        reply = {"id": self.id, "dir": self.dir, "resumed": self.resumed,
                 "config": self.config.as_dict(), "state": self.state}
        return rebuild, (self._spec, reply, self._settings, self._owner_pid,
                         self._interface.queue, self._interface.settings,
                         self._interface.service_pid)

    @property
    def step(self) -> int:
        """The step the next committed row will get (asks the service while running)."""
        if self.state != RUNNING:
            return self._final_step
        return self._get_summary()["step"]

    def __repr__(self) -> str:
        return f"<mpbackend.Run {self.path} ({self.state})>"

    def _repr_html_(self) -> str:
        """How a run shows itself in Jupyter: name, state, dir; the summary once ended."""
        import html

        from ..read.format import format_value, printable

        rows = [("name", self.name), ("id", self.id), ("project", self.project),
                ("state", self.state), ("dir", self.dir)]
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                       f"<td style='text-align:left'>{html.escape(printable(str(v)))}</td></tr>"
                       for k, v in rows)
        out = f"<div class='mpbackend-run'><b>mpbackend run</b><table>{body}</table>"
        if self.state != RUNNING:
            summary = {k: v for k, v in dict(self.summary).items() if not k.startswith("_")}
            if summary:
                cells = "".join(f"<tr><td style='text-align:left'>{html.escape(printable(k))}</td>"
                                "<td style='text-align:right'>"
                                f"{html.escape(format_value(v, 60))}</td></tr>"
                                for k, v in sorted(summary.items()))
                out += ("<table class='mpbackend-summary'><tr><th>summary</th><th></th></tr>"
                        f"{cells}</table>")
        return out + "</div>"

    def _check_running(self, what: str) -> None:
        if self.state != RUNNING:
            raise UsageError(f"run {self.id} is {self.state}; {what} needs a running run")

    def _send_record(self, record: tuple, data: Mapping[str, Any], what: str) -> None:
        self._check_running(what)
        self._interface.put(serialise(record, data, what), self.id)

    def _get_summary(self) -> dict[str, Any]:
        if self._manager is not None and not self._in_child:
            return self._manager.communicate(m.GetSummary(self.id))
        return self._interface.communicate(m.GetSummary(self.id))

    def log(self, data: Mapping[str, Any], step: int | None = None,
            commit: bool | None = None) -> None:
        """Log a dict of values as one history row; never waits for the service.

        ``step`` and ``commit`` follow wandb (see ``mpbackend.service.internal``). Raises
        TypeError or ValueError for a bad key or value, at the call.
        """
        if self.state != RUNNING:
            raise UsageError(f"run {self.id} is {self.state}; log() needs a running run")
        if step is not None and (type(step) is not int or not 0 <= step <= MAX_STEP):
            step = check_step(step)
        if type(data) is dict and (self._keys.issuperset(data)
                                   or learn_keys(data, self._keys)):
            # Keys checked before (builtin, storable str; a str subclass equal to one
            # is sent as a plain str by the sender) and numbers: nothing the pickler
            # can fail on, nothing that can change after a shallow copy. The sender
            # thread pickles the row with the rest of its batch.
            if FLOATS.issuperset(map(type, data.values())):
                self._interface.put_row((_HISTORY_FLOATS, self.id, data.copy(), step, commit,
                                         _time()))
                return
            if NUMBERS.issuperset(map(type, data.values())):
                self._interface.put_row((_HISTORY, self.id, data.copy(), step, commit, _time()))
                return
            if PLAIN.issuperset(map(type, data.values())):
                # Strings too: the C pickler cannot fail on them or refer to __main__;
                # pickled here so that a long text counts its size against the buffer.
                self._interface.put(_pickle_dumps(
                    (m.HISTORY, self.id, data, step, commit, time.time()), 5), self.id)
                return
        media: list = []
        data = normalize(data, self._max_array, media)
        if media:  # the service writes their files before the row; pickled by the sender
            self._interface.put_media((m.HISTORY_MEDIA, self.id, data, step, commit,
                                       time.time()))
            return
        record = serialise((m.HISTORY_ANY, self.id, data, step, commit, time.time()), data,
                           "log()")
        self._interface.put(record, self.id)

    def define_metric(self, name: str, step_metric: str | None = None,
                      summary: str | None = None, goal: str | None = None,
                      hidden: bool | None = None, step_sync: bool | None = None,
                      overwrite: bool | None = None) -> Metric:
        """Shape a metric's summary (``min``, ``max``, ``mean``, ``first``, ``last``,
        ``best`` by ``goal``, ``none``, comma-joined) and its x axis; ``name`` may be a
        glob (``"val/*"``). A later call for the same name merges into the earlier
        one, unless ``overwrite=True`` (see ``MetricDefs.define``)."""
        metric = check_metric(name, step_metric, summary, goal, hidden, step_sync, overwrite)
        spec = {"step_metric": metric.step_metric, "summary": list(metric.summary),
                "goal": metric.goal, "hidden": metric.hidden, "step_sync": metric.step_sync,
                "overwrite": metric.overwrite}
        self._send_record((m.DEFINE_METRIC, self.id, name, spec), spec, "define_metric()")
        return metric

    def flush(self, timeout: float | None = None) -> None:
        """Return once everything this process logged before the call is in the store.

        In a child process it returns once the child's records are in the queue
        to the service; the owner's ``flush()`` after that makes them durable.
        """
        manager = self._manager
        if self._in_child or manager is None:
            self._interface.drain(self._interface.request_timeout if timeout is None
                                  else timeout)
            return
        manager.flush(self.id, timeout)

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """End the run (idempotent): ``finished``, or ``failed`` for a non-zero exit code.

        Never raises because the service is gone or slow: it warns, and the run
        is then ``crashed`` here (what the store says depends on how far it got).
        In a terminal or Jupyter a short summary is shown (``mpbackend.read.end_summary``)
        unless ``quiet`` (default: ``Settings.quiet``) or ``MPBACKEND_SILENT=1``.
        """
        exit_code = check_exit_code(exit_code)
        if self.state != RUNNING:
            return
        if self._in_child:
            log.warning("mpbackend: finish() in a child process (pid %d) does nothing: "
                        "run %s is finished by the process that started it", os.getpid(),
                        self.id)
            return
        self._end("failed" if exit_code else "finished", exit_code, None, quiet)

    def _end(self, state: str, exit_code: int | None, timeout: float | None,
             quiet: bool | None = None) -> None:
        """Ask the service to end the run; bounded by ``timeout``, never raises.

        Whatever the service answers with, an error included (it is gone, slow, or
        failed to end the run), the run is over here: a failure is warned about and
        the run is ``crashed`` in this process. Only the process that opened the
        run ends it: in a child this does nothing.
        """
        manager = self._manager
        if self._in_child or manager is None:
            return
        if self._at_end:
            from .runfiles import copy_at_end

            copy_at_end(self)
        self.unwatch()
        if self._artifacts:
            from .runartifacts import settle

            settle(self, timeout)
        try:
            reply = manager.inform_finish(self.id, state, exit_code, timeout,
                                          self._interface.dropped_by.get(self.id, 0))
        except Exception as exc:
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
        from ..read.end_summary import show  # the end summary: only when a run ends

        show(self, quiet)

    def _ended(self, state: str) -> None:
        """The run is over (finished here, or stopped with its service)."""
        self.state = state
        if self._manager is not None:
            self._manager.runs.pop(self.id, None)
        forget(self)

    def _finish_at_exit(self, state: str, exit_code: int | None, timeout: float) -> None:
        if self.state == RUNNING:
            self._end(state, exit_code, timeout)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: Any, tb: Any) -> None:
        """Finish the run as the block ended: ``finished``; ``interrupted`` with exit
        code 130 for Ctrl-C and 143 for SIGTERM (the process is ending as the
        exit hook would say); ``sys.exit(n)`` as its code; ``failed`` (1) else."""
        if kind is None:
            self.finish()
            return
        if self.state != RUNNING:
            return
        manager = self._manager
        code: int | None
        if issubclass(kind, KeyboardInterrupt):
            state, code = "interrupted", 128 + signal.SIGINT
        elif (issubclass(kind, SystemExit) and manager is not None
              and manager.exit_state == "interrupted"):  # our SIGTERM handler's SystemExit
            state, code = "interrupted", manager.exit_code
        elif issubclass(kind, SystemExit):
            exit_code = getattr(value, "code", None)
            code = exit_code if isinstance(exit_code, int) else (0 if exit_code is None else 1)
            state = "failed" if code else "finished"
        else:
            state, code = "failed", 1
        self._end(state, code, None)


class DisabledRun(Run):
    """``mode="disabled"``: a run that accepts every call and writes nothing."""

    def __init__(self, spec: dict[str, Any], settings: Settings) -> None:
        super().__init__(spec, {"id": spec["id"], "dir": spec["run_dir"],
                                "config": spec["config"]}, settings, None, None)
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
                      hidden: bool | None = None, step_sync: bool | None = None,
                      overwrite: bool | None = None) -> Metric:
        """Checked as a real run checks it, and dropped."""
        return check_metric(name, step_metric, summary, goal, hidden, step_sync, overwrite)

    def flush(self, timeout: float | None = None) -> None:
        """Nothing to flush."""

    def save(self, glob_str: str | os.PathLike, base_path: str | os.PathLike | None = None,
             policy: str = "live", glob: bool = True) -> list[str]:
        """Accepted; nothing is copied."""
        return []

    def log_code(self, root: str | None = ".", name: str | None = None,
                 include_fn: Callable[..., bool] | None = None,
                 exclude_fn: Callable[..., bool] | None = None) -> Artifact | None:
        """Accepted; nothing is copied."""
        return None

    def alert(self, title: str, text: str, level: str | None = None,
              wait_duration: float | datetime.timedelta | None = None) -> None:
        """Accepted; nothing is stored or printed."""

    def mark_preempting(self) -> None:
        """Accepted; nothing is stored."""

    def watch(self, models: Any, criterion: Any = None, log: str | None = "gradients",
              log_freq: int = 1000, idx: int | None = None, log_graph: bool = False) -> None:
        """Accepted; no hooks are put on the model."""

    def log_artifact(self, artifact_or_path: Any, name: str | None = None,
                     type: str | None = None, aliases: list[str] | None = None,
                     tags: list[str] | None = None) -> Artifact:
        """Accepted; nothing is stored (an Artifact is returned, never logged)."""
        from ..artifacts.artifact import Artifact

        if isinstance(artifact_or_path, Artifact):
            return artifact_or_path
        return Artifact(name or os.path.basename(os.fspath(artifact_or_path)),
                        type or "unspecified")

    def use_artifact(self, artifact_or_name: Any, type: str | None = None,
                     aliases: list[str] | None = None, use_as: str | None = None) -> Artifact:
        """A stored artifact, read as a run would read it; no lineage is recorded."""
        from ..artifacts import registry
        from ..artifacts.artifact import Artifact, from_manifest

        if isinstance(artifact_or_name, Artifact):
            return artifact_or_name
        project, name, alias = registry.parse(str(artifact_or_name), self.project)
        project_dir = os.path.join(os.path.dirname(os.path.dirname(self.dir)), project)
        return from_manifest(registry.resolve(project_dir, name, alias), project_dir, project)

    def log_model(self, path: str | os.PathLike, name: str | None = None,
                  aliases: list[str] | None = None) -> None:
        """Accepted; nothing is stored."""

    def link_artifact(self, artifact: Artifact, target_path: str,
                      aliases: list[str] | None = None) -> Artifact:
        """Accepted; nothing is stored."""
        return artifact

    @property
    def disabled(self) -> bool:
        return True

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """Mark the run ended; nothing is stored."""
        if self.state == RUNNING:
            self._ended("failed" if exit_code else "finished")

    def _end(self, state: str, exit_code: int | None, timeout: float | None,
             quiet: bool | None = None) -> None:
        self._ended(state)


def make_current(run: Run) -> None:
    """``mpbackend.run``, ``mpbackend.config`` and ``mpbackend.summary`` are now ``run``'s."""
    import mpbackend

    mpbackend.run = run
    mpbackend.config = run.config
    mpbackend.summary = run.summary


def forget(run: Run) -> None:
    """``run`` has ended: it is no longer ``mpbackend.run``."""
    import mpbackend

    if mpbackend.run is run:
        mpbackend.run = None
