"""The service's replay marks, driven batch by batch: exactly once across a restart.

A StreamMux (the service's main loop object) gets batches as the user process
numbers them, a real SQLite store and a real reply pipe; a "restart" is a second
StreamMux that resumes the run from its store and replays the batches the first
one had not reported committed, as ``mpbackend.user.manager._restart`` makes a
new service do. These tests hold the marks' arithmetic exactly; the tests that
SIGKILL real services (test_failures, test_reliability) hold the whole path.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import time

import pytest

from mpbackend.service.mux import StreamMux
from mpbackend.shared import messages as m
from mpbackend.shared.queues import ReplyQueue
from mpbackend.shared.settings import Settings
from mpbackend.store.reader import RunReader

TOKEN = "t0ken"


@pytest.fixture
def spec(tmp_path):
    run_dir = tmp_path / "p" / "r1"
    run_dir.mkdir(parents=True)
    return {"id": "r1", "project": "p", "name": None, "run_dir": str(run_dir), "config": {},
            "resume": None, "tags": [], "notes": None, "group": None, "job_type": None,
            "pid": os.getpid(), "host": "h", "start_time": time.time()}


def _mux(spec, resume: bool) -> tuple[StreamMux, ReplyQueue]:
    replies = ReplyQueue(multiprocessing.get_context("spawn"))
    mux = StreamMux(None, replies, os.getpid(), Settings(system_interval=0))  # type: ignore
    if resume:
        resumed, failed = mux._resume((pickle.dumps({**spec, "resume": "allow"}),))
        assert resumed == ("r1",) and not failed
    else:
        mux._inform_init(m.InformInit(spec))
    return mux, replies


def _rows(a: int, b: int) -> list[tuple]:
    return [(m.HISTORY_FLOATS, "r1", {"x": float(i)}, None, None, time.time())
            for i in range(a, b)]


def _batch(seq: int, records: list) -> bytes:
    return pickle.dumps((os.getpid(), None, records, seq, TOKEN))


def _die(mux: StreamMux) -> None:
    """The service dies: nothing after its last commit reaches the store, and the
    kernel drops its lock on the run."""
    mux.streams["r1"].writer._conn.close()
    mux.streams["r1"].writer.lock.close()


def _stored(spec) -> list[float]:
    with RunReader(spec["run_dir"]) as reader:
        return [row["x"] for row in reader.history()]


def test_a_flush_in_the_middle_of_a_batch_marks_only_what_came_before_it(spec):
    """A flush inside a batch stores the rows before it and a mark that covers only
    them; after a death the replay stores the rest of the batch, and nothing twice."""
    first, _ = _mux(spec, resume=False)
    b0 = _batch(0, _rows(0, 5))
    b1 = _batch(1, _rows(5, 8) + [(m.REQUEST, "u1", m.Flush("r1"))] + _rows(8, 12))
    first._batch(b0)
    first._commit_all()
    first._batch(b1)  # the flush inside commits rows 0..7: the first 3 records of b1
    assert first.streams["r1"].writer.stored_mark == (TOKEN, 1, 3)
    _die(first)
    assert _stored(spec) == [float(i) for i in range(8)]
    second, _ = _mux(spec, resume=True)
    second._batch(b1, replay=True)  # b0 was acked; b1 was not
    second.replayed = second.applied
    second._batch(b1)  # met again in rec_q: skipped
    second._end_all("finished")
    assert _stored(spec) == [float(i) for i in range(12)]


def test_a_replay_skips_what_the_store_holds_and_what_it_meets_again(spec):
    """Both duplicate checks: the store's mark (the dead service committed batch 1)
    and the replayed mark (batch 2, replayed, then read again from rec_q)."""
    first, _ = _mux(spec, resume=False)
    batches = [_batch(n, _rows(10 * n, 10 * n + 10)) for n in range(3)]
    for payload in batches[:2]:
        first._batch(payload)
    first._commit_all()  # batches 0 and 1 stored; Committed(1) may not have arrived
    first._batch(batches[2])
    _die(first)  # batch 2 applied, never committed
    second, _ = _mux(spec, resume=True)
    for payload in batches[1:]:  # what the user process still kept
        second._batch(payload, replay=True)
    second.replayed = second.applied
    for payload in batches[1:]:  # the same batches, still in the pipe
        second._batch(payload)
    second._end_all("finished")
    assert _stored(spec) == [float(i) for i in range(30)]


def test_a_finish_in_the_middle_of_a_batch_stores_its_mark(spec):
    """The final commit of a finishing run moves the mark with its rows."""
    first, _ = _mux(spec, resume=False)
    first._batch(_batch(0, _rows(0, 3) + [(m.REQUEST, "u2", m.InformFinish("r1", "finished",
                                                                          None))]))
    with RunReader(spec["run_dir"]) as reader:
        assert reader.info()["state"] == "finished"
    second, _ = _mux(spec, resume=True)
    assert second.streams["r1"].writer.stored_mark == (TOKEN, 0, 3)
    second._end_all("finished")


def test_ending_every_run_goes_on_past_one_that_cannot_be_finished(spec, tmp_path):
    """StreamMux._end_all (ManagerStop, the owner's death): a run whose finish fails
    (its store is gone) is closed and reported, and the other runs still end."""
    mux, _ = _mux(spec, resume=False)
    other_dir = tmp_path / "p" / "r2"
    other_dir.mkdir(parents=True)
    mux._inform_init(m.InformInit({**spec, "id": "r2", "run_dir": str(other_dir)}))
    mux._batch(_batch(0, _rows(0, 3)))
    _die(mux)  # r1's store can no longer be written: its finish raises
    mux._end_all("finished")
    assert mux.streams == {}
    with RunReader(str(other_dir)) as reader:
        assert reader.info()["state"] == "finished"
