"""rec_q survives writers that die mid-write: torn frames are skipped, stale locks freed."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import zlib

import pytest

from mpbackend.queues import _HEADER, MAGIC, BatchQueue

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


def test_eof_when_every_writer_is_gone():
    q = BatchQueue(multiprocessing.get_context("spawn"))
    q.put_bytes(b"last", timeout=1)
    q.close_writer()
    assert q.get_bytes() == b"last"
    with pytest.raises(EOFError):
        q.get_bytes()


def _hold_the_lock_and_hang(q: BatchQueue) -> None:
    q._wlock.acquire()
    q._holder.value = os.getpid()
    time.sleep(60)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_lock_held_by_a_dead_writer_is_freed(method):
    ctx = multiprocessing.get_context(method)
    q = BatchQueue(ctx)
    child = ctx.Process(target=_hold_the_lock_and_hang, args=(q,), daemon=True)
    child.start()
    try:
        deadline = time.monotonic() + 30
        while q._holder.value != child.pid and time.monotonic() < deadline:
            time.sleep(0.01)
        assert q._holder.value == child.pid
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
