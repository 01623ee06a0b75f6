"""Failure paths the way ``concurrent.futures.process`` does them: nothing dies silently.

Each test breaks one thing for real (a reply the router cannot read, a value
the service cannot convert, a sender thread that raises, a request the service
refuses) and checks that the failure reaches the user once, with its cause, and
that nothing already logged is lost.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import struct
import threading

import pytest
from conftest import exited, result, run_script, stored, wait_for

import mpbackend
from mpbackend.shared.errors import RemoteTraceback


@pytest.mark.timeout(60)
def test_a_reply_the_router_cannot_read_fails_pending_requests_with_its_cause(rundir):
    """Router: any exception while reading replies breaks the service, with that cause.

    A frame that is not a pickle is written into rsp_q (a second write end of
    the pipe, opened through /proc) while a flush waits for its reply: the
    router kills the service (it must not go on reading rec_q), and the
    waiting flush fails with a ServiceError whose ``__cause__`` is the
    UnpicklingError, within seconds, not after its timeout.
    """
    run = mpbackend.init(project="p", settings={"max_restarts": 0})
    for i in range(10):
        run.log({"i": float(i)})
    run.flush()
    manager = mpbackend.setup().manager
    service = manager.service
    os.kill(service.pid, signal.SIGSTOP)  # so the flush below stays pending
    outcome: dict = {}

    def flush() -> None:
        try:
            run.flush(timeout=50)
            outcome["ok"] = True
        except mpbackend.ServiceError as exc:
            outcome["error"] = exc

    waiter = threading.Thread(target=flush)
    waiter.start()
    assert wait_for(lambda: manager.router.pending() == 1, timeout=10)
    fd = service.rsp_q.reader.fileno()
    with open(f"/proc/self/fd/{fd}", "wb", buffering=0) as pipe:
        garbage = b"this is not a pickle"
        pipe.write(struct.pack("!i", len(garbage)) + garbage)
    waiter.join(timeout=20)
    assert not waiter.is_alive()
    error = outcome.get("error")
    assert isinstance(error, mpbackend.ServiceError), outcome
    assert isinstance(error.__cause__, pickle.UnpicklingError), repr(error.__cause__)
    assert "could not be read" in str(error)
    assert wait_for(lambda: service.process.exitcode is not None, timeout=10)
    assert service.process.exitcode == -signal.SIGKILL
    run.log({"i": 10.0})  # training goes on: log() never raises for a dead service
    run.finish()
    assert run.state == "crashed"
    _, history = stored(run.dir)
    assert [r["i"] for r in history] == [float(i) for i in range(10)]


@pytest.mark.timeout(60)
def test_an_error_raised_in_the_service_carries_the_service_traceback(rundir):
    """A request the service refuses raises its own type, with the service's traceback
    text as ``__cause__`` (as ProcessPoolExecutor shows a worker's)."""
    with pytest.raises(FileNotFoundError) as caught:
        mpbackend.init(project="p", id="nosuchrun", resume="must")
    cause = caught.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "Traceback (most recent call last)" in cause.tb
    assert os.path.join("service", "internal.py") in cause.tb
    assert "resume='must'" in cause.tb
    assert "nosuchrun" in str(caught.value)


BAD_VALUE = """
    import json, logging, pickle, sys, time
    import mpbackend
    from mpbackend.shared import messages as m

    class Stubborn:
        # A value whose conversion raises: log() and config make values plain at the
        # call, so this raises there and never reaches the service.
        def __float__(self):
            raise RuntimeError("no float for you")

    run = mpbackend.init(project="p", settings={"max_restarts": 1})
    service = mpbackend.setup().manager.service.pid
    for i in range(50):
        run.log({"i": float(i)})
    refused = []
    for call in (lambda: run.log({"bad": Stubborn()}),
                 lambda: run.config.update({"odd": Stubborn()})):
        try:
            call()
        except TypeError as exc:
            refused.append(str(exc))
    # Records no client of ours makes (a client bug): a row that is not a dict and a
    # config update that is not a mapping, sent through the real queue.
    run._interface.put_row((m.HISTORY, run.id, ["not", "a", "dict"], None, None, time.time()))
    run._interface.put(pickle.dumps((m.HISTORY_ANY, run.id, ["not", "a", "dict"], None,
                                     None, time.time()), 5), run.id)
    run._interface.put(pickle.dumps((m.CONFIG, run.id, 42), 5), run.id)
    for i in range(50, 100):
        run.log({"i": float(i)})
    run.finish()
    same = mpbackend.setup().manager.service.pid == service
    print("RESULT " + json.dumps({"dir": run.dir, "state": run.state, "same_service": same,
                                  "refused": refused}))
"""


@pytest.mark.timeout(90)
def test_an_unexpected_error_in_the_service_is_stored_with_the_run_and_warned_once(tmp_path):
    """A value whose conversion raises is refused at the call (TypeError naming the
    key). A record the service fails on costs that record only: the service keeps
    going (no restart, no replay loop), the error and its traceback are stored with
    the run (``extra["service_errors"]``), and the user sees one warning per kind,
    never a traceback from the service process."""
    proc = run_script(BAD_VALUE, tmp_path, timeout=80)
    assert proc.returncode == 0, proc.stderr
    out = result(proc)
    assert out["state"] == "finished"
    assert len(out["refused"]) == 2 and all("no float for you" in t for t in out["refused"])
    assert "'bad'" in out["refused"][0]
    assert out["same_service"], "the service died on a record and was restarted"
    info, history = stored(out["dir"])
    assert [r["i"] for r in history if "i" in r] == [float(i) for i in range(100)]
    assert info["state"] == "finished"
    assert "odd" not in info["config"]
    errors = info["extra"]["service_errors"]
    assert info["extra"]["service_error_count"] == 3
    assert [("logged row" in e["error"]) for e in errors] == [True, True, False]
    assert "config update" in errors[2]["error"]
    for entry in errors:
        assert "Traceback (most recent call last)" in entry["traceback"]
    warnings = [line for line in proc.stderr.splitlines() if "failed in the mpbackend service"
                in line]
    assert len(warnings) == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


SENDER_DIES = """
    import json, threading, time
    import mpbackend
    import mpbackend.user.interface as interface

    run = mpbackend.init(project="p", settings={"request_timeout": 60.0})
    for i in range(100):
        run.log({"i": float(i)})
    run.flush()
    real = interface._dumps_batch

    def failing(obj):
        # Fault injection: the sender thread's pickling of a numbered batch raises.
        if (threading.current_thread().name == "mpbackend-sender" and type(obj) is tuple
                and len(obj) == 5 and obj[3] >= 0):
            raise MemoryError("injected")
        return real(obj)

    interface._dumps_batch = failing
    run.log({"i": 100.0})
    started = time.monotonic()
    run.flush()  # in the batch the sender dies on: still answered, not timed out
    flush_waited = time.monotonic() - started
    for i in range(101, 150):
        run.log({"i": float(i)})
    deadline = time.monotonic() + 20
    while run._interface.broken is None and time.monotonic() < deadline:
        time.sleep(0.01)
    for i in range(150, 160):
        run.log({"i": float(i)})  # dropped and counted, without waiting
    run.finish()
    print("RESULT " + json.dumps({"dir": run.dir, "state": run.state,
                                  "dropped": run._interface.dropped,
                                  "flush_waited": flush_waited}))
"""


@pytest.mark.timeout(60)
def test_a_dead_sender_thread_breaks_the_interface_once_and_counts_what_it_drops(tmp_path):
    """Sender thread death: one warning, later records dropped and counted (not each
    log() waiting out request_timeout, here 60 s), and the run still finishes
    properly: requests are then written by the caller's thread."""
    proc = run_script(SENDER_DIES, tmp_path, timeout=50)
    assert proc.returncode == 0, proc.stderr
    out = result(proc)
    assert out["flush_waited"] < 30, "the flush waited for its timeout (60 s)"
    assert out["dropped"] == 60
    assert out["state"] == "finished"
    info, history = stored(out["dir"])
    assert [r["i"] for r in history] == [float(i) for i in range(100)]
    assert info["state"] == "finished"
    assert info["extra"]["dropped_records"] == 60
    failed = [line for line in proc.stderr.splitlines() if "sender thread failed" in line]
    assert len(failed) == 1 and "MemoryError: injected" in failed[0], proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("field, value, error", [
    ("batch_records", 0, ValueError),
    ("batch_records", 1.5, TypeError),
    ("max_restarts", -5, ValueError),
    ("max_restarts", "3", TypeError),
    ("quiet", "no", TypeError),
    ("quiet", 1, TypeError),
    ("max_array_size", 0, ValueError),
    ("buffer_bytes", 1000, ValueError),
    ("buffer_bytes", True, TypeError),
    ("request_timeout", True, TypeError),
    ("request_timeout", 0, ValueError),
    ("send_interval", float("nan"), ValueError),
    ("exit_timeout", float("inf"), ValueError),
    ("commit_interval", "0.05", TypeError),
    ("system_interval", -1, ValueError),
    ("system_interval", "2", TypeError),
    ("start_method", "Spawn", ValueError),
    ("start_method", None, None),  # None: from the environment (the default)
    ("buffer_policy", "discard", ValueError),
    ("dir", 3, TypeError),
    ("dir", "", ValueError),
])
def test_settings_check_every_field(field, value, error):
    """Settings: every field its docstring promises is checked where it is made."""
    if error is None:
        assert getattr(mpbackend.Settings(**{field: value}), field) is not None
        return
    with pytest.raises(error, match=field):
        mpbackend.Settings(**{field: value})
    with pytest.raises(error, match=field):
        mpbackend.Settings.coerce({field: value})


def test_settings_take_a_path_for_dir(tmp_path):
    assert mpbackend.Settings(dir=tmp_path).dir == str(tmp_path)
    assert json.dumps(mpbackend.Settings(dir=tmp_path).as_dict())  # plain values only


WATCHDOG_POLL_FAILS = """
    import json, os, select, signal, sys, time
    import mpbackend

    class BrokenPoll:
        # Fault injection: the service is forked from here, and in it (only) the
        # watchdog's pidfd wait fails at once.
        def register(self, *args):
            raise OSError(22, "injected poll failure")

    def break_poll_in_child():
        select.poll = BrokenPoll
        import selectors
        selectors.DefaultSelector = selectors.SelectSelector  # the service's own waits

    os.register_at_fork(after_in_child=break_poll_in_child)
    run = mpbackend.init(project="p", settings={"start_method": "fork"})
    for i in range(100):
        run.log({"i": float(i)})
    run.flush()
    time.sleep(0.5)  # the watchdog has long failed over to polling by now
    for i in range(100, 200):
        run.log({"i": float(i)})
    run.flush()
    print("RESULT " + json.dumps({"dir": run.dir, "state": run.state,
                                  "service": mpbackend.setup().manager.service.pid}),
          flush=True)
    if sys.argv[-1] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    run.finish()
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("ending", ["finish", "kill"])
def test_a_failing_watchdog_wait_falls_back_to_polling(tmp_path, ending):
    """Watchdog: a pidfd wait that fails does not take the live training process for
    dead (the run is not ended ``crashed`` under it); the watchdog polls instead,
    says so once, and still sees the process die when it is SIGKILLed."""
    proc = run_script(WATCHDOG_POLL_FAILS.replace("sys.argv[-1]", repr(ending)), tmp_path,
                      timeout=80)
    out = result(proc)
    assert out["state"] == "running"
    assert wait_for(lambda: exited(out["service"]), timeout=10)
    info, history = stored(out["dir"])
    assert [r["i"] for r in history] == [float(i) for i in range(200)]
    assert info["state"] == ("finished" if ending == "finish" else "crashed"), info["state"]
    notes = [line for line in proc.stderr.splitlines() if "pidfd failed" in line]
    assert len(notes) == 1 and "polls instead" in notes[0], proc.stderr


def test_a_step_or_exit_code_the_store_cannot_hold_is_refused_at_the_call(rundir):
    """Steps and exit codes are stored as int64: larger ones raise where they are
    passed, and nothing logged before is lost."""
    run = mpbackend.init(project="p")
    run.log({"x": 1.0})
    with pytest.raises(ValueError, match="2\\*\\*63 - 2"):
        run.log({"x": 2.0}, step=2**63 - 1)
    with pytest.raises(ValueError, match="out of range"):
        run.finish(exit_code=2**70)
    with pytest.raises(TypeError):
        run.finish(exit_code="1")
    run.log({"x": 3.0}, step=2**63 - 2)
    run.finish()
    info, history = stored(run.dir)
    assert [(r["_step"], r["x"]) for r in history] == [(0, 1.0), (2**63 - 2, 3.0)]
    assert info["state"] == "finished"


def test_a_mean_over_an_int_too_large_for_a_float_is_infinite_and_costs_no_row(rundir):
    """define_metric's aggregates: an int beyond float range makes the mean inf
    instead of failing the row (and leaving the count one ahead of the sum)."""
    run = mpbackend.init(project="p")
    run.define_metric("x", summary="mean,max")
    for i in range(10):
        run.log({"x": 10**400 if i == 3 else 1})
    run.finish()
    info, history = stored(run.dir)
    assert len(history) == 10
    assert info["summary"]["x"]["mean"] == float("inf")
    assert info["summary"]["x"]["max"] == 10**400
    assert "service_errors" not in info["extra"] or not info["extra"]["service_errors"]


def test_rows_that_cannot_become_columns_are_dropped_and_counted_not_retried(tmp_path):
    """RunWriter: a chunk that cannot be built (here a step beyond int64, which log()
    refuses, written straight to the writer) is dropped and counted in lost_rows
    with its reason; it does not fail every later commit of the run."""
    from mpbackend.store.writer import RunWriter

    writer = RunWriter(str(tmp_path / "r"), {"id": "r", "project": "p"}, resume=False)
    writer.append(0, {"x": 0.0, "_runtime": 0.0, "_timestamp": 0.0})
    writer.commit()
    writer.append(2**64, {"x": 1.0, "_runtime": 0.0, "_timestamp": 0.0})
    writer.commit()  # does not raise: the row is dropped
    assert writer.lost_rows == 1 and "could not be stored" in writer.unstorable[0]
    writer.append(1, {"x": 2.0, "_runtime": 0.0, "_timestamp": 0.0})
    writer.close()
    with mpbackend.RunReader(str(tmp_path / "r")) as reader:
        assert [r["x"] for r in reader.history()] == [0.0, 2.0]


def test_a_value_sqlite_cannot_bind_rolls_the_transaction_back(tmp_path):
    """The transaction helper rolls back on any error (not only SQLite's), so a
    failed write never leaves the database locked for the next one."""
    from mpbackend.store.writer import RunWriter

    writer = RunWriter(str(tmp_path / "r"), {"id": "r", "project": "p"}, resume=False)
    writer.update_run(exit_code=2**70)  # too large for SQLite's INTEGER
    with pytest.raises(mpbackend.StoreError):
        writer.commit()
    assert not writer._conn.in_transaction
    writer.update_run(exit_code=3)
    writer.close()
    with mpbackend.RunReader(str(tmp_path / "r")) as reader:
        assert reader.info()["exit_code"] == 3
