"""README's Guarantees, each proved by injecting the fault for real.

Real signals to real processes, a real service, real SQLite files, and real
resource limits; nothing is mocked. Every wait is bounded and every process a
test starts is reaped by the test: scripts run in their own session and their
whole process group is SIGKILLed in a ``finally`` (conftest's reaper is only the
last line of defence).

    1. SIGKILL of the training process at random moments (20 trials)
    2. SIGKILL of the service mid-run (restarted; and with no restart left)
    3. Ctrl-C (SIGINT to the process group)      4. SIGTERM to the script
    5. the store cannot be written: at init(), and mid-run (RLIMIT_FSIZE)
    6. backpressure against a SIGSTOPped service: buffer_policy drop / block
    7. load: 8 threads and 4 forked processes into one run
    8. nothing gets in: no pickles on disk, modes under umask 0, path-safe names
    9. bad input at log(): refused at the call or stored faithfully
"""

from __future__ import annotations

import concurrent.futures
import datetime
import decimal
import logging
import math
import mmap
import multiprocessing
import os
import random
import re
import shutil
import signal
import stat
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from conftest import Script
from conftest import exited as _exited
from conftest import stored as _stored
from conftest import wait_for as _wait_for

import mpbackend
from mpbackend.shared.queues import PIPE_SIZE

pytestmark = pytest.mark.timeout(120)

RESULT = "RESULT "


# -- helpers -------------------------------------------------------------------


def _group_alive(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes of process group ``pgid``."""
    alive = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return alive


def _assert_rows_are_i_by_step(history: list[dict]) -> None:
    """Steps are exactly 0..n-1 and every row is whole: its ``i`` equals its step."""
    steps = [row["_step"] for row in history]
    assert steps == list(range(len(history))), steps[:20]
    torn = [row for row in history
            if row.get("i") != row["_step"] or set(row) != {"_step", "i", "_runtime",
                                                             "_timestamp"}]
    assert not torn, torn[:5]


# -- 1. SIGKILL of the training process at random moments ----------------------------

KILL_LOOP = """
    import mmap, struct, sys
    import mpbackend

    K = int(sys.argv[1])
    # How many log() calls have returned, in memory shared with the test (a memfd).
    progress = mmap.mmap(int(sys.argv[2]), 8)
    put = struct.Struct("<q").pack_into
    run = mpbackend.init(project="kill", settings={"buffer_bytes": int(sys.argv[3])})
    service = mpbackend.setup().manager.service.pid
    print(f"START {service} {run.dir}", flush=True)
    i = 0
    while True:
        run.log({"i": i})
        i += 1
        put(progress, 0, i)
        if i % K == 0:
            run.flush()
            print(f"FLUSHED {i}", flush=True)
"""

KILL_TRIALS = 20


def loss_bound(k: int, buffer_bytes: int) -> int:
    """README's bound on the records a SIGKILL of the training process loses, here.

    At most the user-side buffer, ``buffer_bytes / 512`` records of up to 16
    numbers, and the batch the sender thread was writing (at most as many
    again: a frame cut short by the kill is dropped by the reader), whether or
    not the service has fallen behind. With a flush after every record (K=1) at
    most the one record logged since the last flush.
    """
    return 1 if k == 1 else 2 * (buffer_bytes // 512)


def _kill_trial(where: Path, k: int, delay: float, buffer_bytes: int) -> dict:
    """One trial: start the loop, SIGKILL the training process after ``delay`` s."""
    began = time.monotonic()
    fd = os.memfd_create("progress")
    os.ftruncate(fd, 8)
    progress = mmap.mmap(fd, 8)
    script = Script(KILL_LOOP, where, args=(str(k), str(fd), str(buffer_bytes)),
                    env={"MPBACKEND_START_METHOD": "fork"}, pass_fds=(fd,))
    try:
        _, service_pid, run_dir = script.wait_line("START ", timeout=30).split(" ", 2)
        service = psutil.Process(int(service_pid))
        time.sleep(delay)
        os.kill(script.proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        script.proc.wait(timeout=5)
        exited = _wait_for(lambda: _exited(service.pid), timeout=3.0)
        service_exit_s = time.monotonic() - killed_at
        flushed = script.flushed()
        logged = struct.unpack_from("<q", progress, 0)[0]
    finally:
        script.kill_group()
        progress.close()
        os.close(fd)
    assert script.proc.returncode == -signal.SIGKILL
    assert exited, f"the service outlived the SIGKILLed training process by {service_exit_s:.2f} s"
    info, history = _stored(run_dir)
    assert info["state"] == "crashed", info
    assert len(history) >= flushed, (len(history), flushed)
    _assert_rows_are_i_by_step(history)
    assert info["step"] == len(history)
    # Lost is at most what README bounds it by. ``logged`` counts the log() calls
    # that returned; the kill may land between a return and the count (lost -1).
    lost = logged - len(history)
    assert -1 <= lost <= loss_bound(k, buffer_bytes), (k, buffer_bytes, logged, len(history))
    return {"k": k, "delay": delay, "buffer": buffer_bytes, "flushed": flushed,
            "stored": len(history), "lost": lost,
            "service_exit_s": service_exit_s, "trial_s": time.monotonic() - began}


def test_sigkill_of_the_training_process_at_random_moments(tmp_path, record_property):
    """Every row flushed before a SIGKILL at a random moment is stored, whole and in
    order, the run is ``crashed`` and the service exits (fork start method, so a trial
    takes well under a second; two trials run at once)."""
    rng = random.Random(20261122)
    # Half the trials with the default buffer (a bound of 65,536 records), half with
    # 64 KiB (256 records), so the bound asserted is one the trial can come near.
    plans = [(rng.choice([1, 10, 100, 1000]), rng.uniform(0.0, 0.5),
              (16 << 20) if n % 2 else (64 << 10)) for n in range(KILL_TRIALS)]
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(_kill_trial, tmp_path / f"trial{n}", k, delay, buffer)
                   for n, (k, delay, buffer) in enumerate(plans)]
        trials = [f.result(timeout=100) for f in futures]
    took = time.monotonic() - started
    per_trial = sum(t["trial_s"] for t in trials) / len(trials)
    record_property("kill_trials", len(trials))
    record_property("kill_trial_mean_s", round(per_trial, 3))
    record_property("kill_trials_wall_s", round(took, 2))
    print(f"\n{len(trials)} SIGKILL trials in {took:.2f} s (2 at a time), "
          f"{per_trial:.2f} s per trial; slowest service exit "
          f"{max(t['service_exit_s'] for t in trials):.2f} s")
    for t in trials:
        print(f"  K={t['k']:<5} buffer={t['buffer']:<8} delay={t['delay']:.3f}s "
              f"flushed={t['flushed']:<7} "
              f"stored={t['stored']:<7} lost={t['lost']:<5} "
              f"service exit {t['service_exit_s']:.2f}s "
              f"trial {t['trial_s']:.2f}s")
    # The random moments fell after flushes, and between them (logged > flushed).
    assert any(t["flushed"] > 0 for t in trials)
    assert any(t["stored"] + t["lost"] > t["flushed"] for t in trials)
    assert len(trials) == KILL_TRIALS


# -- 2. SIGKILL of the service mid-run -----------------------------------------------

SERVICE_KILL = """
    import json, sys, time
    import mpbackend

    restarts = int(sys.argv[1])
    run = mpbackend.init(project="svckill", settings={"max_restarts": restarts})
    service = mpbackend.setup().manager.service.pid
    for i in range(2000):
        run.log({"i": i})
    run.flush()
    print(f"FLUSHED 2000 {service} {run.dir}", flush=True)
    i, slowest, raised = 2000, 0.0, []
    began = time.monotonic()
    end = began + 2.0  # the test SIGKILLs the service 0.3 s into this
    while time.monotonic() < end:
        t = time.perf_counter()
        try:
            run.log({"i": i})
        except BaseException as exc:  # log() must never raise; recorded, asserted
            raised.append(repr(exc))
        slowest = max(slowest, time.perf_counter() - t)
        i += 1
        if i % 100 == 0:
            time.sleep(0.002)
    rate = (i - 2000) / (time.monotonic() - began)
    try:
        run.flush(timeout=20)
        flush = "ok"
    except mpbackend.Error as exc:
        flush = type(exc).__name__
    t = time.monotonic()
    run.finish()
    finish_s = time.monotonic() - t
    print("RESULT " + json.dumps({
        "logged": i, "rate": rate, "slowest_log_s": slowest, "raised": raised[:3],
        "flush": flush,
        "finish_s": finish_s, "state": run.state, "dropped": run._interface.dropped,
        "request_timeout": run._interface.request_timeout,
        "service_now": mpbackend.setup().manager.service.pid if restarts else None,
        "dir": run.dir}), flush=True)
"""


def _run_service_kill(tmp_path, restarts: int) -> tuple[dict, dict, list[dict], list[str], int]:
    script = Script(SERVICE_KILL, tmp_path, args=(str(restarts),))
    try:
        line = script.wait_line("FLUSHED ", timeout=30)
        service_pid = int(line.split()[2])
        time.sleep(0.3)
        os.kill(service_pid, signal.SIGKILL)
        try:
            script.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            raise AssertionError("the training script hung after its service was "
                                 "SIGKILLed") from None
        left = _wait_for(lambda: not _group_alive(script.pgid), timeout=3.0)
    finally:
        script.kill_group()
    stderr = script.stderr()
    assert script.proc.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert left, "a process of the script's group outlived it"
    res = script.result()
    info, history = _stored(res["dir"])
    warnings = [ln for ln in stderr.splitlines() if ln.startswith("mpbackend:")]
    return res, info, history, warnings, service_pid


def _assert_service_kill_basics(res: dict, history: list[dict]) -> None:
    assert res["raised"] == [], res["raised"]  # log() never raised
    assert res["slowest_log_s"] < 1.0, res  # nor blocked
    assert res["finish_s"] < res["request_timeout"], res
    assert res["finish_s"] < 5.0, res
    # Everything flushed before the kill is stored, in order.
    assert [row["i"] for row in history[:2000]] == list(range(2000))
    steps = [row["_step"] for row in history]
    assert steps == list(range(len(history)))
    values = [row["i"] for row in history]
    assert values == sorted(set(values)), "a row was stored twice or out of order"


def test_sigkill_of_the_service_mid_run_restarts_it(tmp_path):
    """The training loop goes on to the end, log() never raises or blocks, one warning
    reports the death and the restart with the number of records lost (none),
    finish() returns at once, and the run resumed with every row logged stored
    once, at consecutive steps: the ones the dead service had read but not
    committed (replayed) and the ones logged while no service ran (kept in rec_q)."""
    res, info, history, warnings, old = _run_service_kill(tmp_path, restarts=3)
    _assert_service_kill_basics(res, history)
    assert res["flush"] == "ok" and res["state"] == "finished", res
    assert res["service_now"] != old
    assert info["state"] == "finished"
    assert history[-1]["i"] == res["logged"] - 1, "rows logged after the restart are missing"

    about_service = [w for w in warnings if "mpbackend service" in w]
    assert len(about_service) == 1, warnings
    assert "started a new service" in about_service[0], about_service
    reported = int(re.search(r"(\d+) record\(s\) logged in between were lost",
                             about_service[0]).group(1))
    # rec_q outlives the service: what was logged while none ran waited there.
    assert reported == 0, about_service
    # The only other warning is finish()'s report of the records the run lost.
    others = [w for w in warnings if w not in about_service]
    assert len(others) <= 1 and all(" lost at least " in w for w in others), warnings

    missing = res["logged"] - len(history)
    print(f"\nlogged {res['logged']}, stored {len(history)}, reported lost {reported}, "
          f"stored dropped_records {info['extra'].get('dropped_records')}")
    # Nothing is lost: what the dead service had read but not committed is replayed
    # from the batches this process kept, the rest waited in rec_q, and no row is
    # stored twice.
    assert missing == 0, f"{missing} of {res['logged']} rows lost across the restart"
    assert [row["i"] for row in history] == list(range(res["logged"]))
    # README: "they are counted, and stored with the run at finish()".
    assert info["extra"].get("dropped_records", 0) == reported, (
        f"the restart warning reported {reported} records lost, the run stores "
        f"dropped_records={info['extra']['dropped_records']}; warnings: {warnings}")


def test_three_service_kills_in_one_run_lose_no_row(rundir):
    """The service is SIGKILLed three times (max_restarts) at random moments while
    the loop logs without pause: each time a new service resumes the run, and at
    the end every row logged is stored exactly once, in order, and the run is
    finished."""
    run = mpbackend.init(project="kill3")
    manager = mpbackend.setup().manager
    rng = random.Random(7)
    killed: list[int] = []

    def killer() -> None:
        for _ in range(3):
            time.sleep(rng.uniform(0.2, 0.6))
            pid = manager.service.pid
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            _wait_for(lambda dead=pid: manager.service.pid != dead, timeout=30)

    thread = threading.Thread(target=killer)
    thread.start()
    logged = 0
    while thread.is_alive():
        run.log({"i": logged})
        logged += 1
        if logged % 100 == 0:
            time.sleep(0.001)
    thread.join()
    for _ in range(1000):
        run.log({"i": logged})
        logged += 1
    run.finish()
    assert len(killed) == 3 and manager.service.pid not in killed
    info, history = _stored(run.dir)
    assert info["state"] == "finished" and run.state == "finished"
    print(f"\n{logged} rows logged across 3 service kills, {len(history)} stored")
    assert [row["i"] for row in history] == list(range(logged))
    assert [row["_step"] for row in history] == list(range(logged))


def test_sigkill_of_the_service_with_no_restart_left(tmp_path):
    """With max_restarts=0: the loop goes on to the end, log() never raises, the
    death is announced once, flush() fails with ServiceError, finish() returns at once
    with the run ``crashed``, and every row flushed before the kill is stored."""
    res, info, history, warnings, _ = _run_service_kill(tmp_path, restarts=0)
    _assert_service_kill_basics(res, history)
    assert res["flush"] == "ServiceError", res
    assert res["state"] == "crashed"
    assert info["state"] == "running"  # nobody was left to record an end
    announced = [w for w in warnings if "what is logged from now on is not stored" in w]
    assert len(announced) == 1, warnings
    assert "exited with code -9" in announced[0]
    # finish() says once that the run could not be finished; nothing else is said.
    unfinished = [w for w in warnings if "could not be finished" in w]
    assert len(unfinished) == 1 and len(warnings) == 2, warnings


# -- 3, 4. Ctrl-C and SIGTERM ------------------------------------------------------------

SIGNAL_LOOP = """
    import time
    import mpbackend

    run = mpbackend.init(project="signals")
    service = mpbackend.setup().manager.service.pid
    print(f"START {service} {run.dir}", flush=True)
    logged = 0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            run.log({"i": logged})
            logged += 1
            if logged % 500 == 0:
                run.flush()
                print(f"FLUSHED {logged}", flush=True)
    finally:  # the signal may have cut a line short: start a new one
        print(f"\\nLOGGED {logged}", flush=True)
"""


@pytest.mark.parametrize("trial", range(3))
@pytest.mark.parametrize("how", ["sigint-group", "sigterm"])
def test_one_signal_ends_the_run_interrupted_with_all_its_data(tmp_path, how, trial):
    """Ctrl-C (SIGINT to the whole process group) or SIGTERM to the script, at a
    random moment of the loop: one signal, the script exits within 5 s, the run is
    ``interrupted`` with exit code 130 / 143, and every row logged before the signal
    is stored, whole and in order."""
    script = Script(SIGNAL_LOOP, tmp_path)
    try:
        _, service_pid, run_dir = script.wait_line("START ", timeout=30).split(" ", 2)
        assert _wait_for(lambda: script.flushed() >= 3000, timeout=30)
        time.sleep(random.Random(f"{how}{trial}").uniform(0.0, 0.05))
        sent_at = time.monotonic()
        if how == "sigint-group":
            os.killpg(script.pgid, signal.SIGINT)
        else:
            os.kill(script.proc.pid, signal.SIGTERM)
        try:
            script.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the script was still running 5 s after one {how}; "
                                 f"stderr:\n{script.stderr()}") from None
        took = time.monotonic() - sent_at
        service_gone = _wait_for(lambda: _exited(int(service_pid)), timeout=3)
        flushed = script.flushed()
        last = re.search(r"LOGGED (\d+)", script.out.read_text())
        assert last, f"no LOGGED line; stderr:\n{script.stderr()}"
        logged = int(last.group(1))
    finally:
        script.kill_group()
    stderr = script.stderr()
    if how == "sigint-group":
        assert script.proc.returncode in (-signal.SIGINT, 130), stderr
        assert "KeyboardInterrupt" in stderr
        expected_code = 130
    else:
        assert script.proc.returncode == 143, stderr
        expected_code = 143
    assert took < 5.0
    assert service_gone, "the service outlived the script"
    info, history = _stored(run_dir)
    assert info["state"] == "interrupted", (info, stderr)
    assert info["exit_code"] == expected_code
    _assert_rows_are_i_by_step(history)
    # All its data: every log() that returned is stored (the one the signal
    # interrupted may or may not be).
    assert len(history) >= flushed
    assert len(history) in (logged, logged + 1), (len(history), logged)


# -- 5. the store cannot be written -------------------------------------------------------


def _init_as_nobody(target) -> str:
    """``init(dir=target)`` in a forked child that runs as user nobody; its error's type.

    Root writes through any mode bits, so a test run as root (as CI is) drops the
    privilege in a child for this one call; init() fails at the run directory,
    before any process is started.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read)
        outcome = "no error"
        try:
            os.setgid(65534)
            os.setuid(65534)
            mpbackend.init(project="p", dir=str(target))
        except BaseException as exc:  # reported to the parent
            outcome = f"{type(exc).__name__}: {exc}"
        os.write(write, outcome.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        outcome = pipe.read().decode()
    os.waitpid(pid, 0)
    return outcome


@pytest.mark.parametrize("case", ["dir-under-a-file", "read-only-dir"])
def test_an_unwritable_dir_fails_at_init(rundir, tmp_path, case):
    if case == "dir-under-a-file":
        blocker = tmp_path / "blocker"
        blocker.write_text("a file, not a directory")
        target = blocker / "sub"
        with pytest.raises(OSError) as caught:
            mpbackend.init(project="p", dir=str(target))
        assert isinstance(caught.value, PermissionError), repr(caught.value)
        assert str(target) in str(caught.value), str(caught.value)
        assert mpbackend.run is None
        assert blocker.read_text() == "a file, not a directory"
    elif os.geteuid() == 0:
        # A directory anyone may enter but nobody but root may write (tmp_path's
        # parents are root's own, closed to others).
        parent = tempfile.mkdtemp(prefix="mpbackend-ro-", dir="/tmp")
        try:
            os.chmod(parent, 0o755)
            target = os.path.join(parent, "ro", "sub")
            os.mkdir(os.path.dirname(target), 0o555)
            os.chmod(os.path.dirname(target), 0o555)
            outcome = _init_as_nobody(target)
            assert outcome.startswith("PermissionError: "), outcome
            assert target in outcome, outcome
            assert not os.path.exists(target)
        finally:
            shutil.rmtree(parent, ignore_errors=True)
    else:
        parent = tmp_path / "ro"
        parent.mkdir()
        parent.chmod(0o500)
        target = parent / "sub"
        try:
            with pytest.raises(PermissionError) as caught:
                mpbackend.init(project="p", dir=str(target))
            assert str(target) in str(caught.value), str(caught.value)
            assert mpbackend.run is None
        finally:
            parent.chmod(0o700)
    # Nothing is broken: a writable dir works.
    run = mpbackend.init(project="p", dir=str(tmp_path / "fine"))
    run.log({"x": 1})
    run.finish()
    assert [row["x"] for row in _stored(run.dir)[1]] == [1]


def _store_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "mpbackend" and r.levelno == logging.WARNING
            and "cannot write the run database" in r.getMessage()]


def test_a_store_write_failure_mid_run(rundir, caplog):
    """RLIMIT_FSIZE on the service: the failure is reported once, log() keeps
    working, flushed rows stay readable, and once the limit is lifted a flush
    succeeds and no row is lost."""
    caplog.set_level(logging.WARNING, logger="mpbackend")
    run = mpbackend.init(project="fsize")
    service = psutil.Process(mpbackend.setup().manager.service.pid)
    for i in range(2000):
        run.log({"i": i, "x": i * 0.5})
    run.flush(timeout=20)
    db = Path(run.dir) / "run.db"
    wal = Path(run.dir) / "run.db-wal"
    size = db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    soft, hard = service.rlimit(psutil.RLIMIT_FSIZE)
    service.rlimit(psutil.RLIMIT_FSIZE, (size + 4096, hard))
    logged = 2000
    try:
        deadline = time.monotonic() + 30
        while not _store_warnings(caplog) and time.monotonic() < deadline:
            for _ in range(1000):
                run.log({"i": logged, "x": logged * 0.5})
                logged += 1
            time.sleep(0.01)
        assert _store_warnings(caplog), f"no warning after {logged} rows over the limit"
        print(f"\nfile size limit {size + 4096} bytes; reported: {_store_warnings(caplog)}")
        # The loop goes on; commits are retried (every 50 ms) but reported only once.
        end = time.monotonic() + 0.6
        while time.monotonic() < end:
            run.log({"i": logged, "x": logged * 0.5})
            logged += 1
            if logged % 100 == 0:
                time.sleep(0.001)
        time.sleep(0.2)
        assert len(_store_warnings(caplog)) == 1, _store_warnings(caplog)
        assert service.is_running() and mpbackend.setup().manager.alive
        # What was stored stays readable.
        with mpbackend.RunReader(run.dir) as reader:
            readable = reader.history()
        assert len(readable) >= 2000
        _assert_steps_and_i(readable)
    finally:
        service.rlimit(psutil.RLIMIT_FSIZE, (soft, hard))
    run.flush(timeout=20)  # the rows held in memory are written now
    with mpbackend.RunReader(run.dir) as reader:
        assert reader.row_count() == logged
    for _ in range(1000):
        run.log({"i": logged, "x": logged * 0.5})
        logged += 1
    run.finish()
    info, history = _stored(run.dir)
    assert len(history) == logged
    _assert_steps_and_i(history)
    assert info["state"] == "finished"
    assert info["extra"]["lost_rows"] == 0
    assert len(_store_warnings(caplog)) == 1


UNWRITTEN_CAP = """
    import json, os, resource, signal, sys
    from mpbackend import RunReader, StoreError
    from mpbackend.store import writer as store
    from mpbackend.store.schema import CHUNK_ROWS
    from mpbackend.store.writer import RunWriter

    store.MAX_UNWRITTEN_CHUNKS = 3  # the cap under test, small enough for a test
    run_dir = sys.argv[1]
    writer = RunWriter(run_dir, {"id": "cap", "project": "p"}, resume=False)
    step = 0

    def log(n):
        global step
        writer.extend(step, [{"i": float(step + k)} for k in range(n)],
                      [float(step + k) for k in range(n)], True)
        step += n

    log(1000)
    writer.commit()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    size = sum(os.path.getsize(os.path.join(run_dir, f)) for f in os.listdir(run_dir))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 4096, hard))
    failures, held = 0, []
    for _ in range(8):
        log(CHUNK_ROWS)
        try:
            writer.commit()
        except StoreError:
            failures += 1
        held.append(sum(len(c.steps) for c in writer._sealed))
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    writer.commit()
    writer.close()
    with RunReader(run_dir) as reader:
        stored = [row["i"] for row in reader.rows()]
    print("RESULT " + json.dumps({"failures": failures, "held": held, "logged": step,
                                  "lost": writer.lost_rows, "stored": stored}))
"""


def test_rows_held_while_the_store_fails_are_capped_and_counted(tmp_path):
    """While every commit fails (RLIMIT_FSIZE), at most MAX_UNWRITTEN_CHUNKS full
    chunks wait in memory; older ones are dropped and counted in ``lost_rows``.
    Once writes work again the rows still held are stored: the store then holds
    the rows from before the failure and the newest ones, and stored + lost is
    everything logged."""
    res = Script(UNWRITTEN_CAP, tmp_path, args=(str(tmp_path / "run"),)).outcome(timeout=60)
    assert res["failures"] == 8, res["failures"]
    cap_rows = 3 * 1024
    assert max(res["held"]) <= cap_rows, res["held"]  # memory stays bounded
    assert res["held"][-1] == cap_rows
    stored, logged, lost = res["stored"], res["logged"], res["lost"]
    assert lost > 0 and len(stored) + lost == logged, (len(stored), lost, logged)
    assert stored[:1000] == [float(i) for i in range(1000)]  # committed before the failure
    tail = stored[1000:]
    assert tail == [float(i) for i in range(logged - len(tail), logged)], "not the newest rows"


def _assert_steps_and_i(history: list[dict]) -> None:
    assert [row["_step"] for row in history] == list(range(len(history)))
    assert all(row["i"] == row["_step"] and row["x"] == row["i"] * 0.5 for row in history)


# -- 6. backpressure against a stopped service ---------------------------------------------

BUFFER = 256 * 1024


def _rss() -> int:
    return psutil.Process().memory_info().rss


def test_drop_policy_against_a_stopped_service(rundir, caplog):
    """The service reads nothing (SIGSTOP): with buffer_policy="drop" log() never
    waits, memory stays bounded by the buffer, and every record is either stored or
    counted as dropped, in the run's extra and in a warning at finish()."""
    caplog.set_level(logging.WARNING, logger="mpbackend")
    run = mpbackend.init(project="drop", settings=mpbackend.Settings(
        buffer_bytes=BUFFER, buffer_policy="drop"))
    interface = run._interface
    service = mpbackend.setup().manager.service.pid
    run.log({"i": -1, "warm": 1})  # the sender thread runs; then flush it through
    run.flush(timeout=20)
    n = 200_000
    os.kill(service, signal.SIGSTOP)
    try:
        rss_before = _rss()
        slowest = 0.0
        started = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            run.log({"i": i})
            took = time.perf_counter() - t
            if took > slowest:
                slowest = took
        total = time.perf_counter() - started
        grew = _rss() - rss_before
        dropped = interface.dropped_by.get(run.id, 0)
    finally:
        os.kill(service, signal.SIGCONT)
    # Held in memory at most: the buffer (records count as >= 512 bytes each), one
    # batch in flight, the pipe's worth; plus allocator slack.
    bound = 2 * BUFFER + 2 * PIPE_SIZE + 16 * 1024 * 1024
    print(f"\ndrop: {n} log() calls in {total:.2f} s, slowest {slowest * 1e3:.1f} ms, "
          f"dropped {dropped}, RSS grew {grew / 2**20:.1f} MiB (bound {bound / 2**20:.1f})")
    assert total < 10.0 and slowest < 0.5, (total, slowest)
    assert dropped > 0 and interface.dropped == dropped
    assert grew < bound, grew
    drop_warnings = [r.getMessage() for r in caplog.records if "records are being dropped"
                     in r.getMessage()]
    assert len(drop_warnings) == 1, drop_warnings
    run.finish()
    info, history = _stored(run.dir)
    stored = [row["i"] for row in history if row["i"] >= 0]
    assert len(stored) + dropped == n
    assert stored == sorted(set(stored))
    assert [row["_step"] for row in history] == list(range(len(history)))
    assert info["extra"]["dropped_records"] == dropped
    at_finish = [r.getMessage() for r in caplog.records
                 if f"run {run.id} lost at least {dropped} record" in r.getMessage()]
    assert len(at_finish) == 1, [r.getMessage() for r in caplog.records]


def test_block_policy_against_a_stopped_service(rundir):
    """buffer_policy="block": a thread logging into a full buffer stalls while the
    service is stopped, completes once it runs again, and nothing is dropped."""
    run = mpbackend.init(project="block", settings=mpbackend.Settings(buffer_bytes=BUFFER))
    service = mpbackend.setup().manager.service.pid
    run.log({"i": -1})
    run.flush(timeout=20)
    n = 100_000
    count = [0]
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            for i in range(n):
                run.log({"i": i})
                count[0] = i + 1
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    producer = threading.Thread(target=produce, daemon=True)
    os.kill(service, signal.SIGSTOP)
    try:
        producer.start()
        stalled_at = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            seen = count[0]
            time.sleep(0.6)
            if count[0] == seen and seen < n:
                stalled_at = seen
                break
        assert stalled_at is not None, f"the producer never stalled (count {count[0]})"
        time.sleep(0.3)
        assert count[0] == stalled_at and producer.is_alive()
    finally:
        os.kill(service, signal.SIGCONT)
    producer.join(timeout=30)
    assert not producer.is_alive(), f"the producer did not complete (count {count[0]})"
    assert errors == [] and count[0] == n
    print(f"\nblock: the producer stalled at {stalled_at} of {n} records, then completed")
    run.finish()
    info, history = _stored(run.dir)
    assert [row["i"] for row in history] == [-1, *range(n)]
    assert run._interface.dropped == 0
    assert info["extra"]["dropped_records"] == 0


# -- 7. load -------------------------------------------------------------------------------

THREADS, THREAD_ROWS = 8, 100_000
PROCS, PROC_ROWS = 4, 50_000


def _child_logs(run, p: int, go) -> None:
    go.wait(30)
    for i in range(PROC_ROWS):
        run.log({"p": p, "i": i})
    run.flush()  # in a child: drained into the queue


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_threads_and_forked_processes_log_into_one_run(rundir):
    """8 threads x 100,000 rows and 4 forked processes x 50,000 rows into one run:
    exact counts, nothing lost or duplicated, each writer's rows in order."""
    run = mpbackend.init(project="load")
    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()
    children = [ctx.Process(target=_child_logs, args=(run, p, go)) for p in range(PROCS)]
    for child in children:
        child.start()
    errors: list[BaseException] = []

    def thread_logs(t: int) -> None:
        try:
            for i in range(THREAD_ROWS):
                run.log({"t": t, "i": i})
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    started = time.monotonic()
    try:
        threads = [threading.Thread(target=thread_logs, args=(t,)) for t in range(THREADS)]
        go.set()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=90)
        for child in children:
            child.join(timeout=60)
    finally:
        for child in children:
            if child.is_alive():
                child.kill()
                child.join(5)
    assert not any(thread.is_alive() for thread in threads) and errors == []
    assert [child.exitcode for child in children] == [0] * PROCS
    run.flush(timeout=60)
    took = time.monotonic() - started
    run.finish()
    total = THREADS * THREAD_ROWS + PROCS * PROC_ROWS
    print(f"\nload: {total} rows from {THREADS} threads and {PROCS} processes "
          f"in {took:.2f} s")

    steps: list[int] = []
    cols: dict[str, list] = {"t": [], "p": [], "i": [], "_pid": []}
    with mpbackend.RunReader(run.dir) as reader:
        for chunk_steps, columns in reader.chunks(keys=list(cols)):
            base = len(steps)
            steps.extend(chunk_steps)
            for key, values in cols.items():
                values.extend([None] * len(chunk_steps))
                if key in columns:
                    positions, got = columns[key]
                    for pos, value in zip(positions or range(len(got)), got):
                        values[base + pos] = value
        assert reader.info()["step"] == total
    assert steps == list(range(total))
    for t in range(THREADS):
        mine = [i for tt, i in zip(cols["t"], cols["i"]) if tt == t]
        assert mine == list(range(THREAD_ROWS)), f"thread {t}: {len(mine)} rows"
    pids = {child.pid: p for p, child in enumerate(children)}
    for p in range(PROCS):
        mine = [(i, pid) for pp, i, pid in zip(cols["p"], cols["i"], cols["_pid"]) if pp == p]
        assert [i for i, _ in mine] == list(range(PROC_ROWS)), f"process {p}: {len(mine)}"
        assert {pids[pid] for _, pid in mine} == {p}
    assert sum(1 for t, p in zip(cols["t"], cols["p"]) if (t is None) == (p is None)) == 0


# -- 8. nothing gets in --------------------------------------------------------------------

EVERYTHING = """
    import os
    os.umask(0)
    import datetime, decimal, json, shutil
    import mpbackend

    class Secret:
        def __init__(self):
            self.payload = "PAYLOAD-" + "Q" * 12
        def __repr__(self):
            return "Secret()"

    def refused(call):
        try:
            call()
        except TypeError:
            return
        raise AssertionError("an object with no stored form was accepted")

    refused(lambda: mpbackend.init(project="clean", config={"obj": Secret(), "lr": 0.1}))
    run = mpbackend.init(project="clean", config={"lr": 0.1})
    for i in range(50):
        for bad in ({"obj": Secret()}, {"nested": {"o": Secret(), "l": [Secret(), i]}}):
            refused(lambda bad=bad: run.log({"i": i, **bad}))
        run.log({"i": i, "nested": {"l": [i]},
                 "dt": datetime.datetime(2024, 1, 2, 3, 4, 5), "dec": decimal.Decimal("1.25"),
                 "nan": float("nan"), "s": "text", "none": None})
    refused(lambda: run.summary.__setitem__("obj", Secret()))
    run.define_metric("i", summary="max")
    run.flush()
    live = {}
    for root, dirs, files in os.walk(os.environ["MPBACKEND_DIR"]):
        for name in dirs + files:
            path = os.path.join(root, name)
            live[path] = os.stat(path).st_mode
    os.makedirs("live-copy")
    for name in os.listdir(run.dir):
        shutil.copy(os.path.join(run.dir, name), os.path.join("live-copy", name))
    run.finish()
    print("RESULT " + json.dumps({"dir": run.dir, "live_modes": live}), flush=True)
"""

# PROTO 4/5, then FRAME with an 8-byte length (< 64 KiB): how every pickle mpbackend
# makes (protocol 5, pickle or cloudpickle) begins.
_PICKLE = re.compile(rb"\x80[\x04\x05]\x95..\x00{6}", re.DOTALL)
_MARKERS = (b"cloudpickle", b"__main__", b"__mp_main__", b"copyreg", b"__reduce",
            b"PAYLOAD-")


def _pickle_traces(path: Path) -> list[str]:
    data = path.read_bytes()
    found = [f"{m.group()!r} at {m.start()}" for m in _PICKLE.finditer(data)]
    found += [marker.decode() for marker in _MARKERS if marker in data]
    return found


def test_nothing_pickled_is_written_and_files_are_not_world_writable(tmp_path):
    """A script (umask 0) tries to log instances of a class from its __main__ as
    values, config and summary: each is refused at the call (TypeError), no file
    under the run dir holds pickle data or the objects' contents, and no file the
    store creates is world-writable. (Functions are stored by their name, as wandb
    stores them: tests/test_backend.py.)"""
    res = Script(EVERYTHING, tmp_path).outcome(timeout=60)
    root = tmp_path / "mpruns"
    files = [p for p in root.rglob("*") if p.is_file()]
    files += list((tmp_path / "live-copy").iterdir())
    assert any(p.name == "run.db-wal" for p in files), files  # scanned while live too
    traces = {str(p): _pickle_traces(p) for p in files}
    assert not any(traces.values()), traces

    # The store's files, while the run was live and after it: not world-writable.
    live_files = {p: mode for p, mode in res["live_modes"].items() if stat.S_ISREG(mode)}
    assert {os.path.basename(p) for p in live_files} >= {"run.db", "run.db-wal"}, live_files
    bad = {p: oct(mode) for p, mode in live_files.items() if mode & 0o002}
    bad.update({str(p): oct(p.stat().st_mode) for p in root.rglob("*")
                if p.is_file() and p.stat().st_mode & 0o002})
    assert not bad, bad
    # The directories init() makes in the user's process, under the user's umask 0, too.
    open_dirs = {p: oct(mode) for p, mode in res["live_modes"].items()
                 if stat.S_ISDIR(mode) and mode & 0o002}
    open_dirs.update({str(p): oct(p.stat().st_mode) for p in [root, *root.rglob("*")]
                      if p.is_dir() and p.stat().st_mode & 0o002})
    assert not open_dirs, open_dirs
    assert any(stat.S_ISDIR(mode) for mode in res["live_modes"].values())

    info, history = _stored(res["dir"])
    assert info["config"] == {"lr": 0.1}
    assert "obj" not in info["summary"], info["summary"]
    assert len(history) == 50
    row = history[0]
    assert not {"obj", "nested.o"} & set(row), row
    assert row["nested.l"] == [0]
    assert row["dt"] == "2024-01-02T03:04:05" and row["dec"] == 1.25
    assert math.isnan(row["nan"]) and row["none"] is None


BAD_NAMES = ["../x", "/abs", "a/b", "..", ".", "", "x/..", "../../etc", "a\\b", ".hidden",
             "-rf", "a\x00b", " a", "a" * 129, "~", "a/../../b", "abc\n", "p\n", "a\nb"]


def test_run_ids_and_project_names_are_single_safe_path_components(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    inner = tmp_path / "inner" / "runs"
    inner.mkdir(parents=True)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    root_before = set(os.listdir("/"))
    for bad in [*BAD_NAMES, 7, b"x"]:
        for kwargs in ({"project": bad}, {"id": bad}, {"id": bad, "resume": "allow"}):
            with pytest.raises(ValueError):
                mpbackend.init(dir=str(inner), **kwargs)
            assert mpbackend.run is None
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert set(os.listdir("/")) == root_before
    assert not os.path.exists("/abs")
    # A display name is not a path: accepted, and the run stays inside dir.
    run = mpbackend.init(project="ok", name="../../evil/name", dir=str(inner))
    run.log({"x": 1})
    run.finish()
    assert Path(run.dir).parent == inner / "ok"
    created = sorted(str(p) for p in tmp_path.rglob("*") if str(p) not in before)
    assert all(p.startswith(str(inner)) for p in created), created


# -- 9. bad input at log() -------------------------------------------------------------


class _Unprintable:
    pass


def _nest_dicts(depth: int):
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def _nest_lists(depth: int):
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def test_bad_input_is_refused_at_the_call_and_good_input_is_stored_faithfully(
        rundir, tmp_path):
    run = mpbackend.init(project="input")
    expected: list[dict] = []
    refusals: list[str] = []

    def ok(data: dict, stored: dict) -> None:
        run.log(data)
        expected.append(stored)

    def refused(data, error: type[Exception], match: str, **kwargs) -> None:
        with pytest.raises(error, match=match) as caught:
            run.log(data, **kwargs)
        refusals.append(f"{type(caught.value).__name__}: {caught.value}")
        ok({"after": len(refusals)}, {"after": len(refusals)})  # the run goes on

    ok({"first": 1}, {"first": 1})
    # keys
    refused({1: 2}, TypeError, "keys must be str")
    refused({("t",): 2}, TypeError, "keys must be str")
    refused({"outer": {3: 4}}, TypeError, "keys must be str")
    refused({"": 1}, ValueError, "must not be empty")
    refused({"outer": {"": 1}}, ValueError, "must not be empty")
    ok({"a/b": 1, "c.d": 2, "e/f.g": 3}, {"a/b": 1, "c.d": 2, "e/f.g": 3})
    ok({"n": {"x": 1, "y": {"z": 2}}}, {"n.x": 1, "n.y.z": 2})
    # values that cannot be sent, named by their key
    refused({"lock": threading.Lock()}, TypeError, "'lock'")
    refused({"gen": (i for i in range(3))}, TypeError, "'gen'")
    with open(tmp_path / "f.txt", "w") as handle:
        refused({"file": handle}, TypeError, "'file'.*open file")
    ok({"raw": b"bytes", "ba": bytearray(b"x")}, {"raw": "bytes", "ba": "x"})  # as wandb
    refused({"raw": b"\xff\xfe"}, TypeError, "'raw'.*not UTF-8")
    refused({"raw": memoryview(b"\x80")}, TypeError, "'raw'")
    refused([("not", "a dict")], TypeError, "takes a dict")
    refused({"x": 1}, ValueError, "non-negative", step=-1)
    refused({"x": 1}, TypeError, "step", step="3")
    # sizes and depth
    big = np.zeros(100 * 1024 * 1024 // 8)
    refused({"big": big}, ValueError, "max_array_size")
    refused({"big": torch.zeros(10_001)}, ValueError, "max_array_size")
    refused({"big": list(range(10_001))}, ValueError, "max_array_size")
    ok({"edge": list(range(10_000))}, {"edge": list(range(10_000))})
    refused(_nest_dicts(100), ValueError, "64")
    refused({"d": _nest_dicts(64)}, ValueError, "64")  # 65 dicts with the outer one
    ok({"d": _nest_dicts(63)}, {"d" + ".a" * 63: 1})
    loop: dict = {"k": 1}
    loop["self"] = loop
    refused(loop, ValueError, "contains itself")
    refused({"wrap": {"inner": loop}}, ValueError, "contains itself")
    cycle: list = [1]
    cycle.append(cycle)
    refused({"cycle": cycle}, ValueError, "'cycle'")
    refused({"lists": _nest_lists(100)}, ValueError, "64")
    # faithful values
    ok({"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf")},
       {"nan": math.nan, "inf": math.inf, "ninf": -math.inf})
    ok({"arr_nan": np.array([np.nan, np.inf, -np.inf, 1.5])},
       {"arr_nan": [math.nan, math.inf, -math.inf, 1.5]})
    when = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.timezone.utc)
    ok({"when": when, "day": datetime.date(2024, 5, 6)},
       {"when": when.isoformat(), "day": "2024-05-06"})
    ok({"dec": decimal.Decimal("2.5")}, {"dec": 2.5})
    ok({"f32": np.float32(0.25), "i64": np.int64(-7), "u8": np.uint8(200),
        "b": np.bool_(True), "zero_d": np.array(3.5)},
       {"f32": 0.25, "i64": -7, "u8": 200, "b": True, "zero_d": 3.5})
    ok({"arr": np.arange(6).reshape(2, 3), "farr": np.linspace(0, 1, 3)},
       {"arr": [[0, 1, 2], [3, 4, 5]], "farr": [0.0, 0.5, 1.0]})
    ok({"t": torch.tensor(1.5), "ti": torch.tensor(3), "tv": torch.arange(4)},
       {"t": 1.5, "ti": 3, "tv": [0, 1, 2, 3]})
    weights = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    loss = (weights * 2).sum()
    ok({"w": weights, "loss": loss, "g": torch.tensor(0.5, requires_grad=True)},
       {"w": [[1.0, 2.0], [3.0, 4.0]], "loss": 20.0, "g": 0.5})
    ok({"huge_int": 2**70, "neg": -(2**63), "s": "ünï\u2603", "none": None, "t2": (1, "x")},
       {"huge_int": 2**70, "neg": -(2**63), "s": "ünï\u2603", "none": None, "t2": [1, "x"]})
    ok({"last": True}, {"last": True})

    run.flush(timeout=20)
    info, history = _stored(run.dir)
    got = [{k: v for k, v in row.items() if not k.startswith("_")} for row in history]
    assert [row["_step"] for row in history] == list(range(len(expected)))
    assert len(got) == len(expected), (len(got), len(expected))
    for step, (have, want) in enumerate(zip(got, expected)):
        assert _same(have, want), f"step {step}: stored {have!r}, logged {want!r}"
    assert all(isinstance(text, str) and text for text in refusals)
    run.finish()


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def test_what_log_accepts_at_the_nesting_limit_is_stored(rundir, caplog):
    """log() accepts lists nested up to 64 deep; such a row must then be stored,
    not dropped in the service after the call has returned."""
    caplog.set_level(logging.WARNING, logger="mpbackend")
    run = mpbackend.init(project="depth")
    for depth in (63, 64):
        run.log({"depth": depth, "v": _nest_lists(depth)})  # accepted at the call
    with pytest.raises(ValueError):
        run.log({"depth": 65, "v": _nest_lists(65)})
    run.log({"depth": 0})
    run.flush(timeout=20)
    _, history = _stored(run.dir)
    run.finish()
    notices = [r.getMessage() for r in caplog.records if "could not be stored" in
               r.getMessage()]
    assert [row["depth"] for row in history] == [63, 64, 0], (
        f"stored depths {[row['depth'] for row in history]}; service notices: {notices}")
    assert history[1]["v"] == _nest_lists(64)
