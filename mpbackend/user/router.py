"""Router: the user process's thread that turns replies on rsp_q into resolved Futures.

    Interface.communicate --expect(uuid)--> pending {uuid: Future}
    rsp_q --Response(uuid)--> Router thread --> pending[uuid].set_result / set_exception
    service sentinel fires -----------------> every pending Future fails with ServiceError

The router waits on the rsp_q pipe and on the service process's sentinel at
once (``multiprocessing.connection.wait``), as ProcessPoolExecutor's manager
thread does, so a service that dies never leaves a caller waiting: within a
moment every pending request fails with a ServiceError that names the exit
code, and every later request fails at once. As in ProcessPoolExecutor, *any*
exception while reading or dispatching replies (a reply that cannot be read, a
pipe in a bad state) counts as a broken service: the service is killed (so it
cannot go on reading rec_q beside a replacement) and every pending request fails
with a ServiceError whose ``__cause__`` is that exception; the thread never dies
silently. A reply whose uuid is unknown (its caller timed out and forgot it) is
logged and dropped. A Notice is logged as a
warning for the user. Committed (the service stored the owner's batches up to a
number) lets the Interface forget the batches it kept for a replay.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import TYPE_CHECKING

from ..shared import messages as m
from ..shared.errors import ServiceError, remote_error
from ..shared.queues import ReplyQueue

if TYPE_CHECKING:
    from .launcher import Service

log = logging.getLogger("mpbackend")

class _Closed(Exception):
    """Inside the router only: the service's end of rsp_q is closed."""


class Router:
    """Matches responses to pending requests; fails them all if the service dies."""

    def __init__(self, rsp_q: ReplyQueue, service: Service,
                 on_broken: Callable[[str], None] | None = None,
                 on_committed: Callable[[int], None] | None = None) -> None:
        self._rsp_q = rsp_q
        self._service = service
        self._on_broken = on_broken
        self._on_committed = on_committed
        self._lock = threading.Lock()
        self._pending: dict[str, concurrent.futures.Future] = {}
        self._error: ServiceError | None = None
        self._thread = threading.Thread(target=self._run, name="mpbackend-router", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def error(self) -> ServiceError | None:
        """The ServiceError every request now fails with, once the service is gone."""
        return self._error

    def expect(self, uuid: str) -> concurrent.futures.Future:
        """Register a request; its Future is resolved by the reply with ``uuid``."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._error is not None:
                raise self._error
            self._pending[uuid] = future
        return future

    def forget(self, uuid: str) -> None:
        """Remove a request (answered or timed out) from the pending map."""
        with self._lock:
            self._pending.pop(uuid, None)

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def _run(self) -> None:
        """The thread's one job: replies to futures, until the service is gone.

        Whatever ends the loop, every pending future is failed (``finally``), and
        the service is reaped or killed first, so a restart never starts a second
        reader of rec_q beside it.
        """
        cause: BaseException | None = None
        error = ServiceError("the mpbackend service is gone")
        try:
            try:
                reader = self._rsp_q.reader
                process = self._service.process
                assert process is not None, "the service was not launched"
                sentinel = process.sentinel
                while True:
                    ready = wait([reader, sentinel], timeout=1.0)
                    if reader in ready:
                        self._read_ready()
                    if sentinel in ready:
                        break
                self._read_ready()  # replies written just before the end
            except _Closed:
                pass  # the service closed its end of rsp_q: it is exiting
            except BaseException as exc:  # anything else: the service counts as broken
                cause = exc
            if cause is not None:
                # The service may still be alive, but its replies can no longer be read.
                self._service.kill()
            # A service that closed rsp_q is exiting: a few seconds to finish that,
            # then it is killed, so that it can never read rec_q beside a new one.
            if not self._service.join(timeout=1.0 if cause is not None else 5.0):
                self._service.kill()
            code = self._service.exitcode
            text = f"the mpbackend service (pid {self._service.pid}) exited with code {code}"
            if cause is not None:
                text = (f"the mpbackend service's replies could not be read "
                        f"({type(cause).__name__}: {cause}); it was stopped (exit code {code})")
            error = ServiceError(text, code)
            error.__cause__ = cause
        finally:
            self._fail_all(error)

    def _read_ready(self) -> None:
        while True:
            try:
                if not self._rsp_q.poll(0):
                    return
                data = self._rsp_q.get_bytes()
            except (EOFError, OSError) as exc:  # the pipe itself: the service's end closed
                raise _Closed() from exc
            self._dispatch(m.loads(data))

    def _dispatch(self, message: object) -> None:
        if isinstance(message, m.Response):
            with self._lock:
                future = self._pending.pop(message.uuid, None)
            if future is None:
                log.debug("mpbackend: a reply to an unknown request %s was dropped",
                          message.uuid)
            elif future.done():  # cancelled by its caller meanwhile
                pass
            elif message.error is not None:
                future.set_exception(remote_error(message.error))
            else:
                future.set_result(message.value)
        elif isinstance(message, m.Committed):
            if self._on_committed is not None:
                self._on_committed(message.seq)
        elif isinstance(message, m.Notice):
            log.warning("mpbackend: %s", message.text)
        else:
            log.debug("mpbackend: unexpected message on rsp_q: %r", message)

    def _fail_all(self, error: ServiceError) -> None:
        with self._lock:
            self._error = error
            pending, self._pending = self._pending, {}
        # First, so a caller woken by the failure already sees a restart under way;
        # but whatever it does, every pending future fails below.
        try:
            if self._on_broken is not None:
                self._on_broken(str(error))
        except Exception as exc:
            log.warning("mpbackend: after the service broke, it could not be restarted: %r",
                        exc)
        finally:
            for future in pending.values():
                if not future.done():
                    future.set_exception(error)
