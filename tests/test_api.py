"""The public reading API: ``mpbackend.Api`` over runs written by a real service.

Nothing is mocked. A module fixture writes a small set of runs once, through
``mpbackend.init()`` and a real service process, into its own directory and stops
the service; the read-only tests then query that directory. Tests that need a
run being written, a crashed run or a damaged database make their own, with real
subprocesses where another process is the point (a live reader, a SIGKILLed
writer).
"""

from __future__ import annotations

import json
import math
import os
import queue
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pandas as pd
import psutil
import pytest
from conftest import ROOT, run_script, wait_for

import mpbackend

pytestmark = pytest.mark.timeout(60)

LONG_ROWS = 2500  # more than two stored chunks (1,024 rows each)


# -- helpers ---------------------------------------------------------------------


def ids(runs) -> list[str]:
    return [r.id for r in runs]


def long_row(s: int) -> dict:
    """The row logged at step ``s`` of the run "hist/long"."""
    row = {"i": s, "loss": 1.0 / (s + 1), "phase": "warm" if s % 2 == 0 else "train"}
    if s % 10 == 0:
        row["val"] = s * 0.5
    if s % 100 == 0:
        row["ev"] = s
    if s >= 2100:
        row["late"] = s
    return row


def is_text_column(series: pd.Series) -> bool:
    """Strings stay strings: object dtype (pandas 3 infers its own str dtype for them)."""
    if int(pd.__version__.split(".")[0]) < 3:
        return series.dtype == object
    return series.dtype == object or pd.api.types.is_string_dtype(series.dtype)


# -- the stored runs ----------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Runs written once for the read-only tests; returns the run directory.

    project "api" (created in this order):
        base  finished  lr 0.1   adam   tags [baseline]        group g1  loss 0.9 -> 0.5
        exp   finished  lr 0.01  adamw  tags [exp, baseline]   group g2  loss 0.2
        fail  failed    lr 0.001 sgd    tags [exp]             group g1  loss 0.9
        nolos finished  lr 0.05  sgd    no tags, no group, no loss; acc summary max
    project "hist":
        long  LONG_ROWS rows of long_row(s)
        mixed a column mixing ints and floats, a column with a NaN value
    """
    base = tmp_path_factory.mktemp("api") / "mpruns"
    d = str(base)
    try:
        run = mpbackend.init(project="api", id="base", dir=d, tags=["baseline"], group="g1",
                             job_type="train", notes="the baseline",
                             config={"lr": 0.1, "opt": "adam", "layers": 2})
        for loss in (0.9, 0.7, 0.5):
            run.log({"loss": loss, "val": {"loss": loss + 0.1}})
        run.finish()
        time.sleep(0.01)

        run = mpbackend.init(project="api", id="exp", dir=d, tags=["exp", "baseline"],
                             group="g2", config={"lr": 0.01, "opt": "adamw"})
        run.log({"loss": 0.2})
        run.finish()
        time.sleep(0.01)

        run = mpbackend.init(project="api", id="fail", dir=d, tags=["exp"], group="g1",
                             config={"lr": 0.001, "opt": "sgd"})
        run.log({"loss": 0.9})
        run.finish(exit_code=1)
        time.sleep(0.01)

        run = mpbackend.init(project="api", id="nolos", dir=d, config={"lr": 0.05, "opt": "sgd"})
        run.define_metric("acc", summary="max")
        for acc in (0.5, 0.9, 0.7):
            run.log({"acc": acc})
        run.finish()
        time.sleep(0.01)

        run = mpbackend.init(project="hist", id="long", dir=d)
        for s in range(LONG_ROWS):
            run.log(long_row(s))
        run.finish()

        run = mpbackend.init(project="hist", id="mixed", dir=d)
        for m, f in ((1, 0.5), (0.5, float("nan")), (0.25, 0.25), (2, 1.5)):
            run.log({"m": m, "f": f})
        run.finish()
    finally:
        mpbackend.teardown()
    return base


# -- listing, filters, order, lookup ------------------------------------------------


def test_runs_lists_every_run(store, monkeypatch):
    api = mpbackend.Api(str(store))
    assert ids(api.runs(project="api")) == ["nolos", "fail", "exp", "base"]
    assert sorted(ids(api.runs())) == ["base", "exp", "fail", "long", "mixed", "nolos"]
    assert ids(api.runs(project="nope")) == []
    assert api.errors == {}
    base = [r for r in api.runs(project="api") if r.id == "base"][0]
    assert (base.path, base.state, base.group, base.job_type) == (
        "api/base", "finished", "g1", "train")
    assert base.notes == "the baseline" and base.tags == ["baseline"]
    assert base.config == {"lr": 0.1, "opt": "adam", "layers": 2}
    assert base.summary["loss"] == 0.5 and base.summary["val"]["loss"] == pytest.approx(0.6)
    assert base.step == 3 and base.exit_code is None
    fail = mpbackend.Api(str(store)).run("api/fail")
    assert (fail.state, fail.exit_code) == ("failed", 1)
    # Api() with no dir reads MPBACKEND_DIR.
    monkeypatch.setenv("MPBACKEND_DIR", str(store))
    assert sorted(ids(mpbackend.Api().runs(project="api"))) == ["base", "exp", "fail", "nolos"]
    assert mpbackend.Api(str(store / "missing")).runs() == []


FILTER_CASES = [
    ({"state": "finished"}, ["nolos", "exp", "base"]),
    ({"state": {"$ne": "finished"}}, ["fail"]),
    ({"state": {"$in": ["failed", "crashed"]}}, ["fail"]),
    ({"tags": "baseline"}, ["exp", "base"]),
    ({"tags": {"$in": ["exp"]}}, ["fail", "exp"]),
    ({"tags": {"$in": ["baseline", "exp"]}}, ["fail", "exp", "base"]),
    ({"tags": {"$nin": ["exp"]}}, ["nolos", "base"]),
    ({"group": "g1"}, ["fail", "base"]),
    ({"group": {"$in": ["g2", "g3"]}}, ["exp"]),
    ({"config.lr": {"$lt": 0.05}}, ["fail", "exp"]),
    ({"config.lr": {"$gte": 0.05, "$lte": 0.1}}, ["nolos", "base"]),
    ({"config.lr": 0.01}, ["exp"]),
    ({"config.opt": {"$in": ["adam", "sgd"]}}, ["nolos", "fail", "base"]),
    ({"config.opt": {"$regex": "^adam"}}, ["exp", "base"]),
    ({"config.opt": {"$regex": "w$"}}, ["exp"]),
    ({"config.layers": {"$exists": True}}, ["base"]),
    ({"summary.loss": {"$lte": 0.5}}, ["exp", "base"]),
    ({"summary.loss": {"$gt": 0.5}}, ["fail"]),
    ({"summary.loss": {"$exists": False}}, ["nolos"]),
    ({"summary.loss": {"$exists": True}}, ["fail", "exp", "base"]),
    ({"summary.acc.max": {"$gt": 0.8}}, ["nolos"]),
    ({"summary.val.loss": {"$lt": 1}}, ["base"]),
    ({"$or": [{"config.opt": "sgd"}, {"summary.loss": {"$lt": 0.3}}]},
     ["nolos", "fail", "exp"]),
    ({"$and": [{"state": "finished"}, {"config.lr": {"$lt": 0.1}}]}, ["nolos", "exp"]),
    ({"$nor": [{"group": "g1"}, {"tags": "exp"}]}, ["nolos"]),
    ({"state": "finished", "group": "g1"}, ["base"]),
    ({"config.lr": {"$gt": 1}}, []),
]


@pytest.mark.parametrize("filters,expected", FILTER_CASES,
                         ids=[json.dumps(f) for f, _ in FILTER_CASES])
def test_runs_filters(store, filters, expected):
    api = mpbackend.Api(str(store))
    assert ids(api.runs(project="api", filters=filters)) == expected


def test_unknown_filter_operator_raises(store):
    with pytest.raises(ValueError, match=r"\$near"):
        mpbackend.Api(str(store)).runs(project="api", filters={"config.lr": {"$near": 1}})


def test_runs_order(store):
    api = mpbackend.Api(str(store))
    assert ids(api.runs(project="api", order="-created_at")) == ["nolos", "fail", "exp", "base"]
    assert ids(api.runs(project="api", order="+created_at")) == ["base", "exp", "fail", "nolos"]
    # Runs without the field come last, whichever the direction.
    assert ids(api.runs(project="api", order="+summary.loss")) == [
        "exp", "base", "fail", "nolos"]
    assert ids(api.runs(project="api", order="-summary.loss")) == [
        "fail", "base", "exp", "nolos"]
    assert ids(api.runs(project="api", order="config.lr")) == ["fail", "exp", "nolos", "base"]
    created = [r.created_at for r in api.runs(project="api")]
    assert created == sorted(created, reverse=True)


def test_run_by_path_or_id(store):
    api = mpbackend.Api(str(store))
    by_path = api.run("api/exp")
    by_id = api.run("exp")
    assert by_path.path == by_id.path == "api/exp"
    assert by_path.config == by_id.config == {"lr": 0.01, "opt": "adamw"}
    assert api.run("long").project == "hist"
    for missing in ("api/nope", "nope", "hist/exp", "other/exp"):
        with pytest.raises(KeyError):
            api.run(missing)


# -- history --------------------------------------------------------------------------


def test_history_dataframe_columns_and_dtypes(store):
    df = mpbackend.Api(str(store)).run("hist/long").history()
    assert isinstance(df, pd.DataFrame) and len(df) == LONG_ROWS
    assert set(df.columns) == {"_step", "_runtime", "_timestamp", "i", "loss", "phase", "val",
                               "ev", "late"}
    assert df["_step"].dtype == np.int64 and df["_step"].tolist() == list(range(LONG_ROWS))
    assert df["i"].dtype == np.int64  # dense ints over several chunks stay int64
    assert df["i"].tolist() == list(range(LONG_ROWS))
    assert df["loss"].dtype == np.float64
    assert df["loss"].tolist() == [1.0 / (s + 1) for s in range(LONG_ROWS)]
    assert df["_runtime"].dtype == np.float64 and df["_timestamp"].dtype == np.float64
    # Sparse columns are float64 with NaN where a row lacks the key.
    for key, present in (("val", lambda s: s % 10 == 0), ("ev", lambda s: s % 100 == 0),
                         ("late", lambda s: s >= 2100)):
        assert df[key].dtype == np.float64, key
        assert df[key].isna().tolist() == [not present(s) for s in range(LONG_ROWS)], key
    assert df.loc[df["val"].notna(), "val"].tolist() == [s * 0.5 for s in range(0, LONG_ROWS, 10)]
    assert df.loc[df["late"].notna(), "late"].tolist() == list(range(2100, LONG_ROWS))
    assert is_text_column(df["phase"]), df["phase"].dtype
    assert df["phase"].tolist() == [long_row(s)["phase"] for s in range(LONG_ROWS)]


def test_history_keys_samples_and_x_axis(store):
    run = mpbackend.Api(str(store)).run("hist/long")
    val = run.history(keys=["val"])
    assert list(val.columns) == ["_step", "val"]
    assert val["_step"].tolist() == list(range(0, LONG_ROWS, 10))
    assert val["val"].tolist() == [s * 0.5 for s in range(0, LONG_ROWS, 10)]
    assert val["_step"].dtype == np.int64 and val["val"].dtype == np.float64

    both = run.history(keys=["val", "ev", "late"])  # only rows with all of them
    assert both["_step"].tolist() == [2100, 2200, 2300, 2400]
    assert both["ev"].tolist() == [2100, 2200, 2300, 2400]
    assert len(run.history(keys=["val", "no-such-key"])) == 0

    sampled = run.history(samples=11)
    steps = sampled["_step"].tolist()
    assert len(steps) == 11 and steps[0] == 0 and steps[-1] == LONG_ROWS - 1
    gaps = np.diff(steps)
    assert gaps.min() >= 249 and gaps.max() <= 250, steps  # evenly spaced
    assert sampled["i"].tolist() == steps
    few = run.history(keys=["ev"], samples=3)
    assert few["_step"].tolist() == [0, 1200, 2400]
    assert len(run.history(keys=["ev"], samples=1000)) == 25  # fewer rows than samples

    by_i = run.history(keys=["late"], x_axis="i")
    assert set(by_i.columns) == {"i", "late"}
    assert by_i["i"].tolist() == list(range(2100, LONG_ROWS))
    assert by_i["late"].tolist() == list(range(2100, LONG_ROWS))


def test_history_as_list_of_dicts(store):
    run = mpbackend.Api(str(store)).run("hist/long")
    rows = run.history(pandas=False)
    assert isinstance(rows, list) and len(rows) == LONG_ROWS
    for s in (0, 10, 1023, 1024, 2100, LONG_ROWS - 1):
        row = rows[s]
        assert row["_step"] == s
        assert {k: v for k, v in row.items() if not k.startswith("_")} == long_row(s)
        assert type(row["i"]) is int and type(row["phase"]) is str
    assert run.history(keys=["ev"], pandas=False) == [
        {"_step": s, "ev": s} for s in range(0, LONG_ROWS, 100)]
    sampled = run.history(keys=["ev"], samples=3, pandas=False)
    assert [r["_step"] for r in sampled] == [0, 1200, 2400]


def test_scan_history(store):
    run = mpbackend.Api(str(store)).run("hist/long")
    rows = list(run.scan_history())
    assert [r["_step"] for r in rows] == list(range(LONG_ROWS))
    assert rows == run.history(pandas=False)
    window = list(run.scan_history(keys=["val"], min_step=1000, max_step=1100))
    assert window == [{"_step": s, "val": s * 0.5} for s in range(1000, 1101, 10)]
    assert [r["_step"] for r in run.scan_history(min_step=2495)] == list(range(2495, LONG_ROWS))
    assert [r["_step"] for r in run.scan_history(max_step=3)] == [0, 1, 2, 3]
    assert [r["late"] for r in run.scan_history(keys=["late"], max_step=2103)] == [
        2100, 2101, 2102, 2103]
    assert list(run.scan_history(keys=["val", "ev"], min_step=1001, max_step=1099)) == []
    assert list(run.scan_history(min_step=LONG_ROWS)) == []


def test_history_numeric_column_mixing_ints_and_floats_is_float(store):
    """A metric logged as 1, then 0.5, ... is a float64 column, as wandb's DataFrame has."""
    df = mpbackend.Api(str(store)).run("hist/mixed").history()
    assert df["m"].tolist() == [1, 0.5, 0.25, 2]
    assert df["m"].dtype == np.float64, f"column 'm' has dtype {df['m'].dtype}"


def test_history_keys_keeps_rows_whose_value_is_nan(store):
    """keys= keeps the rows that have the keys: a logged NaN is a value, not a gap."""
    run = mpbackend.Api(str(store)).run("hist/mixed")
    listed = run.history(keys=["f"], pandas=False)
    assert [r["_step"] for r in listed] == [0, 1, 2, 3]
    assert math.isnan(listed[1]["f"])
    frame = run.history(keys=["f"])
    assert frame["_step"].tolist() == [0, 1, 2, 3], "the row that logged f=NaN was dropped"


# -- runs being written, crashed, damaged ---------------------------------------------

LIVE_READER = """
    import json, sys
    import mpbackend

    api = mpbackend.Api()
    run = api.run(sys.argv[1] if len(sys.argv) > 1 else "live/writer")
    rows = run.history(pandas=False)
    print("RESULT " + json.dumps({
        "state": run.state, "n": len(rows), "steps": [r["_step"] for r in rows],
        "i": [r.get("i") for r in rows], "summary_i": run.summary.get("i"),
        "config": run.config, "listed": [r.id for r in api.runs(project="live")],
        "df_len": len(run.history(keys=["i"])),
    }))
"""


def _result(proc: subprocess.CompletedProcess) -> dict:
    lines = [ln[len("RESULT "):] for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and len(lines) == 1, (
        f"exit code {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return json.loads(lines[0])


def test_live_run_read_from_another_process(rundir, tmp_path):
    run = mpbackend.init(project="live", id="writer", config={"lr": 0.1},
                         settings={"commit_interval": 30.0})  # only flush() commits
    for i in range(500):
        run.log({"i": i})
    run.config.update({"late": True})
    run.log({"pending": 1}, commit=False)  # not a committed row: not visible
    run.flush(timeout=20)

    out = _result(run_script(LIVE_READER, tmp_path, timeout=40))
    assert out["state"] == "running"
    assert out["n"] == 500 and out["steps"] == list(range(500)) and out["i"] == list(range(500))
    assert out["summary_i"] == 499
    assert out["config"] == {"lr": 0.1, "late": True}
    assert out["listed"] == ["writer"] and out["df_len"] == 500

    for i in range(500, 700):
        run.log({"i": i})
    run.flush(timeout=20)
    assert mpbackend.Api(str(rundir)).run("live/writer").step == 700
    run.finish()
    done = mpbackend.Api(str(rundir)).run("live/writer")
    rows = done.history(pandas=False)
    assert done.state == "finished" and [r["i"] for r in rows] == list(range(700))
    assert rows[500]["pending"] == 1  # the commit=False part joined the next row


CRASHER = """
    import json, time
    import mpbackend
    from mpbackend.user.setup import current

    run = mpbackend.init(project="crash", id="victim", config={"lr": 0.1})
    for i in range(300):
        run.log({"i": i, "loss": 1.0 / (i + 1)})
    run.flush(timeout=20)
    print("READY " + json.dumps({"dir": run.dir,
                                 "service_pid": current().manager.service.pid}), flush=True)
    time.sleep(60)
"""


def _read_line(stream, prefix: str, timeout: float) -> str | None:
    """The first line of ``stream`` starting with ``prefix``, read within ``timeout``."""
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            return None
        if line is None:
            return None
        if line.startswith(prefix):
            return line[len(prefix):]


def test_crashed_run_is_marked_and_still_readable(tmp_path):
    script = tmp_path / "crasher.py"
    script.write_text(textwrap.dedent(CRASHER))
    base = tmp_path / "mpruns"
    env = {**os.environ, "PYTHONPATH": ROOT, "MPBACKEND_DIR": str(base)}
    errors = open(tmp_path / "stderr.txt", "w+")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=errors, text=True)
    service = None
    try:
        line = _read_line(proc.stdout, "READY ", timeout=30)
        assert line is not None, (f"the script did not get ready (exit code {proc.poll()}):\n"
                                  f"{(tmp_path / 'stderr.txt').read_text()}")
        ready = json.loads(line)
        service = psutil.Process(ready["service_pid"])
        api = mpbackend.Api(str(base))
        assert api.run("crash/victim").state == "running"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

        def state() -> str:
            return mpbackend.Api(str(base)).run("crash/victim").state

        assert wait_for(lambda: state() == "crashed", 10), state()
        assert wait_for(lambda: not service.is_running()
                        or service.status() == psutil.STATUS_ZOMBIE, 10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        if service is not None and service.is_running():
            service.kill()
        proc.stdout.close()
        errors.close()

    run = mpbackend.Api(str(base)).run("crash/victim")
    assert run.state == "crashed" and run.config == {"lr": 0.1}
    rows = run.history(pandas=False)
    assert [r["i"] for r in rows] == list(range(300))
    assert run.history()["loss"].tolist() == [1.0 / (i + 1) for i in range(300)]
    assert ids(mpbackend.Api(str(base)).runs(filters={"state": "crashed"})) == ["victim"]


def _damaged_copy(store, tmp_path, run: str, edit) -> tuple[mpbackend.Api, str]:
    """A copy of the store whose ``api/<run>`` database was edited by ``edit(bytes)``."""
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    run_dir = str(copy / "api" / run)
    path = os.path.join(run_dir, "run.db")
    for suffix in ("-wal", "-shm"):  # a finished run needs neither
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "r+b") as f:
        edit(f, data)
    return mpbackend.Api(str(copy)), run_dir


def test_damaged_database_header_is_left_out_with_an_error(store, tmp_path):
    def overwrite_header(f, data):
        f.seek(0)
        f.write(b"\xde\xad\xbe\xef" * 1024)  # the whole first page

    api, bad_dir = _damaged_copy(store, tmp_path, "exp", overwrite_header)
    assert ids(api.runs(project="api")) == ["nolos", "fail", "base"]
    assert list(api.errors) == [bad_dir]
    assert "run.db" in api.errors[bad_dir]
    assert sorted(ids(api.runs())) == ["base", "fail", "long", "mixed", "nolos"]
    assert ids(api.runs(project="api", filters={"tags": "baseline"})) == ["base"]
    with pytest.raises(mpbackend.StoreError):
        api.run("api/exp")


def test_damaged_run_record_is_left_out_with_an_error(store, tmp_path):
    """Bytes overwritten inside the run's stored config: the run is left out, not fatal."""
    def overwrite_config(f, data):
        needle = b'{"lr":0.01,"opt":"adamw"}'
        at = data.find(needle)
        assert at >= 0
        while at >= 0:
            f.seek(at + 1)
            f.write(b"#")  # the config text is no longer JSON
            at = data.find(needle, at + 1)

    api, bad_dir = _damaged_copy(store, tmp_path, "exp", overwrite_config)
    listed = ids(api.runs(project="api"))
    assert listed == ["nolos", "fail", "base"]
    assert list(api.errors) == [bad_dir]


def test_reads_of_a_run_being_committed_are_consistent(tmp_path):
    """A writer commits every 20 ms (merging parts as it goes) while readers read the
    whole history again and again: every read is a consistent prefix of the run."""
    from mpbackend.store.writer import RunWriter

    run_dir = str(tmp_path / "p" / "live")
    writer = RunWriter(run_dir, {"id": "live", "project": "p"}, resume=False)
    written = [0]
    stop = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        step = 0
        try:
            while not stop.is_set() and step < 20_000:
                for _ in range(20):
                    row = {"m": float(step)}
                    if step % 10 == 0:
                        row["val"] = step
                    writer.append(step, row)
                    step += 1
                writer.commit()
                written[0] = step
                time.sleep(0.02)
        except BaseException as exc:  # reported by the test below
            failures.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        deadline = time.monotonic() + 4
        reads = 0
        while time.monotonic() < deadline:
            frame = mpbackend.ApiRun(run_dir).history()
            n = len(frame)
            if n == 0:  # nothing committed yet
                continue
            assert list(frame["_step"]) == list(range(n))
            assert (frame["m"] == frame["_step"].astype(float)).all()
            assert frame["val"].notna().sum() == (n + 9) // 10
            with mpbackend.RunReader(run_dir) as reader:
                rows = list(reader.rows())
            assert [r["_step"] for r in rows] == list(range(len(rows)))
            assert all(("val" in r) == (r["_step"] % 10 == 0) for r in rows)
            reads += 1
    finally:
        stop.set()
        thread.join(timeout=10)
        writer.close()
    assert not failures, failures
    assert reads > 5 and written[0] > 1000


def test_apirun_info_is_what_the_reader_stores(rundir):
    """ApiRun.info() and RunReader.info() are the same kind of thing: a method
    returning the run's stored fields."""
    run = mpbackend.init(project="p", tags=["t"], notes="n")
    run.log({"x": 1.0})
    run.finish()
    with mpbackend.RunReader(run.dir) as reader:
        stored_info = reader.info()
    info = mpbackend.Api(str(rundir)).run(run.id).info()
    assert info == stored_info
    assert info["tags"] == ["t"] and info["notes"] == "n" and info["state"] == "finished"
    info["state"] = "changed"  # a copy: the ApiRun is not changed through it
    assert mpbackend.Api(str(rundir)).run(run.id).info()["state"] == "finished"
