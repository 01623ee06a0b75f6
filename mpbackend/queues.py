"""rec_q and rsp_q: multiprocessing queues of byte strings, one pipe each.

    writers (user process, its children) --put_bytes--> rec_q pipe --get_bytes--> service
    service --put_bytes--> rsp_q pipe --get_bytes--> the user process's Router

Neither has a feeder thread: the caller has already serialised its message (so
a bad value fails at the call, never silently in a background thread), and
``put_bytes`` writes it at once, in the caller's thread.

**rec_q** (``BatchQueue``) has many writers: the user process and every child
that holds the run, any of which may be killed at any moment. A writer holds a
cross-process lock while it writes one frame, and records its pid in shared
memory while it does. A writer that waits too long for the lock checks that pid
and, if the holder is dead, releases the lock for it. A writer killed in the
middle of a frame leaves a torn frame in the pipe; every frame therefore starts
with a magic marker and carries its length and a CRC-32 of its body, and the
reader drops what does not check out and resumes at the next marker. A SIGKILLed
DataLoader worker costs at most its own unsent records, never the queue.

**rsp_q** (``ReplyQueue``) has one writer, the service, and one reader, the
Router: a plain one-way ``multiprocessing.Pipe``.

A queue travels to a child only when the child is created (fork, spawn,
forkserver); it cannot be sent to a process that is already running.
"""

from __future__ import annotations

import multiprocessing.connection
import os
import struct
import zlib
from multiprocessing import context
from multiprocessing.context import BaseContext

import psutil

MAGIC = b"\xfeMPBKQ\x01\xff"
_HEADER = struct.Struct("<8sII")  # magic, body length, crc32 of the body
MAX_FRAME = 1 << 30
_READ = 1 << 20


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class BatchQueue:
    """rec_q: a multiprocessing queue of byte strings, many writers, one reader."""

    def __init__(self, ctx: BaseContext) -> None:
        reader, writer = ctx.Pipe(duplex=False)
        self._reader: multiprocessing.connection.Connection | None = reader
        self._writer: multiprocessing.connection.Connection | None = writer
        self._wlock = ctx.Lock()
        self._holder = ctx.RawValue("q", 0)  # pid of the writer holding the lock
        self._buf = bytearray()

    def __getstate__(self) -> tuple:
        context.assert_spawning(self)
        # Each side closes the end it does not use; a child gets the ends still open.
        return (None if self._reader is None or self._reader.closed else self._reader,
                None if self._writer is None or self._writer.closed else self._writer,
                self._wlock, self._holder)

    def __setstate__(self, state: tuple) -> None:
        self._reader, self._writer, self._wlock, self._holder = state
        self._buf = bytearray()

    @property
    def reader(self) -> multiprocessing.connection.Connection:
        """The read end, for ``multiprocessing.connection.wait``."""
        assert self._reader is not None
        return self._reader

    # -- writers ---------------------------------------------------------------

    def _acquire(self, timeout: float) -> bool:
        if self._wlock.acquire(timeout=timeout):
            return True
        holder = self._holder.value
        if holder and holder != os.getpid() and not _alive(holder):
            # Its holder died while writing: free the lock (once, whoever sees it first).
            if self._holder.value == holder:
                self._holder.value = 0
                try:
                    self._wlock.release()
                except ValueError:
                    pass
            return self._wlock.acquire(timeout=timeout)
        return False

    def put_bytes(self, data: bytes, timeout: float) -> bool:
        """Write one frame; False if the lock could not be had within ``timeout`` s.

        Raises OSError (BrokenPipeError) when the reader is gone.
        """
        assert self._writer is not None
        frame = _HEADER.pack(MAGIC, len(data), zlib.crc32(data)) + data
        if not self._acquire(timeout):
            return False
        self._holder.value = os.getpid()
        try:
            fd = self._writer.fileno()
            view = memoryview(frame)
            while view:
                view = view[os.write(fd, view):]
        finally:
            self._holder.value = 0
            self._wlock.release()
        return True

    # -- the reader --------------------------------------------------------------

    def get_bytes(self) -> bytes:
        """Read the next intact frame's body, blocking; EOFError when writers are gone."""
        assert self._reader is not None
        buf = self._buf
        fd = self._reader.fileno()
        while True:
            start = buf.find(MAGIC)
            if start < 0:
                del buf[:max(0, len(buf) - len(MAGIC) + 1)]  # keep a partial marker
            else:
                del buf[:start]
                if len(buf) >= _HEADER.size:
                    _, length, crc = _HEADER.unpack_from(buf)
                    end = _HEADER.size + length
                    if length > MAX_FRAME:
                        del buf[:1]
                        continue
                    # A marker inside the body means this frame was torn: resync there.
                    torn = buf.find(MAGIC, 1, min(end, len(buf)))
                    if torn > 0:
                        del buf[:torn]
                        continue
                    if len(buf) >= end:
                        body = bytes(buf[_HEADER.size:end])
                        if zlib.crc32(body) == crc:
                            del buf[:end]
                            return body
                        del buf[:1]
                        continue
            chunk = os.read(fd, _READ)
            if not chunk:
                raise EOFError("every writer of the queue is gone")
            buf += chunk

    def poll(self, timeout: float = 0.0) -> bool:
        """True if a read may find data (buffered or in the pipe)."""
        return MAGIC in self._buf or self.reader.poll(timeout)

    def close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()


class ReplyQueue:
    """rsp_q: a one-way multiprocessing Pipe of byte strings with one writer."""

    def __init__(self, ctx: BaseContext) -> None:
        reader, writer = ctx.Pipe(duplex=False)
        self._reader: multiprocessing.connection.Connection | None = reader
        self._writer: multiprocessing.connection.Connection | None = writer

    def __getstate__(self) -> tuple:
        context.assert_spawning(self)
        return (None if self._reader is None or self._reader.closed else self._reader,
                None if self._writer is None or self._writer.closed else self._writer)

    def __setstate__(self, state: tuple) -> None:
        self._reader, self._writer = state

    @property
    def reader(self) -> multiprocessing.connection.Connection:
        assert self._reader is not None
        return self._reader

    def put_bytes(self, data: bytes, timeout: float | None = None) -> bool:
        """Write one message (the service is its only writer)."""
        assert self._writer is not None
        self._writer.send_bytes(data)
        return True

    def get_bytes(self) -> bytes:
        return self.reader.recv_bytes()

    def poll(self, timeout: float = 0.0) -> bool:
        return self.reader.poll(timeout)

    def close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
