"""Service: starts the service process with its two queues ([1]) and waits for Ready ([2]).

    Manager --start()--> Service --Process(target=shared.entry.serve)--> service process
                                   rec_q (BatchQueue) : user side writes, service reads
                                   rsp_q (ReplyQueue) : service writes, Router reads
                         <--Ready(pid, version, resumed)-- rsp_q

rec_q belongs to the user process, not to one service: it keeps a spare read end
(``BatchQueue.keep_spare``), and a restart starts the new service on the same
queue, so nothing written to it while no service ran is lost.

The start method is ``spawn`` by default (``fork`` and ``forkserver`` through
``Settings.start_method`` or ``MPBACKEND_START_METHOD``). A spawned child
normally re-imports the user's ``__main__`` to rebuild it, which would run a
script without an ``if __name__ == "__main__":`` guard a second time. The
service needs nothing from ``__main__`` (values defined there travel by value,
with cloudpickle), so while the process starts the main module's path and spec
are hidden and the child never runs the user's script.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

from ..shared import messages as m
from ..shared.entry import serve
from ..shared.errors import ServiceError
from ..shared.queues import BatchQueue, Blob, Progress, ReplyQueue
from ..shared.settings import Settings

_start_lock = threading.Lock()  # one process start at a time (the main module is hidden)


def _after_fork_in_child() -> None:
    global _start_lock
    _start_lock = threading.Lock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)


@contextlib.contextmanager
def _main_hidden() -> Iterator[None]:
    """Hide ``__main__``'s file and spec so a spawned child does not re-run it."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {name: getattr(main, name) for name in ("__file__", "__spec__")
             if hasattr(main, name)}
    try:
        main.__spec__ = None
        if "__file__" in saved:
            del main.__file__
        yield
    finally:
        for name, value in saved.items():
            setattr(main, name, value)


class Service:
    """The service process and the two queues that reach it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process: BaseProcess | None = None
        self.ready: m.Ready | None = None
        self._rec_q: BatchQueue | None = None
        self._rsp_q: ReplyQueue | None = None
        self._deadline = 0.0
        self._own_queue = False  # rec_q was made for this service (not a restart's)
        # The router thread and the main thread may both wait for the exit; one
        # waitpid() at a time, or the loser sees ECHILD and no exit code.
        self._reap_lock = threading.Lock()
        self.progress: Progress | None = None  # what the process was applying; after launch

    def start(self, rec_q: BatchQueue | None = None, resume: tuple[bytes, ...] = (),
              replay: tuple[bytes, ...] = (), isolate: tuple[int, ...] = (),
              skip: tuple[tuple[int, int], ...] = ()) -> m.Ready:
        """[1] Start the process; [2] return its Ready reply (ServiceError if none comes)."""
        self.launch(rec_q, resume, replay, isolate, skip)
        return self.wait_ready()

    def launch(self, rec_q: BatchQueue | None = None, resume: tuple[bytes, ...] = (),
               replay: tuple[bytes, ...] = (), isolate: tuple[int, ...] = (),
               skip: tuple[tuple[int, int], ...] = ()) -> None:
        """[1] Start the process without waiting for it (``wait_ready`` does).

        The caller can do its own start-up work while the new interpreter boots.
        A restart passes the dead service's ``rec_q``, whose spare read end this
        process kept, ``resume``: the runs to re-open (pickled InformInit specs)
        before the new service reads a record, and ``replay``: the batches the
        dead service had not reported committed, applied next; ``isolate``: the
        batches (by seq) to apply one record at a time, and ``skip``: the records
        ``(seq, index)`` not to apply, each of which killed two services.
        """
        ctx: Any = multiprocessing.get_context(self.settings.start_method)
        self._own_queue = rec_q is None
        if rec_q is None:
            rec_q = BatchQueue(ctx)
            rec_q.keep_spare()
        else:
            rec_q.open_reader()
        self._rec_q = rec_q
        self._rsp_q = rsp_q = ReplyQueue(ctx)
        start = Blob(pickle.dumps((resume, replay, isolate, skip), 5))  # see Blob
        self.progress = Progress()
        process = ctx.Process(target=serve, name="mpbackend-service", daemon=True,
                              args=(rec_q, rsp_q, os.getpid(), self.settings, start,
                                    self.progress))
        try:
            with _start_lock, _main_hidden():
                process.start()
        finally:
            start.close()
            # Here only the spare read end of rec_q stays open (the service has its
            # own), and no write end of rsp_q: the service's death shows as an EOF.
            rec_q.close_reader()
            rsp_q.close_writer()
        self.process = process
        self._deadline = time.monotonic() + self.settings.start_timeout

    def wait_ready(self) -> m.Ready:
        """[2] The launched process's Ready reply; ServiceError if none comes in time."""
        process, rsp_q = self.process, self._rsp_q
        assert process is not None and rsp_q is not None and self._rec_q is not None, \
            "launch() first"
        deadline = self._deadline
        while True:
            left = deadline - time.monotonic()
            ready = wait([rsp_q.reader, process.sentinel], timeout=max(left, 0))
            if rsp_q.reader in ready:
                try:
                    message = m.loads(rsp_q.get_bytes())
                except (EOFError, OSError):
                    message = None
                if isinstance(message, m.Ready):
                    self.ready = message
                    return message
            if ready or left <= 0:
                break
        self.kill()
        if self._own_queue:
            self.rec_q.close_spare()
        raise ServiceError(
            f"the mpbackend service did not start ({self.settings.start_method}): "
            + (f"no reply within {self.settings.start_timeout:g} s"
               if process.exitcode is None else f"exit code {process.exitcode}"),
            process.exitcode)

    @property
    def rec_q(self) -> BatchQueue:
        """The queue to the service (the same one across restarts); after ``launch``."""
        assert self._rec_q is not None, "launch() first"
        return self._rec_q

    @property
    def rsp_q(self) -> ReplyQueue:
        """The queue of this service's replies; after ``launch``."""
        assert self._rsp_q is not None, "launch() first"
        return self._rsp_q

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def join(self, timeout: float) -> bool:
        """Wait for the process to exit; True if it has."""
        if self.process is None:
            return True
        if not self._reap_lock.acquire(timeout=max(timeout, 0)):
            return False
        try:
            self.process.join(timeout=max(timeout, 0))
            return self.process.exitcode is not None
        finally:
            self._reap_lock.release()

    @property
    def exitcode(self) -> int | None:
        return None if self.process is None else self.process.exitcode

    def kill(self) -> None:
        """Last resort: SIGKILL the process and reap it."""
        if self.process is not None and self.process.exitcode is None:
            self.process.kill()
            self.join(timeout=5.0)
