"""rec_q and rsp_q: multiprocessing queues of byte strings, one pipe each.

    writers (user process, its children) --put_bytes--> rec_q pipe --get_bytes--> service
    service --put_bytes--> rsp_q pipe --get_bytes--> the user process's Router

Neither has a feeder thread: the caller has already serialised its message (so
a bad value fails at the call, never silently in a background thread), and
``put_bytes`` writes it at once, in the caller's thread.

**rec_q** (``BatchQueue``) has many writers: the user process and every child
that holds the run, any of which may be killed at any moment. A writer holds a
cross-process lock (``FileLock``: ``flock`` on an anonymous file) while it writes
one frame; the kernel releases it when its holder dies, so a writer killed while
holding it cannot block the others. A writer killed in the middle of a frame
leaves a torn frame in the pipe; every frame therefore starts with a magic marker
and carries its length and a CRC-32 of its body, and the reader drops what does
not check out and resumes at the next marker. A SIGKILLed DataLoader worker costs
at most its own unsent records, never the queue. (No POSIX semaphore is used, so
no resource-tracker process is started for it.)

**rsp_q** (``ReplyQueue``) has one writer, the service, and one reader, the
Router: a plain one-way ``multiprocessing.Pipe``.

**rec_q outlives its service.** The user process that made it keeps a spare
read end (``keep_spare``), so the pipe stays open when the service dies: every
writer, forked and spawned children included, goes on writing into it, and a
new service started on the same queue (``open_reader``) reads on where the dead
one stopped, resyncing at the next marker. Only when nobody will read again
does the owner close the spare (``close_spare``); a writer blocked on the full
pipe then gets EPIPE and stops. A forked child closes its inherited copy at
once, so it never keeps a dead queue open.

A queue travels to a child only when the child is created (fork, spawn,
forkserver); it cannot be sent to a process that is already running.
"""

from __future__ import annotations

import fcntl
import mmap
import multiprocessing.connection
import os
import select
import struct
import time
import weakref
import zlib
from multiprocessing import context, reduction
from multiprocessing.context import BaseContext
from typing import Any

MAGIC = b"\xfeMPBKQ\x01\xff"
_HEADER = struct.Struct("<8sII")  # magic, body length, crc32 of the body
MAX_FRAME = 1 << 30
PIPE_SIZE = 1 << 20
_READ = 1 << 20


class Blob:
    """Bytes a child process gets as it starts, in an anonymous file (memfd).

    spawn writes the child's Process object, arguments and all, into a pipe whose
    read end the parent itself keeps open until the write is done: past the
    pipe's 64 KiB, a child that dies before reading it leaves that write blocked
    for good. A service's start-up data (the runs to resume, the batches to
    replay: up to ``buffer_bytes``) goes here instead; only the descriptor
    travels, as rec_q's does, and the child reads the bytes itself.
    """

    def __init__(self, data: bytes) -> None:
        self._fd = os.memfd_create("mpbackend-start", os.MFD_CLOEXEC)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def __getstate__(self) -> Any:
        context.assert_spawning(self)
        return reduction.DupFd(self._fd)

    def __setstate__(self, dupfd: Any) -> None:
        self._fd = dupfd.detach()

    def read(self) -> bytes:
        """All of the bytes (in the child); the file is closed after."""
        try:
            size = os.fstat(self._fd).st_size
            parts, offset = [], 0
            while offset < size:
                part = os.pread(self._fd, size - offset, offset)
                if not part:
                    break
                parts.append(part)
                offset += len(part)
            return b"".join(parts)
        finally:
            self.close()

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class Progress:
    """Where the service is in the user process's batches: ``(seq, index)`` in shared memory.

    The service sets it as it starts applying a numbered batch (``index`` -1) and,
    for a batch it applies one record at a time, at each record; -1 when between
    batches. After the service dies the Manager reads what it was doing, so a
    batch (and then a record) that killed a service is not handed whole to the
    next one (``mpbackend.user.manager``). One ``struct.pack_into`` per batch.
    """

    _FORMAT = "qq"

    def __init__(self) -> None:
        self._fd = os.memfd_create("mpbackend-progress", os.MFD_CLOEXEC)
        os.ftruncate(self._fd, struct.calcsize(self._FORMAT))
        self._map = mmap.mmap(self._fd, struct.calcsize(self._FORMAT))
        self.set(-1, -1)

    def __getstate__(self) -> Any:
        context.assert_spawning(self)
        return reduction.DupFd(self._fd)

    def __setstate__(self, dupfd: Any) -> None:
        self._fd = dupfd.detach()
        self._map = mmap.mmap(self._fd, struct.calcsize(self._FORMAT))

    def set(self, seq: int, index: int) -> None:
        struct.pack_into(self._FORMAT, self._map, 0, seq, index)

    def get(self) -> tuple[int, int]:
        seq, index = struct.unpack_from(self._FORMAT, self._map, 0)
        return seq, index


class FileLock:
    """A lock between processes that dies with its holder: ``flock`` on an anonymous file.

    flock locks belong to an open file description, which ``fork`` and fd passing
    share; so each process opens the file anew (``/proc/self/fd/N``) the first
    time it locks, and processes exclude one another. When a holder dies, the
    kernel closes its descriptors and the lock is free. It travels to a child
    only as the child is created, like the pipe.
    """

    def __init__(self) -> None:
        self._fd = os.memfd_create("mpbackend-lock", os.MFD_CLOEXEC)
        self._pid = 0
        self._own = -1  # this process's own description of the file

    def __getstate__(self) -> Any:
        context.assert_spawning(self)
        return reduction.DupFd(self._fd)

    def __setstate__(self, dupfd: Any) -> None:
        self._fd = dupfd.detach()
        self._pid = 0
        self._own = -1

    def _mine(self) -> int:
        if self._pid != os.getpid():
            if self._own >= 0:  # inherited by fork: the parent's description, not ours
                try:
                    os.close(self._own)
                except OSError:
                    pass
            self._own = os.open(f"/proc/self/fd/{self._fd}", os.O_RDWR | os.O_CLOEXEC)
            self._pid = os.getpid()
        return self._own

    def acquire(self, timeout: float) -> bool:
        """Take the lock; False if another process held it for ``timeout`` seconds.

        Polled (``LOCK_NB`` with a back-off from 50 µs to 5 ms), not a blocking
        ``flock``: a blocking flock has no timeout (only a signal could cut it
        short, and SIGALRM works in the main thread alone and is the user's), and
        every wait here must have one, so a writer whose peer holds the lock
        while stopped (SIGSTOP) or stuck gives up and says so instead of hanging.
        The lock is held for one frame's write, microseconds, so the first
        non-blocking try nearly always succeeds and polling costs nothing then.
        """
        fd = self._mine()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        deadline = time.monotonic() + timeout
        pause = 5e-5
        while True:
            time.sleep(pause)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
            pause = min(pause * 2, 0.005)

    def release(self) -> None:
        fcntl.flock(self._own, fcntl.LOCK_UN)


class _Ends:
    """The two ends of a one-way pipe; each process closes the end it does not use."""

    _reader: multiprocessing.connection.Connection | None
    _writer: multiprocessing.connection.Connection | None

    def close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()


class BatchQueue(_Ends):
    """rec_q: a multiprocessing queue of byte strings, many writers, one reader."""

    def __init__(self, ctx: BaseContext) -> None:
        reader, writer = ctx.Pipe(duplex=False)
        try:  # a larger pipe: fewer wake-ups, and more of the backlog safe in the kernel
            fcntl.fcntl(writer.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except (OSError, AttributeError):
            pass
        self._reader: multiprocessing.connection.Connection | None = reader
        self._writer: multiprocessing.connection.Connection | None = writer
        self._wlock = FileLock()
        self._spare = -1  # the owner's spare read end (keep_spare), or -1
        self._buf = bytearray()
        self._pos = 0
        self._clean = 0

    def __getstate__(self) -> tuple:
        context.assert_spawning(self)
        # Each side closes the end it does not use; a child gets the ends still open.
        return (None if self._reader is None or self._reader.closed else self._reader,
                None if self._writer is None or self._writer.closed else self._writer,
                self._wlock)

    def __setstate__(self, state: tuple) -> None:
        self._reader, self._writer, self._wlock = state
        self._spare = -1
        self._buf = bytearray()
        self._pos = 0
        self._clean = 0

    @property
    def reader(self) -> multiprocessing.connection.Connection:
        """The read end, for ``multiprocessing.connection.wait``."""
        assert self._reader is not None
        return self._reader

    # -- writers ---------------------------------------------------------------

    def put_bytes(self, data: bytes, timeout: float) -> bool:
        """Write one frame; False if the lock could not be had within ``timeout`` s.

        Raises OSError (BrokenPipeError) when the reader is gone.
        """
        assert self._writer is not None
        head = _HEADER.pack(MAGIC, len(data), zlib.crc32(data))
        if not self._wlock.acquire(timeout):
            return False
        try:
            fd = self._writer.fileno()
            # One writev for the header and the body: each system call here lets the
            # GIL go, and taking it back from a busy training thread costs more CPU
            # than the call itself.
            done = os.writev(fd, (head, data))
            if done < len(head) + len(data):  # less room in the pipe than the frame
                view = memoryview(head + data)[done:]  # (a copy, in this rare case only)
                while view:
                    view = view[os.write(fd, view):]
        finally:
            self._wlock.release()
        return True

    def put_small(self, data: bytes, timeout: float) -> bool:
        """Write one small frame without blocking past ``timeout``; False if it could not.

        For a caller that must not hang (a request written from the caller's own
        thread): it waits, with the deadline, for the lock and then for room in
        the pipe, and writes the frame in one ``write``, which for at most
        ``PIPE_BUF`` bytes the kernel does whole or not at all. A larger frame
        goes through ``put_bytes``. Raises OSError when the reader is gone.
        """
        assert self._writer is not None
        frame = _HEADER.pack(MAGIC, len(data), zlib.crc32(data)) + data
        if len(frame) > select.PIPE_BUF:
            return self.put_bytes(data, timeout)
        deadline = time.monotonic() + timeout
        if not self._wlock.acquire(timeout):
            return False
        try:
            fd = self._writer.fileno()
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            left = deadline - time.monotonic()
            if not poller.poll(max(left, 0) * 1000):
                return False
            os.write(fd, frame)
        finally:
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

    # -- the owner's spare read end ----------------------------------------------

    def keep_spare(self) -> None:
        """Keep a read end in this process, so the pipe outlives the reader's process."""
        if self._spare < 0:
            assert self._reader is not None and not self._reader.closed
            self._spare = os.dup(self._reader.fileno())  # not inherited by exec
            _spares.add(self)

    def open_reader(self) -> None:
        """A read end again, from the spare, to hand to a new service process."""
        assert self._spare >= 0, "no spare read end is kept"
        self._reader = multiprocessing.connection.Connection(os.dup(self._spare),
                                                             writable=False)

    def close_spare(self) -> None:
        """Nobody will read again: let writers blocked on the full pipe fail."""
        spare, self._spare = self._spare, -1
        if spare >= 0:
            _spares.discard(self)
            os.close(spare)


_spares: weakref.WeakSet[BatchQueue] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked child is no reader: its copy of a spare must not keep a dead pipe open."""
    for q in list(_spares):
        q.close_spare()


os.register_at_fork(after_in_child=_after_fork_in_child)


class ReplyQueue(_Ends):
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

