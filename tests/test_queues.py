"""rec_q survives writers that die mid-write: torn frames are skipped, stale locks freed."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import zlib

import pytest

from mpbackend.shared.queues import _HEADER, MAGIC, BatchQueue

pytestmark = pytest.mark.timeout(60)


def _torn_frame(body: bytes, keep: int) -> bytes:
    """What a writer killed after writing ``keep`` bytes of a frame leaves in the pipe."""
    return (_HEADER.pack(MAGIC, len(body), zlib.crc32(body)) + body)[:keep]


@pytest.mark.parametrize("keep", [3, 10, _HEADER.size, _HEADER.size + 100])
def test_a_torn_frame_is_skipped_and_the_reader_resyncs(keep):
    q = BatchQueue(multiprocessing.get_context("spawn"))
    os.write(q._writer.fileno(), _torn_frame(b"x" * 5000, keep))
    assert q.put_bytes(b"first intact", timeout=1)
    assert q.put_bytes(b"second intact", timeout=1)
    assert q.get_bytes() == b"first intact"
    assert q.get_bytes() == b"second intact"


def test_a_corrupted_body_is_dropped():
    q = BatchQueue(multiprocessing.get_context("spawn"))
    body = b"y" * 100
    frame = bytearray(_HEADER.pack(MAGIC, len(body), zlib.crc32(body)) + body)
    frame[-1] ^= 0xFF
    os.write(q._writer.fileno(), bytes(frame))
    assert q.put_bytes(b"next", timeout=1)
    assert q.get_bytes() == b"next"


def test_a_frame_larger_than_the_pipe_arrives_whole():
    """``put_bytes`` writes header and body with one writev; a pipe with less room
    takes part of it, and the rest follows in parts, in order."""
    import threading

    q = BatchQueue(multiprocessing.get_context("spawn"))
    body = os.urandom(3 << 20)  # three times the pipe
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.extend([q.get_bytes(), q.get_bytes()]))
    reader.start()
    assert q.put_bytes(body, timeout=5) and q.put_bytes(b"after", timeout=5)
    reader.join(timeout=30)
    assert got == [body, b"after"]


def test_eof_when_every_writer_is_gone():
    q = BatchQueue(multiprocessing.get_context("spawn"))
    q.put_bytes(b"last", timeout=1)
    q.close_writer()
    assert q.get_bytes() == b"last"
    with pytest.raises(EOFError):
        q.get_bytes()


def _hold_the_lock_and_hang(q: BatchQueue, held) -> None:
    assert q._wlock.acquire(timeout=5)
    held.set()
    time.sleep(60)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_lock_held_by_a_dead_writer_is_freed(method):
    ctx = multiprocessing.get_context(method)
    q = BatchQueue(ctx)
    q.put_bytes(b"before", timeout=1)  # the parent has locked once before the fork
    assert q.get_bytes() == b"before"
    held = ctx.Event()
    child = ctx.Process(target=_hold_the_lock_and_hang, args=(q, held), daemon=True)
    child.start()
    try:
        assert held.wait(30)
        assert q.put_bytes(b"blocked", timeout=0.2) is False  # alive: the lock is its own
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        start = time.monotonic()
        assert q.put_bytes(b"after", timeout=0.2)
        assert time.monotonic() - start < 1.0
        assert q.get_bytes() == b"after"
    finally:
        if child.is_alive():
            child.kill()
        child.join(5)


def _write_frames(q: BatchQueue, tag: int, n: int) -> None:
    for i in range(n):
        body = f"{tag}:{i}:".encode() + bytes([tag]) * 150_000  # far above PIPE_BUF
        assert q.put_bytes(body, timeout=30)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_writers_in_many_processes_never_interleave(method):
    """Frames larger than the pipe's atomic size, from 4 processes at once, all arrive whole."""
    ctx = multiprocessing.get_context(method)
    q = BatchQueue(ctx)
    writers = [ctx.Process(target=_write_frames, args=(q, tag, 30), daemon=True)
               for tag in range(1, 5)]
    for w in writers:
        w.start()
    try:
        got = {}
        for _ in range(4 * 30):
            body = q.get_bytes()
            tag, i, rest = body.split(b":", 2)
            assert rest == bytes([int(tag)]) * 150_000
            got.setdefault(int(tag), []).append(int(i))
        assert got == {tag: list(range(30)) for tag in range(1, 5)}
    finally:
        for w in writers:
            w.join(10)
            if w.is_alive():
                w.kill()
                w.join(5)
