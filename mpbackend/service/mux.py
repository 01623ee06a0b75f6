r"""The service process: its entry point ``serve`` and StreamMux, its main loop.

    rec_q --(reader thread)--> inbox --(main thread: StreamMux)--> Internal[run 1] --> run.db
                                                           |  \--> Internal[run N] --> run.db
    rsp_q <-- Ready, Response(uuid), Notice, Committed ------+
    watchdog thread: is the user process alive? (a pidfd, or psutil)
    system thread: machine and process figures (service.system), written at commits

Four threads, one job each:

* the **reader** moves batches from the rec_q pipe into ``inbox``, a bounded
  in-memory queue, so a slow store pushes back on the pipe and then on the
  user's buffer;
* the **main thread** (StreamMux) unpacks each batch, hands records to the
  Internal of their stream, answers requests on rsp_q in the order they were
  sent, and commits every ``commit_interval`` (or every ``COMMIT_RECORDS``
  records if they come sooner; asleep while there is nothing to commit), then
  tells the user process up to which of its numbered batches everything is
  stored (Committed), so it can let them go; a new service after a restart first
  replays the ones it kept;
* the **watchdog** waits on a pidfd of the user process (psutil polling where
  there is none). When it is gone (even SIGKILLed), the main thread stores
  whatever reached the queue (bounded by ``DRAIN_SECONDS``), marks every open
  run ``crashed`` and the process exits.
* the **system** thread (``mpbackend.service.system``; off when ``system_interval`` is 0)
  samples the machine and the training process tree; the main thread writes the
  samples to the open runs at its commits, and takes one more as a run ends.

**Replay marks.** The user process numbers its batches (``seq`` under a
``token`` of its own) and keeps each until this service says it is stored, so
that a new service can replay what a dead one took with it. Three marks, each a
``(token, seq)``, keep that exactly-once:

* ``applied``: how far the records of the user process are applied to the runs
  in memory: ``(token, seq, upto)``, the first ``upto`` records of batch ``seq``
  (``upto`` None: all of it). Every commit writes it into each run's database
  *in the same transaction as the rows* (``RunWriter.mark``, the ``replay`` row
  of ``meta``), so what a store holds and what it says it holds always agree,
  also for a flush or a finish in the middle of a batch (the records after it
  in the batch are not covered) and in the final commit of a finishing run.
* ``acked``: the last ``applied`` reported to the user process (``Committed``),
  once every open run committed it; the user process then lets go of the
  batches up to it. Reported once per change.
* ``replayed``: after a restart, the new service applies the kept batches
  before reading rec_q, and skips in them, per run, the records that run's
  stored mark covers (the first duplicate check: ``_not_stored``); then
  ``replayed`` is the last of them. The same batches are mostly still in rec_q
  (the dead service had not read them), and a batch met there with a ``seq`` up
  to ``replayed`` is skipped (the second check, in ``_batch``). A child's
  batches are not numbered: what the dead service had read of them is lost.

The service ignores SIGINT: Ctrl-C reaches the whole process group, and the
user process decides how its runs end, then stops the service ([b]..[e]). A
SIGTERM starts a grace period of ``TERM_GRACE`` seconds for the manager to do
the same; after it the open runs are marked ``crashed`` and the service exits.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import select
import signal
import threading
import time
import traceback
from typing import Any, NamedTuple

from ..shared import messages as m
from ..shared.errors import StoreError, error_reply
from ..shared.queues import BatchQueue, Blob, Progress, ReplyQueue
from ..shared.settings import Settings
from ..shared.version import __version__
from .internal import Internal

log = logging.getLogger("mpbackend.service")

DRAIN_SECONDS = 1.0
# How far the user process's records are applied (see "Replay marks" above).
Mark = tuple[str, int, int | None]
_WHAT = {m.CONFIG: "a config update", m.SUMMARY: "a summary update",
         m.DEFINE_METRIC: "define_metric()", m.HISTORY_ANY: "a logged row",
         m.HISTORY_MEDIA: "a logged row with media",
         m.RUN_META: "a run attribute set", m.ALERT: "an alert",
         m.ARTIFACT: "log_artifact()", m.USE_ARTIFACT: "use_artifact()"}
TERM_GRACE = 10.0
MAX_FINISHED = 1000  # finish replies kept for a finish asked twice (see _inform_finish)
INBOX_BATCHES = 16
_EOF = object()
_WAKE = object()  # put in the inbox by the watchdog: look at user_died now
# A commit is due after this many records even before commit_interval, so that at a
# high rate what waits in memory for it (rows here, kept batches in the user
# process) stays bounded; at a low rate, commit_interval.
COMMIT_RECORDS = 8192
# The most rows all open runs' open chunks may hold in memory together (about 1 KB
# each as dicts of 10 floats); past it the largest are written early.
OPEN_ROWS = 16384
# The main loop's longest sleep with nothing to commit (see ``run``).
IDLE_WAIT = 1.0



def serve(rec_q: BatchQueue, rsp_q: ReplyQueue, user_pid: int, settings: Settings,
          start: Blob | None = None, progress: Progress | None = None) -> None:
    """Entry point of the service process ([1]): run StreamMux until stopped.

    ``start`` (after a restart) holds ``(resume, replay, isolate, skip)``: the
    runs the dead service had open (pickled InformInit specs), re-opened before
    the first record is read from rec_q; the user process's batches it had not
    reported committed; the batches to apply one record at a time and the
    records not to apply (see ``StreamMux._batch``). ``progress`` is where this
    service says which batch and record it is applying, for the Manager to read
    if it dies.
    """
    resume, replay, isolate, skip = (m.loads(start.read()) if start is not None
                                     else ((), (), (), ()))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Past RLIMIT_FSIZE a write fails (and is reported) instead of killing the service.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    os.umask(0o022)  # the store's files are never world-writable
    rec_q.close_writer()
    rsp_q.close_reader()
    mux = StreamMux(rec_q, rsp_q, user_pid, settings, progress)
    mux.isolate = set(isolate)
    mux.skip = {tuple(pair) for pair in skip}
    signal.signal(signal.SIGTERM, mux.on_sigterm)
    mux.run(resume, replay)


# Fault injection for the test suite only (tests/test_hostile.py): a service whose
# environment names a key dies at once, as a crash in C would, when it meets a row with
# that key. Read once, at import; unset, it costs one comparison per record.
_CRASH_KEY = os.environ.get("MPBACKEND_TEST_CRASH_KEY") or None


def _crash_on(record: tuple | bytes) -> None:
    if type(record) is tuple and len(record) > 2 and isinstance(record[2], dict) \
            and _CRASH_KEY in record[2]:
        os.kill(os.getpid(), signal.SIGKILL)  # no core file


class _Failure(NamedTuple):
    """A thread of the service failed unexpectedly; the main loop stores it and ends."""

    where: str
    error: BaseException
    traceback: str


def _read(rec_q: BatchQueue, inbox: queue.Queue, stop: threading.Event) -> None:
    """Reader thread: rec_q -> inbox, until every writer is gone.

    Its own failure goes into the inbox too (a ``_Failure``), so the main loop
    never waits for a reader that has died.
    """
    while True:
        try:
            item: Any = rec_q.get_bytes()
        except (EOFError, OSError):
            item = _EOF
        except BaseException as exc:
            item = _Failure("reading rec_q", exc, traceback.format_exc())
        while not stop.is_set():
            try:
                inbox.put(item, timeout=0.5)
                break
            except queue.Full:
                continue
        if item is _EOF or type(item) is _Failure or stop.is_set():
            return


def _watch(user_pid: int, interval: float, died: threading.Event, stop: threading.Event,
           problems: list[str], inbox: queue.Queue) -> None:
    """Watchdog thread: set ``died`` when the user process is gone (or a zombie).

    A pidfd (Linux 5.3+) becomes readable the moment the process ends, so death
    is seen at once; without one, psutil polls every ``interval`` seconds. If
    the pidfd wait itself fails, the watchdog falls back to polling rather than
    take a process that may be alive for dead; what went wrong is appended to
    ``problems``, which the main thread reports once.
    """
    try:
        pidfd = os.pidfd_open(user_pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        if pidfd is not None:
            try:
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                # The pidfd wakes this thread the moment the process ends; the
                # timeout only lets it see ``stop``, so it is long.
                while not stop.is_set() and not poller.poll(IDLE_WAIT * 1000):
                    pass
                return
            except Exception as exc:
                problems.append(f"the watchdog's pidfd failed ({exc!r}); it polls instead")
        import psutil

        try:
            proc = psutil.Process(user_pid)
            while not stop.wait(interval):
                if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
                    break
        except psutil.NoSuchProcess:
            pass
        except Exception as exc:  # it cannot watch: say so, and leave EOF on rec_q to tell
            problems.append(f"the watchdog cannot watch process {user_pid} ({exc!r})")
            stop.wait()
    finally:
        if pidfd is not None:
            os.close(pidfd)
        died.set()
        try:  # the main loop may be asleep for up to IDLE_WAIT: wake it
            inbox.put_nowait(_WAKE)
        except queue.Full:
            pass  # it has batches to apply, and looks at ``died`` after each


class StreamMux:
    """The service's main loop: routes records to one Internal per stream."""

    def __init__(self, rec_q: BatchQueue, rsp_q: ReplyQueue, user_pid: int,
                 settings: Settings, progress: Progress | None = None) -> None:
        self.rec_q = rec_q
        self.progress = progress
        # After a restart: batches (seq) a dead service was applying, applied here one
        # record at a time, and records (seq, index) that killed two services.
        self.isolate: set[int] = set()
        self.finished: dict[str, dict[str, Any]] = {}  # the last replies to InformFinish
        self.skip: set[tuple[int, int]] = set()
        self.rsp_q = rsp_q
        self.user_pid = user_pid
        self.settings = settings
        self.streams: dict[str, Internal] = {}
        self.inbox: queue.Queue = queue.Queue(maxsize=INBOX_BATCHES)
        self.user_died = threading.Event()
        self.watch_problems: list[str] = []  # the watchdog's, reported by the main thread
        self.stop = threading.Event()
        self.stopping = False
        self.term_at: float | None = None
        self._noticed: dict[str, int] = {}
        # Replay bookkeeping for the user process's numbered batches: the last one
        # applied, the last reported committed, and the last one replayed (met
        # again in rec_q, it is skipped).
        self.applied: Mark | None = None
        self.acked: Mark | None = None
        self.replayed: Mark | None = None
        # System metrics (mpbackend.service.system): None when Settings.system_interval is off.
        from .system import SystemMonitor  # imported in the service only

        self.system = SystemMonitor.create(user_pid, settings, self._notice)
        self._last_commit = time.monotonic()
        self._since_commit = 0  # records applied since then (COMMIT_RECORDS)
        self._handlers = {
            m.HISTORY: self._history,
            m.HISTORY_FLOATS: self._history,
            m.HISTORY_ANY: self._history_any,
            m.HISTORY_MEDIA: self._history_any,
            m.CONFIG: self._config,
            m.SUMMARY: self._summary,
            m.DEFINE_METRIC: self._define_metric,
            m.RUN_META: self._run_meta,
            m.ALERT: self._alert,
            m.ARTIFACT: self._artifact,
            m.USE_ARTIFACT: self._use_artifact,
            m.REQUEST: self._request,
        }
        self._requests = {
            m.EnsureUp: self._ensure_up,
            m.InformInit: self._inform_init,
            m.Flush: self._flush,
            m.GetSummary: self._get_summary,
            m.ArtifactWait: self._artifact_wait,
            m.InformFinish: self._inform_finish,
            m.ManagerStop: self._manager_stop,
            m.ManagerPoll: self._manager_poll,
        }

    def on_sigterm(self, signum: int, frame: Any) -> None:
        if self.term_at is None:
            self.term_at = time.monotonic() + TERM_GRACE

    # -- loop ------------------------------------------------------------

    def run(self, resume: tuple[bytes, ...] = (), replay: tuple[bytes, ...] = ()) -> None:
        resumed, failed = self._resume(resume)
        threading.Thread(target=_read, args=(self.rec_q, self.inbox, self.stop),
                         name="mpbackend-reader", daemon=True).start()
        threading.Thread(target=_watch, name="mpbackend-watchdog", daemon=True,
                         args=(self.user_pid, self.settings.watchdog_interval,
                               self.user_died, self.stop, self.watch_problems,
                               self.inbox)).start()
        self._send(m.Ready(os.getpid(), __version__, resumed))
        for text in failed:
            self._notice("resume", text, limit=len(failed))
        for payload in replay:
            self._batch(payload, replay=True)
        self.replayed = self.applied
        if self.system is not None:
            self.system.start()
        interval = self.settings.commit_interval
        try:
            while not self.stop.is_set():
                # Wake for the next batch, for a commit that is due, or (nothing to
                # commit) once every IDLE_WAIT: a quiet run costs no wake-ups but that.
                wait = IDLE_WAIT if not self._since_commit else max(
                    0.001, interval - (time.monotonic() - self._last_commit))
                try:
                    item = self.inbox.get(timeout=wait)
                except queue.Empty:
                    item = None
                if item is _EOF:
                    self._end_all("crashed")
                    break
                if type(item) is _Failure:
                    self._unexpected(None, item.where, item.error, item.traceback)
                    self._end_all("crashed")
                    break
                if item is not None and item is not _WAKE:
                    self._batch(item)
                while self.watch_problems:  # list.pop is atomic: none is lost
                    text = self.watch_problems.pop(0)
                    self._notice("watchdog:" + text, text)
                if self.user_died.is_set():
                    self._drain()
                    self._end_all("crashed")
                    break
                if self.term_at is not None and time.monotonic() > self.term_at:
                    self._end_all("crashed")
                    break
                if self._since_commit >= COMMIT_RECORDS or \
                        time.monotonic() - self._last_commit >= interval:
                    self._commit_all()
        except Exception as exc:  # a bug in the loop itself: keep what can be kept
            self._unexpected(None, "the service's main loop", exc, traceback.format_exc())
            try:
                self._end_all("crashed")
            except Exception:
                log.debug("ending the runs after a failure failed", exc_info=True)
        finally:
            self.stop.set()
            if self.system is not None:
                self.system.stop()

    def _resume(self, specs: tuple[bytes, ...]) -> tuple[tuple[str, ...], list[str]]:
        """Re-open the runs of a dead service (``resume="allow"``); their ids, and failures."""
        resumed, failed = [], []
        for data in specs:
            try:
                spec = m.loads(data)
                resumed.append(self._inform_init(m.InformInit(spec))["id"])
            except Exception as exc:
                failed.append(f"a run could not be resumed in the new service: {exc!r}")
        return tuple(resumed), failed

    def _drain(self) -> None:
        """The user is gone: store what is still in the pipe, for at most DRAIN_SECONDS."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline:
            try:
                item = self.inbox.get(timeout=0.05)
            except queue.Empty:
                if not self.rec_q.poll(0):
                    return
                continue
            if item is _EOF:
                return
            if item is not _WAKE:
                self._batch(item)

    def _end_all(self, state: str) -> None:
        """End every open run as ``state``; one that fails does not keep the others open."""
        for stream in list(self.streams):
            try:
                self._finish_stream(stream, state, None)
            except Exception:
                pass  # reported by _finish_stream; the run is closed

    def _commit_all(self) -> None:
        """Commit every run; then tell the user process which of its batches are stored."""
        self._last_commit = time.monotonic()
        self._since_commit = 0
        self._bound_open_rows()
        if self.system is not None:
            self.system.write()
        mark = self.applied
        stored = True
        for internal in self.streams.values():
            try:
                internal.commit(mark)
                self._tell(internal)
            except StoreError as exc:
                stored = False
                self._notice("store:" + internal.id, f"run {internal.id}: {exc}")
            except Exception as exc:
                stored = False
                self._unexpected(internal.id, "a commit", exc, traceback.format_exc())
        if stored and mark is not None and mark[2] is None and mark != self.acked:
            self.acked = mark
            self._send(m.Committed(mark[1]))

    def _bound_open_rows(self) -> None:
        """Many runs open at once: end the largest open chunks early, so that the rows
        they hold in memory (each run's open chunk keeps its rows as dicts until it
        is written whole) stay under OPEN_ROWS in all, whatever the number of runs."""
        held = [(internal.writer.open_rows, internal) for internal in self.streams.values()]
        total = sum(rows for rows, _ in held)
        if total <= OPEN_ROWS:
            return
        held.sort(key=lambda pair: pair[0], reverse=True)
        for rows, internal in held:
            internal.writer.seal_open()
            total -= rows
            if total <= OPEN_ROWS // 2:
                break

    # -- records ---------------------------------------------------------

    def _batch(self, payload: bytes, replay: bool = False) -> None:
        """Apply one batch of records from one process.

        The user process numbers its batches (``seq`` under its ``token``); a
        child's carry ``token`` None. A batch replayed after a restart skips
        requests (their callers were already failed) and, per run, what the
        store already holds; a batch met again in rec_q after its replay is skipped.
        """
        try:
            pid, worker, records, seq, token = m.loads(payload)
        except Exception as exc:
            self._notice("batch", f"a batch of records could not be read and was lost: {exc!r}")
            return
        numbered = token is not None
        progress = self.progress
        isolated = False
        if numbered:
            replayed = self.replayed
            if replayed is not None and token == replayed[0] and seq <= replayed[1]:
                return
            self.applied = (token, seq, 0)
            if replay:
                records = self._not_stored(records, token, seq)
            if progress is not None:
                progress.set(seq, -1)
            isolated = seq in self.isolate
        self._since_commit += len(records)
        handlers = self._handlers
        # log() records by stream, in order; applied before any other record, so a
        # request still sees everything sent before it.
        runs: dict[str, list[tuple]] = {}
        for index, record in enumerate(records):
            if record is None:  # replayed, and already stored
                continue
            if isolated:
                # A dead service was applying this batch: one record at a time, each
                # named in ``progress`` first, so a record that kills this service too
                # is known by its index (and skipped by the next, after two deaths).
                if runs:
                    self._apply_rows(pid, worker, runs)
                    runs = {}
                assert progress is not None
                progress.set(seq, index)
                if (seq, index) in self.skip:
                    self._skipped(record)
                    continue
            if _CRASH_KEY is not None:
                _crash_on(record)
            if type(record) is not tuple:  # pickled at the call: not a plain row
                try:
                    record = m.loads(record)
                except Exception as exc:
                    self._notice("record", f"a record could not be read in the service and "
                                 f"was lost (is the module of its values importable?): {exc!r}")
                    continue
            op = record[0]
            if op == m.HISTORY_FLOATS or op == m.HISTORY:
                if len(record) != 6 or type(record[2]) is not dict:
                    # No client of ours sends this; refused before it touches a run,
                    # so that it cannot spoil the rows stored with it.
                    try:
                        raise TypeError(f"a malformed row record: {record!r:.200}")
                    except TypeError as exc:
                        self._unexpected(record[1] if len(record) > 1 else None,
                                         "a logged row", exc, traceback.format_exc())
                    continue
                run = runs.get(record[1])
                if run is None:
                    runs[record[1]] = [record]
                else:
                    run.append(record)
                continue
            if runs:
                self._apply_rows(pid, worker, runs)
                runs = {}
            if numbered:
                # Every record before this one is applied: a flush or finish it asks
                # for stores exactly that much of this batch as stored.
                self.applied = (token, seq, index)
            try:
                handlers[op](pid, worker, record)
            except Exception as exc:
                self._unexpected(record[1] if op != m.REQUEST else None,
                                 _WHAT.get(op, "a record"), exc, traceback.format_exc())
        if runs:
            self._apply_rows(pid, worker, runs)
        if numbered:
            self.applied = (token, seq, None)  # the whole batch
            if progress is not None:
                progress.set(-1, -1)

    def _skipped(self, record: tuple | bytes) -> None:
        """A record that killed two services is not applied: stored as an error, told."""
        if type(record) is not tuple:
            try:
                record = m.loads(record)  # type: ignore[arg-type]
            except Exception:
                record = (None, None)
        stream = record[1] if isinstance(record, tuple) and len(record) > 1 else None
        text = ("a record that stopped the mpbackend service twice was skipped "
                "(it is lost; the rest of its batch is stored)")
        for internal in ([self.streams[stream]] if stream in self.streams
                         else list(self.streams.values())):
            internal.note_error(text, "")
        self._notice("skipped", f"run {stream}: {text}" if stream else text, limit=5)

    def _apply_rows(self, pid: int, worker: Any, runs: dict[str, list[tuple]]) -> None:
        """The log() records of a batch, run by run; a failure costs only its own run's."""
        for stream, records in runs.items():
            try:
                self._rows(pid, worker, records)
            except Exception as exc:
                self._unexpected(stream, "storing logged rows", exc, traceback.format_exc())

    def _not_stored(self, records: list, token: str, seq: int) -> list[tuple | None]:
        """A replayed batch with None in place of each record its run's store holds.

        A run's stored mark ``(seq, upto)`` covers every record of earlier batches
        and the first ``upto`` records of batch ``seq`` (all of it when None).
        Indexes are kept, so the marks set while the batch is applied again mean
        what they meant the first time. Requests are not replayed.
        """
        kept: list[tuple | None] = []
        for index, record in enumerate(records):
            if type(record) is not tuple:
                try:
                    record = m.loads(record)
                except Exception:
                    kept.append(None)  # reported when it was first read
                    continue
            internal = self.streams.get(record[1]) if record[0] != m.REQUEST else None
            # A run not resumed was finished before the death, with these records.
            if internal is None:
                kept.append(None)
                continue
            stored_seq, upto = internal.stored_through(token)
            if seq < stored_seq or (seq == stored_seq and (upto is None or index < upto)):
                kept.append(None)
            else:
                kept.append(record)
        return kept

    def _rows(self, pid: int, worker: Any, records: list[tuple]) -> None:
        internal = self.streams.get(records[0][1]) or self._stream(records[0][1])
        if internal is not None:
            warnings, failures = internal.rows(pid, worker, records)
            for warning in warnings:
                self._notice("step:" + internal.id, warning, limit=5)
            for exc, tb in failures:
                self._unexpected(internal.id, "a logged row", exc, tb)

    def _stream(self, stream: str) -> Internal | None:
        internal = self.streams.get(stream)
        if internal is None:
            self._notice("stream:" + stream,
                         f"records for run {stream!r}, which is not open, were dropped")
        return internal

    def _history(self, pid: int, worker: Any, record: tuple) -> None:
        self._rows(pid, worker, [record])

    def _history_any(self, pid: int, worker: Any, record: tuple) -> None:
        # Its values were made plain by log() (user.values.convert), in the caller.
        if len(record) != 6 or type(record[2]) is not dict:
            raise TypeError(f"a malformed row record: {record!r:.200}")
        self._history(pid, worker, record)

    def _config(self, pid: int, worker: Any, record: tuple) -> None:
        internal = self._stream(record[1])
        if internal is not None:
            internal.update_config(record[2])

    def _summary(self, pid: int, worker: Any, record: tuple) -> None:
        internal = self._stream(record[1])
        if internal is not None:
            internal.update_summary(record[2], record[3])

    def _run_meta(self, pid: int, worker: Any, record: tuple) -> None:
        internal = self._stream(record[1])
        if internal is not None:
            internal.update_meta(record[2])

    def _alert(self, pid: int, worker: Any, record: tuple) -> None:
        internal = self._stream(record[1])
        if internal is not None:
            internal.alert(record[2])

    def _artifact(self, pid: int, worker: Any, record: tuple) -> None:
        internal = self._stream(record[1])
        if internal is not None:
            internal.log_artifact(record[2], record[3])

    def _use_artifact(self, pid: int, worker: Any, record: tuple) -> None:
        internal = self._stream(record[1])
        if internal is not None:
            internal.use_artifact(record[2])

    def _define_metric(self, pid: int, worker: Any, record: tuple) -> None:
        internal = self._stream(record[1])
        if internal is not None:
            internal.define_metric(record[2], record[3])

    def _request(self, pid: int, worker: Any, record: tuple) -> None:
        _, uuid, message = record
        handler: Any = self._requests.get(type(message))
        try:
            if handler is None:
                raise TypeError(f"unknown request {type(message).__name__}")
            response = m.Response(uuid, value=handler(message))
        except Exception as exc:  # the caller gets it, with this traceback as its cause
            response = m.Response(uuid, error=error_reply(exc))
        if pid == self.user_pid:
            self._send(response)

    # -- requests [3]..[e] -------------------------------------------------

    def _ensure_up(self, msg: m.EnsureUp) -> dict[str, Any]:
        return {"pid": os.getpid(), "version": __version__}

    def _inform_init(self, msg: m.InformInit) -> dict[str, Any]:
        spec = msg.spec
        if spec["id"] in self.streams:
            raise ValueError(f"run {spec['id']!r} is already open in this service")
        internal = Internal(spec)
        self.streams[internal.id] = internal
        if self.system is not None:
            self.system.opened(internal)
        return {"id": internal.id, "dir": internal.run_dir, "step": internal.step,
                "resumed": internal.resumed, "config": internal.config,
                "summary": internal.summary()}

    def _open(self, stream: str) -> Internal:
        internal = self.streams.get(stream)
        if internal is None:
            raise KeyError(f"run {stream!r} is not open")
        return internal

    def _tell(self, internal: Internal) -> None:
        """Warn the user of rows the store could not take and of what happened to the
        run's files (after a commit, before the reply to a flush or finish)."""
        for text in internal.take_problems():
            self._notice("unstorable:" + internal.id, f"run {internal.id}: {text}")
        for text in internal.take_events():
            self._notice("files:" + internal.id, f"run {internal.id}: {text}", limit=5)

    def _flush(self, msg: m.Flush) -> dict[str, Any]:
        internal = self._open(msg.stream)
        try:
            return internal.flush(self.applied)
        finally:
            self._tell(internal)

    def _artifact_wait(self, msg: m.ArtifactWait) -> dict[str, Any]:
        return self._open(msg.stream).artifact_result(msg.client_id)

    def _get_summary(self, msg: m.GetSummary) -> dict[str, Any]:
        internal = self._open(msg.stream)
        return {"summary": internal.summary(), "step": internal.step}

    def _finish_stream(self, stream: str, state: str, exit_code: int | None,
                       dropped: int = 0) -> dict[str, Any]:
        internal = self.streams.pop(stream)
        try:
            if self.system is not None:
                self.system.closing(internal)
            reply = internal.finish(state, exit_code, dropped, self.applied)
            self._tell(internal)
            return reply
        except Exception as exc:
            if not isinstance(exc, StoreError):
                self._unexpected(stream, "finishing the run", exc, traceback.format_exc(),
                                 internal)
            try:
                internal.close_after_failure(state)
            except Exception:
                pass  # the store cannot be written: it keeps what it has
            raise

    def _inform_finish(self, msg: m.InformFinish) -> dict[str, Any]:
        if msg.stream not in self.streams and msg.stream in self.finished:
            # Asked again: after a restart the caller's earlier try, left in rec_q by
            # a service that died first, may have reached this service before it.
            return self.finished[msg.stream]
        self._open(msg.stream)
        reply = self._finish_stream(msg.stream, msg.state, msg.exit_code, msg.dropped)
        self.finished[msg.stream] = reply
        while len(self.finished) > MAX_FINISHED:
            del self.finished[next(iter(self.finished))]
        return reply

    def _manager_stop(self, msg: m.ManagerStop) -> dict[str, Any]:
        stopped = list(self.streams)
        self._end_all(msg.state)
        self.stopping = True
        return {"stopped": stopped}

    def _manager_poll(self, msg: m.ManagerPoll) -> dict[str, Any]:
        remaining = len(self.streams)
        if self.stopping and remaining == 0:
            self.stop.set()
        return {"streams": remaining}

    # -- replies -----------------------------------------------------------

    def _send(self, message: Any) -> None:
        if self.user_died.is_set():
            return
        try:
            payload = pickle.dumps(message, protocol=5)
        except Exception as exc:  # a reply must never take the service down
            if not isinstance(message, m.Response):
                return
            payload = pickle.dumps(m.Response(message.uuid, error=(
                "RuntimeError", f"the reply could not be sent: {exc}", "")), protocol=5)
        try:
            self.rsp_q.put_bytes(payload, timeout=5.0)
        except OSError:
            self.user_died.set()

    def _unexpected(self, stream: str | None, what: str, exc: BaseException, tb: str,
                    internal: Internal | None = None) -> None:
        """An error the service did not expect (a bug, or a value it cannot handle).

        It is stored with the run it concerns (every open run, when it concerns
        no one run: ``extra["service_errors"]``, with the traceback) and told to
        the user once per kind as a warning, and the service goes on. Never only
        sent to a logger nobody configured.
        """
        text = f"{what} failed in the mpbackend service: {type(exc).__name__}: {exc}"
        if internal is None and stream is not None:
            internal = self.streams.get(stream)
        for target in [internal] if internal is not None else list(self.streams.values()):
            try:
                target.note_error(text, tb)
            except Exception:
                log.debug("an error could not be noted with run %s", target.id, exc_info=True)
        where = f" (stored with run {stream})" if internal is not None else ""
        # Once per kind of failure and run: the key holds no counts or values.
        self._notice(f"unexpected:{what}:{stream}", text + where)

    def _notice(self, key: str, text: str, limit: int = 1) -> None:
        """Tell the user once (or ``limit`` times) per ``key``."""
        count = self._noticed.get(key, 0)
        self._noticed[key] = count + 1
        log.debug(text)
        if count < limit:
            self._send(m.Notice("warning", text))
