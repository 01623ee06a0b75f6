"""System metrics (mpbackend.system): sampled in the service, stored with the run.

Training scripts run as real subprocesses; the ones that test the process tree
start real child processes that hold memory and burn CPU. The samples are read
back with ``ApiRun.system_metrics()`` and ``RunReader.system()``. The Sampler is
also driven directly, in this process, on processes that are gone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import warnings

import psutil
import pytest
from conftest import ROOT, run_script

import mpbackend
from mpbackend.service.system import Sampler, _Gpus

pytestmark = pytest.mark.timeout(60)

MACHINE_KEYS = ("system/cpu_percent", "system/memory_percent", "system/memory_used_mb",
                "system/memory_available_mb")
PROC_KEYS = ("proc/cpu_percent", "proc/rss_mb", "proc/threads", "proc/processes")


def _only_run(tmp_path) -> mpbackend.ApiRun:
    runs = mpbackend.Api(str(tmp_path / "mpruns")).runs()
    assert len(runs) == 1, runs
    return runs[0]


def _result(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, stdout
    return json.loads(lines[-1][len("RESULT "):])


def _clean(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


# -- the training process and its descendants ---------------------------------------

CHILDREN = """
    import json, multiprocessing as mp, os, sys, time
    import psutil
    import mpbackend

    MB = 1_000_000

    def work(ready, stop):
        block = bytearray(b"x" * (40 * MB))  # touched, so resident
        ready.put(os.getpid())
        n = 0
        while not stop.is_set():
            n += 1
        block[0] = n % 256

    def tree_without(service):
        me = psutil.Process()
        kids = me.children(recursive=True)
        skip = {service} | {p.pid for p in psutil.Process(service).children(recursive=True)}
        return 1 + len([p for p in kids if p.pid not in skip])

    if __name__ == "__main__":
        run = mpbackend.init(project="sys", settings={"system_interval": 0.2})
        service = mpbackend.setup().manager.service.pid
        ctx = mp.get_context("fork")
        ready, stop = ctx.Queue(), ctx.Event()
        workers = [ctx.Process(target=work, args=(ready, stop)) for _ in range(3)]
        for w in workers:
            w.start()
        pids = [ready.get(timeout=20) for _ in workers]
        expected = tree_without(service)
        for i in range(12):
            run.log({"i": i})
            time.sleep(0.1)
        stop.set()
        for w in workers:
            w.join(20)
        run.finish()
        print("RESULT " + json.dumps({"expected": expected, "service": service}))
"""


def test_process_tree_counts_children_and_their_memory_not_the_service(tmp_path):
    proc = run_script(CHILDREN, tmp_path, timeout=50)
    _clean(proc)
    result = _result(proc.stdout)
    run = _only_run(tmp_path)
    rows = run.system_metrics(pandas=False)
    assert len(rows) >= 4, rows
    for row in rows:
        assert set(MACHINE_KEYS) <= set(row), row
        assert 0 <= row["system/memory_percent"] <= 100
        assert row["_runtime"] >= 0
    counts = [row["proc/processes"] for row in rows]
    # While the three workers ran, the tree was the script, them, and its other
    # helpers, but not the service (which alone holds tens of MB).
    assert result["expected"] >= 4
    assert result["expected"] in counts, (result, counts)
    assert max(counts) == result["expected"], (result, counts)
    busy = [row for row in rows if row["proc/processes"] == result["expected"]]
    assert max(row["proc/rss_mb"] for row in busy) >= 3 * 40, busy
    assert max(row["proc/cpu_percent"] for row in busy) > 30, busy
    assert all(row["proc/threads"] >= row["proc/processes"] for row in rows)
    # the last sample is taken after the workers were joined
    assert rows[-1]["proc/processes"] < result["expected"], rows[-1]
    times = [row["_timestamp"] for row in rows]
    assert times == sorted(times)
    assert not any(key.startswith("gpu/") for row in rows for key in row) or \
        _Gpus.open() is not None


def test_interval_from_the_environment_and_the_dataframe(tmp_path):
    import pandas as pd

    code = """
        import time, mpbackend
        run = mpbackend.init(project="sys")
        for i in range(20):
            run.log({"i": i})
            time.sleep(0.1)
        run.finish()
    """
    proc = run_script(code, tmp_path, env={"MPBACKEND_SYSTEM_INTERVAL": "0.25"})
    _clean(proc)
    run = _only_run(tmp_path)
    frame = run.system_metrics()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns[:2]) == ["_timestamp", "_runtime"]
    assert set(MACHINE_KEYS) <= set(frame.columns)
    assert set(PROC_KEYS) <= set(frame.columns)
    if psutil.disk_io_counters() is not None:
        assert frame["system/disk_read_mb"].min() >= 0
        assert frame["system/disk_read_mb"].is_monotonic_increasing
    if psutil.net_io_counters() is not None:
        assert frame["system/net_sent_mb"].is_monotonic_increasing
    # about 2 s of run at 0.25 s: a sample at the start, ~8 on the clock, one at the end
    assert 5 <= len(frame) <= 14, frame
    gaps = frame["_timestamp"].diff().dropna().iloc[:-1]  # the last one is the end sample
    assert 0.15 <= gaps.median() <= 0.6, gaps.tolist()
    assert frame["_runtime"].is_monotonic_increasing
    history = run.history(pandas=False)
    assert frame["_runtime"].iloc[0] <= history[0]["_runtime"] + 0.5


def test_off_when_the_interval_is_zero(tmp_path):
    import pandas as pd

    code = """
        import mpbackend
        run = mpbackend.init(project="sys", settings={"system_interval": 0})
        for i in range(5):
            run.log({"i": i})
        run.finish()
        run = mpbackend.init(project="sys2")  # the setting is the service's
        run.log({"i": 1})
        run.finish()
    """
    proc = run_script(code, tmp_path, env={"MPBACKEND_SYSTEM_INTERVAL": "2"})
    _clean(proc)
    for run in mpbackend.Api(str(tmp_path / "mpruns")).runs():
        assert run.system_metrics(pandas=False) == []
        frame = run.system_metrics()
        assert isinstance(frame, pd.DataFrame) and len(frame) == 0
        assert list(frame.columns) == ["_timestamp", "_runtime"]


def test_a_short_run_has_a_first_and_a_last_sample(tmp_path):
    code = """
        import mpbackend
        run = mpbackend.init(project="sys", settings={"system_interval": 30})
        run.log({"i": 1})
        run.finish()
    """
    proc = run_script(code, tmp_path)
    _clean(proc)
    rows = _only_run(tmp_path).system_metrics(pandas=False)
    assert len(rows) == 2, rows
    assert rows[0]["_timestamp"] < rows[1]["_timestamp"]
    assert all("proc/rss_mb" in row for row in rows)


# -- processes that vanish -------------------------------------------------------------

FLICKER = """
    import multiprocessing as mp, time
    import mpbackend

    def brief(n):
        return sum(range(n))

    if __name__ == "__main__":
        run = mpbackend.init(project="sys", settings={"system_interval": 0.02})
        ctx = mp.get_context("fork")
        deadline = time.monotonic() + 2.0
        i = 0
        while time.monotonic() < deadline:
            procs = [ctx.Process(target=brief, args=(1000 * k,)) for k in range(4)]
            for p in procs:
                p.start()
            for p in procs:
                p.join(10)
            run.log({"i": i})
            i += 1
        run.finish()
        print("RESULT {}")
"""


def test_children_that_come_and_go_while_sampled(tmp_path):
    proc = run_script(FLICKER, tmp_path, timeout=50)
    _clean(proc)
    run = _only_run(tmp_path)
    assert run.state == "finished"
    rows = run.system_metrics(pandas=False)
    assert len(rows) >= 10
    assert all(row["proc/processes"] >= 1 for row in rows)


def test_sigkilled_training_process_leaves_a_crashed_run_with_samples(tmp_path):
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent("""
        import sys, time, mpbackend
        run = mpbackend.init(project="sys", settings={"system_interval": 0.1})
        for i in range(5):
            run.log({"i": i})
        run.flush()
        print(mpbackend.setup().manager.service.pid, flush=True)
        time.sleep(60)
    """))
    env = {**os.environ, "PYTHONPATH": ROOT, "MPBACKEND_DIR": str(tmp_path / "mpruns")}
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        service = int(proc.stdout.readline())
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        gone = psutil.wait_procs([psutil.Process(service)], timeout=15)[0]
        assert gone, "the service did not exit after the training process was killed"
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert "Traceback" not in err, err
    run = _only_run(tmp_path)
    assert run.state == "crashed"
    rows = run.system_metrics(pandas=False)
    assert len(rows) >= 3
    assert "proc/processes" in rows[0]
    # The last sample is taken as the service ends the run: the training process is
    # gone by then, or (the pipe's EOF can come first) still exiting.
    assert set(MACHINE_KEYS) <= set(rows[-1])
    assert rows[-1].get("proc/processes", 1) == 1, rows[-1]


def test_sampler_on_processes_that_are_gone():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(10)  # reaped: its pid names no process now
    sampler = Sampler(child.pid, exclude_pid=os.getpid())
    try:
        sample = sampler.sample()
        assert not any(key.startswith("proc/") for key in sample.values)
        assert set(MACHINE_KEYS) <= set(sample.values)
    finally:
        sampler.close()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        sampler = Sampler(live.pid, exclude_pid=os.getpid())
        first = sampler.sample()
        assert first.values["proc/processes"] == 1
        live.kill()
        live.wait(10)
        second = sampler.sample()  # the process vanished between two samples
        assert not any(key.startswith("proc/") for key in second.values)
        sampler.close()
    finally:
        if live.poll() is None:
            live.kill()
            live.wait(5)


def test_gpu_figures_only_with_a_gpu_and_quietly_otherwise():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gpus = _Gpus.open()
        sampler = Sampler(os.getpid(), exclude_pid=-1)
        sample = sampler.sample()
        sampler.close()
    assert not caught, [str(w.message) for w in caught]
    gpu_keys = [key for key in sample.values if key.startswith("gpu/")]
    if gpus is None:
        assert gpu_keys == []
    else:
        gpus.close()
        assert "gpu/0/memory_used_mb" in gpu_keys, gpu_keys


# -- the store -----------------------------------------------------------------------


def test_a_database_from_before_system_metrics_reads_as_none(tmp_path):
    code = """
        import mpbackend
        run = mpbackend.init(project="sys", id="old", settings={"system_interval": 0.5})
        run.log({"i": 1})
        run.finish()
    """
    _clean(run_script(code, tmp_path))
    run_dir = tmp_path / "mpruns" / "sys" / "old"
    assert mpbackend.ApiRun(str(run_dir)).system_metrics(pandas=False)
    old_dir = tmp_path / "old" / "sys" / "old"
    shutil.copytree(run_dir, old_dir)
    conn = sqlite3.connect(old_dir / "run.db")
    conn.execute("DROP TABLE system")
    conn.commit()
    conn.close()
    with mpbackend.RunReader(str(old_dir)) as reader:
        assert reader.system() == []
        assert reader.history()[0]["i"] == 1
    assert mpbackend.Api(str(tmp_path / "old")).run("old").system_metrics(pandas=False) == []
