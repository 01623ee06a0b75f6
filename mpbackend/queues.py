"""rec_q and rsp_q: multiprocessing queues of byte strings, one pipe each.

    writers (user process, its children) --put_bytes--> pipe --get_bytes--> one reader

A queue is a one-way ``multiprocessing.Pipe`` and a ``multiprocessing.Lock`` that
writers hold while they write one message, so messages from many processes never
interleave. Unlike ``multiprocessing.Queue`` there is no feeder thread: the
caller has already serialised its message (so a bad value fails at the call,
never silently in a background thread), and ``put_bytes`` writes it at once, in
the caller's thread, under a lock it waits for with a timeout.

A queue travels to a child only when the child is created (fork, spawn,
forkserver); it cannot be sent to a process that is already running.
"""

from __future__ import annotations

import multiprocessing.connection
from multiprocessing import context
from multiprocessing.context import BaseContext


class BatchQueue:
    """A multiprocessing queue of byte strings with one reader and many writers."""

    def __init__(self, ctx: BaseContext) -> None:
        self._reader, self._writer = ctx.Pipe(duplex=False)
        self._wlock = ctx.Lock()

    def __getstate__(self) -> tuple:
        context.assert_spawning(self)
        # Each side closes the end it does not use; a child gets the ends still open.
        return (None if self._reader.closed else self._reader,
                None if self._writer.closed else self._writer, self._wlock)

    def __setstate__(self, state: tuple) -> None:
        self._reader, self._writer, self._wlock = state

    @property
    def reader(self) -> multiprocessing.connection.Connection:
        """The read end, for ``multiprocessing.connection.wait``."""
        return self._reader

    def put_bytes(self, data: bytes, timeout: float) -> bool:
        """Write one message; False if another writer held the lock for ``timeout`` s.

        Raises OSError (BrokenPipeError) when the reader is gone.
        """
        if not self._wlock.acquire(timeout=timeout):
            return False
        try:
            self._writer.send_bytes(data)
        finally:
            self._wlock.release()
        return True

    def get_bytes(self) -> bytes:
        """Read one message, blocking; EOFError when every writer has closed."""
        return self._reader.recv_bytes()

    def poll(self, timeout: float = 0.0) -> bool:
        return self._reader.poll(timeout)

    def close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
