"""Failure paths, tested on the real thing: real service processes, signals and run.db files.

Router: a stray reply, a request that times out, a service SIGKILLed under a
pending request. No sockets and no multiprocessing Manager anywhere. The
service's watchdog after a SIGKILL of the user process. How a script ends:
without finish(), by an uncaught exception, with a SIGINT to the service, with
a stopped service under ``exit_timeout``, and with a forked child that exits
normally.

Nothing under test is mocked. Every wait has a timeout, and every process a
test starts is reaped by the test (the autouse fixture in conftest is the last
line of defence only).
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest
from conftest import ROOT, run_script
from conftest import assert_steps as _assert_steps
from conftest import exited as _exited
from conftest import result as _result
from conftest import stored as _stored
from conftest import wait_for as _wait_for

import mpbackend
from mpbackend.shared import messages as m
from mpbackend.shared.version import __version__

pytestmark = pytest.mark.timeout(60)

RESULT = "RESULT "


# -- helpers -------------------------------------------------------------------


def _wait_exited(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _exited(pid):
            return True
        time.sleep(0.02)
    return _exited(pid)


def _handle(pid: int | None) -> psutil.Process | None:
    """A psutil handle (it remembers the create time, so a reused pid is never hit)."""
    if pid is None:
        return None
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def _kill(proc: psutil.Process | None) -> None:
    """Kill a process this test started (directly or through its script), if it is alive."""
    if proc is None:
        return
    try:
        proc.resume()  # a stopped process gets SIGKILL either way; be explicit
        proc.kill()
    except psutil.NoSuchProcess:
        return
    try:
        proc.wait(timeout=5)  # reaps it if it is our child
    except (psutil.TimeoutExpired, psutil.NoSuchProcess):
        pass


def _script_env(tmp_path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": ROOT, "MPBACKEND_DIR": str(tmp_path / "mpruns")}


def _popen_script(code: str, tmp_path, name: str = "script.py") -> subprocess.Popen:
    script = tmp_path / name
    script.write_text(textwrap.dedent(code))
    return subprocess.Popen([sys.executable, str(script)], cwd=tmp_path,
                            env=_script_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _read_result(proc: subprocess.Popen, timeout: float) -> dict:
    """The first ``RESULT {json}`` line the script prints, waited for at most ``timeout``."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise AssertionError(f"no result line from the script within {timeout} s")
            line = proc.stdout.readline()
            if not line:
                proc.wait(timeout=5)
                raise AssertionError(f"the script ended (code {proc.returncode}) without a "
                                     f"result; stderr:\n{proc.stderr.read()}")
            if line.startswith(RESULT):
                return json.loads(line[len(RESULT):])


@pytest.fixture
def service(rundir):
    """A run in this process and its live service; the service is SIGCONTed at the end.

    No restarts here: these tests are about what a dead service does to requests.
    """
    run = mpbackend.init(project="failures", settings={"max_restarts": 0})
    manager = mpbackend.setup().manager
    pid = manager.service.pid
    assert pid is not None and manager.alive
    yield run, manager, pid
    try:
        os.kill(pid, signal.SIGCONT)  # never leave teardown waiting on a stopped service
    except ProcessLookupError:
        pass


# -- 1. router -------------------------------------------------------------------


def test_router_unknown_reply_is_logged_at_debug_and_dropped(service, caplog):
    run, manager, _ = service
    caplog.set_level(logging.DEBUG, logger="mpbackend")
    router = manager.router
    assert router.pending() == 0

    router._dispatch(m.Response("0123deadbeef", value={"step": 99}))

    stray = [r for r in caplog.records if "0123deadbeef" in r.getMessage()]
    assert len(stray) == 1, [r.getMessage() for r in caplog.records]
    assert stray[0].name == "mpbackend"
    assert stray[0].levelno == logging.DEBUG
    assert router.pending() == 0
    assert router.error is None and manager.alive

    # Nothing broke: requests and logging still work end to end.
    assert manager.ensure_up()["version"] == __version__
    for i in range(5):
        run.log({"x": i})
    run.flush(timeout=10)
    run.finish()
    info, history = _stored(run.dir)
    assert info["state"] == "finished"
    assert [row["x"] for row in history] == list(range(5))
    _assert_steps(history)


def test_request_timeout_removes_future_and_late_reply_is_dropped(service, caplog):
    run, manager, pid = service
    caplog.set_level(logging.DEBUG, logger="mpbackend")
    router = manager.router
    run.log({"x": 0})
    run.flush(timeout=10)

    os.kill(pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        with pytest.raises(mpbackend.RequestTimeout) as caught:
            manager.interface.communicate(m.Flush(run.id), timeout=0.5)
        elapsed = time.monotonic() - start
        assert isinstance(caught.value, TimeoutError)
        assert 0.45 <= elapsed < 3.0, elapsed
        assert router.pending() == 0

        start = time.monotonic()
        with pytest.raises(mpbackend.RequestTimeout):
            run.flush(timeout=0.3)
        assert time.monotonic() - start < 3.0
        assert router.pending() == 0
        assert router.error is None  # a slow service is not a dead one
    finally:
        os.kill(pid, signal.SIGCONT)

    # The service now answers both requests; nobody waits for them any more.
    def stray() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "unknown request" in r.getMessage()]

    assert _wait_for(lambda: len(stray()) >= 2, timeout=10), \
        [r.getMessage() for r in caplog.records]
    assert all(r.levelno == logging.DEBUG and r.name == "mpbackend" for r in stray())
    assert router.pending() == 0

    run.log({"x": 1})
    run.flush(timeout=10)
    assert router.pending() == 0
    run.finish()
    info, history = _stored(run.dir)
    assert info["state"] == "finished"
    assert [row["x"] for row in history] == [0, 1]


def test_service_killed_under_a_pending_request(service, caplog):
    run, manager, pid = service
    router = manager.router
    for i in range(10):
        run.log({"x": i})
    run.flush(timeout=10)

    os.kill(pid, signal.SIGSTOP)  # the flush below cannot be answered: surely pending
    outcome: dict = {}

    def flush() -> None:
        try:
            run.flush(timeout=30)
        except BaseException as exc:  # noqa: BLE001 - recorded and asserted below
            outcome["error"] = exc
        outcome["at"] = time.monotonic()

    waiter = threading.Thread(target=flush, daemon=True)
    waiter.start()
    assert _wait_for(lambda: router.pending() == 1, timeout=5), router.pending()

    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    waiter.join(timeout=10)
    assert not waiter.is_alive(), "the pending flush did not fail after the service died"
    error = outcome.get("error")
    assert isinstance(error, mpbackend.ServiceError), repr(error)
    assert outcome["at"] - killed_at < 1.0, outcome["at"] - killed_at
    assert error.exitcode == -9
    assert "-9" in str(error), str(error)
    assert router.pending() == 0
    assert manager.service.exitcode == -9
    assert not manager.alive

    # Every later request fails at once; nothing hangs.
    start = time.monotonic()
    with pytest.raises(mpbackend.ServiceError) as caught:
        run.flush(timeout=20)
    assert time.monotonic() - start < 0.5
    assert caught.value.exitcode == -9

    start = time.monotonic()
    with pytest.raises(mpbackend.ServiceError):
        manager.interface.communicate(m.EnsureUp(__version__), timeout=20)
    assert time.monotonic() - start < 0.5

    # log() neither raises nor blocks: records are dropped.
    start = time.monotonic()
    for i in range(200):
        run.log({"x": 10 + i})
    run.log({"big": "y" * 10_000})  # the locked path too
    assert time.monotonic() - start < 1.0
    assert _wait_for(lambda: manager.interface.broken is not None, timeout=2)
    run.log({"x": -1})
    assert manager.interface.dropped >= 1

    # finish() does not raise into the training script: it warns and returns.
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="mpbackend"):
        run.finish()
    assert time.monotonic() - start < 0.5
    assert run.state == "crashed"
    assert any("could not be finished" in r.getMessage() for r in caplog.records)

    # What was flushed before the kill is still in the store.
    info, history = _stored(run.dir)
    assert [row["x"] for row in history] == list(range(10))
    assert info["state"] == "running"  # nobody was left to record an end


# -- 2. no sockets, no Manager server --------------------------------------------

NO_SOCKETS = """
    import json, multiprocessing, os, sys
    import psutil
    import mpbackend

    run = mpbackend.init(project="nosock")
    for i in range(100):
        run.log({"x": i, "s": "v"})
    run.flush(timeout=30)
    setup = mpbackend.setup()
    service = setup.manager.service.pid

    def conns(proc):
        get = getattr(proc, "net_connections", None) or proc.connections
        return [repr(c) for c in get(kind="all")]

    def socket_fds(pid):
        out = []
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:"):
                out.append(target)
        return out

    me = psutil.Process()
    children = me.children(recursive=True)
    result = {
        "start_method": setup.settings.start_method,
        "user_pid": os.getpid(),
        "service_pid": service,
        "user_conns": conns(me),
        "service_conns": conns(psutil.Process(service)),
        "children": [
            {"pid": c.pid, "name": c.name(), "cmdline": c.cmdline(), "conns": conns(c),
             "socket_fds": socket_fds(c.pid)}
            for c in children
        ],
        "user_socket_fds": socket_fds(os.getpid()),
        "mp_children": [p.name for p in multiprocessing.active_children()],
    }
    run.finish()
    print("RESULT " + json.dumps(result), flush=True)
"""


def test_no_sockets_and_no_manager_process(tmp_path):
    completed = run_script(NO_SOCKETS, tmp_path, timeout=40)
    assert completed.returncode == 0, completed.stderr
    res = _result(completed)
    assert res["start_method"] == "spawn"
    assert res["user_conns"] == []
    assert res["service_conns"] == []
    assert res["user_socket_fds"] == []
    pids = [c["pid"] for c in res["children"]]
    assert res["service_pid"] in pids, res["children"]
    for child in res["children"]:
        assert child["conns"] == [], child
        assert child["socket_fds"] == [], child
        text = " ".join([child["name"], *child["cmdline"]])
        assert "SyncManager" not in text and "multiprocessing.managers" not in text, child
    assert not any(name.startswith(("SyncManager", "Manager")) for name in res["mp_children"]), \
        res["mp_children"]
    assert res["mp_children"] == ["mpbackend-service"]


# -- 3. watchdog -------------------------------------------------------------------

WATCHDOG = """
    import json, os, time
    import mpbackend

    N, M = 300, 200
    run = mpbackend.init(project="watchdog")
    service = mpbackend.setup().manager.service.pid
    for i in range(N):
        run.log({"i": i, "phase": "flushed"})
    run.flush(timeout=30)
    for i in range(N, N + M):
        run.log({"i": i, "phase": "unflushed"})
    drained = run._interface.drain(10.0)  # in the pipe, no reply waited for
    print("RESULT " + json.dumps({"service_pid": service, "dir": run.dir, "n": N, "m": M,
                                  "drained": drained}), flush=True)
    time.sleep(50)
"""


def test_watchdog_marks_run_crashed_after_sigkill_of_user(tmp_path):
    proc = _popen_script(WATCHDOG, tmp_path)
    service = None
    try:
        res = _read_result(proc, timeout=30)
        service = _handle(res["service_pid"])
        assert service is not None, "the service was not running when the script reported"
        assert res["drained"] is True
        proc.kill()
        killed_at = time.monotonic()
        assert _wait_exited(res["service_pid"], timeout=2.0), \
            f"the service was still running {time.monotonic() - killed_at:.2f} s after the kill"
        proc.wait(timeout=5)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        _kill(service)
        proc.stdout.close()
        proc.stderr.close()

    info, history = _stored(res["dir"])
    n, m_rows = res["n"], res["m"]
    assert info["state"] == "crashed"
    assert len(history) >= n
    _assert_steps(history)
    assert [row["i"] for row in history[:n]] == list(range(n))
    # Every record reached the pipe before the kill, so none may be lost.
    assert len(history) == n + m_rows
    assert [row["i"] for row in history] == list(range(n + m_rows))
    assert info["step"] == n + m_rows


# -- 4. how a script ends ----------------------------------------------------------

NO_FINISH = """
    import json, os, time
    import mpbackend

    run = mpbackend.init(project="nofinish")
    service = mpbackend.setup().manager.service.pid
    for i in range(250):
        run.log({"i": i})
    print("RESULT " + json.dumps({"service_pid": service, "dir": run.dir,
                                  "end": time.time()}), flush=True)
"""


def test_exit_without_finish_marks_run_finished(tmp_path):
    completed = run_script(NO_FINISH, tmp_path, timeout=40)
    exited_at = time.time()
    res = _result(completed)
    try:
        assert completed.returncode == 0, completed.stderr
        assert exited_at - res["end"] < 5.0, exited_at - res["end"]
        assert "Traceback" not in completed.stderr, completed.stderr
        assert "mpbackend" not in completed.stderr, completed.stderr  # no exit-path warning
        assert _wait_exited(res["service_pid"], timeout=2), "the service outlived its user"
    finally:
        _kill(_handle(res["service_pid"]))
    info, history = _stored(res["dir"])
    assert info["state"] == "finished"
    assert [row["i"] for row in history] == list(range(250))
    _assert_steps(history)


UNCAUGHT = """
    import json
    import mpbackend

    run = mpbackend.init(project="uncaught")
    service = mpbackend.setup().manager.service.pid
    for i in range(40):
        run.log({"i": i})
    print("RESULT " + json.dumps({"service_pid": service, "dir": run.dir}), flush=True)
    raise RuntimeError("boom from the training loop")
"""


def test_uncaught_exception_marks_run_failed(tmp_path):
    completed = run_script(UNCAUGHT, tmp_path, timeout=40)
    res = _result(completed)
    try:
        assert completed.returncode == 1
        assert "RuntimeError: boom from the training loop" in completed.stderr
        assert _wait_exited(res["service_pid"], timeout=2), "the service outlived its user"
    finally:
        _kill(_handle(res["service_pid"]))
    info, history = _stored(res["dir"])
    assert info["state"] == "failed", completed.stderr
    assert info["exit_code"] not in (None, 0)
    assert [row["i"] for row in history] == list(range(40))


def test_service_ignores_sigint(service):
    run, manager, pid = service
    for i in range(50):
        run.log({"i": i})
    run.flush(timeout=10)

    os.kill(pid, signal.SIGINT)
    time.sleep(0.3)
    assert not _exited(pid), f"SIGINT ended the service (exit code {manager.service.exitcode})"
    assert manager.alive and manager.router.error is None

    for i in range(50, 120):
        run.log({"i": i})
    run.flush(timeout=10)
    assert manager.service.pid == pid and not _exited(pid)
    run.finish()
    info, history = _stored(run.dir)
    assert info["state"] == "finished"
    assert [row["i"] for row in history] == list(range(120))
    _assert_steps(history)


STOPPED_SERVICE = """
    import json, os, signal, time
    import mpbackend

    run = mpbackend.init(project="stopped", settings=mpbackend.Settings(exit_timeout=2))
    service = mpbackend.setup().manager.service.pid
    for i in range(20):
        run.log({"i": i})
    run.flush(timeout=30)
    os.kill(service, signal.SIGSTOP)
    print("RESULT " + json.dumps({"service_pid": service, "dir": run.dir}), flush=True)
"""


def test_exit_timeout_bounds_atexit_with_a_stopped_service(tmp_path):
    proc = _popen_script(STOPPED_SERVICE, tmp_path)
    service = None
    try:
        res = _read_result(proc, timeout=30)
        service = _handle(res["service_pid"])
        reported_at = time.monotonic()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            raise AssertionError("the script hung at exit with a stopped service") from None
        took = time.monotonic() - reported_at
        stderr = proc.stderr.read()
        assert took < 2 + 4, f"exit took {took:.2f} s with exit_timeout=2; stderr:\n{stderr}"
        assert proc.returncode == 0, stderr
        assert _wait_exited(res["service_pid"], timeout=2), \
            "the stopped service was left behind"
        assert not psutil.pid_exists(res["service_pid"]) or _exited(res["service_pid"])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        _kill(service)
        proc.stdout.close()
        proc.stderr.close()
    info, history = _stored(res["dir"])
    assert [row["i"] for row in history] == list(range(20))  # flushed before the stop


FORKED_CHILD = """
    import json, multiprocessing, os, sys, time
    import psutil
    import mpbackend
    import mpbackend.service.mux

    def alive(proc):
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE

    run = mpbackend.init(project="forked")
    service_pid = mpbackend.setup().manager.service.pid
    service = psutil.Process(service_pid)
    for i in range(30):
        run.log({"i": i, "who": "parent"})
    run.flush(timeout=30)

    # A multiprocessing child (fork start method) that logs and returns.
    def child_work(tag):
        for j in range(7):
            run.log({"j": j, "who": tag})

    mp_child = multiprocessing.get_context("fork").Process(target=child_work, args=("mp",))
    mp_child.start()
    mp_child.join(30)

    # A bare os.fork() child that logs and leaves by a normal interpreter exit.
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            child_work("fork")
        except BaseException:
            code = 3
        sys.exit(code)  # SystemExit unwinds: atexit hooks and finalizers run
    _, status = os.waitpid(pid, 0)
    fork_code = os.waitstatus_to_exitcode(status)
    alive_after_children = alive(service)

    # A SIGTERM would end the service only after TERM_GRACE: outlast it, logging.
    deadline = time.monotonic() + min(mpbackend.service.mux.TERM_GRACE, 20.0) + 1.0
    k = 0
    while time.monotonic() < deadline:
        run.log({"k": k, "who": "parent"})
        k += 1
        time.sleep(0.25)
    alive_after_grace = alive(service)
    for i in range(30, 60):
        run.log({"i": i, "who": "parent"})
    run.flush(timeout=30)
    same_service = mpbackend.setup().manager.service.pid == service_pid
    run.finish()
    print("RESULT " + json.dumps({
        "service_pid": service_pid, "dir": run.dir, "state": run.state,
        "mp_code": mp_child.exitcode, "mp_pid": mp_child.pid, "fork_code": fork_code,
        "fork_pid": pid, "alive_after_children": alive_after_children,
        "alive_after_grace": alive_after_grace, "same_service": same_service, "k": k,
    }), flush=True)
"""


def test_forked_child_exit_leaves_parent_service_alone(tmp_path):
    completed = run_script(FORKED_CHILD, tmp_path, timeout=45)
    res = _result(completed)
    try:
        assert completed.returncode == 0, completed.stderr
        assert res["mp_code"] == 0 and res["fork_code"] == 0, completed.stderr
        assert res["alive_after_children"], "a child's exit tore down the parent's service"
        assert res["alive_after_grace"], \
            "the parent's service ended after a child's exit (was it sent SIGTERM?)"
        assert res["same_service"]
        assert res["state"] == "finished"
        assert _wait_exited(res["service_pid"], timeout=2)
    finally:
        _kill(_handle(res["service_pid"]))

    info, history = _stored(res["dir"])
    assert info["state"] == "finished", completed.stderr
    _assert_steps(history)
    parent_rows = [row for row in history if row.get("who") == "parent" and "i" in row]
    assert [row["i"] for row in parent_rows] == list(range(60))
    assert all("_pid" not in row for row in parent_rows)
    assert len([row for row in history if "k" in row]) == res["k"]
    for tag, pid in (("mp", res["mp_pid"]), ("fork", res["fork_pid"])):
        rows = [row for row in history if row.get("who") == tag]
        assert [row["j"] for row in rows] == list(range(7)), tag
        assert all(row["_pid"] == pid for row in rows), tag
    assert len(history) == 60 + res["k"] + 14


# -- teardown --------------------------------------------------------------------


def test_teardown_is_bounded_by_exit_timeout_with_a_stopped_service(tmp_path, monkeypatch):
    """teardown() finishes runs and stops the service within exit_timeout, even when
    the service does not answer; the stopped service is killed, not left behind."""
    monkeypatch.setenv("MPBACKEND_DIR", str(tmp_path / "mpruns"))
    run = mpbackend.init(project="td", settings={"exit_timeout": 2, "request_timeout": 20})
    run.log({"x": 1})
    run.flush()
    pid = mpbackend.setup().manager.service.pid
    os.kill(pid, signal.SIGSTOP)
    start = time.monotonic()
    mpbackend.teardown()
    took = time.monotonic() - start
    assert took < 2 + 1.5, took
    assert _wait_exited(pid, timeout=5)
    assert run.state == "crashed"
    assert mpbackend.run is None


def test_teardown_after_the_service_died_does_not_raise(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MPBACKEND_DIR", str(tmp_path / "mpruns"))
    run = mpbackend.init(project="td")
    run.log({"x": 1})
    run.flush()
    manager = mpbackend.setup().manager
    os.kill(manager.service.pid, signal.SIGKILL)
    assert _wait_for(lambda: manager.router.error is not None, timeout=2)
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="mpbackend"):
        mpbackend.teardown()
    assert time.monotonic() - start < 1.0
    assert run.state == "crashed"
    info, history = _stored(run.dir)
    assert [row["x"] for row in history] == [1]


def test_a_killed_service_is_restarted_and_the_run_resumes(rundir, caplog):
    """SIGKILL the service mid-run: the manager starts a new one, the run resumes in
    it (same id, next steps, config kept), training never sees an error, and what
    was logged while no service ran waited in rec_q: no record is lost. The kill
    comes right after a flush, before the service reports those batches committed,
    so they are replayed: the store's mark keeps them from being stored twice."""
    run = mpbackend.init(project="restart", config={"lr": 0.1})
    run.config.update({"lr": 0.2}, allow_val_change=True)
    for i in range(200):
        run.log({"i": i})
    run.flush()
    manager = mpbackend.setup().manager
    old = manager.service.pid
    with caplog.at_level(logging.WARNING, logger="mpbackend"):
        os.kill(old, signal.SIGKILL)
        logged = 200
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            run.log({"i": logged})  # never raises
            logged += 1
            time.sleep(0.0005)
        run.flush(timeout=20)
        new = manager.service.pid
        run.finish()
    assert new != old and _exited(old)
    info, history = _stored(run.dir)
    assert info["state"] == "finished" and info["config"] == {"lr": 0.2}
    assert [row["_step"] for row in history] == list(range(len(history)))
    values = [row["i"] for row in history]
    assert values[:200] == list(range(200))
    assert values == list(range(logged)), "a record logged around the restart is missing"
    restarted = [r.getMessage() for r in caplog.records if "started a new service" in
                 r.getMessage()]
    assert len(restarted) == 1 and run.id in restarted[0]
    lost = int(restarted[0].split("; ")[-1].split()[0])
    assert lost == 0


def _log_in_child(run, seconds: float, keys: int, pause: float, out: str) -> None:
    """A child process: log ``{"child": i, ...}`` for ``seconds``; write how many to ``out``."""
    filler = {f"k{j}": float(j) for j in range(keys)}
    i = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        run.log({"child": i, **filler})
        i += 1
        if pause:
            time.sleep(pause)
    run.flush()  # in a child: hands its buffer to rec_q
    with open(out, "w") as f:
        f.write(str(i))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_child_keeps_logging_across_a_service_restart(rundir, tmp_path, method):
    """A child that holds the run logs before, during and after the service is
    SIGKILLed and restarted: rec_q outlives the service, so the child's rows after
    the restart are all stored in the resumed run, none twice, in order."""
    run = mpbackend.init(project="restart-child")
    manager = mpbackend.setup().manager
    old = manager.service.pid
    out = tmp_path / "count"
    ctx = __import__("multiprocessing").get_context(method)
    child = ctx.Process(target=_log_in_child, args=(run, 2.5, 0, 0.001, str(out)))
    child.start()
    try:
        assert _wait_for(lambda: run.step > 100, timeout=20), "the child's rows never arrived"
        os.kill(old, signal.SIGKILL)
        child.join(timeout=30)
        assert child.exitcode == 0, child.exitcode
    finally:
        if child.is_alive():
            child.kill()
            child.join(5)
    logged = int(out.read_text())
    run.flush(timeout=20)
    assert manager.service.pid != old
    run.finish()
    info, history = _stored(run.dir)
    assert info["state"] == "finished"
    values = [row["child"] for row in history]
    assert values == sorted(set(values)), "a child's row was stored twice or out of order"
    assert values[-1] == logged - 1, "the child's rows after the restart are missing"
    # Lost: only what the dead service had read and not committed (about
    # commit_interval of logging); the child logs about 1,000 rows a second.
    assert logged - len(values) <= 250, (logged, len(values))
    assert all(row["_pid"] == child.pid for row in history)


def test_a_child_is_not_blocked_by_a_dead_service_with_no_restart(rundir, tmp_path):
    """With no restart left, a forked child logging fast enough to fill the pipe
    behind a SIGKILLed service still ends: the owner closes its spare read end, so
    the child's writes fail (EPIPE) instead of waiting for a reader forever."""
    run = mpbackend.init(project="restart-none", settings={"max_restarts": 0})
    old = mpbackend.setup().manager.service.pid
    out = tmp_path / "count"
    ctx = __import__("multiprocessing").get_context("fork")
    child = ctx.Process(target=_log_in_child, args=(run, 1.5, 100, 0.0, str(out)))
    child.start()
    try:
        assert _wait_for(lambda: run.step > 100, timeout=20)
        os.kill(old, signal.SIGKILL)
        child.join(timeout=30)
        assert child.exitcode == 0, "the child hung or failed behind the dead service"
    finally:
        if child.is_alive():
            child.kill()
            child.join(5)
    assert int(out.read_text()) > 0
    run.finish()
    assert run.state == "crashed"


def test_a_restart_right_after_a_finish_replays_quietly(rundir, caplog):
    """The service dies just after finishing run A, before it reports A's last
    batches committed: the replay leaves finished A alone (no warning about a run
    that is not open, no row twice) and run B, still open, loses nothing."""
    a = mpbackend.init(project="replay", name="a", reinit="create_new")
    b = mpbackend.init(project="replay", name="b", reinit="create_new")
    for i in range(300):
        a.log({"i": i})
        b.log({"i": i})
    manager = mpbackend.setup().manager
    old = manager.service.pid
    with caplog.at_level(logging.WARNING, logger="mpbackend"):
        a.finish()
        os.kill(old, signal.SIGKILL)
        for i in range(300, 600):
            b.log({"i": i})
        b.flush(timeout=20)
        b.finish()
    assert manager.service.pid != old
    assert not [r for r in caplog.records if "not open" in r.getMessage()], caplog.text
    _, history_a = _stored(a.dir)
    _, history_b = _stored(b.dir)
    assert [row["i"] for row in history_a] == list(range(300))
    assert [row["i"] for row in history_b] == list(range(600))
