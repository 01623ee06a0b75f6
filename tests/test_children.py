"""A run's handle in child processes, tested on real processes: DataLoader workers,
multiprocessing children, pool workers and bare ``os.fork()`` children.

Sections follow the issue:

1. PyTorch DataLoader workers (fork, spawn, forkserver; 2 and 4 workers) log from
   ``Dataset.__getitem__`` and ``worker_init_fn`` while the main loop logs.
2. The Run given to ``multiprocessing.Process(args=...)``, to a pool's
   ``initializer``, and inherited through ``os.fork()``.
3. The Run passed where it cannot travel (a task argument of a started pool).
4. Only the owner finishes: ``finish()`` and ``summary`` in a child, a child's
   exit, and a parent's ``finish()`` that never waits on its children.
5. Fork hygiene: ``os.fork()`` while another thread logs.

Every case with children runs as a script in its own session (so whatever it
leaves behind is killed with its process group); the scripts print one
``RESULT {json}`` line and the test reads the run back from its database.
Nothing is mocked, every wait is bounded, every process is reaped.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest
from conftest import ROOT
from conftest import assert_steps as _assert_steps
from conftest import result as _result
from conftest import stored as _stored

import mpbackend

pytestmark = pytest.mark.timeout(120)

RESULT = "RESULT "
START_METHODS = ("fork", "spawn", "forkserver")


# -- helpers ---------------------------------------------------------------------


def _run(code: str, tmp_path, timeout: float = 60, env: dict | None = None,
         name: str = "script.py") -> subprocess.CompletedProcess:
    """Run ``code`` as a script in a new session; its process group is killed afterwards.

    Like conftest's ``run_script``, but what the script leaves behind (or all of
    it, on a timeout) is SIGKILLed through the process group, since orphans are
    not children of the pytest process. Processes of the group still running
    after the script ended are recorded in ``.leftover`` (multiprocessing's
    resource tracker and fork server end on their own and are not counted).
    """
    script = tmp_path / name
    script.write_text(textwrap.dedent(code))
    full_env = {**os.environ, "PYTHONPATH": ROOT, "MPBACKEND_DIR": str(tmp_path / "mpruns")}
    full_env.update(env or {})
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        deadline = time.monotonic() + 3
        while _group(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        leftover = [" ".join(p.cmdline()) for p in _group(proc.pid)]
    except subprocess.TimeoutExpired:
        _killpg(proc.pid)
        stdout, stderr = proc.communicate(timeout=10)
        raise AssertionError(f"the script did not end within {timeout} s\n"
                             f"stdout:\n{stdout}\nstderr:\n{stderr}") from None
    finally:
        _killpg(proc.pid)
    completed = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    completed.leftover = leftover
    return completed


def _group(pgid: int) -> list[psutil.Process]:
    """Live processes of process group ``pgid``, but multiprocessing's shared helpers."""
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) != pgid or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(proc.cmdline())
        except (OSError, psutil.Error):
            continue
        if "resource_tracker" not in cmdline and "forkserver" not in cmdline:
            found.append(proc)
    return found


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _reap(pids: list[int], timeout: float) -> tuple[dict[int, int], list[int]]:
    """waitpid() every pid within ``timeout`` s; the ones still running are SIGKILLed.

    Returns ({pid: exit code}, [pids that had to be killed]).
    """
    codes: dict[int, int] = {}
    pending = set(pids)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                codes[pid] = os.waitstatus_to_exitcode(status)
                pending.discard(pid)
        if pending:
            time.sleep(0.01)
    stuck = sorted(pending)
    for pid in stuck:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _, status = os.waitpid(pid, 0)
        codes[pid] = os.waitstatus_to_exitcode(status)
    return codes, stuck


# -- 1. DataLoader workers ----------------------------------------------------------

ITEMS, BATCH, EPOCHS = 18, 3, 2

DATALOADER = f"""
    import gc, json, os, time
    import torch
    from torch.utils.data import DataLoader, Dataset, get_worker_info
    import mpbackend

    ITEMS, BATCH, EPOCHS = {ITEMS}, {BATCH}, {EPOCHS}


    class LoggingDataset(Dataset):
        \"\"\"Holds the run: every item a worker fetches logs one row.\"\"\"

        def __init__(self, run, tag):
            self.run = run
            self.tag = tag

        def __len__(self):
            return ITEMS

        def __getitem__(self, i):
            info = get_worker_info()
            self.run.log({{"item": i, "tag": self.tag, "wid": info.id, "wpid": os.getpid()}})
            return torch.tensor([float(i)])


    def worker_init(worker_id):
        info = get_worker_info()
        info.dataset.run.log({{"init": worker_id, "tag": info.dataset.tag,
                              "wpid": os.getpid()}})


    def main():
        method = os.environ["MP_METHOD"]
        persistent = method != "fork"  # spawned workers are slow to start: keep them
        started = time.monotonic()
        run = mpbackend.init(project="loader")
        service = mpbackend.setup().manager.service.pid
        k = 0
        loops = []
        for workers in (2, 4):
            tag = f"{{method}}-{{workers}}"
            loader = DataLoader(LoggingDataset(run, tag), batch_size=BATCH,
                                num_workers=workers, multiprocessing_context=method,
                                worker_init_fn=worker_init, persistent_workers=persistent)
            for epoch in range(EPOCHS):
                for b, batch in enumerate(loader):
                    run.log({{"loss": float(batch.sum()), "k": k, "b": b, "tag": tag,
                             "epoch": epoch}})
                    k += 1
            del loader, batch  # persistent workers are shut down here
            gc.collect()
            loops.append({{"tag": tag, "workers": workers}})
        run.finish()
        print("RESULT " + json.dumps({{
            "dir": run.dir, "pid": os.getpid(), "service_pid": service, "k": k,
            "state": run.state, "persistent": persistent, "loops": loops,
            "seconds": time.monotonic() - started}}), flush=True)


    if __name__ == "__main__":
        main()
"""


@pytest.mark.parametrize("method", START_METHODS)
def test_dataloader_workers_log_into_the_run(tmp_path, method):
    completed = _run(DATALOADER, tmp_path, timeout=100, env={"MP_METHOD": method})
    assert completed.returncode == 0, completed.stderr
    res = _result(completed)
    assert res["state"] == "finished"
    info, history = _stored(res["dir"])
    assert info["state"] == "finished", completed.stderr
    _assert_steps(history)
    main_pid = res["pid"]

    # The main loop's rows: all of them, in order, untagged.
    main_rows = [row for row in history if "k" in row]
    assert [row["k"] for row in main_rows] == list(range(res["k"]))
    batches = -(-ITEMS // BATCH)
    assert res["k"] == 2 * EPOCHS * batches
    expected = [(loop["tag"], epoch, b, float(sum(range(b * BATCH, (b + 1) * BATCH))))
                for loop in res["loops"] for epoch in range(EPOCHS) for b in range(batches)]
    assert [(r["tag"], r["epoch"], r["b"], r["loss"]) for r in main_rows] == expected
    assert all("_pid" not in row and "_worker" not in row for row in main_rows)

    for loop in res["loops"]:
        tag, workers = loop["tag"], loop["workers"]
        # Every item, from every worker, exactly once per epoch.
        items = [row for row in history if row.get("tag") == tag and "item" in row]
        counts = collections.Counter(row["item"] for row in items)
        assert counts == {i: EPOCHS for i in range(ITEMS)}, (tag, counts)
        for row in items:
            assert row.get("_pid") == row["wpid"], (tag, row)  # the worker's pid...
            assert row["_pid"] != main_pid, (tag, row)  # ...not the parent's
            assert row.get("_worker") == row["wid"], (tag, row)
        assert {row["_worker"] for row in items} == set(range(workers)), tag

        # worker_init_fn logged from every worker id (once per worker process).
        inits = [row for row in history if row.get("tag") == tag and "init" in row]
        starts = 1 if res["persistent"] else EPOCHS
        assert collections.Counter(row["init"] for row in inits) == \
            {w: starts for w in range(workers)}, (tag, inits)
        for row in inits:
            assert row.get("_pid") == row["wpid"] != main_pid, (tag, row)
            assert row.get("_worker") == row["init"], (tag, row)
        assert len({row["_pid"] for row in inits}) == workers * starts, (tag, inits)
        # Items came from the worker processes that ran worker_init_fn, as their id.
        worker_of = {row["_pid"]: row["_worker"] for row in inits}
        for row in items:
            assert worker_of.get(row["_pid"]) == row["_worker"], (tag, row)

    n_items = sum(1 for row in history if "item" in row)
    n_inits = sum(1 for row in history if "init" in row)
    assert len(history) == res["k"] + n_items + n_inits
    assert completed.leftover == [], "workers or the service outlived the script"


# -- 2. the run handle in children -------------------------------------------------

PROCESS_ARGS = """
    import json, multiprocessing, os, time
    import mpbackend

    N = 25


    def child(run, tag):
        for j in range(N):
            run.log({"j": j, "who": tag, "cpid": os.getpid()})
        mpbackend.log({"via": "mpbackend.log", "who": tag, "cpid": os.getpid()})
        started = time.monotonic()
        run.flush(timeout=20)
        run.log({"flush_seconds": time.monotonic() - started, "who": tag,
                 "cpid": os.getpid()})


    def main():
        method = os.environ["MP_METHOD"]
        run = mpbackend.init(project="handles")
        service = mpbackend.setup().manager.service.pid
        for i in range(10):
            run.log({"i": i, "who": "parent"})
        ctx = multiprocessing.get_context(method)
        procs = [ctx.Process(target=child, args=(run, f"child{n}")) for n in range(2)]
        for p in procs:
            p.start()
        for i in range(10, 20):
            run.log({"i": i, "who": "parent"})
        for p in procs:
            p.join(30)
        codes = [p.exitcode for p in procs]
        for p in procs:
            if p.exitcode is None:
                p.kill()
                p.join(5)
        for i in range(20, 30):
            run.log({"i": i, "who": "parent"})
        same_service = mpbackend.setup().manager.service.pid == service
        run.finish()
        print("RESULT " + json.dumps({
            "dir": run.dir, "pid": os.getpid(), "state": run.state, "codes": codes,
            "pids": {f"child{n}": p.pid for n, p in enumerate(procs)},
            "same_service": same_service}), flush=True)


    if __name__ == "__main__":
        main()
"""


@pytest.mark.parametrize("method", START_METHODS)
def test_run_given_to_process_args(tmp_path, method):
    completed = _run(PROCESS_ARGS, tmp_path, timeout=60, env={"MP_METHOD": method})
    assert completed.returncode == 0, completed.stderr
    assert completed.leftover == [], completed.leftover
    res = _result(completed)
    assert res["codes"] == [0, 0], completed.stderr
    assert res["state"] == "finished" and res["same_service"]
    info, history = _stored(res["dir"])
    assert info["state"] == "finished"
    _assert_steps(history)

    parent = [row for row in history if row.get("who") == "parent"]
    assert [row["i"] for row in parent] == list(range(30))
    assert all("_pid" not in row for row in parent)
    for tag, pid in res["pids"].items():
        assert pid != res["pid"]
        rows = [row for row in history if row.get("who") == tag]
        assert [row["j"] for row in rows if "j" in row] == list(range(25)), tag
        assert [row["via"] for row in rows if "via" in row] == ["mpbackend.log"], tag
        flushes = [row["flush_seconds"] for row in rows if "flush_seconds" in row]
        assert len(flushes) == 1 and flushes[0] < 10, (tag, flushes)
        assert len(rows) == 25 + 2, tag
        for row in rows:
            assert row.get("_pid") == pid == row["cpid"], (tag, row)
            assert "_worker" not in row, (tag, row)  # not a DataLoader worker
    assert len(history) == 30 + 2 * 27


POOL_INITIALIZER = """
    import concurrent.futures, json, multiprocessing, os
    import mpbackend

    RUN = None
    TASKS = 24


    def init_worker(run):
        global RUN
        RUN = run
        RUN.log({"pool_init": os.getpid()})


    def task(i):
        RUN.log({"task": i, "tpid": os.getpid()})
        return os.getpid()


    def main():
        run = mpbackend.init(project="pool")
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(
                max_workers=2, mp_context=ctx, initializer=init_worker,
                initargs=(run,)) as pool:
            futures = [pool.submit(task, i) for i in range(TASKS)]
            for i in range(10):
                run.log({"i": i, "who": "parent"})
            pids = [f.result(timeout=60) for f in futures]
        for i in range(10, 20):
            run.log({"i": i, "who": "parent"})
        run.finish()
        print("RESULT " + json.dumps({"dir": run.dir, "pid": os.getpid(), "pids": pids,
                                      "state": run.state}), flush=True)


    if __name__ == "__main__":
        main()
"""


def test_run_given_to_pool_initializer(tmp_path):
    completed = _run(POOL_INITIALIZER, tmp_path, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.leftover == [], completed.leftover
    res = _result(completed)
    assert res["state"] == "finished"
    info, history = _stored(res["dir"])
    assert info["state"] == "finished"
    _assert_steps(history)

    parent = [row for row in history if row.get("who") == "parent"]
    assert [row["i"] for row in parent] == list(range(20))
    assert all("_pid" not in row for row in parent)
    inits = [row for row in history if "pool_init" in row]
    init_pids = [row["pool_init"] for row in inits]
    assert 1 <= len(inits) <= 2 and len(set(init_pids)) == len(inits), inits
    assert all(row.get("_pid") == row["pool_init"] != res["pid"] for row in inits), inits
    tasks = [row for row in history if "task" in row]
    assert sorted(row["task"] for row in tasks) == list(range(24))
    for row in tasks:
        assert row.get("_pid") == row["tpid"] == res["pids"][row["task"]], row
        assert row["_pid"] in init_pids, row  # the worker whose initializer set RUN
    assert len(history) == 20 + len(inits) + 24


BARE_FORK = """
    import json, os, signal, sys, time
    import psutil
    import mpbackend

    N = 40


    def wait_bounded(pid, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return "stuck"


    def main():
        run = mpbackend.init(project="barefork")
        service = mpbackend.setup().manager.service.pid
        for i in range(10):
            run.log({"i": i, "who": "parent"})

        flushed = os.fork()
        if flushed == 0:  # logs, flushes, and leaves without any exit handler
            code = 3
            try:
                for j in range(N):
                    run.log({"j": j, "who": "os._exit", "cpid": os.getpid()})
                started = time.monotonic()
                run.flush(timeout=20)
                run.log({"flush_seconds": time.monotonic() - started, "who": "os._exit",
                         "cpid": os.getpid()})
                run.flush(timeout=20)
                code = 0
            finally:
                os._exit(code)

        exiting = os.fork()
        if exiting == 0:  # logs and exits normally: the drain at exit sends it all
            for j in range(N):
                run.log({"j": j, "who": "sys.exit", "cpid": os.getpid()})
            sys.exit(0)

        codes = {"os._exit": wait_bounded(flushed, 30), "sys.exit": wait_bounded(exiting, 30)}
        proc = psutil.Process(service)
        alive = proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        same_service = mpbackend.setup().manager.service.pid == service
        state_after_children = run.state
        for i in range(10, 20):
            run.log({"i": i, "who": "parent"})
        run.finish()
        print("RESULT " + json.dumps({
            "dir": run.dir, "pid": os.getpid(), "state": run.state, "codes": codes,
            "pids": {"os._exit": flushed, "sys.exit": exiting}, "alive": alive,
            "same_service": same_service, "state_after_children": state_after_children}),
            flush=True)


    if __name__ == "__main__":
        main()
"""


def test_run_inherited_through_bare_fork(tmp_path):
    completed = _run(BARE_FORK, tmp_path, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.leftover == [], completed.leftover
    res = _result(completed)
    assert res["codes"] == {"os._exit": 0, "sys.exit": 0}, completed.stderr
    assert res["alive"] and res["same_service"]
    assert res["state_after_children"] == "running"
    assert res["state"] == "finished"
    info, history = _stored(res["dir"])
    assert info["state"] == "finished"
    _assert_steps(history)

    parent = [row for row in history if row.get("who") == "parent"]
    assert [row["i"] for row in parent] == list(range(20))
    assert all("_pid" not in row for row in parent)
    for tag, pid in res["pids"].items():
        rows = [row for row in history if row.get("who") == tag]
        assert [row["j"] for row in rows if "j" in row] == list(range(40)), \
            (tag, completed.stderr)
        assert all(row.get("_pid") == pid == row["cpid"] for row in rows), tag
    flushes = [row["flush_seconds"] for row in history if "flush_seconds" in row]
    assert len(flushes) == 1 and flushes[0] < 10, flushes  # flush() in a child returns


# -- 3. where the run cannot travel ------------------------------------------------

TASK_ARGUMENT = """
    import concurrent.futures, json, multiprocessing, os, pickle, time
    import mpbackend

    RUN = None


    def init_worker(run):
        global RUN
        RUN = run


    def ping():
        return os.getpid()


    def uses_run(run):
        run.log({"never": 1})
        return "ran"


    def task(i):
        RUN.log({"task": i})
        return os.getpid()


    def chain(exc):
        out = []
        while exc is not None and len(out) < 5:
            out.append({"type": type(exc).__name__, "message": str(exc),
                        "usage": isinstance(exc, mpbackend.UsageError)})
            exc = exc.__cause__ if exc.__cause__ is not None else exc.__context__
        return out


    def main():
        run = mpbackend.init(project="refuse")
        for i in range(5):
            run.log({"i": i, "who": "parent"})
        try:
            pickle.dumps(run)
            direct = None
        except Exception as exc:
            direct = chain(exc)
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=ctx, initializer=init_worker,
                initargs=(run,)) as pool:
            worker = pool.submit(ping).result(timeout=60)  # the pool has started
            started = time.monotonic()
            future = pool.submit(uses_run, run)
            try:
                outcome = {"value": future.result(timeout=20)}
            except concurrent.futures.TimeoutError:
                outcome = {"timeout": True}
            except Exception as exc:
                outcome = {"errors": chain(exc)}
            outcome["seconds"] = time.monotonic() - started
            for i in range(5, 10):
                run.log({"i": i, "who": "parent"})
            after = pool.submit(task, 7).result(timeout=30)  # the pool still works
        for i in range(10, 15):
            run.log({"i": i, "who": "parent"})
        run.flush(timeout=20)
        run.finish()
        print("RESULT " + json.dumps({"dir": run.dir, "state": run.state, "direct": direct,
                                      "outcome": outcome, "worker": worker,
                                      "after": after}), flush=True)


    if __name__ == "__main__":
        main()
"""


def test_run_as_task_argument_of_started_pool_is_refused(tmp_path):
    completed = _run(TASK_ARGUMENT, tmp_path, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.leftover == [], completed.leftover
    res = _result(completed)

    outcome = res["outcome"]
    assert "errors" in outcome, outcome  # neither a result nor a hang
    assert outcome["seconds"] < 10, outcome
    errors = outcome["errors"]
    messages = " | ".join(e["message"] for e in errors)
    assert "initializer" in messages, errors
    assert "can only be given to a child process as the process is created" in messages, \
        errors
    assert any(e["usage"] and e["type"] == "UsageError" for e in errors), errors

    # pickle.dumps outside a process start is refused the same way.
    assert res["direct"] and res["direct"][0]["usage"], res["direct"]
    assert "initializer" in res["direct"][0]["message"]

    # The parent's run and the pool go on.
    assert res["after"] == res["worker"]
    assert res["state"] == "finished"
    info, history = _stored(res["dir"])
    assert info["state"] == "finished"
    _assert_steps(history)
    assert [row["i"] for row in history if row.get("who") == "parent"] == list(range(15))
    assert not any("never" in row for row in history)
    assert [row["task"] for row in history if "task" in row] == [7]


# -- 4. only the owner finishes ----------------------------------------------------

OWNER_FINISHES = """
    import json, logging, multiprocessing, os, sys, time
    import psutil
    import mpbackend

    logging.basicConfig(level=logging.WARNING,
                        format="LOG %(process)d %(name)s %(levelname)s %(message)s")


    def child(run, tag):
        out = {"tag": tag, "pid": os.getpid()}
        run.log({"who": tag, "phase": "before finish", "cpid": os.getpid()})
        run.finish()
        out["state_after_finish"] = run.state
        try:
            value = run.summary["x"]
            out["summary"] = {"value": repr(value)}
        except Exception as exc:
            out["summary"] = {"type": type(exc).__name__, "message": str(exc),
                              "usage": isinstance(exc, mpbackend.UsageError)}
        run.log({"who": tag, "phase": "after finish", "cpid": os.getpid()})
        with open(f"child-{tag}.json", "w") as f:
            json.dump(out, f)


    def wait_bounded(pid, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.01)
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        return "stuck"


    def main():
        run = mpbackend.init(project="owner")
        service = mpbackend.setup().manager.service.pid
        run.log({"x": 1.5, "who": "parent"})
        run.flush(timeout=20)
        codes, pids = {}, {}
        for method in ("fork", "spawn", "forkserver"):
            p = multiprocessing.get_context(method).Process(target=child, args=(run, method))
            p.start()
            p.join(30)
            if p.exitcode is None:
                p.kill()
                p.join(5)
            codes[method], pids[method] = p.exitcode, p.pid
        pid = os.fork()
        if pid == 0:  # a bare fork leaving through sys.exit: atexit hooks run
            child(run, "os.fork")
            sys.exit(0)
        codes["os.fork"], pids["os.fork"] = wait_bounded(pid, 30), pid

        proc = psutil.Process(service)
        alive = proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        same_service = mpbackend.setup().manager.service.pid == service
        state_after_children = run.state
        run.flush(timeout=20)
        with mpbackend.RunReader(run.dir) as reader:
            stored_after_children = reader.info()["state"]
        summary_x = run.summary["x"]
        for i in range(5):
            run.log({"i": i, "who": "parent"})
        run.finish()
        children = {}
        for tag in pids:
            try:
                with open(f"child-{tag}.json") as f:
                    children[tag] = json.load(f)
            except OSError:
                children[tag] = None
        print("RESULT " + json.dumps({
            "dir": run.dir, "id": run.id, "state": run.state, "codes": codes, "pids": pids,
            "alive": alive, "same_service": same_service, "children": children,
            "state_after_children": state_after_children, "summary_x": summary_x,
            "stored_after_children": stored_after_children}), flush=True)


    if __name__ == "__main__":
        main()
"""


def test_only_the_owner_finishes(tmp_path):
    completed = _run(OWNER_FINISHES, tmp_path, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.leftover == [], completed.leftover
    res = _result(completed)
    tags = ("fork", "spawn", "forkserver", "os.fork")
    assert res["codes"] == {tag: 0 for tag in tags}, completed.stderr

    # A child's finish() and exit change nothing for the owner.
    assert res["alive"] and res["same_service"], "a child's exit stopped the service"
    assert res["state_after_children"] == "running"
    assert res["stored_after_children"] == "running"
    assert res["summary_x"] == 1.5

    warnings = re.findall(r"^LOG (\d+) (\S+) (\S+) (.*)$", completed.stderr, re.M)
    for tag in tags:
        child = res["children"][tag]
        assert child is not None, (tag, completed.stderr)
        pid = res["pids"][tag]
        assert child["pid"] == pid
        # finish() in a child: a no-op with a warning on the "mpbackend" logger.
        assert child["state_after_finish"] == "running", tag
        mine = [w for w in warnings if int(w[0]) == pid and "finish()" in w[3]]
        assert len(mine) == 1, (tag, completed.stderr)
        _, logger, level, text = mine[0]
        assert (logger, level) == ("mpbackend", "WARNING"), mine
        assert f"pid {pid}" in text and res["id"] in text, text
        # Reading the summary in a child: a UsageError that says why.
        summary = child["summary"]
        assert summary.get("usage") and summary["type"] == "UsageError", (tag, summary)
        assert "process that started the run" in summary["message"], summary

    assert res["state"] == "finished"
    info, history = _stored(res["dir"])
    assert info["state"] == "finished"
    _assert_steps(history)
    for tag in tags:
        rows = [row for row in history if row.get("who") == tag]
        assert [row["phase"] for row in rows] == ["before finish", "after finish"], tag
        assert all(row.get("_pid") == res["pids"][tag] == row["cpid"] for row in rows), tag
    assert [row["i"] for row in history if "i" in row] == list(range(5))


NO_WAIT = """
    import json, multiprocessing, os, signal, time
    import mpbackend


    def quiet_child(run, tag, ready):
        for j in range(5):
            run.log({"who": tag, "j": j, "cpid": os.getpid()})
        run.flush(timeout=20)
        ready.set()
        time.sleep(120)


    def main():
        run = mpbackend.init(project="nowait",
                             settings={"request_timeout": 10, "exit_timeout": 5})
        for i in range(5):
            run.log({"i": i, "who": "parent"})
        procs = {}
        for tag, method in (("sleeping", "spawn"), ("killed", "fork")):
            ctx = multiprocessing.get_context(method)
            ready = ctx.Event()
            p = ctx.Process(target=quiet_child, args=(run, tag, ready), daemon=True)
            p.start()
            procs[tag] = (p, ready.wait(60))
        killed = procs["killed"][0]
        os.kill(killed.pid, signal.SIGKILL)
        killed.join(5)
        for i in range(5, 10):
            run.log({"i": i, "who": "parent"})
        started = time.monotonic()
        run.finish()
        seconds = time.monotonic() - started
        sleeping = procs["sleeping"][0]
        sleeping_alive = sleeping.is_alive()
        sleeping.kill()
        sleeping.join(5)
        print("RESULT " + json.dumps({
            "dir": run.dir, "state": run.state, "seconds": seconds,
            "ready": {tag: p[1] for tag, p in procs.items()},
            "pids": {tag: p[0].pid for tag, p in procs.items()},
            "killed_code": killed.exitcode, "sleeping_alive": sleeping_alive}), flush=True)


    if __name__ == "__main__":
        main()
"""


def test_parent_finish_does_not_wait_on_children(tmp_path):
    completed = _run(NO_WAIT, tmp_path, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.leftover == [], completed.leftover
    res = _result(completed)
    assert res["ready"] == {"sleeping": True, "killed": True}
    assert res["killed_code"] == -signal.SIGKILL
    assert res["sleeping_alive"], "the sleeping child was gone before the parent finished"
    assert res["seconds"] < 3, f"finish() took {res['seconds']:.2f} s"
    assert res["state"] == "finished"
    info, history = _stored(res["dir"])
    assert info["state"] == "finished"
    _assert_steps(history)
    assert [row["i"] for row in history if row.get("who") == "parent"] == list(range(10))
    for tag, pid in res["pids"].items():
        rows = [row for row in history if row.get("who") == tag]
        assert [row["j"] for row in rows] == list(range(5)), tag  # flushed before
        assert all(row.get("_pid") == pid for row in rows), tag


KILLED_WHILE_LOGGING = """
    import json, multiprocessing, os, signal, time
    import mpbackend


    def busy(run, started):
        started.set()
        i = 0
        while True:
            run.log({"who": "busy", "i": i})
            i += 1


    def main():
        run = mpbackend.init(project="killed",
                             settings={"request_timeout": 4, "exit_timeout": 2})
        for i in range(10):
            run.log({"p": i})
        ctx = multiprocessing.get_context("fork")
        codes = []
        for _ in range(5):
            started = ctx.Event()
            p = ctx.Process(target=busy, args=(run, started), daemon=True)
            p.start()
            started.wait(30)
            time.sleep(0.2)
            os.kill(p.pid, signal.SIGKILL)
            p.join(5)
            codes.append(p.exitcode)
        for i in range(10, 20):
            run.log({"p": i})
        started = time.monotonic()
        run.finish()
        seconds = time.monotonic() - started
        print("RESULT " + json.dumps({"dir": run.dir, "state": run.state,
                                      "seconds": seconds, "codes": codes}), flush=True)


    if __name__ == "__main__":
        main()
"""


def test_child_sigkilled_while_logging_does_not_block_the_parent(tmp_path):
    """A child killed (OOM killer, kill -9) in the middle of logging: the parent's
    finish() is not held up and the parent's rows are stored."""
    completed = _run(KILLED_WHILE_LOGGING, tmp_path, timeout=60)
    assert completed.returncode == 0, completed.stderr
    res = _result(completed)
    assert res["codes"] == [-signal.SIGKILL] * 5
    assert res["seconds"] < 3 and res["state"] == "finished", \
        f"finish() took {res['seconds']:.2f} s and left the run {res['state']!r}; " \
        f"stderr:\n{completed.stderr}"
    info, history = _stored(res["dir"])
    assert info["state"] == "finished"
    _assert_steps(history)
    assert [row["p"] for row in history if "p" in row] == list(range(20))


# -- 5. fork hygiene -----------------------------------------------------------------

FORKS = 50


def test_fork_while_another_thread_logs(rundir):
    """os.fork() from the main thread while a thread logs in a tight loop: every
    child logs, drains and exits; nothing deadlocks and nothing is lost."""
    run = mpbackend.init(project="forks")
    service = mpbackend.setup().manager.service.pid
    stop = threading.Event()
    logged: list[int] = []

    def logger() -> None:
        n = 0
        while not stop.is_set():
            run.log({"t": n})
            n += 1
        logged.append(n)

    thread = threading.Thread(target=logger, name="tight-logger", daemon=True)
    thread.start()
    pids: list[int] = []
    try:
        for i in range(FORKS):
            pid = os.fork()
            if pid == 0:  # the child: never returns into pytest
                code = 1
                try:
                    run.log({"child": i, "cpid": os.getpid()})
                    run.flush(timeout=10)
                    code = 0
                finally:
                    os._exit(code)
            pids.append(pid)
            time.sleep(0.003)
    finally:
        codes, stuck = _reap(pids, timeout=30)
        stop.set()
        thread.join(timeout=30)
    assert not stuck, f"{len(stuck)} of {len(pids)} forked children hung and were killed"
    assert not thread.is_alive()
    assert all(code == 0 for code in codes.values()), codes
    assert mpbackend.setup().manager.service.pid == service

    run.finish()
    assert run.state == "finished"
    info, history = _stored(run.dir)
    assert info["state"] == "finished"
    _assert_steps(history)
    children = [row for row in history if "child" in row]
    assert sorted(row["child"] for row in children) == list(range(FORKS))
    assert all(row.get("_pid") == row["cpid"] == pids[row["child"]] for row in children)
    ticks = [row for row in history if "t" in row]
    assert [row["t"] for row in ticks] == list(range(logged[0]))
    assert all("_pid" not in row for row in ticks)
    assert len(history) == FORKS + logged[0]


REBUILT = """
    import json, multiprocessing, os, sys
    import mpbackend

    SKIP = {"_interface", "_manager", "config", "summary"}  # per process by design


    def described(run):
        return {k: repr(v) for k, v in sorted(vars(run).items()) if k not in SKIP}


    def child(run, out):
        out.put(json.dumps({"attrs": described(run), "config": run.config.as_dict(),
                            "current": mpbackend.run is run, "in_child": run._in_child,
                            "manager": run._manager is None}))


    def main():
        run = mpbackend.init(project="rebuilt", name="n", tags=["a", "b"], notes="x",
                             group="g", job_type="train", config={"lr": 0.1},
                             settings={"quiet": True, "max_array_size": 77})
        run.config.update({"later": 2})
        ctx = multiprocessing.get_context(sys.argv[1])
        out = ctx.Queue()
        p = ctx.Process(target=child, args=(run, out))
        p.start()
        seen = json.loads(out.get(timeout=60))
        p.join(30)
        run.finish()
        print("RESULT " + json.dumps({"owner": described(run), "child": seen,
                                      "code": p.exitcode}))


    if __name__ == "__main__":
        main()
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_run_rebuilt_in_a_child_comes_from_the_same_constructor(tmp_path, method):
    """A Run pickled into a spawned or forkserver child is made by ``Run.__init__``,
    as the owner's is: the same attributes with the same values (spec, settings,
    quiet, array limit, identity), not a copy of a few fields onto ``__new__``."""
    proc = _run(REBUILT.replace("sys.argv[1]", repr(method)), tmp_path, timeout=110)
    assert proc.returncode == 0, proc.stderr
    out = _result(proc)
    seen = out["child"]
    assert out["code"] == 0
    owner = dict(out["owner"], state="'running'")  # the owner's copy has since finished
    owner.pop("_final_step"), seen["attrs"].pop("_final_step")
    assert seen["attrs"] == owner
    assert seen["config"] == {"lr": 0.1, "later": 2}
    assert seen["current"] and seen["in_child"] and seen["manager"]
    assert "'quiet': True" in seen["attrs"]["_settings"] or "quiet=True" in seen["attrs"][
        "_settings"]
