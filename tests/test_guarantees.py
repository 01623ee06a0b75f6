"""README's Guarantees: mechanisms behind them that no other test held.

Each test here was proved by switching its mechanism off in a scratch copy of the
package and watching the test fail (and pass again with the mechanism on). Its
docstring names the mechanism it holds. Real processes, real queues, real SQLite
files; nothing under test is mocked. Every wait is bounded, and every process a
test starts is reaped by the test: scripts run in a session of their own and
their whole process group is SIGKILLed in a ``finally`` (conftest's ``Script``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest
from conftest import ROOT, Script, assert_steps, exited, result, run_script, stored, wait_for

import mpbackend

BUFFER = 256 * 1024


# -- helpers -------------------------------------------------------------------


def _continue(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


# -- the training process dies -------------------------------------------------------

DRAIN = """
    import json, os, signal, sys, time
    import mpbackend

    N = int(sys.argv[1])
    run = mpbackend.init(project="drain", settings={"batch_records": 50})
    service = mpbackend.setup().manager.service.pid
    run.log({"i": 0})
    run.flush()
    os.kill(service, signal.SIGSTOP)  # reads nothing: what follows waits in the pipe
    for i in range(1, N):
        run.log({"i": i})
    drained = run._interface.drain(20.0)  # every record is in the pipe
    print("RESULT " + json.dumps({"service": service, "dir": run.dir, "drained": drained}),
          flush=True)
    time.sleep(120)
"""


@pytest.mark.timeout(60)
def test_what_is_in_the_pipe_when_the_training_process_dies_is_stored(tmp_path):
    """Mechanism: the drain (``StreamMux._drain``). The training process fills the
    pipe while its service is stopped, then is SIGKILLed; the service, let go, sees
    the death at once but first stores every record that reached the pipe, then
    marks the run ``crashed`` and exits."""
    n = 10_000
    script = Script(DRAIN, tmp_path, args=(str(n),))
    service = None
    try:
        res = script.result(timeout=30)
        service = res["service"]
        assert res["drained"], "the records did not fit in the pipe"
        os.kill(script.proc.pid, signal.SIGKILL)
        script.wait(10)
        _continue(service)
        assert wait_for(lambda: exited(service), timeout=15), \
            "the service outlived the SIGKILLed training process"
    finally:
        if service is not None:
            _continue(service)
        script.kill_group()
    info, history = stored(res["dir"])
    assert info["state"] == "crashed"
    assert_steps(history)
    assert [row["i"] for row in history] == list(range(n)), \
        f"{n - len(history)} of {n} records in the pipe were lost"


ORPHAN = """
    import json, os, sys, time
    import mpbackend

    run = mpbackend.init(project="orphan")
    service = mpbackend.setup().manager.service.pid
    for i in range(500):
        run.log({"i": i})
    run.flush()
    child = os.fork()
    if child == 0:  # holds rec_q's write end open and writes into it, until killed
        k = 0
        while True:
            run.log({"child": k})
            k += 1
            time.sleep(0.001)
    for i in range(500, 1000):
        run.log({"i": i})
    drained = run._interface.drain(20.0)
    print("RESULT " + json.dumps({"service": service, "child": child, "dir": run.dir,
                                  "drained": drained}), flush=True)
    time.sleep(120)
"""


@pytest.mark.timeout(60)
def test_the_service_ends_the_run_when_the_owner_dies_and_a_child_keeps_writing(tmp_path):
    """Mechanisms: the watchdog (``_watch``) and the bound on the drain
    (``DRAIN_SECONDS``). A forked child holds rec_q open and keeps logging, so the
    pipe never reaches EOF: when the training process is SIGKILLed only the
    watchdog can end the run, and only a bounded drain lets the service exit while
    the child still writes. The owner's rows are all stored, the run is
    ``crashed``, the service exits, and the child lives on (it is not the owner)."""
    script = Script(ORPHAN, tmp_path)
    try:
        res = script.result(timeout=30)
        assert res["drained"]
        child = psutil.Process(res["child"])
        os.kill(script.proc.pid, signal.SIGKILL)
        script.wait(10)
        assert wait_for(lambda: exited(res["service"]), timeout=10), \
            "the service outlived its owner while a child held the queue open"
        assert child.is_running() and child.status() != psutil.STATUS_ZOMBIE
    finally:
        script.kill_group()
    info, history = stored(res["dir"])
    assert info["state"] == "crashed"
    assert_steps(history)
    assert [row["i"] for row in history if "i" in row] == list(range(1000))
    ks = [row["child"] for row in history if "child" in row]
    assert ks == sorted(set(ks))


UNFLUSHED = """
    import json, time
    import mpbackend

    run = mpbackend.init(project="unflushed")
    service = mpbackend.setup().manager.service.pid
    for i in range(100):
        run.log({"i": i})
    print("RESULT " + json.dumps({"service": service, "dir": run.dir}), flush=True)
    time.sleep(120)  # no flush(): the sender thread alone moves the rows to the pipe
"""


@pytest.mark.timeout(60)
def test_rows_logged_a_while_before_a_sigkill_are_stored_without_a_flush(tmp_path):
    """Mechanism: the sender thread's wait (at most ``send_interval``, 50 ms). A
    SIGKILL loses at most the records logged in its last wait: rows logged a
    second before the kill, never flushed, are in the pipe and stored."""
    script = Script(UNFLUSHED, tmp_path)
    try:
        res = script.result(timeout=30)
        time.sleep(1.0)  # 20 of the sender's longest waits
        os.kill(script.proc.pid, signal.SIGKILL)
        script.wait(10)
        assert wait_for(lambda: exited(res["service"]), timeout=10)
    finally:
        script.kill_group()
    info, history = stored(res["dir"])
    assert info["state"] == "crashed"
    assert [row["i"] for row in history] == list(range(100))


@pytest.mark.timeout(60)
def test_the_sender_waits_longer_for_a_slow_loop_and_less_for_a_fast_one(rundir):
    """Mechanism: the sender's adaptive wait (``Interface._send_batches``). A loop
    that logs a row every 10 ms gets its rows sent in few batches, the sender
    waiting up to ``send_interval`` (each wake-up costs the training process two
    GIL hand-overs); a burst brings the wait back to 5 ms, so a fast loop's rows
    leave in large batches as often as before."""
    from mpbackend.user.interface import SHORTEST_SEND

    run = mpbackend.init(project="adapt")
    interface = run._interface
    longest = mpbackend.setup().manager.settings.send_interval
    assert longest > SHORTEST_SEND
    first = interface._seq
    for i in range(40):
        run.log({"i": i})
        time.sleep(0.01)
    run.log({"i": 40})
    assert wait_for(lambda: interface.send_wait == longest, timeout=10)
    # 0.4 s of rows: at 5 ms a wait that would be some 40 batches or more
    assert interface._seq - first <= 20, interface._seq - first
    waits = set()
    for i in range(41, 50041):
        run.log({"i": i})
        if i % 1000 == 0:
            waits.add(interface.send_wait)
    run.flush()
    assert min(waits) == SHORTEST_SEND, waits
    run.finish()
    info, history = stored(run.dir)
    assert [row["i"] for row in history] == list(range(50041))


# -- the service dies ---------------------------------------------------------------


@pytest.mark.timeout(60)
def test_batches_are_let_go_once_the_service_reports_them_committed(rundir):
    """Mechanism: Committed acks (``StreamMux._commit_all`` sends ``m.Committed``;
    the Router hands it to ``Interface.ack``). The batches the training process
    keeps for a replay are let go once the service has committed them, so what it
    keeps is about ``commit_interval`` of logging, not ``buffer_bytes``; and a
    service killed after that still loses no row (the store has them)."""
    run = mpbackend.init(project="acks")
    interface = run._interface
    manager = mpbackend.setup().manager
    for i in range(5000):
        run.log({"i": i})
    run.flush()
    assert wait_for(lambda: interface.unacked() == (), timeout=10), \
        f"{len(interface.unacked())} committed batch(es) are still kept for a replay"
    old = manager.service.pid
    os.kill(old, signal.SIGKILL)
    for i in range(5000, 6000):
        run.log({"i": i})
    run.flush(timeout=30)
    assert manager.service.pid != old
    run.finish()
    info, history = stored(run.dir)
    assert info["state"] == "finished"
    assert [row["i"] for row in history] == list(range(6000))
    assert_steps(history)


@pytest.mark.timeout(60)
def test_an_ack_lets_go_only_the_batches_it_covers(rundir):
    """Mechanism: ``Interface.ack(seq)`` forgets only the batches up to ``seq``.
    A thread logs all along; the service is stopped while batches pile up in the
    pipe, then let go: its first commit reports the batches applied before the
    stop, and it reads the piled-up ones without committing them yet
    (``commit_interval`` is 1 s). It is SIGKILLed then: the piled-up batches,
    out of the pipe and not in the store, are replayed from what the training
    process kept, and no row is lost or stored twice."""
    run = mpbackend.init(project="ack-some", settings={"commit_interval": 1.0})
    interface = run._interface
    manager = mpbackend.setup().manager
    old = manager.service.pid
    stop = threading.Event()
    logged = [0]

    def logger() -> None:
        while not stop.is_set():
            run.log({"i": logged[0]})
            logged[0] += 1
            time.sleep(0.002)

    thread = threading.Thread(target=logger, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: logged[0] > 100, timeout=10)
        os.kill(old, signal.SIGSTOP)
        time.sleep(1.2)  # longer than commit_interval: the service commits as it resumes
        before = len(interface.unacked())
        os.kill(old, signal.SIGCONT)
        wait_for(lambda: len(interface.unacked()) < before, timeout=5, interval=0.001)
        os.kill(old, signal.SIGKILL)
        assert wait_for(lambda: manager.service.pid != old, timeout=30)
        time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=10)
        _continue(old)
    run.flush(timeout=30)
    run.finish()
    info, history = stored(run.dir)
    assert info["state"] == "finished"
    values = [row["i"] for row in history]
    assert values == list(range(logged[0])), \
        f"{logged[0] - len(values)} of {logged[0]} rows lost across the restart"
    assert_steps(history)


@pytest.mark.timeout(60)
def test_a_batch_holds_at_most_batch_records(rundir, monkeypatch):
    """Mechanism: the sender's cap (``Interface._send_batches`` takes at most
    ``batch_records``). While the service is stopped the buffer fills far past a
    batch; once it goes on, the backlog leaves in batches of at most 2,000
    records, so the few batches the service holds in its inbox bound its memory
    (before the cap, one batch took the whole buffer)."""
    from mpbackend.user import interface as module

    sizes: list[int] = []
    dumps = module._dumps_batch

    def counted(batch: tuple) -> bytes:
        sizes.append(len(batch[2]))
        return dumps(batch)

    monkeypatch.setattr(module, "_dumps_batch", counted)
    run = mpbackend.init(project="cap")
    limit = mpbackend.setup().manager.settings.batch_records
    service = mpbackend.setup().manager.service.pid
    os.kill(service, signal.SIGSTOP)
    try:
        for i in range(30_000):
            run.log({"i": i})
        time.sleep(0.3)
    finally:
        _continue(service)
    run.finish()
    assert max(sizes) <= limit < sum(sizes), (max(sizes), limit)
    info, history = stored(run.dir)
    assert [row["i"] for row in history] == list(range(30_000))


MEMORY = """
    import json, sys, psutil, mpbackend

    buffer = 2 << 20
    run = mpbackend.init(project="flat", settings={"buffer_bytes": buffer})
    me = psutil.Process()
    service = me.children(recursive=True)[-1]
    rss = lambda p: p.memory_info().rss / 2**20
    start, marks = rss(me), []
    for s in range(1_000_000):
        run.log({f"m{i}": s * 0.001 + i for i in range(10)})
        if s % 100_000 == 99_999:
            marks.append((rss(me), rss(service)))
    run.finish()
    print("RESULT " + json.dumps({"start": start, "marks": marks, "buffer": buffer / 2**20}))
"""


@pytest.mark.timeout(240)
def test_memory_stays_flat_over_a_million_steps(tmp_path):
    """Mechanism: every bound together (the user-side buffer, the kept batches, the
    batch cap, the commit every 8,192 records). Logging a million steps as fast
    as log() goes, the training process grows by the buffer and the kept batches,
    not by the steps, and the service stays well under 80 MiB; from the second
    100,000 steps on, neither grows (a leak per step would show here)."""
    done = run_script(MEMORY, tmp_path, timeout=220, env={"MPBACKEND_SILENT": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    res = result(done)
    users, services = zip(*res["marks"])
    assert max(users) - res["start"] <= 4 * res["buffer"] + 16, res
    assert max(services) <= 80, res
    assert max(users[2:]) - users[1] <= 8 and max(services[2:]) - services[1] <= 8, res


MANY_RUNS = """
    import json, psutil, mpbackend

    runs = [mpbackend.init(project="many", reinit="create_new") for _ in range(100)]
    for s in range(1024):
        for run in runs:
            run.log({f"m{k}": s + k * 0.5 for k in range(20)})
    for run in runs:
        run.flush()
    service = psutil.Process().children(recursive=True)[-1]
    rss = service.memory_info().rss / 2**20
    for run in runs:
        run.finish()
    print("RESULT " + json.dumps({"rss": rss, "dirs": [run.dir for run in runs]}))
"""


@pytest.mark.timeout(240)
def test_many_open_runs_do_not_hold_a_chunk_of_rows_each(tmp_path):
    """Mechanism: ``OPEN_ROWS`` (``StreamMux._bound_open_rows``). Each run's open
    chunk keeps its rows in memory until it fills (1,024 rows); with 100 runs of
    20 floats a row that would be some 160 MiB in the service. The largest open
    chunks are written early instead, so the service stays small, and every row
    of every run reads back."""
    done = run_script(MANY_RUNS, tmp_path, timeout=220, env={"MPBACKEND_SILENT": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    res = result(done)
    assert res["rss"] < 150, res["rss"]
    for run_dir in res["dirs"][::9]:
        info, history = stored(run_dir)
        assert info["state"] == "finished" and len(history) == 1024
        assert [row["m1"] for row in history] == [s + 0.5 for s in range(1024)]


@pytest.mark.timeout(60)
def test_batches_kept_for_a_replay_are_bounded_by_buffer_bytes(rundir):
    """Mechanism: the bound in ``Interface._keep``. While the service commits
    nothing (SIGSTOP), the batches kept for a replay never hold more than
    ``buffer_bytes`` beyond the newest one, however much reaches the pipe."""
    run = mpbackend.init(project="keep", settings=mpbackend.Settings(
        buffer_bytes=BUFFER, buffer_policy="drop"))
    interface = run._interface
    service = mpbackend.setup().manager.service.pid
    run.log({"i": -1})
    run.flush()
    n = 60_000
    os.kill(service, signal.SIGSTOP)
    try:
        # Paced so that the sender keeps up: the batches fill the pipe (about 1 MiB,
        # four times buffer_bytes) rather than the records being dropped.
        for i in range(n):
            run.log({"i": i})
            if i % 400 == 0:
                time.sleep(0.005)
        time.sleep(0.2)
        kept = interface.unacked()
    finally:
        os.kill(service, signal.SIGCONT)
    assert kept, "nothing was kept for a replay"
    total, newest = sum(map(len, kept)), len(kept[-1])
    assert total <= BUFFER + newest, \
        f"{total} bytes kept for a replay with buffer_bytes={BUFFER}"
    run.finish()
    info, history = stored(run.dir)
    values = [row["i"] for row in history]
    assert values == sorted(set(values))
    assert len(values) - 1 + info["extra"]["dropped_records"] == n


@pytest.mark.timeout(60)
def test_a_flush_the_dead_service_took_with_it_is_asked_again(rundir):
    """Mechanism: the retry in ``Manager.communicate``. A flush pending when the
    service is SIGKILLed is asked again of the new service, returns without an
    error, and when it returns every row logged before it is in the store."""
    run = mpbackend.init(project="retry")
    manager = mpbackend.setup().manager
    router = manager.router
    old = manager.service.pid
    for i in range(100):
        run.log({"i": i})
    run.flush()
    os.kill(old, signal.SIGSTOP)  # the flush below cannot be answered by this one
    outcome: dict = {}
    try:
        for i in range(100, 200):
            run.log({"i": i})

        def flush() -> None:
            try:
                run.flush(timeout=30)
                outcome["ok"] = True
            except BaseException as exc:  # noqa: BLE001 - asserted below
                outcome["error"] = exc

        waiter = threading.Thread(target=flush, daemon=True)
        waiter.start()
        assert wait_for(lambda: router.pending() == 1, timeout=10)
        os.kill(old, signal.SIGKILL)
        waiter.join(timeout=40)
        assert not waiter.is_alive(), "the flush never returned"
    finally:
        _continue(old)
    assert outcome.get("ok"), repr(outcome.get("error"))
    assert manager.service.pid != old
    with mpbackend.RunReader(run.dir) as reader:
        assert [row["i"] for row in reader.history()] == list(range(200))
    run.finish()
    assert stored(run.dir)[0]["state"] == "finished"


# -- bounded memory ----------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_full_buffer_under_block_drops_a_record_after_request_timeout(rundir, caplog):
    """Mechanism: the bound on the wait in ``Interface._make_room``. With
    ``buffer_policy="block"`` and a service that takes nothing (SIGSTOP), a
    ``log()`` into the full buffer waits ``request_timeout``, then drops its record
    with a warning and returns: the loop goes on, every record is stored or
    counted, and the count is stored with the run."""
    caplog.set_level(logging.WARNING, logger="mpbackend")
    run = mpbackend.init(project="block-timeout", settings=mpbackend.Settings(
        buffer_bytes=BUFFER, request_timeout=0.5))
    interface = run._interface
    service = mpbackend.setup().manager.service.pid
    run.log({"i": -1})
    run.flush()
    count = [0]
    stop = threading.Event()

    def produce() -> None:
        i = 0
        while not stop.is_set():
            run.log({"i": i})
            i += 1
            count[0] = i

    producer = threading.Thread(target=produce, daemon=True)
    os.kill(service, signal.SIGSTOP)
    try:
        producer.start()
        assert wait_for(lambda: interface.dropped >= 3, timeout=20), \
            f"log() into a full buffer did not give up (count {count[0]})"
    finally:
        stop.set()
        os.kill(service, signal.SIGCONT)
    producer.join(timeout=10)
    assert not producer.is_alive()
    warned = [r.getMessage() for r in caplog.records if "has not taken records" in
              r.getMessage()]
    assert warned, [r.getMessage() for r in caplog.records]
    dropped = interface.dropped_by.get(run.id, 0)
    assert dropped == interface.dropped
    run.finish()
    info, history = stored(run.dir)
    values = [row["i"] for row in history if row["i"] >= 0]
    assert values == sorted(set(values))
    assert len(values) + dropped == count[0]
    assert info["extra"]["dropped_records"] == dropped


# -- fork hygiene ----------------------------------------------------------------------

FORK_IN_SETUP = """
    import json, os, signal, threading, time
    import psutil
    import mpbackend
    # Imported here first: a module another thread is importing at a fork stays
    # locked in the child (Python's import locks), which is not what this is about.
    import mpbackend.user.init, mpbackend.user.manager, mpbackend.user.run
    import multiprocessing.popen_spawn_posix
    from mpbackend.user import launcher, setup as setup_module

    def held():
        \"\"\"Another thread holds setup's lock.\"\"\"
        if setup_module._lock.acquire(blocking=False):
            setup_module._lock.release()
            return False
        return True

    def inside_setup():
        # The other thread is in setup(), past starting the service (it waits for Ready).
        return held() and bool(psutil.Process().children()) and not launcher._start_lock.locked()

    thread = threading.Thread(target=mpbackend.setup)
    thread.start()
    deadline = time.monotonic() + 30
    while not inside_setup() and time.monotonic() < deadline:
        time.sleep(0.0005)
    before = inside_setup()
    pid = os.fork()
    if pid == 0:  # a child of its own: its own run, its own service
        code = 1
        try:
            run = mpbackend.init(project="child")
            for i in range(10):
                run.log({"i": i})
            run.finish()
            with open("child.json", "w") as f:
                json.dump({"dir": run.dir, "state": run.state}, f)
            mpbackend.teardown()
            code = 0
        finally:
            os._exit(code)
    caught = before and held()  # held before the fork and after it: held at it
    thread.join(60)
    deadline = time.monotonic() + 20
    code = "stuck"
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            break
        time.sleep(0.01)
    if code == "stuck":
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    run = mpbackend.init(project="parent")
    run.log({"p": 1})
    run.finish()
    print("RESULT " + json.dumps({"caught": caught, "code": code, "child_pid": pid}),
          flush=True)
"""


@pytest.mark.timeout(90)
def test_a_child_forked_while_another_thread_sets_up_can_log(tmp_path):
    """Mechanism: the fork hook of ``mpbackend.user.setup`` (its lock made anew in
    the child). A process forks while another of its threads is inside
    ``setup()``; the child, which inherited the lock held, still sets up a
    service of its own, logs a run and finishes it."""
    script = Script(FORK_IN_SETUP, tmp_path)
    try:
        res = script.result(timeout=70)
        script.wait(20)
    finally:
        script.kill_group()
    assert res["caught"], "the fork did not happen inside the other thread's setup()"
    assert res["code"] == 0, f"the child ended {res['code']}; stderr:\n{script.stderr()}"
    child = json.loads((tmp_path / "child.json").read_text())
    assert child["state"] == "finished"
    info, history = stored(child["dir"])
    assert info["state"] == "finished"
    assert [row["i"] for row in history] == list(range(10))


# -- live readers ------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_live_reader_sees_rows_without_a_flush(rundir):
    """Mechanism: the periodic commit (``StreamMux.run`` commits every
    ``commit_interval``). Rows logged and never flushed reach the store while the
    run is open, so a reader in another process sees them."""
    run = mpbackend.init(project="live")
    for i in range(300):
        run.log({"i": i})
    code = ("import sys, mpbackend\n"
            "with mpbackend.RunReader(sys.argv[1]) as r:\n"
            "    print(r.row_count())\n")

    def seen() -> int:
        proc = subprocess.run([sys.executable, "-c", code, run.dir],
                              env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True,
                              text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        return int(proc.stdout)

    assert wait_for(lambda: seen() == 300, timeout=15, interval=0.1), \
        f"a reader saw {seen()} of 300 rows logged without a flush"
    with mpbackend.RunReader(run.dir) as reader:
        assert reader.info()["state"] == "running"
    run.finish()


@pytest.mark.timeout(60)
def test_a_fast_run_commits_before_commit_interval(rundir):
    """Mechanism: ``COMMIT_RECORDS`` (``StreamMux.run``). With a commit_interval of a
    minute, 20,000 rows logged without a flush still reach a live reader within
    seconds: a commit is due every 8,192 records, so what waits for one in the
    service's memory (and in the training process's kept batches) stays bounded."""
    from mpbackend.service.mux import COMMIT_RECORDS

    run = mpbackend.init(project="live-fast", settings={"commit_interval": 60.0})
    for i in range(20000):
        run.log({"i": i})

    def seen() -> int:
        with mpbackend.RunReader(run.dir) as reader:
            return reader.row_count()

    assert wait_for(lambda: seen() >= COMMIT_RECORDS, timeout=15, interval=0.1), seen()
    run.finish()


def _wake_ups(pid: int) -> int:
    """Voluntary context switches of every thread of ``pid``: how often one slept and woke."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as status:
                for line in status:
                    if line.startswith("voluntary_ctxt_switches"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


@pytest.mark.timeout(60)
def test_a_quiet_run_wakes_the_service_seldom(rundir):
    """Mechanism: the main loop sleeps ``IDLE_WAIT`` while nothing is to be committed,
    and the watchdog's pidfd wait is as long (``StreamMux.run``, ``_watch``). Before,
    both woke ten to twenty times a second for nothing. (System metrics sampling is
    off here: it wakes the service on its own interval, by design.)"""
    run = mpbackend.init(project="quiet", settings={"system_interval": 0})
    service = mpbackend.setup().manager.service.pid
    run.log({"x": 1.0})
    run.flush()
    time.sleep(1.0)  # the last commit's wake-ups are over
    before = _wake_ups(service)
    time.sleep(3.0)
    woke = _wake_ups(service) - before
    try:  # without a pidfd (Linux < 5.3) the watchdog polls, by design, 10 times a second
        os.close(os.pidfd_open(os.getpid()))
        polls = 0
    except (AttributeError, OSError):
        polls = 30
    assert woke <= 15 + polls, f"the service woke {woke} times in 3 s of a quiet run"
    run.log({"x": 2.0})  # and it still takes rows at once
    run.finish()
    info, history = stored(run.dir)
    assert [row["x"] for row in history] == [1.0, 2.0]


# -- signals ---------------------------------------------------------------------------

OWN_SIGTERM = """
    import json, signal, time
    import mpbackend

    got = []
    signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    run = mpbackend.init(project="own-handler")
    print("START", flush=True)
    i = 0
    deadline = time.monotonic() + 30
    while not got and time.monotonic() < deadline:
        run.log({"i": i})
        i += 1
        time.sleep(0.001)
    run.log({"after": 1})  # the script goes on after its own handler ran
    run.finish()
    print("RESULT " + json.dumps({"dir": run.dir, "got": got, "state": run.state}),
          flush=True)
"""


@pytest.mark.timeout(60)
def test_a_script_with_its_own_sigterm_handler_keeps_it(tmp_path):
    """Mechanism: ``_hook_sigterm`` installs mpbackend's SIGTERM handler only where
    the script has none. A script's own handler runs, the script goes on, and its
    run ends ``finished`` with every row."""
    script = Script(OWN_SIGTERM, tmp_path)
    try:
        script.wait_line("START", timeout=30)
        time.sleep(0.1)
        os.kill(script.proc.pid, signal.SIGTERM)
        code = script.wait(30)
        res = script.result(timeout=1)
    finally:
        script.kill_group()
    assert code == 0, script.stderr()
    assert res["got"] == [signal.SIGTERM] and res["state"] == "finished"
    info, history = stored(res["dir"])
    assert info["state"] == "finished"
    assert_steps(history)
    assert history[-1]["after"] == 1
    assert [row["i"] for row in history[:-1]] == list(range(len(history) - 1))



PENDING_ACROSS_RESTART = """
    import json, os, signal, time
    import mpbackend

    run = mpbackend.init(project="pend", settings={"quiet": True})
    manager = mpbackend.setup().manager
    for i in range(5):
        run.log({"loss": float(i)}, step=i)  # wandb style: step 4 stays pending
    run.log({"a": 1.0})  # merges into the pending row of step 4 and commits it
    run.log({"b": 2.0}, commit=False)  # pending: the row of step 5
    run.flush()
    deadline = time.monotonic() + 10
    while manager.interface.unacked() and time.monotonic() < deadline:
        time.sleep(0.01)  # the service reported everything committed: nothing to replay
    old = manager.service.pid
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while manager.service.pid == old and time.monotonic() < deadline:
        time.sleep(0.01)
    run.log({"c": 3.0})  # completes the pending row of step 5
    run.finish()
    with mpbackend.RunReader(run.dir) as reader:
        rows = [{k: v for k, v in r.items() if not k.startswith("_") or k == "_step"}
                for r in reader.history()]
    print("RESULT " + json.dumps({"rows": rows, "restarted": manager.service.pid != old}))
"""


@pytest.mark.timeout(90)
def test_a_pending_row_survives_a_service_restart(tmp_path):
    """A row not committed yet when the service dies (``log(..., commit=False)``, or
    ``step=``) is kept with the run's stored state at each commit, with the
    replay mark, so the new service goes on with it: no step is lost."""
    from conftest import Script

    script = Script(PENDING_ACROSS_RESTART, tmp_path)
    try:
        out = script.outcome(80)
    finally:
        script.kill_group()
    assert out["restarted"]
    assert out["rows"] == [{"_step": i, "loss": float(i)} for i in range(4)] + [
        {"_step": 4, "loss": 4.0, "a": 1.0}, {"_step": 5, "b": 2.0, "c": 3.0}], out["rows"]


START_LOCK_AT_FORK = """
    import json, os, threading, time
    import mpbackend
    from mpbackend.user import launcher
    import mpbackend.user.init, mpbackend.user.manager, mpbackend.user.run  # no import in flight

    held, release = threading.Event(), threading.Event()

    def starting():  # a thread inside Service.launch, holding the start lock
        with launcher._start_lock:
            held.set()
            release.wait(30)

    threading.Thread(target=starting).start()
    held.wait(10)
    pid = os.fork()
    if pid == 0:
        run = mpbackend.init(project="child", settings={"quiet": True})
        run.log({"x": 1.0})
        run.finish()
        os._exit(0 if run.state == "finished" else 1)
    deadline, code = time.monotonic() + 40, None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            break
        time.sleep(0.05)
    release.set()
    print("RESULT " + json.dumps({"code": code}))
"""


@pytest.mark.timeout(90)
def test_a_child_forked_while_another_thread_starts_a_service_can_start_its_own(tmp_path):
    """Fork hygiene of the launcher: its start lock is made anew in a forked child,
    so a child forked while another thread of the parent held it starts its own
    service instead of waiting for ever (the parent's thread still holds it)."""
    from conftest import Script

    script = Script(START_LOCK_AT_FORK, tmp_path)
    try:
        out = script.outcome(80)
    finally:
        script.kill_group()
    assert out["code"] == 0, out
