"""End-to-end tests of the service backend: real processes, real pipes, real SQLite files.

Nothing under test is mocked. Each test that needs a service starts a real one
(``mpbackend.setup()``/``init()``); the ``rundir`` fixture and conftest's autouse
reaper stop it and kill whatever a test leaves behind. Scripts that must run as
their own ``__main__`` (classes defined in ``__main__``, no main guard, start
method from the environment) run as subprocesses through ``run_script``.

The numbered tests follow the manager's messages ([1]..[e]) of ``mpbackend.manager``.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import queue
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest
from conftest import ROOT, run_script, wait_for
from conftest import stored as read_run

import mpbackend
from mpbackend.shared import messages as m
from mpbackend.store.schema import CHUNK_ROWS, SCHEMA_VERSION
from mpbackend.store.writer import MAX_PARTS
from mpbackend.user.setup import current as current_setup

pytestmark = pytest.mark.timeout(120)

PROCESS_CLASS = {"spawn": "SpawnProcess", "fork": "ForkProcess",
                 "forkserver": "ForkServerProcess"}


# -- helpers ---------------------------------------------------------------




def make_spec(base, project: str, run_id: str, **extra) -> dict:
    """A stream spec as ``mpbackend.init`` builds it, for talking to the manager directly."""
    spec = {
        "id": run_id, "project": project, "name": None,
        "run_dir": os.path.join(str(base), project, run_id), "config": {}, "resume": None,
        "tags": [], "notes": None, "group": None, "job_type": None, "pid": os.getpid(),
        "host": socket.gethostname(), "start_time": time.time(),
    }
    spec.update(extra)
    return spec


def history_record(stream: str, data: dict, step=None, commit=None) -> tuple:
    """The [7] record ``Run.log`` publishes."""
    return (m.HISTORY, stream, data, step, commit, time.time())


def python_env(tmp_path, **extra: str) -> dict:
    env = {**os.environ, "PYTHONPATH": ROOT, "MPBACKEND_DIR": str(tmp_path / "mpruns")}
    env.update(extra)
    return env


def lines_with(stdout: str, prefix: str) -> list[str]:
    return [line[len(prefix):] for line in stdout.splitlines() if line.startswith(prefix)]


def result_of(proc: subprocess.CompletedProcess, prefix: str = "RESULT "):
    """The JSON a script printed after ``prefix`` (exactly one such line)."""
    found = lines_with(proc.stdout, prefix)
    assert len(found) == 1, (
        f"expected one {prefix!r} line; exit code {proc.returncode}\n"
        f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return json.loads(found[0])


# -- [1]..[e]: the manager's messages ----------------------------------------


def test_1_2_start_and_ready(rundir, monkeypatch):
    """[1]/[2] The service process starts (spawn by default) and its Ready names it."""
    monkeypatch.delenv("MPBACKEND_START_METHOD", raising=False)
    s = mpbackend.setup()
    service = s.manager.service
    ready = service.ready
    assert isinstance(ready, m.Ready)
    assert ready.version == mpbackend.__version__
    assert ready.pid == service.pid == service.process.pid
    assert ready.pid != os.getpid()
    assert type(service.process).__name__ == "SpawnProcess"
    proc = psutil.Process(ready.pid)
    assert proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    assert proc.ppid() == os.getpid()
    assert "multiprocessing.spawn" in " ".join(proc.cmdline())
    assert service.alive() and s.manager.alive


def test_3_4_ensure_up_and_second_setup_reuses_service(rundir):
    """[3]/[4] EnsureUp answers with the service's pid and version; setup() reuses it."""
    first = mpbackend.setup()
    pid = first.manager.service.pid
    assert first.manager.ensure_up() == {"pid": pid, "version": mpbackend.__version__}
    # The raw request: the service reports its own version, whatever the caller's.
    assert first.manager.communicate(m.EnsureUp("0.0.0"), 10)["version"] == \
        mpbackend.__version__

    second = mpbackend.setup(settings={"commit_interval": 7.0})
    assert second is first
    assert second.manager is first.manager
    assert second.manager.service.pid == pid
    assert psutil.Process(pid).is_running()
    # A reused service keeps the settings it was started with.
    assert second.manager.settings.commit_interval != 7.0
    assert current_setup() is first


def test_5_6_inform_init_adds_stream(rundir):
    """[5]/[6] InformInit opens a stream: the reply describes it and run.db exists."""
    manager = mpbackend.setup().manager
    assert manager.communicate(m.ManagerPoll(), 10) == {"streams": 0}

    spec = make_spec(rundir, "proj", "run-a", config={"lr": 0.1}, tags=["x"])
    reply = manager.inform_init(spec)
    assert reply["id"] == "run-a"
    assert reply["dir"] == spec["run_dir"]
    assert reply["step"] == 0
    assert reply["resumed"] is False
    assert reply["config"] == {"lr": 0.1}
    assert os.path.isfile(os.path.join(reply["dir"], "run.db"))
    assert manager.communicate(m.ManagerPoll(), 10) == {"streams": 1}
    info, rows = read_run(reply["dir"])
    assert (info["id"], info["project"], info["state"]) == ("run-a", "proj", "running")
    assert info["config"] == {"lr": 0.1} and info["tags"] == ["x"] and rows == []

    with pytest.raises(ValueError, match="already open"):
        manager.inform_init(spec)
    assert manager.communicate(m.ManagerPoll(), 10) == {"streams": 1}

    # The public path: init() makes the same request and returns a Run.
    run = mpbackend.init(project="proj", id="run-b")
    assert run.id == "run-b"
    assert run.dir == str(rundir / "proj" / "run-b")
    assert os.path.isfile(os.path.join(run.dir, "run.db"))
    assert mpbackend.run is run
    assert manager.communicate(m.ManagerPoll(), 10) == {"streams": 2}

    manager.inform_finish("run-a", "finished", None)
    run.finish()
    assert manager.communicate(m.ManagerPoll(), 10) == {"streams": 0}


def test_7_log_records_land_in_store(rundir):
    """[7] log() records reach the run's Internal and are stored as history rows."""
    run = mpbackend.init(project="proj", id="logs")
    for i in range(300):
        run.log({"loss": 1.0 / (i + 1), "i": i, "tag": f"t{i}"})
    run.finish()

    info, rows = read_run(run.dir)
    assert len(rows) == 300
    assert [r["_step"] for r in rows] == list(range(300))
    assert [r["i"] for r in rows] == list(range(300))
    assert [r["tag"] for r in rows] == [f"t{i}" for i in range(300)]
    assert all(r["loss"] == pytest.approx(1.0 / (r["i"] + 1)) for r in rows)
    timestamps = [r["_timestamp"] for r in rows]
    assert timestamps == sorted(timestamps)
    assert all(r["_runtime"] >= 0 for r in rows)
    assert info["step"] == 300 and info["state"] == "finished"


def test_8_flush_is_a_barrier(rundir):
    """[8] flush() returns only once every row logged before it is committed.

    The periodic commit is pushed out to 60 s, so only the barrier can commit.
    The database is read right after flush() returns, in this process, no sleep.
    """
    run = mpbackend.init(project="proj", id="flush", settings={"commit_interval": 60.0})
    rows_per_round = 5000
    for rnd in range(3):
        for i in range(rows_per_round):
            run.log({"i": i, "x": i * 0.5, "round": rnd})
        with mpbackend.RunReader(run.dir) as reader:
            before = reader.row_count()
        run.flush(timeout=30)
        with mpbackend.RunReader(run.dir) as reader:
            after = reader.row_count()
            rows = reader.history(min_step=rnd * rows_per_round)
        assert before == rnd * rows_per_round, "rows were committed before the barrier"
        assert after == (rnd + 1) * rows_per_round
        assert [r["_step"] for r in rows] == list(
            range(rnd * rows_per_round, (rnd + 1) * rows_per_round))
        assert [r["i"] for r in rows] == list(range(rows_per_round))
        assert all(r["x"] == r["i"] * 0.5 and r["round"] == rnd for r in rows)
        info = mpbackend.RunReader(run.dir).info()
        assert info["step"] == after and info["summary"]["round"] == rnd
    run.finish()


def test_9_a_inform_finish(rundir):
    """[9]/[a] finish(): reply state and summary, and the final state in the store."""
    run = mpbackend.init(project="proj", id="fin", config={"a": 1})
    run.log({"loss": 3.0, "acc": 0.1})
    run.log({"loss": 2.0})
    run.log({"acc": 0.5}, commit=False)  # pending: committed by finish
    run.finish()

    assert run.state == "finished"
    assert run.summary["loss"] == 2.0
    assert run.summary["acc"] == 0.5
    assert run.summary["_step"] == 2
    assert mpbackend.run is None
    info, rows = read_run(run.dir)
    assert info["state"] == "finished" and info["exit_code"] is None
    assert info["step"] == 3
    assert info["summary"]["loss"] == 2.0 and info["summary"]["acc"] == 0.5
    assert info["config"] == {"a": 1}
    assert [(r["_step"], r.get("loss"), r.get("acc")) for r in rows] == [
        (0, 3.0, 0.1), (1, 2.0, None), (2, None, 0.5)]
    run.finish()  # idempotent
    with pytest.raises(mpbackend.UsageError):
        run.log({"x": 1})

    # The raw reply, and a failed state with its exit code.
    manager = mpbackend.setup().manager
    spec = make_spec(rundir, "proj", "fin-raw")
    manager.inform_init(spec)
    manager.interface.publish(history_record("fin-raw", {"v": 7}))
    reply = manager.inform_finish("fin-raw", "failed", 3)
    assert reply["state"] == "failed"
    assert reply["step"] == 1
    assert reply["summary"]["v"] == 7 and reply["summary"]["_step"] == 0
    info, rows = read_run(spec["run_dir"])
    assert (info["state"], info["exit_code"]) == ("failed", 3)
    assert [r["v"] for r in rows] == [7]
    # Asked again (a retry after a restart): the first reply, nothing changed.
    assert manager.inform_finish("fin-raw", "finished", None) == reply
    assert read_run(spec["run_dir"])[0]["state"] == "failed"
    with pytest.raises(KeyError):
        manager.inform_finish("never-opened", "finished", None)

    failed = mpbackend.init(project="proj", id="fin-exit")
    failed.finish(exit_code=2)
    assert failed.state == "failed"
    assert read_run(failed.dir)[0]["exit_code"] == 2


def test_b_c_manager_stop_ends_open_streams(rundir):
    """[b]/[c] ManagerStop ends every open stream; its reply lists them."""
    manager = mpbackend.setup().manager
    specs = [make_spec(rundir, "proj", f"stop-{k}") for k in range(2)]
    for k, spec in enumerate(specs):
        manager.inform_init(spec)
        manager.interface.publish(history_record(spec["id"], {"k": k}))
    reply = manager.communicate(m.ManagerStop(), 10)
    assert sorted(reply["stopped"]) == ["stop-0", "stop-1"]
    for k, spec in enumerate(specs):
        info, rows = read_run(spec["run_dir"])
        assert info["state"] == "finished"
        assert [r["k"] for r in rows] == [k]
    assert manager.communicate(m.ManagerPoll(), 10) == {"streams": 0}


@pytest.mark.parametrize("state", ["finished", "interrupted"])
def test_b_c_manager_stop_method(rundir, state):
    """Manager.stop() ends two open runs with its state and joins the service."""
    manager = mpbackend.setup().manager
    specs = [make_spec(rundir, "proj", f"mstop-{k}") for k in range(2)]
    for spec in specs:
        manager.inform_init(spec)
        for i in range(10):
            manager.interface.publish(history_record(spec["id"], {"i": i}))
    manager.stop(timeout=20, state=state)
    assert manager.service.exitcode == 0
    for spec in specs:
        info, rows = read_run(spec["run_dir"])
        assert info["state"] == state
        assert [r["i"] for r in rows] == list(range(10))


def test_d_e_manager_poll_then_join(rundir):
    """[d]/[e] ManagerPoll counts open streams; after a stop it says 0 and the service exits."""
    manager = mpbackend.setup().manager
    pid = manager.service.pid
    manager.inform_init(make_spec(rundir, "proj", "poll"))
    # Not stopping: polling only counts, the service stays up.
    assert manager.communicate(m.ManagerPoll(), 10) == {"streams": 1}
    assert manager.communicate(m.ManagerPoll(), 10) == {"streams": 1}
    assert manager.service.alive()

    manager.communicate(m.ManagerStop(), 10)
    assert manager.communicate(m.ManagerPoll(), 10) == {"streams": 0}
    assert manager.service.join(10), "the service did not exit after the last poll"
    assert manager.service.exitcode == 0
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    # The router notices; later requests fail at once instead of waiting.
    assert wait_for(lambda: manager.router.error is not None, 5)
    assert not manager.alive
    with pytest.raises(mpbackend.ServiceError):
        manager.communicate(m.ManagerPoll(), 5)
    manager.stop(timeout=5)

    # setup() in this process now starts a fresh service.
    fresh = mpbackend.setup()
    assert fresh.manager is not manager
    assert fresh.manager.service.pid != pid and fresh.manager.alive


def test_teardown_after_manager_stop(rundir):
    """teardown() after Manager.stop() must not raise: ManagerStop already ended the runs.

    Manager.stop() ends the streams in the service but leaves the Run objects
    in ``manager.runs`` (and ``mpbackend.run``) marked running; teardown() then
    sends InformFinish to a service that is gone.
    """
    a = mpbackend.init(project="proj", id="td-a")
    b = mpbackend.init(project="proj", id="td-b", reinit="create_new")
    a.log({"v": 1})
    b.log({"v": 2})
    manager = mpbackend.setup().manager
    manager.stop(timeout=20)
    assert read_run(a.dir)[0]["state"] == "finished"
    assert read_run(b.dir)[0]["state"] == "finished"
    mpbackend.teardown()  # must not raise
    assert read_run(a.dir)[0]["state"] == "finished"


# -- start methods -------------------------------------------------------------


# forkserver appears only once in-process: conftest's reaper kills (and reaps)
# the fork server after the test, and multiprocessing cannot restart a reaped one.
@pytest.mark.parametrize("method", ["spawn", "fork", "forkserver"])
def test_start_method_setting(rundir, method):
    """Each start method, chosen through Settings, starts the service, logs and stores."""
    run = mpbackend.init(project="methods", id=method,
                         settings=mpbackend.Settings(start_method=method))
    manager = mpbackend.setup().manager
    process = manager.service.process
    assert manager.settings.start_method == method
    assert type(process).__name__ == PROCESS_CLASS[method]
    assert process.pid != os.getpid() and process.is_alive()
    for i in range(500):
        run.log({"i": i, "m": {"sq": i * i}})
    run.flush()
    with mpbackend.RunReader(run.dir) as reader:
        assert reader.row_count() == 500
    run.finish()
    mpbackend.teardown()
    assert process.exitcode == 0
    info, rows = read_run(run.dir)
    assert info["state"] == "finished"
    assert [(r["_step"], r["i"], r["m.sq"]) for r in rows] == [(i, i, i * i) for i in range(500)]


def test_start_method_from_env_fork(tmp_path):
    """MPBACKEND_START_METHOD=fork starts a forked service, which logs and stores."""
    proc = run_script("""
        import json, mpbackend
        run = mpbackend.init(project="env", id="fork")
        manager = mpbackend.setup().manager
        kind = type(manager.service.process).__name__
        method = manager.settings.start_method
        for i in range(200):
            run.log({"i": i})
        run.finish()
        with mpbackend.RunReader(run.dir) as reader:
            out = {"kind": kind, "method": method, "state": reader.info()["state"],
                   "steps": [r["_step"] for r in reader.history()],
                   "values": [r["i"] for r in reader.history()]}
        print("RESULT " + json.dumps(out), flush=True)
    """, tmp_path, timeout=45, env={"MPBACKEND_START_METHOD": "fork"})
    out = result_of(proc)
    assert proc.returncode == 0, proc.stderr
    assert out["method"] == "fork" and out["kind"] == "ForkProcess"
    assert out["state"] == "finished"
    assert out["steps"] == list(range(200)) and out["values"] == list(range(200))


def test_invalid_start_method(tmp_path, monkeypatch):
    """An unknown start method is a ValueError before any process starts."""
    monkeypatch.setenv("MPBACKEND_DIR", str(tmp_path / "mpruns"))
    children = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(ValueError, match="start_method"):
        mpbackend.Settings(start_method="threads")
    assert mpbackend.Settings(start_method="thread").start_method == "spawn"  # wandb's
    with pytest.raises(ValueError, match="start_method"):
        mpbackend.init(project="bad", id="x", settings={"start_method": "threads"})
    with pytest.raises(ValueError, match="start_method"):
        mpbackend.setup(settings={"start_method": "Spawn"})
    monkeypatch.setenv("MPBACKEND_START_METHOD", "posix_spawn")
    with pytest.raises(ValueError, match="start_method"):
        mpbackend.init(project="bad", id="y")
    assert current_setup() is None
    assert {p.pid for p in psutil.Process().children(recursive=True)} == children
    assert not (tmp_path / "mpruns").exists()


# -- serialisation, in the caller's thread ---------------------------------------


def test_class_from_main_is_sent_by_value(tmp_path):
    """A value whose class lives in the script's __main__ goes by cloudpickle and works.

    The service has no such class (spawn: the script is never imported there),
    so it must travel by value. The service keeps plain data only: an object with
    ``__float__`` is stored as its float. Nothing may break: the run finishes normally.
    """
    proc = run_script("""
        import json, pickle, mpbackend
        from mpbackend.user.interface import dumps

        class Point:
            def __init__(self, x):
                self.x = x
            def __float__(self):
                return float(self.x)
            def __str__(self):
                return f"Point({self.x})"

        by_ref = b"__main__" in pickle.dumps(Point(1))
        by_value = b"cloudpickle" in dumps(Point(1))
        run = mpbackend.init(project="ser", id="main-class")
        run.log({"p": Point(3), "n": 1})
        run.log({"n": 2})
        run.flush()
        with mpbackend.RunReader(run.dir) as reader:
            rows = reader.history()
        print("ROWS " + json.dumps({"by_ref": by_ref, "by_value": by_value, "rows": rows}),
              flush=True)
        run.finish()
        with mpbackend.RunReader(run.dir) as reader:
            info = reader.info()
        print("FINISHED " + json.dumps({"state": run.state, "summary": dict(run.summary),
                                        "db_state": info["state"]}), flush=True)
    """, tmp_path, timeout=45, env={"MPBACKEND_START_METHOD": "spawn"})
    sent = result_of(proc, "ROWS ")
    assert sent["by_ref"] and sent["by_value"]
    rows = sent["rows"]
    assert [r["_step"] for r in rows] == [0, 1]
    assert rows[0]["p"] == 3.0 and rows[0]["n"] == 1
    assert "p" not in rows[1] and rows[1]["n"] == 2
    # The run must finish normally after that.
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    finished = result_of(proc, "FINISHED ")
    assert finished["state"] == "finished" and finished["db_state"] == "finished"
    assert finished["summary"]["n"] == 2


def test_objects_with_no_stored_form_raise_naming_key_and_type(rundir):
    """A module, an instance of an arbitrary class or a callable object has no
    faithful stored form: log(), config and summary raise TypeError at the call,
    naming the key and the type, and nothing is ever stored as its repr. Functions
    and classes are stored by their qualified name, as wandb stores them. A
    matplotlib figure is media (an Image, tests/test_media.py): the config refuses it."""
    import matplotlib
    import torch
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    class Opaque:
        pass

    class Callable:
        def __call__(self):
            return 1

    figure = plt.figure()
    run = mpbackend.init(project="ser", id="no-form")
    cases = {"mod": (os, "the module 'os'"), "obj": (Opaque(), "a value of type"),
             "call": (Callable(), "Callable has no stored form")}
    for key, (value, named) in cases.items():
        for call, data, what in ((run.log, {key: value, "k": 1}, "log()"),
                                 (run.log, {"nest": {key: [value]}}, "log()"),
                                 (run.config.update, {key: value}, "config"),
                                 (run.summary.update, {key: value}, "summary")):
            with pytest.raises(TypeError) as caught:
                call(data)
            text = str(caught.value)
            assert text.startswith(f"{what}: the value of ") and key in text, text
            assert named in text and "has no stored form" in text, text
    for value in (figure, plt):
        with pytest.raises(TypeError, match="config: the value of 'fig'.*is media"):
            run.config.update({"fig": value})
    plt.close(figure)
    run.log({"k": 2, "fn": lambda x: x, "cls": Opaque, "builtin": len})
    run.config.update({"act": torch.nn.ReLU})
    run.finish()
    info, rows = read_run(run.dir)
    assert [r["k"] for r in rows] == [2]
    assert rows[0]["fn"].endswith(".<lambda>") and rows[0]["builtin"] == "builtins.len"
    assert rows[0]["cls"] == f"{__name__}.{Opaque.__qualname__}"
    assert info["config"] == {"act": "torch.nn.modules.activation.ReLU"}
    assert info["state"] == "finished"
    assert {k for k in info["summary"] if k[0] != "_"} == {"k", "fn", "cls", "builtin"}


def test_unpicklable_values_raise_at_call(rundir, tmp_path):
    """A value nothing can serialise raises TypeError at log(), naming the key; the run lives on.

    (A file opened for *reading* is not in the list: cloudpickle serialises it by
    content. One opened for writing cannot be serialised.)
    """
    run = mpbackend.init(project="ser", id="bad")
    run.log({"ok": 0})
    wfile = open(tmp_path / "out.txt", "w")
    try:
        bad_values = [("lock", threading.Lock()), ("gen", (i for i in range(3))),
                      ("file", wfile)]
        for n, (key, value) in enumerate(bad_values, start=1):
            with pytest.raises(TypeError, match=f"'{key}'"):
                run.log({"fine": 1.0, key: value})
            run.log({"ok": n})
        with pytest.raises(TypeError, match=r"'outer\.lock'"):
            run.log({"outer": {"lock": threading.Lock()}, "fine": 2})
    finally:
        wfile.close()
    run.log({"ok": 99})
    run.flush()
    rows = read_run(run.dir)[1]
    assert [r["ok"] for r in rows] == [0, 1, 2, 3, 99]
    assert [r["_step"] for r in rows] == [0, 1, 2, 3, 4]
    assert not any("fine" in r for r in rows), "a rejected call must log nothing"
    run.finish()
    assert read_run(run.dir)[0]["state"] == "finished"


def test_mp_queue_fails_late_mpbackend_fails_at_call(rundir, capfd):
    """multiprocessing.Queue.put() accepts a lock and fails in its feeder thread;
    log() raises at the call."""
    lock = threading.Lock()
    q = multiprocessing.get_context("spawn").Queue()
    try:
        q.put(lock)  # no error here
        with pytest.raises(queue.Empty):
            q.get(timeout=0.5)  # the item was never sent
    finally:
        q.close()
        q.join_thread()
    assert "cannot pickle" in capfd.readouterr().err  # the feeder thread's traceback

    run = mpbackend.init(project="ser", id="contrast")
    with pytest.raises(TypeError, match="_thread.lock has no stored form"):
        run.log({"lock": lock})
    run.log({"after": 1})
    run.finish()
    assert [r["after"] for r in read_run(run.dir)[1]] == [1]


def test_non_str_keys_raise_at_call(rundir):
    run = mpbackend.init(project="ser", id="keys")
    for data in ({1: 2.0}, {("a", "b"): 1}, {None: 1}, {b"x": 1},
                 {"ok": 1, 2: 3}, {"nested": {3: 1}}):
        with pytest.raises(TypeError, match="keys must be str"):
            run.log(data)
    with pytest.raises(ValueError, match="empty"):
        run.log({"": 1})
    with pytest.raises(TypeError):
        run.log([("a", 1)])
    run.log({"good": 1})
    run.finish()
    rows = read_run(run.dir)[1]
    assert [(r["_step"], r["good"]) for r in rows] == [(0, 1)]


def test_str_enum_key_from_main_is_not_lost(tmp_path):
    """A str-subclass key (an Enum defined in the script) is stored or rejected, never lost.

    Keys must be str: the slow path of log() rejects a str subclass with
    TypeError at the call. With plain values the same key must not be sent to
    a service that cannot unpickle it and silently dropped there.
    """
    proc = run_script("""
        import enum, json, mpbackend

        class Metric(str, enum.Enum):
            LOSS = "loss"

        run = mpbackend.init(project="ser", id="enum-key")
        try:
            run.log({Metric.LOSS: 0.5})
            outcome = "accepted"
        except TypeError as exc:
            outcome = "TypeError: " + str(exc)
        run.log({"other": 1})
        run.finish()
        with mpbackend.RunReader(run.dir) as reader:
            rows = reader.history()
        print("RESULT " + json.dumps({"outcome": outcome, "rows": rows}), flush=True)
    """, tmp_path, timeout=45, env={"MPBACKEND_START_METHOD": "spawn"})
    out = result_of(proc)
    assert proc.returncode == 0, proc.stderr
    rows = out["rows"]
    if out["outcome"] == "accepted":
        assert "could not be read in the service" not in proc.stderr, proc.stderr
        assert [sorted(k for k in r if not k.startswith("_")) for r in rows] == [
            ["loss"], ["other"]], f"the logged row was lost; stderr:\n{proc.stderr}"
        assert rows[0]["loss"] == 0.5
    else:
        assert out["outcome"].startswith("TypeError")
        assert [r["other"] for r in rows] == [1]


def test_numpy_scalars_become_python_numbers(rundir):
    run = mpbackend.init(project="ser", id="numpy")
    run.log({"f32": np.float32(1.5), "f64": np.float64(2.25), "i64": np.int64(7),
             "i8": np.int8(-3), "b": np.bool_(True), "zero_d": np.array(4.5)})
    run.log({"f32": np.float32(0.5), "f64": np.float64(-1.0), "i64": np.int64(2**40),
             "i8": np.int8(1), "b": np.bool_(False), "zero_d": np.array(3)})
    run.finish()
    rows = read_run(run.dir)[1]
    assert [(r["f32"], r["f64"], r["i64"], r["i8"], r["b"], r["zero_d"]) for r in rows] == [
        (1.5, 2.25, 7, -3, True, 4.5), (0.5, -1.0, 2**40, 1, False, 3)]
    assert type(rows[0]["i64"]) is int and type(rows[0]["b"]) is bool
    conn = sqlite3.connect(os.path.join(run.dir, "run.db"))
    try:
        kinds = dict(conn.execute("SELECT key, kind FROM history_column"))
    finally:
        conn.close()
    # Python floats/ints go in as raw arrays; numpy objects would have gone in as JSON.
    assert kinds["f32"] == kinds["f64"] == "f8"
    assert kinds["i64"] == kinds["i8"] == "i8"


def test_nested_dicts_become_dotted_keys(rundir):
    run = mpbackend.init(project="ser", id="nested")
    run.log({"train": {"loss": 0.5, "opt": {"lr": 1e-3}}, "epoch": 1})
    run.log({"train": {"loss": 0.25}, "val": {}})
    run.finish()
    rows = read_run(run.dir)[1]
    assert {k: v for k, v in rows[0].items() if not k.startswith("_")} == {
        "train.loss": 0.5, "train.opt.lr": 1e-3, "epoch": 1}
    assert {k: v for k, v in rows[1].items() if not k.startswith("_")} == {"train.loss": 0.25}


# -- scripts without a main guard --------------------------------------------------


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_script_without_main_guard(tmp_path, method):
    """The service never re-runs a script that has no ``if __name__ == "__main__":``."""
    proc = run_script("""
        import os
        import mpbackend

        print("TOP", os.getpid(), flush=True)
        run = mpbackend.init(project="noguard", id="ng")
        for i in range(100):
            run.log({"i": i})
        run.finish()
        process = mpbackend.setup().manager.service.process
        with mpbackend.RunReader(run.dir) as reader:
            print("STORED", reader.row_count(), reader.info()["state"],
                  type(process).__name__, flush=True)
    """, tmp_path, timeout=45, env={"MPBACKEND_START_METHOD": method})
    assert proc.returncode == 0, proc.stderr
    tops = lines_with(proc.stdout, "TOP ")
    assert len(tops) == 1, proc.stdout
    assert lines_with(proc.stdout, "STORED ") == [f"100 finished {PROCESS_CLASS[method]}"]
    with mpbackend.RunReader(str(tmp_path / "mpruns" / "noguard" / "ng")) as reader:
        assert [r["i"] for r in reader.history()] == list(range(100))
        assert reader.info()["pid"] == int(tops[0])


# -- many runs in one process ------------------------------------------------------


def test_many_runs_interleaved(rundir):
    runs = [mpbackend.init(project="many", id=f"r{k}", reinit="create_new") for k in range(5)]
    manager = mpbackend.setup().manager
    assert manager.communicate(m.ManagerPoll(), 10) == {"streams": 5}
    expected: list[list[int]] = [[] for _ in runs]
    for i in range(300):
        for k, run in enumerate(runs):
            if i % (k + 1) == 0:
                run.log({f"m{k}": i, "owner": k, "sub": {f"v{k}": i * 0.5}})
                expected[k].append(i)

    runs[2].flush()
    runs[2].finish()
    assert manager.communicate(m.ManagerPoll(), 10) == {"streams": 4}
    for i in range(300, 400):
        for k, run in enumerate(runs):
            if k != 2:
                run.log({f"m{k}": i, "owner": k, "sub": {f"v{k}": i * 0.5}})
                expected[k].append(i)
    for k, run in enumerate(runs):
        if k != 2:
            run.flush()
            info = read_run(run.dir)[0]
            assert info["state"] == "running"
    assert read_run(runs[2].dir)[0]["state"] == "finished"
    for k, run in enumerate(runs):
        if k != 2:
            run.finish()

    for k, run in enumerate(runs):
        info, rows = read_run(run.dir)
        assert info["state"] == "finished" and info["id"] == f"r{k}"
        assert [r["_step"] for r in rows] == list(range(len(expected[k])))
        assert [r[f"m{k}"] for r in rows] == expected[k]
        assert all(r["owner"] == k and r[f"sub.v{k}"] == r[f"m{k}"] * 0.5 for r in rows)
        keys = set().union(*(r.keys() for r in rows))
        assert keys == {"_step", "_runtime", "_timestamp", f"m{k}", "owner", f"sub.v{k}"}
        assert info["step"] == len(expected[k])
    assert len(expected[2]) == 100 and len(expected[0]) == 400


# -- the store ---------------------------------------------------------------------


def test_store_layout_wal_schema(rundir):
    run = mpbackend.init(project="store", id="layout", config={"lr": 0.01, "layers": [1, 2]},
                         tags=["a", "b"], notes="hello", group="g", job_type="train")
    path = rundir / "store" / "layout" / "run.db"
    assert run.dir == str(rundir / "store" / "layout")
    assert path.is_file()
    run.log({"x": 1.5})
    run.log({"x": 2.5, "s": "hi", "nan": math.nan})
    run.flush()

    conn = sqlite3.connect(str(path))
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() \
            == (str(SCHEMA_VERSION),)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"meta", "run", "history_chunk", "history_column"} <= tables
    finally:
        conn.close()

    info, rows = read_run(run.dir)
    assert info["state"] == "running"
    assert info["config"] == {"lr": 0.01, "layers": [1, 2]}
    assert info["tags"] == ["a", "b"] and info["notes"] == "hello"
    assert info["group"] == "g" and info["job_type"] == "train"
    assert info["pid"] == os.getpid() and info["project"] == "store"
    assert [r["x"] for r in rows] == [1.5, 2.5] and rows[1]["s"] == "hi"
    assert math.isnan(rows[1]["nan"])

    run.finish()
    info, rows = read_run(run.dir)
    assert info["state"] == "finished" and info["step"] == 2
    assert info["summary"]["x"] == 2.5 and info["summary"]["s"] == "hi"
    assert not list((rundir / "store").glob("*.db")), "nothing outside the run's own dir"


def test_live_run_readable_from_another_process(rundir, tmp_path):
    """While a run is open, another process reads everything flushed so far."""
    run = mpbackend.init(project="store", id="live")
    code = ("import json, sys, mpbackend\n"
            "r = mpbackend.RunReader(sys.argv[1])\n"
            "rows = r.history()\n"
            "print(json.dumps({'count': r.row_count(), 'state': r.info()['state'],"
            " 'steps': [x['_step'] for x in rows], 'values': [x['i'] for x in rows]}))\n")

    def read_elsewhere() -> dict:
        proc = subprocess.run([sys.executable, "-c", code, run.dir], env=python_env(tmp_path),
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    for i in range(300):
        run.log({"i": i})
    run.flush()
    seen = read_elsewhere()
    assert seen["state"] == "running" and seen["count"] == 300
    assert seen["steps"] == list(range(300)) and seen["values"] == list(range(300))

    for i in range(300, 1500):  # crosses a chunk boundary while the run is open
        run.log({"i": i})
    run.flush()
    seen = read_elsewhere()
    assert seen["state"] == "running" and seen["count"] == 1500
    assert seen["values"] == list(range(1500))
    run.finish()


def test_slow_logging_writes_parts_that_merge(rundir):
    """A commit writes only its new rows (a part of the open chunk); MAX_PARTS parts
    merge into one chunk, so neither a commit per row rewrites the whole open
    chunk nor do one-row chunks pile up. Keys keep the order they were logged in."""
    run = mpbackend.init(project="store", id="chunks")
    db = os.path.join(run.dir, "run.db")

    def chunk_stats() -> tuple[int, int]:
        conn = sqlite3.connect(db)
        try:
            return conn.execute("SELECT COUNT(*), COALESCE(SUM(nrows), 0) "
                                "FROM history_chunk").fetchone()
        finally:
            conn.close()

    for i in range(10):
        run.log({"i": i, "b": -i, "a": i * 0.5})
        run.flush()
    assert chunk_stats() == (10, 10)  # one part per commit, nothing rewritten
    for i in range(10, MAX_PARTS):
        run.log({"i": i, "b": -i, "a": i * 0.5})
        run.flush()
    assert chunk_stats() == (1, MAX_PARTS)  # the parts merged into one chunk
    with mpbackend.RunReader(run.dir) as reader:
        assert list(reader.history()[0]) == ["_step", "i", "b", "a", "_runtime", "_timestamp"]

    total = 2500
    for i in range(MAX_PARTS, total):
        run.log({"i": i, "b": -i, "a": i * 0.5})
        if i % 97 == 0:
            run.flush()
    run.flush()
    count, nrows = chunk_stats()
    assert nrows == total
    assert count <= total // CHUNK_ROWS + MAX_PARTS
    run.finish()
    rows = read_run(run.dir)[1]
    assert [r["_step"] for r in rows] == list(range(total))
    assert [r["i"] for r in rows] == list(range(total))


@pytest.mark.parametrize("field", ["id", "project"])
def test_invalid_names_rejected(rundir, tmp_path, field):
    """Ids and projects that are not one safe path component: ValueError, nothing written."""
    before = sorted(tmp_path.rglob("*"))
    bad_names = ["../x", "/abs", "a/b", "..", ".", "", ".hidden", "a..b", "x" * 129,
                 "a\\b", "a\x00b", "~x", 12]
    for bad in bad_names:
        kwargs = {"project": "ok", "id": "ok", field: bad}
        with pytest.raises(ValueError):
            mpbackend.init(**kwargs)
    assert sorted(tmp_path.rglob("*")) == before
    assert not rundir.exists()
    assert not os.path.exists("/abs")
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()
    assert current_setup() is None  # rejected before the service was started


# -- wandb step rules ----------------------------------------------------------------


def test_step_rules(rundir, caplog):
    caplog.set_level(logging.WARNING, logger="mpbackend")
    run = mpbackend.init(project="steps", id="rules")
    run.log({"a": 1}, commit=False)           # pending row
    run.log({"b": 2}, commit=False)           # merged into it
    run.log({"c": 3})                         # merged and committed: step 0
    run.log({"d": 4}, step=1)                 # step given: commit defaults to False
    run.log({"e": 5}, step=1)                 # current step: merged
    run.log({"f": 6}, step=5)                 # larger: commits step 1, moves to 5
    run.log({"g": 7}, step=2)                 # smaller: dropped with a warning
    run.log({"h": 8})                         # merged into step 5 and committed
    run.log({"i": 9}, step=6, commit=True)    # committed at once
    run.log({})                               # nothing pending: an empty row, step 7
    run.log({"j": 10}, commit=False)
    run.log({})                               # commits the pending row: step 8
    run.log({"k": 11}, commit=False)          # pending: not committed by a flush
    run.flush()

    def user_rows() -> list[tuple]:
        return [(r["_step"], {k: v for k, v in r.items() if not k.startswith("_")})
                for r in read_run(run.dir)[1]]

    assert user_rows() == [
        (0, {"a": 1, "b": 2, "c": 3}),
        (1, {"d": 4, "e": 5}),
        (5, {"f": 6, "h": 8}),
        (6, {"i": 9}),
        (7, {}),
        (8, {"j": 10}),
    ]

    def warned() -> list[logging.LogRecord]:
        return [r for r in caplog.records
                if r.name == "mpbackend" and r.levelno == logging.WARNING
                and "step 2 is less than the current step" in r.getMessage()]

    assert wait_for(lambda: bool(warned()), 5), [r.getMessage() for r in caplog.records]
    assert len(warned()) == 1 and "'g'" in warned()[0].getMessage()

    run.finish()  # commits the pending row
    info = read_run(run.dir)[0]
    assert user_rows()[-1] == (9, {"k": 11})
    assert info["step"] == 10
    assert "g" not in info["summary"] and info["summary"]["k"] == 11


def test_step_argument_is_checked_at_call(rundir):
    run = mpbackend.init(project="steps", id="checks")
    with pytest.raises(ValueError):
        run.log({"a": 1}, step=-1)
    for bad in (1.5, "3", True):
        with pytest.raises(TypeError):
            run.log({"a": 1}, step=bad)
    run.log({"a": 1}, step=np.int64(4), commit=True)
    run.finish()
    assert [r["_step"] for r in read_run(run.dir)[1]] == [4]


def test_no_main_guard_with_a_spawn_dataloader(tmp_path):
    """A script with no main guard that logs from spawn DataLoader workers runs once.

    Spawned workers would re-run the whole script to rebuild its __main__ (and die
    starting processes while bootstrapping); with mpbackend set up they run only
    its definitions, so the Dataset class resolves and the top level runs once.
    """
    proc = run_script("""
        import os
        import torch
        from torch.utils.data import DataLoader, Dataset
        import mpbackend

        print("TOP", os.getpid(), flush=True)
        N = 20

        class Items(Dataset):
            def __init__(self, run):
                self.run = run
            def __len__(self):
                return N
            def __getitem__(self, i):
                self.run.log({"item": i})
                return i

        run = mpbackend.init(project="noguard", id="spawn-dl")
        loader = DataLoader(Items(run), batch_size=5, num_workers=2,
                            multiprocessing_context="spawn")
        for batch in loader:
            run.log({"batch_sum": int(batch.sum())})
        run.finish()
        rows = mpbackend.RunReader(run.dir).history()
        print("END", len(rows), sorted(r["item"] for r in rows if "item" in r) == list(range(N)),
              flush=True)
    """, tmp_path, timeout=110)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("TOP") == 1, proc.stdout
    assert "END 24 True" in proc.stdout, proc.stdout + proc.stderr
