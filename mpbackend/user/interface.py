"""Interface: how a process talks to the service (wandb's Backend and Interface).

    log(), config, summary --publish-----> dumps() --> buffer --(sender thread)--> rec_q
    init, flush, finish    --communicate--> dumps() --> buffer --(now)-----------> rec_q
                                            Future <-- Router thread <-- rsp_q

``publish`` is fire-and-forget: the record is serialised in the caller's thread
(so a value that cannot be sent raises TypeError right there), appended to an
in-memory buffer and the call returns. A history row of builtin numbers under
builtin ``str`` keys, which cannot fail to serialise, skips that step
(``put_row``): it is buffered as a copied dict and the sender pickles it with its
batch, so ``log()`` costs a type check and a dict copy, and the service
unpickles one batch instead of one record at a time. ``communicate`` sends a request with a
uuid through the same buffer, so it is ordered after everything published
before it, and waits, always with a timeout, for the Future the Router resolves.

The buffer holds at most ``Settings.buffer_bytes`` of serialised records that
have not reached the pipe yet. When it is full, ``publish`` waits for room
(policy ``block``) or drops the record and counts it (policy ``drop``). This
buffer is all a SIGKILL of the user process can lose: what reached the pipe is
in the kernel and the service stores it.

One **sender thread** per process has one job: after each wait (at once for a
full batch or a request) it takes what the buffer holds, up to ``batch_records``
records, and writes it to rec_q as one batch, tagged with the process id and the
DataLoader worker id. The wait adapts
to the rate, from 5 ms while batches come large to ``send_interval`` while they
come small (``SHORTEST_SEND``), so a training loop's few rows per wait cost few
wake-ups, and a fast loop's rows still leave every few ms.

In the run owner's process the sender numbers its batches and keeps each one
(``unacked``) until the service reports it stored (``ack``, from the Router's
Committed); if the service dies, the Manager hands the kept batches to the new
one, so no row of this process is lost to a service crash.

A forked child gets a fresh buffer, lock and sender (``os.register_at_fork``); it
can publish but not communicate, since replies go to the run owner's router. At
a child's exit its buffer is drained into the pipe.

**The lock-free handshake** (``_push``, ``_idle``, ``_room``). ``log()`` of a
small record takes no lock: it appends to the deque ``_q`` and returns. Three
facts make that safe, and all three rest on the GIL (on a free-threaded build
this would need a lock or atomics):

* ``deque.append`` and ``deque.popleft`` are single C calls, atomic under the
  GIL: the producer threads and the sender never corrupt the deque, and the
  sender takes exactly ``len(q)`` items it saw, leaving later ones for the next
  round.
* Waking the sender is a Dekker-style handshake on ``_idle``: the producer first
  appends, then reads ``_idle`` (and if it is True, sets it False and sets
  ``_ready``); the sender, giving up after IDLE_ROUNDS empty rounds, first sets
  ``_idle = True``, then reads ``q`` (and if it is not empty, stays awake).
  Under the GIL bytecodes interleave, they do not reorder, so at least one side
  sees the other's write: either the producer wakes the sender or the sender
  sees the record. A lost wake-up could cost at most one more round anyway: an
  idle sender's wait on ``_ready`` times out every 0.1 s and looks at ``q``.
* ``_room`` is how many small records the lock-free path may hold; it is
  recomputed under the lock whenever the large records' bytes (``_big``), the
  sender or the broken state change, and it is 0 until the sender runs and once
  the service is gone, which sends every record through the locked path (which
  blocks, drops and counts). A producer reads it without the lock, so racing
  threads can overshoot the bound by one record each; the ``- 1`` in its
  formula covers the first.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import io
import logging
import multiprocessing.util
import os
import pickle
import signal
import sys
import threading
import time
import weakref
from typing import Any

from ..shared import messages as m
from ..shared.errors import RequestTimeout, ServiceError, UsageError
from ..shared.queues import BatchQueue
from ..shared.settings import Settings
from .router import Router

log = logging.getLogger("mpbackend")

_pickle_dumps = pickle.dumps
# Records up to SMALL bytes are counted as SMALL bytes against the buffer bound,
# so the hot path needs no lock; larger ones are counted exactly. A row kept as a
# dict (``put_row``) counts ROW_KEY_BYTES per key, about what a key and a float
# take pickled.
SMALL = 512
ROW_KEY_BYTES = 32
SMALL_ROW = SMALL // ROW_KEY_BYTES
# A batch stops taking large records (images) past this many bytes, so that pickling
# it (a copy of what it holds) never doubles the buffer's memory.
BATCH_BYTES = 1 << 20
# Empty wake-ups after which the sender waits for a record.
IDLE_ROUNDS = 20
# The sender's wait adapts to the rate (``_send_batches``): from SHORTEST_SEND (or
# send_interval if shorter) up to send_interval, doubled after a batch of fewer than
# GROW_BELOW records (or none), halved after one of SHRINK_AT or more, or of
# SHRINK_BYTES of large records (images, wide rows).
# A wake-up costs more than its records (two thread switches for the GIL here, a
# pipe read and a batch in the service), so a slow loop's few records wait longer
# and go together, while a fast one's go every few ms in large batches.
SHORTEST_SEND = 0.005
GROW_BELOW = 64
SHRINK_AT = 256
SHRINK_BYTES = 256 << 10
_interfaces: weakref.WeakSet[Interface] = weakref.WeakSet()


def dumps(obj: Any) -> bytes:
    """Serialise ``obj`` for the service, in the caller's thread.

    The C pickler (protocol 5) takes plain data. What pickle would send by a
    reference the service cannot resolve (a class, function or lambda defined in
    ``__main__``, a notebook cell or a spawned child's main module), goes by value
    with cloudpickle. Raises TypeError for what neither can serialise.
    """
    try:
        data = _pickle_dumps(obj, 5)
    except Exception as exc:
        return _dumps_by_value(obj, exc)
    if b"main__" in data:  # a reference into __main__ / __mp_main__
        return _dumps_by_value(obj, None)
    return data


def dumps_plain(obj: Any) -> bytes:
    """Serialise a record of plain data (what ``values.convert`` makes: builtins and
    ``messages.Media``): the C pickler alone. Such a record refers to no user
    module, so the scan ``dumps`` makes for ``__main__`` references is not needed,
    and over an image's 200 KB of pixels it would cost more than all the rest of
    ``log()``. TypeError if it cannot be pickled."""
    try:
        return _pickle_dumps(obj, 5)
    except Exception as exc:
        raise TypeError(f"cannot send a {type(obj).__name__} to the mpbackend service: "
                        f"{exc}") from exc


def _dumps_by_value(obj: Any, first_error: Exception | None) -> bytes:
    import cloudpickle  # only for what pickle cannot send by reference

    mp_main = sys.modules.get("__mp_main__")
    if mp_main is not None and mp_main is sys.modules.get("__main__"):
        try:
            cloudpickle.register_pickle_by_value(mp_main)
        except ValueError:
            pass
    try:
        return cloudpickle.dumps(obj, protocol=5)
    except Exception as exc:
        cause = first_error or exc
        raise TypeError(f"cannot send a {type(obj).__name__} to the mpbackend service: "
                        f"{cause}") from exc


class _BatchPickler(pickle.Pickler):
    """The sender's pickler: a ``str`` subclass (an Enum member used as a key equal to
    one the run has checked) goes as its plain text, which the service's
    ``messages.loads`` reads without resolving the user's class.

    The C pickler asks ``reducer_override`` about no object of an exact builtin
    type, so a batch of plain rows costs what ``pickle.dumps`` costs.
    """

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return str, (str.__str__(obj),)
        return NotImplemented


def _dumps_batch(batch: tuple) -> bytes:
    buf = io.BytesIO()
    _BatchPickler(buf, 5).dump(batch)
    return buf.getvalue()


class _SenderDead(Exception):
    """Inside the interface only: a request must be written by its caller's thread."""


def _is_request(item: bytes | tuple) -> bool:
    """True for a buffered request (always pickled at the call, never a row tuple)."""
    if type(item) is tuple:
        return False
    try:
        return m.loads(item)[0] == m.REQUEST  # type: ignore[arg-type]
    except Exception:
        return False


def _stream_of(item: bytes | tuple) -> str | None:
    """The run a buffered record belongs to (None for a request or an unreadable one)."""
    try:
        record = item if type(item) is tuple else m.loads(item)  # type: ignore[arg-type]
    except Exception:
        return None
    return record[1] if record and record[0] != m.REQUEST else None


def _size(item: bytes | tuple) -> int:
    """What a buffered record counts against the buffer bound: a row tuple its keys,
    a media record (``put_media``) its files' bytes too."""
    if type(item) is tuple:
        if item[0] == m.HISTORY_MEDIA:
            return SMALL + 1 + media_bytes(item[2])
        return ROW_KEY_BYTES * len(item[2])
    return len(item)


def media_bytes(value: Any) -> int:
    """The bytes of the media data in a converted value (pixels, files, table cells)."""
    kind = type(value)
    if kind is m.Media:
        data = value.data
        if type(data) is bytes:
            return len(data)
        return media_bytes(data)  # a table's rows, an image's (pixels, masks), a chart
    if kind is dict:
        return sum(media_bytes(v) for v in value.values())
    if kind is list or kind is tuple:
        return sum(media_bytes(v) for v in value)
    return len(value) if kind is bytes else 0


def _worker_id() -> int | None:
    """The PyTorch DataLoader worker id of this process, if it is one."""
    data = sys.modules.get("torch.utils.data")
    if data is None:
        return None
    info = data.get_worker_info()
    return None if info is None else info.id


class Interface:
    """A process's connection to the service: publish, communicate, a bounded buffer."""

    # Slots, not an instance dict: ``log()`` reads a handful of these on every call,
    # and CPython shares an instance dict's keys (and specialises attribute reads)
    # only up to 30 of them; past that every read here cost about twice as much.
    __slots__ = ("__weakref__", "_batch", "_big", "_broken", "_closed", "_drop_policy",
                 "_idle", "_in_flight", "_interval", "_limit", "_lock", "_now", "_pid", "_q",
                 "_ready", "_rec_q", "_request_timeout", "_room", "_router", "_sender",
                 "_sender_error", "_seq", "_space", "_token", "_unacked", "_unacked_bytes",
                 "_unacked_lock", "_unsent", "_waking", "_exit_at", "dropped", "dropped_by",
                 "send_wait", "service_pid", "settings")

    def __init__(self, rec_q: BatchQueue, router: Router | None, settings: Settings,
                 service_pid: int | None = None) -> None:
        self._rec_q = rec_q
        self._router = router
        self.settings = settings
        self.service_pid = service_pid
        self._limit = settings.buffer_bytes
        self._drop_policy = settings.buffer_policy == "drop"
        self._interval = settings.send_interval
        self._batch = settings.batch_records
        self._request_timeout = settings.request_timeout
        self._reset()
        _interfaces.add(self)

    def _reset(self) -> None:
        """Fresh per-process state (at creation and in a forked child)."""
        self._pid = os.getpid()
        # Re-entrant: log() from a signal handler (a SIGALRM progress hook) runs in a
        # thread that may be inside this lock already, between two of its bytecodes.
        self._lock = threading.RLock()
        self._waking: set[int] = set()  # threads inside _wake
        self._space = threading.Condition(self._lock)
        self._q: collections.deque[bytes | tuple] = collections.deque()
        self._big = 0  # bytes of buffered records larger than SMALL
        # How many small records the lock-free path may hold: 0 until the sender
        # runs and once the service is gone, so put() takes the locked path.
        self._room = 0
        self._in_flight = False
        self._ready = threading.Event()  # the buffer is not empty (wakes an idle sender)
        self._now = threading.Event()  # a batch is full or a request waits
        # The sender found nothing to send for a while and waits for ``_ready``; while
        # records keep coming it wakes every send_interval by itself, and log() need
        # not signal it.
        self._idle = True
        self._sender: threading.Thread | None = None
        self._closed = False
        self.send_wait = min(SHORTEST_SEND, self._interval)  # the sender's current wait
        self._exit_at = 0.0  # set by exit_when_drained (a terminated child): see there
        self._broken: str | None = None  # why records are dropped now (None: they are not)
        self._sender_error: str | None = None  # the sender thread died, and why
        self._unsent: list[bytes | tuple] = []  # the batch the sender is writing
        self.dropped = 0  # records dropped in all: full buffer (drop policy), dead service
        self.dropped_by: dict[str, int] = {}  # the same, per run, where the run is known
        # Replay (the run owner only): batches are numbered; those written but not
        # yet reported committed by the service are kept, to be handed to a new
        # service if this one dies. ``_token`` tells this process's numbering apart.
        self._token = os.urandom(8).hex()
        self._seq = 0
        self._unacked: collections.deque[tuple[int, bytes]] = collections.deque()
        self._unacked_bytes = 0
        self._unacked_lock = threading.Lock()

    @property
    def queue(self) -> BatchQueue:
        """rec_q, for handing to a child process as it is created."""
        return self._rec_q

    @property
    def pid(self) -> int:
        """The process this interface's buffer and sender belong to."""
        return self._pid

    @property
    def request_timeout(self) -> float:
        return self._request_timeout

    def _after_fork_in_child(self) -> None:
        self._reset()
        self._router = None

    # -- sending -----------------------------------------------------------

    def publish(self, record: tuple) -> None:
        """Send a record without waiting; TypeError if it cannot be serialised."""
        self.put(dumps(record))

    def communicate(self, message: Any, timeout: float | None = None) -> Any:
        """Send a request and wait at most ``timeout`` seconds for its reply value."""
        router = self._router
        if router is None:
            raise UsageError(
                f"{type(message).__name__} can only be asked from the process that started "
                f"the run (pid of this process: {os.getpid()})")
        timeout = self._request_timeout if timeout is None else timeout
        uuid = os.urandom(16).hex()
        future = router.expect(uuid)
        try:
            self._put_slow(dumps((m.REQUEST, uuid, message)), True, timeout=timeout)
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            raise RequestTimeout(f"the service did not answer {type(message).__name__} "
                                 f"within {timeout:g} s") from None
        finally:
            router.forget(uuid)

    def put(self, data: bytes, stream: str | None = None) -> None:
        """Buffer one serialised record.

        A record of at most SMALL bytes is appended to a deque without a lock
        and counted as SMALL bytes against the bound; anything else takes the
        locked path, which also blocks or drops when the buffer is full.
        """
        if len(data) > SMALL or len(self._q) >= self._room:
            self._put_slow(data, False, stream)
            return
        self._push(data)

    def put_row(self, record: tuple) -> None:
        """Buffer a history record that is not serialised yet (the hot path of ``log()``).

        ``record`` is ``(HISTORY, stream, row, step, commit, time)`` whose row the
        caller checked to hold only builtin ``str`` keys and numbers, and copied:
        nothing in it can fail to pickle or change after the call, so the sender
        thread pickles it later, together with the rest of its batch. A row of at
        most ``SMALL // ROW_KEY_BYTES`` keys goes lock-free, counted as SMALL bytes.
        """
        if len(record[2]) > SMALL_ROW or len(self._q) >= self._room:
            self._put_slow(record, False, record[1])
            return
        self._push(record)

    def put_media(self, record: tuple) -> None:
        """Buffer a ``log()`` record holding media, not serialised yet.

        Its values were converted by ``values.convert`` (fresh dicts and lists,
        ``messages.Media`` whose pixels were copied when the Image was made): nothing
        in it can change after the call or fail to pickle. So the sender thread
        pickles it with its batch, and the caller's thread never copies an image's
        bytes a second time (over 200 KB that copy cost as much as the rest of
        ``log()``). It counts its media bytes against the bound (``_size``).
        """
        self._put_slow(record, False, record[1])

    def _push(self, item: bytes | tuple) -> None:
        """The lock-free append: wake the sender for a first record and a full batch."""
        q = self._q
        q.append(item)
        if self._idle:
            self._idle = False
            self._wake(self._ready)
        elif len(q) == self._batch:  # once, as the batch fills
            self._wake(self._now)

    def _wake(self, event: threading.Event) -> None:
        """Set ``event``, unless this thread is already inside ``set()`` of one.

        A signal handler runs in the main thread between two bytecodes, possibly
        inside ``Event.set``, which holds the event's own (non-reentrant) lock: a
        ``log()`` there that set an event again would wait for itself for ever.
        Its record is in the buffer by then; the interrupted ``set()`` wakes the
        sender, or the sender's next look finds it (at most ``send_interval``, or
        0.1 s when idle).
        """
        me = threading.get_ident()
        waking = self._waking
        if me in waking:  # re-entered from a signal handler
            return
        waking.add(me)
        try:
            event.set()
        finally:
            waking.discard(me)

    def _full(self, size: int) -> bool:
        q = self._q
        return bool(q) and len(q) * SMALL + self._big + max(size, SMALL) > self._limit

    def _drop(self, stream: str | None) -> None:
        """Count a dropped record; called with the lock held."""
        self.dropped += 1
        if stream is not None:
            self.dropped_by[stream] = self.dropped_by.get(stream, 0) + 1

    def _put_slow(self, data: bytes | tuple, urgent: bool, stream: str | None = None,
                  timeout: float | None = None) -> None:
        """The locked path: start the sender, wait for room or drop, or write a request.

        ``urgent``: a request, which wakes the sender at once, raises ServiceError
        instead of being dropped, and is written by this thread (within
        ``timeout``) once the sender is dead.
        """
        size = _size(data)
        try:
            with self._lock:
                if self._broken is not None:
                    self._refuse(urgent, stream)
                    return
                if self._sender is None:
                    self._start_sender()
                if self._full(size) and not self._make_room(size, urgent, stream, timeout):
                    return
                if size > SMALL:
                    self._big += size
                    self._set_room()
                self._q.append(data)
        except _SenderDead:  # outside the lock: the write may wait for the pipe
            self._write_request(data, self._request_timeout if timeout is None else timeout)
            return
        if self._idle:  # as in _push: a sender that is awake needs no signal
            self._idle = False
            self._wake(self._ready)
        if urgent or len(self._q) >= self._batch:
            self._wake(self._now)

    def _refuse(self, urgent: bool, stream: str | None) -> None:
        """A record or request while broken; called with the lock held.

        A record is dropped and counted. A request raises ServiceError, or, when
        only the sender thread is dead, _SenderDead (the caller writes it itself).
        """
        if not urgent:
            self._drop(stream)
        elif self._sender_error is not None:
            raise _SenderDead()
        else:
            raise ServiceError(self._broken or "the mpbackend service is gone")

    def _make_room(self, size: int, urgent: bool, stream: str | None,
                   timeout: float | None = None) -> bool:
        """Called with the lock held and the buffer full: wait (at most ``timeout``,
        default ``request_timeout``), or drop and count."""
        if self._drop_policy and not urgent:
            self._drop(stream)
            if self.dropped == 1:
                log.warning("mpbackend: the service is behind and the buffer (%d bytes) is "
                            "full; records are being dropped (buffer_policy='drop')",
                            self._limit)
            return False
        self._wake(self._now)
        wait = self._request_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while self._full(size) and self._broken is None:
            left = deadline - time.monotonic()
            if left <= 0:
                if urgent:  # its caller's wait is over: it learns why
                    raise RequestTimeout(f"the buffer had no room for a request for {wait:g} s "
                                         "(the service is not taking records)")
                self._drop(stream)
                log.warning("mpbackend: the service has not taken records for %g s; "
                            "a record was dropped", wait)
                return False
            self._space.wait(min(left, 1.0))
        if self._broken is not None:
            self._refuse(urgent, stream)
            return False
        return True

    def _set_room(self) -> None:
        """Recompute the lock-free path's bound; called with the lock held."""
        if self._broken is not None or self._sender is None:
            self._room = 0
        else:
            self._room = max(0, (self._limit - self._big) // SMALL - 1)

    def _start_sender(self) -> None:
        if self._router is None:  # a child: what it buffers from now on SIGTERM must write
            _arm_sigterm()
        self._sender = threading.Thread(target=self._send_loop, name="mpbackend-sender",
                                        daemon=True)
        self._sender.start()
        self._set_room()
        if self._router is None:  # a child process: drain at its exit
            atexit.register(self.drain)
            multiprocessing.util.Finalize(self, self.drain, exitpriority=100)

    def _send_loop(self) -> None:
        """Sender thread: its one job, and what happens if it fails."""
        try:
            self._send_batches()
        except BaseException as exc:
            try:
                self._sender_failed(exc)
            except BaseException:  # a user must never see a traceback from this thread
                pass

    def _sender_failed(self, exc: BaseException) -> None:
        """The sender thread died: the interface is broken for records, not for requests.

        One warning; what was buffered and everything published from now on is
        dropped and counted (and the count reaches the run's store at finish),
        instead of every ``log()`` waiting out ``request_timeout`` for a sender
        that is gone. Requests (flush, finish, the stop at exit) are then written
        by the caller's thread itself, so the run still ends properly.
        """
        reason = (f"the mpbackend sender thread failed ({type(exc).__name__}: {exc}); "
                  "records logged from now on are dropped")
        requests = []
        with self._lock:
            self._sender_error = reason
            for data in [*self._unsent, *self._q]:
                if _is_request(data):
                    requests.append(data)  # a caller waits for it: sent below, not dropped
                else:
                    self._drop(_stream_of(data))
            self._unsent = []
            self._q.clear()
            self._big = 0
            self._in_flight = False
            if self._broken is None:
                self._broken = reason
            self._set_room()
            self._space.notify_all()
        log.warning("mpbackend: %s", reason)
        for data in requests:
            try:
                self._write_request(data, self._request_timeout)
            except Exception:
                pass  # its caller's wait ends at its own timeout; nothing escapes this thread

    def _send_batches(self) -> None:
        """Buffer -> rec_q, one batch per wake-up.

        While records come it wakes every ``wait`` seconds (at once for a full
        batch or a request), ``wait`` adapting between SHORTEST_SEND and
        ``send_interval`` to the batches it finds (see SHORTEST_SEND); after
        ``IDLE_ROUNDS`` wake-ups with nothing to send it waits for the next
        record instead.
        """
        pid = os.getpid()
        worker = _worker_id()
        owner = self._router is not None
        token = self._token if owner else None
        q = self._q
        empty = 0
        longest = self._interval
        shortest = min(SHORTEST_SEND, longest)
        wait = shortest
        while True:
            if _term_fds is not None and not self._exit_at and _sigterm_unhandled():
                # SIGTERM came, and the main thread has not run its handler: do its part.
                # This sender ends the process even with nothing left to write (its
                # kill, repeated each round, is what gets the handler to run).
                self._exit_at = time.monotonic() + _term_drain
                exit_when_drained(_term_drain)
            if self._exit_at:
                _exit_if_drained(self._exit_at)
            if self._idle:
                if not self._ready.wait(0.1) and not q:
                    if self._closed:
                        return
                    continue
                self._idle = False
            self._now.wait(wait)
            self._ready.clear()
            self._now.clear()
            if not q:
                if self._closed:
                    return
                wait = self.send_wait = min(wait * 2, longest)
                empty += 1
                if empty >= IDLE_ROUNDS:
                    self._idle = True
                    if q:  # a record came as we went idle: stay awake
                        self._idle = False
                continue
            empty = 0
            self._in_flight = True
            batch: list[bytes | tuple] = []
            self._unsent = batch  # what a failure of this thread would lose
            big = 0
            # At most batch_records a batch: the service holds up to INBOX_BATCHES
            # of them unpickled-to-be, so their size bounds its memory; the rest go
            # next round, at once.
            take = len(q)
            if take > self._batch:
                take = self._batch
                self._now.set()
            for _ in range(take):
                data = q.popleft()
                batch.append(data)
                size = _size(data)
                if size > SMALL:
                    big += size
                    if big >= BATCH_BYTES:  # the rest next round, at once: the batch's
                        self._now.set()     # pickle is a copy, so it is kept small
                        break
            if len(batch) >= SHRINK_AT or big >= SHRINK_BYTES:
                wait = max(wait / 2, shortest)
            elif len(batch) < GROW_BELOW and big < SHRINK_BYTES // 4:
                wait = min(wait * 2, longest)
            self.send_wait = wait
            if batch:
                if owner:
                    seq = self._seq
                    self._seq += 1
                    payload = _dumps_batch((pid, worker, batch, seq, token))
                    self._keep(seq, payload)  # before the write: see ``unacked``
                else:
                    payload = _dumps_batch((pid, worker, batch, -1, None))
                self._write(payload, batch)
            self._unsent = []
            with self._lock:
                if big:
                    self._big -= big
                    self._set_room()
                self._in_flight = False
                self._space.notify_all()

    def _write(self, payload: bytes, batch: list[bytes | tuple]) -> None:
        while self._broken is None:
            try:
                if self._rec_q.put_bytes(payload, timeout=1.0):
                    return
            except OSError as exc:
                self.set_broken(f"the mpbackend service is gone ({exc})")
                break
        # Rare: the batch is lost. Count it per run, as the hot path would have.
        streams = [_stream_of(data) for data in batch]
        with self._lock:
            for stream in streams:
                self._drop(stream)

    def _write_request(self, data: bytes | tuple, timeout: float) -> None:
        """With no sender thread left, a request goes to rec_q from the caller's thread.

        It is a batch of its own, not numbered for a replay (a request is never
        replayed), written within ``timeout`` (``BatchQueue.put_small``: it never
        blocks on a full pipe past it). ServiceError if the service cannot be
        reached in time.
        """
        with self._lock:  # records that slipped in lock-free as the sender died: counted
            for item in self._q:
                self._drop(_stream_of(item))
            self._q.clear()
        payload = _pickle_dumps((os.getpid(), _worker_id(), [data], -1, None), 5)
        try:
            if self._rec_q.put_small(payload, timeout):
                return
        except OSError as exc:
            raise ServiceError(f"the mpbackend service is gone ({exc})") from exc
        raise ServiceError(f"the request could not be written to rec_q within {timeout:g} s")

    # -- replay after a service restart (the run owner only) ----------------------

    def _keep(self, seq: int, payload: bytes) -> None:
        """Hold a batch until the service reports it committed (at most buffer_bytes)."""
        with self._unacked_lock:
            self._unacked.append((seq, payload))
            self._unacked_bytes += len(payload)
            while self._unacked_bytes > self._limit and len(self._unacked) > 1:
                self._unacked_bytes -= len(self._unacked.popleft()[1])

    def ack(self, seq: int) -> None:
        """The service committed every record of batches up to ``seq``: forget them."""
        with self._unacked_lock:
            unacked = self._unacked
            while unacked and unacked[0][0] <= seq:
                self._unacked_bytes -= len(unacked.popleft()[1])

    def unacked(self) -> tuple[bytes, ...]:
        """The batches a dying service may not have committed, oldest first.

        A batch is kept from just before it is written, so one still waiting to
        be written is here too; the new service replays these, then skips them
        where it meets them again in rec_q.
        """
        with self._unacked_lock:
            return tuple(payload for _, payload in self._unacked)

    def reattach(self, router: Router, service_pid: int | None) -> None:
        """Take replies from a new service on the same rec_q (after a restart)."""
        with self._lock:
            self._router = router
            self.service_pid = service_pid
            self._broken = self._sender_error  # a dead sender stays dead
            self._set_room()
            self._space.notify_all()

    def set_broken(self, reason: str) -> None:
        """The service is gone: later records are dropped, waiters are released."""
        with self._lock:
            if self._broken is None:
                self._broken = reason
            self._set_room()
            self._space.notify_all()
        self._wake(self._now)

    @property
    def broken(self) -> str | None:
        return self._broken

    def _pending(self) -> bool:
        """Records not yet written to rec_q (read without the lock: a hint)."""
        return self._pid == os.getpid() and self._sender is not None and bool(
            self._q or self._in_flight)

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until everything published so far is written to rec_q; True if it is."""
        if self._pid != os.getpid() or self._sender is None:
            return True
        deadline = time.monotonic() + timeout
        with self._lock:
            while (self._q or self._in_flight) and self._broken is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake(self._ready)
                self._wake(self._now)
                self._space.wait(min(left, 0.05))
        return self._broken is None

    def close(self, timeout: float = 10.0) -> None:
        """Drain, then let the sender thread end."""
        self.drain(timeout)
        self._closed = True
        self._wake(self._ready)
        self._wake(self._now)
        sender = self._sender
        if sender is not None and sender is not threading.current_thread():
            sender.join(timeout=1.0)


def exit_when_drained(timeout: float) -> bool:
    """A terminated child: its sender threads end the process once its records are
    written (or after ``timeout``); False if nothing waits and it may end at once.

    Called from a SIGTERM handler, so it takes no lock and sets no Event: the
    handler interrupted the main thread somewhere, maybe holding a lock that the
    sender needs (an Event's, inside ``set()``), so the handler must return
    before the sender can finish. The sender looks at ``_exit_at`` every round
    (every ``send_interval``, or 0.1 s when idle). The caller has reset SIGTERM
    to its default, which the sender then sends. A sender that sees the signal
    on its pipe first (``_sigterm_unhandled``) calls this itself.
    """
    waiting = [i for i in list(_interfaces) if i._pending()]
    deadline = time.monotonic() + timeout
    for interface in waiting:
        interface._exit_at = deadline
    return bool(waiting)


def _exit_if_drained(deadline: float) -> None:
    """In a sender thread of a terminated child: die of SIGTERM once all is written.

    While the main thread has not run the handler, SIGTERM is still caught and
    this kill only trips it again; each one interrupts the main thread's wait
    (EINTR), where the handler then runs, resets SIGTERM and kills the process.
    """
    if any(i._pending() for i in list(_interfaces)):
        if time.monotonic() < deadline:
            return
        # Not the logging module: its lock may be held by the interrupted main thread.
        os.write(2, f"mpbackend: pid {os.getpid()} was terminated before all its logged "
                    "records reached the service; some are lost\n".encode())
    os.kill(os.getpid(), signal.SIGTERM)


# -- SIGTERM in a forked child ---------------------------------------------------------
#
# Python runs a signal handler only in the main thread, between two bytecodes. The
# C-level handler that notes the signal can run while the main thread is already
# past its last look (inside glibc's sem_wait, waking and sleeping again) or in
# another thread; a main thread that then never returns from C never runs the
# handler. A Pool worker is one: Pool.terminate() takes the task queue's lock for
# good (``_help_stuff_finish``) before it SIGTERMs the workers, and a worker caught
# taking it would outlive terminate(), and the pool's join waits for it for ever.
# So a forked child keeps the inherited handler only while it has records to write,
# and then its sender sees the signal too, on the wakeup fd (written by the C
# handler, in whichever thread it runs).
_term_handler: Any = None  # the SIGTERM handler a forked child got (``defer_sigterm``)
_term_drain = 0.0  # how long it lets the senders write
_term_deferred = False  # set back to SIG_DFL at the fork; armed when a sender starts
_term_fds: tuple[int, int] | None = None  # this process's wakeup pipe (read, write)


def defer_sigterm(handler: Any, timeout: float) -> None:
    """In a forked child (at the fork, in its main thread): SIGTERM ends it at once,
    as without mpbackend, until it starts a sender (``_arm_sigterm``).

    It has nothing buffered yet, and a child that never logs (a Pool worker that got
    no task) has no sender that could see a signal its main thread never handles.
    """
    global _term_handler, _term_drain, _term_deferred
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _term_handler, _term_drain, _term_deferred = handler, timeout, True


def _arm_sigterm() -> None:
    """A forked child starts its sender: the SIGTERM handler again, and the pipe.

    Only from the main thread (the only one that may set a handler; a child whose
    first record comes from another thread keeps the default, and a SIGTERM costs
    it its buffer), and only if the child set no SIGTERM handler of its own. A
    wakeup fd of its own (asyncio's) is left in place: then the handler alone.
    """
    global _term_deferred, _term_fds
    if not _term_deferred or threading.current_thread() is not threading.main_thread():
        return
    _term_deferred = False
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    previous = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    if previous == -1:
        _term_fds = (r, w)
    else:
        signal.set_wakeup_fd(previous)
        os.close(r)
        os.close(w)
    signal.signal(signal.SIGTERM, _term_handler)


def _sigterm_unhandled() -> bool:
    """SIGTERM reached this process and its handler has not run (it would have reset
    SIGTERM to the default first). Reads the wakeup pipe, where every caught signal
    writes its number; read every round, it does not fill."""
    try:
        data = os.read(_term_fds[0], 512)  # type: ignore[index]
    except OSError:  # nothing there (BlockingIOError)
        return False
    return signal.SIGTERM in data and signal.getsignal(signal.SIGTERM) is _term_handler


def _after_fork_in_child() -> None:
    global _term_fds
    if _term_fds is not None:  # the parent's pipe: this process arms its own
        r, w = _term_fds
        _term_fds = None
        previous = signal.set_wakeup_fd(-1)
        if previous not in (-1, w):
            signal.set_wakeup_fd(previous)
        os.close(r)
        os.close(w)
    for interface in list(_interfaces):
        interface._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
