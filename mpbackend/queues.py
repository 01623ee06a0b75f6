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

import fcntl
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
PIPE_SIZE = 1 << 20
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
        try:  # a larger pipe: fewer wake-ups, and more of the backlog safe in the kernel
            fcntl.fcntl(writer.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except (OSError, AttributeError):
            pass
        self._reader: multiprocessing.connection.Connection | None = reader
        self._writer: multiprocessing.connection.Connection | None = writer
        self._wlock = ctx.Lock()
        self._holder = ctx.RawValue("q", 0)  # pid of the writer holding the lock
        self._buf = bytearray()
        self._pos = 0
        self._clean = 0

    def __getstate__(self) -> tuple:
        context.assert_spawning(self)
        # Each side closes the end it does not use; a child gets the ends still open.
        return (None if self._reader is None or self._reader.closed else self._reader,
                None if self._writer is None or self._writer.closed else self._writer,
                self._wlock, self._holder)

    def __setstate__(self, state: tuple) -> None:
        self._reader, self._writer, self._wlock, self._holder = state
        self._buf = bytearray()
        self._pos = 0
        self._clean = 0

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
        head = _HEADER.pack(MAGIC, len(data), zlib.crc32(data))
        if not self._acquire(timeout):
            return False
        self._holder.value = os.getpid()
        try:
            fd = self._writer.fileno()
            for part in (head, data):
                view = memoryview(part)
                while view:
                    view = view[os.write(fd, view):]
        finally:
            self._holder.value = 0
            self._wlock.release()
        return True

    # -- the reader --------------------------------------------------------------

    def get_bytes(self) -> bytes:
        """Read the next intact frame's body, blocking; EOFError when writers are gone.

        ``self._pos`` is where the next frame may start in the buffer, and
        ``self._clean`` how far past it the bytes are known to hold no marker, so
        each byte is scanned once however the pipe splits a frame.
        """
        assert self._reader is not None
        buf = self._buf
        fd = self._reader.fileno()
        header = _HEADER.size
        while True:
            pos = self._pos
            start = buf.find(MAGIC, pos)
            if start < 0:
                self._pos = max(pos, len(buf) - len(MAGIC) + 1)  # keep a partial marker
                self._clean = 0
            else:
                if start != pos:
                    self._pos, self._clean = start, 0
                if len(buf) - start >= header:
                    _, length, crc = _HEADER.unpack_from(buf, start)
                    end = start + header + length
                    if length > MAX_FRAME:
                        self._pos, self._clean = start + 1, 0
                        continue
                    # A marker inside the body means this frame was torn: resync there.
                    seen = min(end, len(buf))
                    torn = buf.find(MAGIC, max(start + 1, self._clean), seen)
                    if torn >= 0:
                        self._pos, self._clean = torn, 0
                        continue
                    self._clean = max(start + 1, seen - len(MAGIC) + 1)
                    if len(buf) >= end:
                        with memoryview(buf) as view:
                            body = bytes(view[start + header:end])
                        self._pos, self._clean = end, 0
                        if zlib.crc32(body) == crc:
                            return body
                        self._pos = start + 1
                        continue
            if self._pos > _READ:  # drop what has been read, now and then
                del buf[:self._pos]
                self._clean = max(0, self._clean - self._pos)
                self._pos = 0
            chunk = os.read(fd, _READ)
            if not chunk:
                raise EOFError("every writer of the queue is gone")
            buf += chunk

    def poll(self, timeout: float = 0.0) -> bool:
        """True if a read may find data (buffered or in the pipe)."""
        return self._buf.find(MAGIC, self._pos) >= 0 or self.reader.poll(timeout)

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
