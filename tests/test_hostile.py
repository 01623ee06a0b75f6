"""The fault suite, second round: values, processes, files and signals an adversarial
user brings, each injected for real (real scripts, real signals, real files).

Each test here but four failed on the code before the fix it holds (checked
against 2810e54, the commit before this suite). The four hold mechanisms that
already held there or that the fixes brought in: a str-subclass key on the fast
path (the sender's pickler), two opens of a run in one service, the exit path
bounded by exit_timeout with the service stopped, and no row stored twice when
the service is killed during finish() (fixed in 1d59b27).
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
from conftest import Script, assert_steps, result, run_script, stored

import mpbackend
from mpbackend.shared import messages as m

# -- values the service could not store: refused or made plain at the call ---------

POISON = """
    import json, threading, time
    import mpbackend

    class RaisesFloat:
        def __float__(self):
            raise RuntimeError("no float")

    class RaisesStr:
        def __str__(self):
            raise RuntimeError("no str")

    class Blocks:
        def __float__(self):
            threading.Event().wait()  # would hang whoever calls it

    class BadReduce:
        def __reduce__(self):
            raise RuntimeError("no pickle")

    run = mpbackend.init(project="p", settings={"max_restarts": 3})
    service = mpbackend.setup().manager.service.pid
    refused = {}
    for i in range(10):
        run.log({"i": float(i)})
    for name, value in [("rf", RaisesFloat()), ("rs", RaisesStr()), ("br", BadReduce())]:
        try:
            run.log({name: value})
        except TypeError as exc:
            refused[name] = str(exc)
    for bad in [{"k\\ud800": 1.0}, {"_step": 5}, {"_runtime": 1.0}]:
        try:
            run.log(bad)
        except ValueError as exc:
            refused[next(iter(bad))] = str(exc)
    try:
        run.config.update({"c": RaisesStr()})
    except TypeError as exc:
        refused["config"] = str(exc)
    # A blocking __float__ blocks the caller (its own thread), never the service.
    blocked = threading.Thread(target=run.log, args=({"blocks": Blocks()},), daemon=True)
    blocked.start()
    blocked.join(0.5)
    for i in range(10, 20):
        run.log({"i": float(i)})
    run.flush(timeout=10)
    run.finish()
    same = mpbackend.setup().manager.service.pid == service
    print("RESULT " + json.dumps({"dir": run.dir, "state": run.state, "refused": refused,
                                  "same": same, "blocked": blocked.is_alive()}))
"""


@pytest.mark.timeout(60)
def test_poison_values_are_refused_at_the_call_and_the_service_never_runs_them(tmp_path):
    """A value whose __float__ raises, or an arbitrary object (whatever its __str__
    or pickling does), gets a TypeError at log() naming its key; a lone-surrogate
    key or a reserved key a ValueError; a blocking __float__ blocks only the caller.
    The service is never restarted and every other row is kept, the run finished."""
    out = result(run_script(POISON, tmp_path, timeout=50))
    refused = out["refused"]
    assert set(refused) == {"rf", "rs", "br", "k\ud800", "_step", "_runtime", "config"}
    assert "'rf'" in refused["rf"] and "no float" in refused["rf"]
    # Its __str__ is never called: an arbitrary object has no stored form.
    assert "'rs'" in refused["rs"] and "RaisesStr has no stored form" in refused["rs"]
    assert "'br'" in refused["br"]
    assert "surrogate" in refused["k\ud800"]
    assert "step=" in refused["_step"]
    assert out["blocked"] and out["same"] and out["state"] == "finished"
    info, history = stored(out["dir"])
    assert info["state"] == "finished"
    assert [r["i"] for r in history] == [float(i) for i in range(20)]
    assert info["extra"].get("service_error_count", 0) == 0


def test_the_queues_refuse_any_global_but_mpbackends_messages():
    """What the service reads from a queue is data: a pickle naming a user class (or
    os.system) is refused before anything in it is called."""
    assert m.loads(pickle.dumps((m.REQUEST, "u", m.Flush("r")), 5)) == (
        m.REQUEST, "u", m.Flush("r"))
    evil = pickle.dumps((m.CONFIG, "r", {"x": os.getcwd}), 5)
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        m.loads(evil)


def test_a_str_subclass_key_the_run_knows_goes_as_plain_text(rundir):
    """An Enum member used as a key equal to one already logged passes the fast path;
    the sender sends it as plain text, so the service (which resolves no user
    class) stores the row."""
    import enum

    class Key(str, enum.Enum):
        loss = "loss"

    run = mpbackend.init(project="p", id="enumkeys")
    run.log({"loss": 1.0})
    run.log({Key.loss: 2.0})
    run.finish(quiet=True)
    _, history = stored(run.dir)
    assert [r["loss"] for r in history] == [1.0, 2.0]


def test_an_int_too_long_for_text_does_not_stop_the_run(rundir):
    """A 5,000-digit int (logged, and in config) is stored as an infinity: before,
    the summary could not be written and the run stayed ``running`` without rows."""
    run = mpbackend.init(project="p", id="bigint")
    run.log({"a": 1.0})
    run.log({"x": 10**5000})
    run.config.update({"c": -(10**5000)})
    run.log({"a": 2.0})
    run.finish(quiet=True)
    info, history = stored(run.dir)
    assert info["state"] == "finished" and len(history) == 3
    assert history[1]["x"] == float("inf") and info["config"]["c"] == float("-inf")


def test_init_refuses_names_the_store_cannot_keep(rundir):
    with pytest.raises(ValueError, match="surrogate"):
        mpbackend.init(project="p", id="sur", name="a\ud800")
    with pytest.raises(TypeError, match="notes"):
        mpbackend.init(project="p", id="sur", notes=42)  # type: ignore[arg-type]
    run = mpbackend.init(project="p", id="sur")  # the id is still free
    run.finish(quiet=True)
    assert stored(run.dir)[0]["state"] == "finished"


# -- one writer per run ---------------------------------------------------------

HOLDER = """
    import sys, time
    import mpbackend
    run = mpbackend.init(project="p", id="same", resume="allow")
    for i in range(50):
        run.log({"a": float(i)})
    run.flush()
    print("HOLDING", flush=True)
    time.sleep(float(sys.argv[1]))
    for i in range(50, 60):
        run.log({"a": float(i)})
    run.finish()
"""

SECOND = """
    import json
    import mpbackend
    try:
        run = mpbackend.init(project="p", id="same", resume="allow")
    except Exception as exc:
        print("RESULT " + json.dumps({"error": type(exc).__name__, "text": str(exc)}))
    else:
        run.log({"b": 1.0})
        run.finish()
        print("RESULT " + json.dumps({"error": None, "step": run.step}))
"""


@pytest.mark.timeout(90)
def test_a_second_process_on_a_live_run_gets_a_usage_error_naming_the_holder(tmp_path):
    """Two processes resuming one run: the second gets ``UsageError: run X is in use
    by pid P on host H`` and writes nothing; the first's rows are all kept. After
    the holder is SIGKILLed (its lock is stale), a new process takes the run over."""
    holder = Script(HOLDER, tmp_path, args=("30",))
    try:
        holder.wait_line("HOLDING", 30)
        second = result(run_script(SECOND, tmp_path, timeout=40, name="second.py"))
        assert second["error"] == "UsageError"
        assert f"in use by pid {holder.proc.pid} on host" in second["text"]
    finally:
        holder.kill_group()  # the holder and its service die: the lock is stale
    run_dir = tmp_path / "mpruns" / "p" / "same"
    info, history = stored(run_dir)
    assert [r["a"] for r in history] == [float(i) for i in range(50)]
    assert not any("b" in r for r in history)
    taken = result(run_script(SECOND, tmp_path, timeout=40, name="third.py"))
    assert taken["error"] is None and taken["step"] == 51
    assert stored(run_dir)[0]["state"] == "finished"


def test_two_opens_of_one_run_in_one_service_conflict(rundir):
    run = mpbackend.init(project="p", id="twice")
    with pytest.raises((ValueError, mpbackend.UsageError)):
        mpbackend.init(project="p", id="twice", resume="allow", reinit="create_new")
    run.log({"a": 1.0})
    run.finish(quiet=True)
    assert stored(run.dir)[0]["state"] == "finished"


# -- the run's files ------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_run_directory_deleted_while_live_is_written_anew_with_every_row(rundir, caplog):
    run = mpbackend.init(project="p", id="deleted")
    for i in range(100):
        run.log({"a": float(i)})
    run.flush()
    shutil.rmtree(os.path.dirname(run.dir))
    for i in range(100, 150):
        run.log({"a": float(i)})
    with caplog.at_level("WARNING", logger="mpbackend"):
        run.flush()
        run.finish(quiet=True)
    assert any("deleted while the run was live" in r.getMessage() for r in caplog.records)
    info, history = stored(run.dir)
    assert info["state"] == "finished"
    assert [r["a"] for r in history] == [float(i) for i in range(150)]
    assert "run.lock" in os.listdir(run.dir)


def test_a_database_replaced_under_a_live_run_is_left_alone_and_told(rundir, caplog):
    """Another file put at ``run.db`` while the run is live is not overwritten; the user
    is told, once, that this run's later rows are not kept."""
    run = mpbackend.init(project="p", id="replaced")
    run.log({"a": 1.0})
    run.flush()
    other = os.path.join(run.dir, "other.db")
    sqlite3.connect(other).execute("CREATE TABLE mine (x)").connection.commit()
    os.replace(other, os.path.join(run.dir, "run.db"))
    with caplog.at_level("WARNING", logger="mpbackend"):
        run.log({"a": 2.0})
        run.flush()
        run.log({"a": 3.0})
        run.finish(quiet=True)
    told = [r.getMessage() for r in caplog.records if "replaced by another file" in
            r.getMessage()]
    assert len(told) == 1, told
    conn = sqlite3.connect(os.path.join(run.dir, "run.db"))
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["mine"]
    conn.close()


def test_a_zero_byte_database_from_an_early_kill_does_not_block_the_id(rundir):
    """An older version killed while SQLite made ``run.db`` left a 0-byte file: the
    id is usable again with resume='allow' (nothing was in it)."""
    run_dir = os.path.join(str(rundir), "p", "zero")
    os.makedirs(run_dir)
    open(os.path.join(run_dir, "run.db"), "wb").close()
    run = mpbackend.init(project="p", id="zero", resume="allow")
    run.log({"a": 1.0})
    run.finish(quiet=True)
    info, history = stored(run.dir)
    assert info["state"] == "finished" and history[0]["a"] == 1.0


KILL_EARLY = """
    import os, signal, sys
    import mpbackend
    mpbackend.setup()
    service = mpbackend.setup().manager.service.pid
    import threading, time
    def kill():
        time.sleep(float(sys.argv[1]))
        os.kill(service, signal.SIGKILL)
    threading.Thread(target=kill, daemon=True).start()
    try:
        mpbackend.init(project="p", id="early", settings={"max_restarts": 0})
    except Exception:
        pass
    os._exit(0)
"""


@pytest.mark.timeout(120)
def test_a_service_killed_while_it_makes_the_database_never_leaves_it_without_tables(
        tmp_path):
    """SIGKILL of the service at moments around the database's creation: afterwards
    ``run.db`` is absent or a whole database, never a file without tables, and the
    id can be resumed."""
    for i, delay in enumerate([0.0, 0.001, 0.002, 0.003, 0.005, 0.008, 0.012, 0.02, 0.03]):
        where = tmp_path / str(i)
        where.mkdir()
        subprocess.run([sys.executable, "-c", textwrap.dedent(KILL_EARLY), str(delay)],
                       cwd=where, env={**os.environ, "MPBACKEND_DIR": str(where / "runs")},
                       capture_output=True, timeout=40)
        db = where / "runs" / "p" / "early" / "run.db"
        if db.exists():
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            conn.close()
            assert {"meta", "run", "history_chunk"} <= tables, (delay, tables)
        resumed = run_script("""
            import json, mpbackend
            run = mpbackend.init(project="p", id="early", resume="allow")
            run.log({"a": 1.0})
            run.finish()
            print("RESULT " + json.dumps({"state": run.state}))
        """, where, timeout=40, env={"MPBACKEND_DIR": str(where / "runs")})
        assert result(resumed)["state"] == "finished", resumed.stderr


def test_a_kill_while_the_database_is_built_leaves_no_run_db(tmp_path):
    """``store.files.create``: the process is SIGKILLed after the tables are made and
    before the run row is written: no ``run.db`` exists afterwards (the half-built
    file has a temporary name), so the id is not left holding an empty run."""
    path = tmp_path / "run.db"
    code = textwrap.dedent(f"""
        import os, signal
        from mpbackend.store import files, schema
        def build(conn):
            conn.executescript(schema.SCHEMA)
            os.kill(os.getpid(), signal.SIGKILL)
        files.create({str(path)!r}, build, lambda p: schema.connect(p, readonly=False))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not path.exists()
    assert any(p.name.startswith("run.db.new-") for p in tmp_path.iterdir())


def test_the_store_does_not_follow_links_out_of_dir(rundir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (rundir / "p").mkdir(parents=True)
    os.symlink(outside, rundir / "p" / "linked")
    with pytest.raises(mpbackend.StoreError, match="symbolic link"):
        mpbackend.init(project="p", id="linked")
    (rundir / "p" / "dangling").mkdir()
    os.symlink(tmp_path / "nowhere.db", rundir / "p" / "dangling" / "run.db")
    with pytest.raises(mpbackend.StoreError, match="symbolic link"):
        mpbackend.init(project="p", id="dangling")
    assert list(outside.iterdir()) == [] and not (tmp_path / "nowhere.db").exists()


# -- signals and exits ----------------------------------------------------------

WITH_BLOCK = """
    import json, os, signal, sys, time
    import mpbackend
    sig = getattr(signal, sys.argv[1])
    with mpbackend.init(project="p", id="blk") as run:
        run.log({"a": 1.0})
        run.flush()
        print("READY", flush=True)
        time.sleep(30)
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("sig,code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_inside_a_with_block_stores_interrupted_and_its_code(tmp_path, sig, code):
    script = Script(WITH_BLOCK, tmp_path, args=(sig,))
    try:
        script.wait_line("READY", 30)
        os.kill(script.proc.pid, getattr(signal, sig))
        script.wait(30)
    finally:
        script.kill_group()
    info, history = stored(tmp_path / "mpruns" / "p" / "blk")
    assert (info["state"], info["exit_code"]) == ("interrupted", code), script.stderr()
    assert len(history) == 1


SIGALRM_LOG = """
    import json, signal, time
    import mpbackend
    run = mpbackend.init(project="p", id="alarm")
    ticks = []
    def progress(signum, frame):
        # A progress hook: logs from the signal handler, with a long text (the
        # interface's locked path) so it can land inside the main thread's lock.
        run.log({"tick": float(len(ticks)), "note": "x" * 600})
        ticks.append(1)
    signal.signal(signal.SIGALRM, progress)
    signal.setitimer(signal.ITIMER_REAL, 0.005, 0.005)
    deadline = time.monotonic() + 3
    n = 0
    while time.monotonic() < deadline:
        run.log({"i": float(n), "text": "y" * 600})
        n += 1
    signal.setitimer(signal.ITIMER_REAL, 0, 0)
    run.finish()
    print("RESULT " + json.dumps({"dir": run.dir, "n": n, "ticks": len(ticks)}))
"""


@pytest.mark.timeout(60)
def test_log_from_a_signal_handler_never_deadlocks(tmp_path):
    out = result(run_script(SIGALRM_LOG, tmp_path, timeout=45))
    info, history = stored(out["dir"])
    assert info["state"] == "finished"
    assert len(history) == out["n"] + out["ticks"]
    assert_steps(history)


DOUBLE_CTRL_C = """
    import os, signal, sys, threading, time
    import mpbackend
    run = mpbackend.init(project="p", id="twice", settings={"exit_timeout": 8,
                                                             "commit_interval": 30})
    for i in range(30000):
        run.log({"a": float(i), "b": float(i)})
    gap = float(sys.argv[1])
    def press():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(gap)  # the exit hook is running now (a daemon thread runs on)
        for _ in range(int(sys.argv[2])):  # and again, every sys.argv[3] s
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(float(sys.argv[3]))
    threading.Thread(target=press, daemon=True).start()
    time.sleep(30)
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("gap,more,every", [(0.01, 1, 0.01), (0.03, 1, 0.01),
                                             (0.06, 1, 0.01), (0.01, 40, 0.01),
                                             (0.005, 300, 0.002)])
def test_ctrl_c_twice_ends_the_run_within_exit_timeout(tmp_path, gap, more, every):
    """The second Ctrl-C (or a burst of them) lands in the exit hook: it is held back
    until the hook is done (one before the hold-back is followed by the hook again,
    as a multiprocessing finalizer), so the run ends ``interrupted`` with every
    row, within ``exit_timeout`` (before, the hook was abandoned and the process
    waited out the service's 10 s SIGTERM grace)."""
    script = Script(DOUBLE_CTRL_C, tmp_path, args=(str(gap), str(more), str(every)))
    started = time.monotonic()
    try:
        script.wait(40)
    finally:
        script.kill_group()
    took = time.monotonic() - started
    info, history = stored(tmp_path / "mpruns" / "p" / "twice")
    assert info["state"] == "interrupted", script.stderr()
    assert len(history) == 30000
    assert took < 8, took


STOPPED_EXIT = """
    import os, signal, time
    import mpbackend
    run = mpbackend.init(project="p", id="stopped", settings={
        "buffer_bytes": 65536, "buffer_policy": "drop", "request_timeout": 60,
        "exit_timeout": 3})
    service = mpbackend.setup().manager.service.pid
    os.kill(service, signal.SIGSTOP)
    for i in range(3000):
        run.log({"a": float(i), "text": "z" * 600})  # pipe and buffer fill; then dropped
    print("EXITING", flush=True)
"""


@pytest.mark.timeout(90)
def test_the_exit_path_is_bounded_by_exit_timeout_with_the_buffer_full(tmp_path):
    """With the service stopped (SIGSTOP) and the buffer full at exit, the process
    still ends within about exit_timeout (3 s), not request_timeout (60 s) per
    request."""
    script = Script(STOPPED_EXIT, tmp_path)
    try:
        script.wait_line("EXITING", 60)
        started = time.monotonic()
        script.wait(50)
        took = time.monotonic() - started
    finally:
        for proc in psutil.process_iter():
            try:
                if proc.status() == psutil.STATUS_STOPPED:
                    proc.send_signal(signal.SIGCONT)
            except psutil.Error:
                pass
        script.kill_group()
    assert took < 3 + 4, (took, script.stderr())


POOL = """
    import json, multiprocessing as mp, sys
    import mpbackend

    def init_worker(run):
        global RUN
        RUN = run

    def task(i):
        for j in range(20):
            RUN.log({"task": float(i), "j": float(j)})
        return i

    if __name__ == "__main__":
        run = mpbackend.init(project="p", id="pool")
        ctx = mp.get_context("fork")
        with ctx.Pool(4, initializer=init_worker, initargs=(run,)) as pool:
            done = pool.map(task, range(40))
        run.finish()
        print("RESULT " + json.dumps({"dir": run.dir, "done": len(done)}))
"""


@pytest.mark.timeout(150)
def test_a_pool_with_the_run_in_its_initializer_keeps_every_row_and_never_hangs(tmp_path):
    """``with Pool(initializer=..., initargs=(run,))``: Pool.__exit__ terminates the
    workers (SIGTERM). A worker writes its buffered rows first and then dies of the
    signal (the inherited handler raises nothing a fork callback could swallow),
    so no row is lost and the pool never hangs."""
    for attempt in range(6):
        where = tmp_path / str(attempt)
        where.mkdir()
        proc = run_script(POOL, where, timeout=60)
        out = result(proc)
        assert out["done"] == 40
        info, history = stored(out["dir"])
        assert len(history) == 40 * 20, (attempt, len(history))
        assert info["state"] == "finished"


SWALLOWER = """
    import json, multiprocessing as mp, time
    import mpbackend

    def worker(run):
        for i in range(100):
            run.log({"w": float(i)})
        while True:  # a worker loop that survives any exception (SystemExit too)
            try:
                time.sleep(0.05)
            except BaseException:
                pass

    if __name__ == "__main__":
        run = mpbackend.init(project="p", id="swallow")
        p = mp.get_context("fork").Process(target=worker, args=(run,))
        p.start()
        time.sleep(1.0)
        p.terminate()
        p.join(10)
        code = p.exitcode
        if code is None:
            p.kill()
            p.join()
        run.finish()
        print("RESULT " + json.dumps({"dir": run.dir, "code": code}))
"""


@pytest.mark.timeout(60)
def test_a_terminated_child_dies_of_sigterm_even_if_it_swallows_exceptions(tmp_path):
    """A forked child inherits mpbackend's SIGTERM handler; in a child it raises
    nothing (before, its SystemExit could be swallowed, by a broad ``except`` or
    inside an at-fork callback, and the child outlived ``terminate()``): it dies of
    the signal, after its rows reached the service."""
    out = result(run_script(SWALLOWER, tmp_path, timeout=50))
    assert out["code"] == -signal.SIGTERM
    _, history = stored(out["dir"])
    assert [r["w"] for r in history] == [float(i) for i in range(100)]


LOST_SIGTERM = """
    import json, multiprocessing as mp, signal, sys, threading, time
    import mpbackend

    def lose_sigterm():
        # SIGTERM caught in this thread: Python leaves its handler to the main thread,
        # blocked in C for good (a Pool worker taking the task queue's lock that
        # Pool.terminate() holds), which never runs it. Here deterministically; in a
        # Pool the signal lands that way now and then, in the main thread itself.
        time.sleep(0.3)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

    def worker(run, lock, rows):
        for i in range(rows):
            run.log({"w": float(i)})
        threading.Thread(target=lose_sigterm).start()
        lock.acquire()

    if __name__ == "__main__":
        rows = int(sys.argv[1])
        run = mpbackend.init(project="p", id="lost")
        ctx = mp.get_context("fork")
        lock = ctx.Lock()
        lock.acquire()
        p = ctx.Process(target=worker, args=(run, lock, rows))
        p.start()
        p.join(8)
        code = p.exitcode
        if code is None:
            p.kill()
            p.join()
        run.finish()
        print("RESULT " + json.dumps({"dir": run.dir, "code": code}))
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("rows", [100, 0])
def test_a_child_dies_of_a_sigterm_its_main_thread_never_handles(tmp_path, rows):
    """The SIGTERM handler runs only in the main thread; a child whose main thread
    is blocked in C when the signal comes never runs it. With records (100) its
    sender sees the signal on the wakeup fd, writes them and kills the child; with
    none (0) the child has the default disposition and dies at once."""
    script = LOST_SIGTERM.replace('int(sys.argv[1])', str(rows))
    out = result(run_script(script, tmp_path, timeout=50))
    assert out["code"] == -signal.SIGTERM
    _, history = stored(out["dir"])
    assert [r["w"] for r in history] == [float(i) for i in range(rows)]


POOL_AT_ONCE = """
    import json, multiprocessing as mp
    import mpbackend

    def init_worker(run):
        global RUN
        RUN = run

    if __name__ == "__main__":
        run = mpbackend.init(project="p", id="at-once")
        ctx = mp.get_context("fork")
        for _ in range(10):
            with ctx.Pool(8, initializer=init_worker, initargs=(run,)):
                pass  # terminated at once: some workers are still being forked
        run.finish()
        print("RESULT " + json.dumps({"pools": 10}))
"""


@pytest.mark.timeout(60)
def test_a_pool_terminated_as_it_starts_never_hangs(tmp_path):
    """``terminate()`` right after ``Pool()`` SIGTERMs workers that may still be being
    forked. One the signal reaches before Python's own after-fork code has run would
    forget it (that code clears the flags a signal left) and outlive terminate(), and
    the pool would join it for ever: SIGTERM is blocked across the fork instead."""
    assert result(run_script(POOL_AT_ONCE, tmp_path, timeout=45)) == {"pools": 10}


SPAWN_CHILD = """
    import json, multiprocessing as mp
    import mpbackend

    def child(dir):
        run = mpbackend.init(project="p", id="spawned", dir=dir)
        for i in range(100):
            run.log({"a": float(i)})
        # no finish(): the child's exit must finish it, before multiprocessing
        # terminates its daemonic children (the service)

    if __name__ == "__main__":
        import os
        p = mp.get_context("spawn").Process(target=child, args=(os.environ["MPBACKEND_DIR"],))
        p.start()
        p.join(60)
        print("RESULT " + json.dumps({"code": p.exitcode}))
"""


@pytest.mark.timeout(90)
def test_a_spawned_child_that_opens_a_run_finishes_it_at_its_exit(tmp_path):
    proc = run_script(SPAWN_CHILD, tmp_path, timeout=80)
    assert result(proc)["code"] == 0, proc.stderr
    info, history = stored(tmp_path / "mpruns" / "p" / "spawned")
    assert info["state"] == "finished", proc.stderr
    assert len(history) == 100
    # Not stopped under it and restarted (a warning, and 10 s of SIGTERM grace).
    assert "mpbackend:" not in proc.stderr and "KeyError" not in proc.stderr, proc.stderr



# -- restarts -------------------------------------------------------------------

KILL_REPLACEMENT = """
    import json, os, signal, sys, time
    import psutil
    import mpbackend

    text = "t" * int(sys.argv[1])
    run = mpbackend.init(project="p", id="replace", settings={
        "max_restarts": 3, "request_timeout": 30, "start_timeout": 20})
    manager = mpbackend.setup().manager
    first = manager.service.pid
    for i in range(100):
        run.log({"i": float(i)})
    run.flush()
    os.kill(first, signal.SIGSTOP)  # nothing more is committed: all of it is kept to replay
    for i in range(100, 300):
        run.log({"i": float(i), "text": text})
    time.sleep(0.2)  # the sender writes what fits in the pipe
    me = psutil.Process()
    os.kill(first, signal.SIGKILL)
    # The replacement: killed as soon as it exists, before it can say it is ready.
    deadline = time.monotonic() + 20
    killed = None
    while killed is None and time.monotonic() < deadline:
        for child in me.children():
            if child.pid != first and "resource_tracker" not in " ".join(child.cmdline()):
                try:
                    if child.status() != psutil.STATUS_ZOMBIE:
                        child.kill()
                        killed = child.pid
                        break
                except psutil.Error:
                    pass
        time.sleep(0.001)
    started = time.monotonic()
    for i in range(300, 400):
        run.log({"i": float(i)})
    logged_in = time.monotonic() - started
    run.flush(timeout=30)
    run.finish()
    print("RESULT " + json.dumps({"dir": run.dir, "killed": killed, "state": run.state,
                                  "final": manager.service.pid, "logged_in": logged_in}))
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("text", [10, 2000])
def test_a_replacement_service_killed_before_it_is_ready_is_replaced_again(tmp_path, text):
    """The service dies; its replacement is SIGKILLed before it is ready. The manager
    starts another (one of max_restarts each) instead of giving up, and with more
    than 64 KiB to replay (text=2000: about 400 KiB) the restart does not block
    writing start-up data into a pipe nobody reads: every row is stored once."""
    script = Script(KILL_REPLACEMENT, tmp_path, name="kill.py", args=(str(text),),
                    env={"MPBACKEND_START_METHOD": "spawn"})
    out = script.outcome(timeout=100)
    stderr = script.stderr()
    assert out["killed"], stderr
    assert out["final"] != out["killed"]
    assert out["logged_in"] < 5, out
    info, history = stored(out["dir"])
    assert info["state"] == "finished", stderr
    assert [r["i"] for r in history] == [float(i) for i in range(400)], stderr
    assert_steps(history)


KILL_IN_FINISH = """
    import json, os, signal, sys, threading, time
    import mpbackend

    run = mpbackend.init(project="p", id="fin", settings={"max_restarts": 2,
                                                           "commit_interval": 10.0})
    service = mpbackend.setup().manager.service.pid
    for i in range(20000):
        run.log({"i": float(i)})
    delay = float(sys.argv[1])
    def kill():
        time.sleep(delay)
        os.kill(service, signal.SIGKILL)
    threading.Thread(target=kill).start()
    run.finish()
    print("RESULT " + json.dumps({"dir": run.dir, "state": run.state}))
"""


@pytest.mark.timeout(240)
def test_a_service_killed_during_finish_stores_no_row_twice(tmp_path):
    """SIGKILL of the service at moments through finish() of 20,000 rows: every row
    is stored once (the final commit moves the replay mark with its rows)."""
    for i, delay in enumerate([0.0, 0.005, 0.01, 0.02, 0.04, 0.08]):
        where = tmp_path / str(i)
        where.mkdir()
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(KILL_IN_FINISH),
                               str(delay)], cwd=where, capture_output=True, text=True,
                              timeout=60, env={**os.environ,
                                               "MPBACKEND_DIR": str(where / "mpruns")})
        run_dir = where / "mpruns" / "p" / "fin"
        history = stored(run_dir)[1]
        steps = [r["_step"] for r in history]
        assert len(steps) == len(set(steps)), (delay, len(steps) - len(set(steps)))
        values = [r["i"] for r in history]
        assert len(values) == len(set(values)), (delay, "rows stored twice", proc.stderr)


KILLER_ROW = """
    import json
    import mpbackend

    run = mpbackend.init(project="p", id="killer", settings={"max_restarts": 3})
    for i in range(300):
        run.log({"i": float(i)})
        if i == 150:
            run.log({"boom": 1.0})  # the service dies applying this row (a crash in C)
    run.finish()
    print("RESULT " + json.dumps({"dir": run.dir, "state": run.state}))
"""


@pytest.mark.timeout(120)
def test_a_record_that_kills_the_service_is_isolated_and_then_skipped(tmp_path):
    """A row that kills every service that applies it (fault injection: the service
    dies at once on the key ``boom``): its batch is not handed whole to the next
    service but applied record by record; the row, having killed two services, is
    then skipped with a warning and an error stored with the run, and every other
    row (before and after it, in its batch and others) is stored once."""
    proc = run_script(KILLER_ROW, tmp_path, timeout=100,
                      env={"MPBACKEND_TEST_CRASH_KEY": "boom"})
    out = result(proc)
    info, history = stored(out["dir"])
    assert info["state"] == "finished", proc.stderr
    assert [r["i"] for r in history if "i" in r] == [float(i) for i in range(300)]
    assert not any("boom" in r for r in history)
    assert_steps(history)
    assert "skipped" in proc.stderr
    assert any("skipped" in e["error"] for e in info["extra"]["service_errors"])
