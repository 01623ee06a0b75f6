"""The readers against damaged and hostile run databases (the rules in ``store.reader``).

One run is written once by a real script (``mpbackend.init()``, a real service);
its ``run.db`` is copied and damaged with the sqlite3 module (views, triggers,
generated columns, wrong types and NULLs in cells, declared lengths that lie,
missing tables) or byte by byte (truncated, bytes flipped, a page zeroed).
Nothing is mocked: every read goes through RunReader, Api and the ``mpbackend``
command as a user runs them.

* Targeted tests hold each defect the security review found: SQL brought by the
  file (views, a trigger, a FIFO beside the database) must never run or block;
  a damaged value must be a StoreError naming the file, and ``Api.runs()`` must
  list the other runs; a stored column named ``_step`` must not replace a
  row's step. The ones that could hang or eat memory on a reader without the
  rules run in a child process under a time and memory limit.
* A fuzz test (hypothesis, derandomized, a bounded number of examples) reads
  damaged copies in this process through every reader call: each ends in a
  correct read or a StoreError naming the file, in bounded time.
* The command runs, as subprocesses under RLIMIT_AS and a timeout, on a handful
  of representative hostile files: every outcome is a correct result or one
  ``Error:`` line and exit status 1, with no traceback, no hang and a small peak
  memory.
"""

from __future__ import annotations

import contextlib
import csv
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from array import array
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, run_script
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mpbackend
from mpbackend import Api, RunReader, StoreError
from mpbackend.store import reader as reader_module
from mpbackend.store.reader import pivot

pytestmark = pytest.mark.timeout(90)

ROWS = 1030  # two stored chunks: 1,024 rows and 6
MEMORY_LIMIT = 1536 << 20  # RLIMIT_AS of every child
CHILD_TIMEOUT = 20.0  # seconds; a child still running then is killed and the test fails
MAX_CHILD_RSS_MB = 250  # peak RSS of a child (the plain command needs about 30 MB, plot 80)
FUZZ_EXAMPLES = 500
DEEP = "[" * 100_000 + "]" * 100_000

WRITE_RUN = f"""
import mpbackend
run = mpbackend.init(project="p", id="good", name="good", tags=["t"],
                     config={{"lr": 0.1, "opt": {{"name": "adam"}}}},
                     settings={{"system_interval": 0}})
for s in range({ROWS}):
    row = {{"a": s * 0.5, "i": s, "s": "x%d" % s}}
    if s % 10 == 0:
        row["sparse"] = s * 1.0
    if s % 7 == 0:
        row["v"] = [s, s + 1]
    mpbackend.log(row)
run.finish(quiet=True)
print("RESULT", run.dir)
"""


# -- building databases ------------------------------------------------------------


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> bytes:
    """The bytes of a real run's database, folded into one file (no WAL), with three
    system-metric samples added."""
    where = tmp_path_factory.mktemp("base")
    done = run_script(WRITE_RUN, where, env={"MPBACKEND_SILENT": "1"})
    assert done.returncode == 0, done.stderr
    run_dir = done.stdout.split("RESULT ", 1)[1].strip()
    folded = where / "folded.db"
    src, dst = sqlite3.connect(os.path.join(run_dir, "run.db")), sqlite3.connect(folded)
    src.backup(dst)
    src.close()
    dst.execute("PRAGMA journal_mode=DELETE")
    dst.executemany("INSERT INTO system VALUES (?, ?, ?)",
                    [(1.7e9 + t, float(t), f'{{"system/cpu_percent": {t * 10.0}}}')
                     for t in range(3)])
    dst.commit()
    dst.close()
    return folded.read_bytes()


@contextlib.contextmanager
def connect(path):
    """A connection that builds a damaged copy, closed (its transaction rolled back) on
    the way out whatever happens: a failed damage must not leave the file locked.
    No fsync: the copies are scratch."""
    conn = sqlite3.connect(path, timeout=0.5)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        yield conn
    finally:
        conn.close()


def make_run(root: Path, name: str, data: bytes, sql: tuple = (), edit=None) -> Path:
    """``root/p/<name>/run.db`` from ``data``, its run id set to ``name``, then each of
    ``sql`` run on it (a script, or (statement, args)), then ``edit(bytes) -> bytes``."""
    run_dir = root / "p" / name
    run_dir.mkdir(parents=True)
    path = run_dir / "run.db"
    path.write_bytes(data)
    with connect(path) as conn:
        conn.execute("UPDATE run SET id=?", (name,))
        for statement in sql:
            if isinstance(statement, tuple):
                conn.execute(*statement)
            else:
                conn.executescript(statement)
        conn.commit()
    if edit is not None:
        path.write_bytes(edit(path.read_bytes()))
    return run_dir


def force(path: Path, table: str, column: str, value) -> None:
    """Store ``value`` in ``table.column`` of every row, NOT NULL or not, and leave the
    table's schema as it was (``writable_schema``): a NULL where none can be."""
    with connect(path) as conn:
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name=?",
                              (table,)).fetchone()
        conn.execute("PRAGMA writable_schema=ON")
        conn.execute("UPDATE sqlite_master SET sql=? WHERE name=?",
                     (sql.replace("NOT NULL", ""), table))
        conn.commit()
    with connect(path) as conn:
        try:
            conn.execute(f"UPDATE {table} SET {column}=?", (value,))
            conn.commit()
        finally:
            conn.rollback()
            conn.execute("PRAGMA writable_schema=ON")
            conn.execute("UPDATE sqlite_master SET sql=? WHERE name=?", (sql, table))
            conn.commit()


def as_view(table: str, body: str) -> str:
    """SQL that renames ``table`` to ``<table>_0`` and puts a view in its place."""
    return f"ALTER TABLE {table} RENAME TO {table}_0; CREATE VIEW {table} AS {body};"


FOREVER = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
HOSTILE_SQL = {
    # the review's files: a view that never ends, a view of 80 MB blobs
    "cte_chunk": as_view("history_chunk", FOREVER + "SELECT x AS chunk, 0 AS first_step, "
                         "0 AS last_step, 1 AS nrows, zeroblob(8) AS steps, '[]' AS keys "
                         "FROM c"),
    "cte_meta": as_view("meta", FOREVER + "SELECT 'k' || x AS key, 'v' AS value FROM c"),
    "zeroblob": as_view("history_column", "SELECT chunk, key, kind, idx, "
                        "zeroblob(80000000) AS data FROM history_column_0"),
    "trigger": "CREATE TRIGGER t AFTER INSERT ON meta BEGIN SELECT 1; END;",
    "generated": "ALTER TABLE run ADD COLUMN g BLOB GENERATED ALWAYS AS "
                 "(zeroblob(1000)) VIRTUAL;",
    "no_history": "DROP TABLE history_column;",
}


def keys_with(conn: sqlite3.Connection, chunk: int, key: str) -> None:
    """Add ``key`` to the keys of ``chunk``."""
    (keys,) = conn.execute("SELECT keys FROM history_chunk WHERE chunk=?", (chunk,)).fetchone()
    conn.execute("UPDATE history_chunk SET keys=? WHERE chunk=?",
                 (keys[:-1] + f',"{key}"]', chunk))


def step_column(path: Path, sparse: bool = False) -> None:
    """A stored history column named ``_step`` in the first chunk (a crafted file, or a
    run that logged ``{"_step": ...}`` before log() refused it), 10**6 + its row."""
    with connect(path) as conn:
        ((first, nrows),) = conn.execute("SELECT chunk, nrows FROM history_chunk "
                                         "ORDER BY chunk LIMIT 1").fetchall()
        positions = list(range(0, nrows, 3)) if sparse else list(range(nrows))
        idx = array("i", positions).tobytes() if sparse else None
        conn.execute("INSERT INTO history_column VALUES (?, '_step', 'i8', ?, ?)",
                     (first, idx, array("q", [10**6 + p for p in positions]).tobytes()))
        keys_with(conn, first, "_step")
        conn.commit()


def one_line_naming(exc: BaseException, where) -> None:
    """``exc`` is a StoreError whose message is one line and names ``where``."""
    assert isinstance(exc, StoreError), repr(exc)
    text = str(exc)
    assert str(where) in text, text
    assert "\n" not in text and len(text) < 1000, text


# -- children under limits -----------------------------------------------------------


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


# Every child runs through this: at exit it writes its own peak RSS (VmHWM of the
# program it became; wait4's ru_maxrss cannot tell it, as it starts from the size
# of the forked parent) to $HWM_FILE, then it runs ``-m module args`` or ``-c code
# args`` as python itself would.
WRAPPER = """
import atexit, os, runpy, sys

def report():
    with open("/proc/self/status") as f:
        kb = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    with open(os.environ["HWM_FILE"], "w") as f:
        f.write(kb)

atexit.register(report)
mode, target, *rest = sys.argv[1:]
if mode == "-m":
    sys.argv = [target, *rest]
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    sys.argv = ["-c", *rest]
    exec(compile(target, "<child>", "exec"), {"__name__": "__main__"})
"""


class Child:
    """A finished child process: exit status, output, peak RSS, and whether it was killed."""

    def __init__(self, argv, code: int, out: str, err: str, rss_mb: float | None,
                 seconds: float, killed: bool) -> None:
        self.argv, self.code, self.out, self.err = argv, code, out, err
        self.rss_mb, self.seconds, self.killed = rss_mb, seconds, killed

    def __repr__(self) -> str:
        shown = " ".join(a if len(a) < 200 else a[:60] + "..." for a in self.argv)
        return (f"<{shown}: exit {self.code}, {self.rss_mb} MB, {self.seconds:.1f} s"
                f"{', killed' if self.killed else ''}"
                f"\nstdout: {self.out[-2000:]}\nstderr: {self.err[-3000:]}>")


CHILD_ENV = {**{k: v for k, v in os.environ.items() if k != "MPBACKEND_DEBUG"},
             "PYTHONPATH": ROOT, "MPBACKEND_SILENT": "1", "COLUMNS": "250"}


def run_children(commands: list[list[str]], cwd: Path, parallel: int = 2) -> list[Child]:
    """Run each command (``["-m", "mpbackend", ...]`` or ``["-c", code, ...]``) with this
    Python under RLIMIT_AS, killed after CHILD_TIMEOUT, ``parallel`` at a time. All
    are started and reaped from this thread, so no other thread of the test runs
    while one is forked (``preexec_fn``)."""
    results: list[Child | None] = [None] * len(commands)
    running: dict[int, tuple] = {}
    todo = list(enumerate(commands))
    with tempfile.TemporaryDirectory(dir=cwd) as outs:
        while todo or running:
            while todo and len(running) < parallel:
                i, command = todo.pop(0)
                out = open(os.path.join(outs, f"{i}.out"), "w+b")
                err = open(os.path.join(outs, f"{i}.err"), "w+b")
                hwm = os.path.join(outs, f"{i}.hwm")
                proc = subprocess.Popen([sys.executable, "-c", WRAPPER, *command], cwd=cwd,
                                        env={**CHILD_ENV, "HWM_FILE": hwm}, stdout=out,
                                        stderr=err, stdin=subprocess.DEVNULL,
                                        preexec_fn=_limit_memory)
                running[proc.pid] = (i, command, proc, out, err, hwm, time.monotonic(),
                                     [False])
            time.sleep(0.005)
            for pid, (i, command, proc, out, err, hwm, started, killed) in list(
                    running.items()):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done == 0:
                    if time.monotonic() - started > CHILD_TIMEOUT and not killed[0]:
                        proc.kill()
                        killed[0] = True
                    continue
                proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here
                del running[pid]
                texts = []
                for f in (out, err):
                    f.seek(0)
                    texts.append(f.read().decode("utf-8", "replace"))
                    f.close()
                rss = int(Path(hwm).read_text()) / 1024 if os.path.exists(hwm) else None
                results[i] = Child(command, proc.returncode, texts[0], texts[1], rss,
                                   time.monotonic() - started, killed[0])
    return [r for r in results if r is not None]


def run_python(code: str, cwd: Path, *args: str) -> Child:
    """``code`` run by this Python as a child under the limits; its outcome."""
    return run_children([["-c", textwrap.dedent(code), *args]], cwd, 1)[0]


def assert_bounded(child: Child) -> None:
    """Not killed for time, no traceback, a peak RSS it reported and that is small."""
    assert not child.killed, child
    assert "Traceback" not in child.err, child
    assert child.rss_mb is not None and child.rss_mb < MAX_CHILD_RSS_MB, child


# Reads a run as every reader does and prints one line per call: "ok" or the
# StoreError; anything else escapes as a traceback.
READ_ALL = """
import sys
import mpbackend
from mpbackend import RunReader, StoreError

run_dir, root = sys.argv[1], sys.argv[2]
api = mpbackend.Api(root)
print("runs", [r.dir for r in api.runs()], sorted(api.errors))
try:
    reader = RunReader(run_dir)
except StoreError as exc:
    print("open StoreError", exc)
    sys.exit(0)
for name in ("info", "keys", "row_count", "history", "system"):
    try:
        getattr(reader, name)()
        print(name, "ok")
    except StoreError as exc:
        print(name, "StoreError", exc)
"""


# -- defect 1: SQL brought by the file never runs -------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["cte_chunk", "cte_meta", "zeroblob", "trigger",
                                  "generated"])
def test_views_triggers_and_generated_columns_are_refused_unrun(base, tmp_path, name):
    """A file whose tables are views (one that never ends, one of 80 MB blobs), or that
    holds a trigger or a generated column, is refused when opened: at once, in a few
    MB, with a StoreError naming the file; ``Api.runs()`` lists the good run beside it.
    (Without the rules the views hang the reader or take gigabytes.)"""
    good = make_run(tmp_path, "good", base)
    bad = make_run(tmp_path, name, base, (HOSTILE_SQL[name],))
    child = run_python(READ_ALL, tmp_path, str(bad), str(tmp_path))
    assert_bounded(child)
    assert child.code == 0, child
    lines = child.out.splitlines()
    assert lines[0] == f"runs {[str(good)]} {[str(bad)]}", child
    assert lines[1].startswith("open StoreError ") and str(bad) in lines[1], child
    assert child.seconds < 10, child


@pytest.mark.timeout(30)
def test_a_fifo_beside_the_database_is_refused_unopened(base, tmp_path):
    """A FIFO named ``run.db-journal`` (SQLite opens it to look for a hot journal, and
    the open blocks until someone writes to it) is refused before SQLite opens
    anything."""
    bad = make_run(tmp_path, "fifo", base)
    os.mkfifo(bad / "run.db-journal")
    child = run_python(READ_ALL, tmp_path, str(bad), str(tmp_path))
    assert_bounded(child)
    assert child.code == 0, child
    assert f"open StoreError {bad}/run.db-journal is not a regular file" in child.out, child


@pytest.mark.timeout(30)
def test_a_view_made_while_a_reader_is_open_is_refused(base, tmp_path):
    """The authorizer: a table that becomes a view after the reader checked the schema
    is refused when a statement reaches it, not read."""
    run_dir = make_run(tmp_path, "later", base)
    with RunReader(str(run_dir)) as reader:
        assert "a" in reader.keys()
        with connect(run_dir / "run.db") as conn:
            conn.executescript(as_view("history_chunk", "SELECT * FROM history_chunk_0"))
        with pytest.raises(StoreError) as caught:
            reader.keys()
        one_line_naming(caught.value, run_dir)
        assert any(w in str(caught.value) for w in ("prohibited", "not authorized"))


@pytest.mark.timeout(30)
def test_a_statement_over_its_time_budget_is_stopped(base, tmp_path, monkeypatch):
    """The progress handler: a statement running past QUERY_BUDGET is aborted with a
    StoreError saying so (here a ten-way join of sqlite_master, hours of work)."""
    run_dir = make_run(tmp_path, "slow", base)
    monkeypatch.setattr(reader_module, "QUERY_BUDGET", 0.3)
    names = "abcdefghij"
    sql = (f"SELECT a.name FROM {', '.join(f'sqlite_master {n}' for n in names)} "
           f"WHERE {' + '.join(f'{n}.rootpage' for n in names)} < 0")
    with RunReader(str(run_dir)) as reader:
        started = time.monotonic()
        with pytest.raises(StoreError) as caught:
            reader._query(sql)
        assert time.monotonic() - started < 3
        one_line_naming(caught.value, run_dir)
        assert "longer than 0.3 s" in str(caught.value)
        assert reader.info()["id"] == "slow"  # the next statement has its own budget


def test_connection_limits_bound_a_value_and_forbid_attach(base, tmp_path):
    """The limits themselves, with the authorizer taken off: no value may be longer
    than SQLITE_LIMIT_LENGTH (64 MiB for a small file), no database attached."""
    run_dir = make_run(tmp_path, "limits", base)
    conn, _ = reader_module.open_readonly(str(run_dir / "run.db"))
    try:
        conn.set_authorizer(None)
        assert conn.execute("SELECT length(zeroblob(1000))").fetchone() == (1000,)
        with pytest.raises(sqlite3.Error, match="too big"):
            conn.execute("SELECT zeroblob(?)", (reader_module.MIN_VALUE_LIMIT + 1,)).fetchone()
        with pytest.raises(sqlite3.Error, match="too many attached"):
            conn.execute("ATTACH ':memory:' AS other")
        assert conn.execute("PRAGMA trusted_schema").fetchone() == (0,)
    finally:
        conn.close()


# -- defect 2: a damaged value is a StoreError; the other runs are listed --------------


RUN_DAMAGE = {  # (table, column, value); stored with force(), NOT NULL or not
    "version_x": ("meta", "value", "x"),
    "version_null": ("meta", "value", None),
    "config_deep": ("run", "config", DEEP),
    "config_list": ("run", "config", "[]"),
    "created_yesterday": ("run", "created_at", "yesterday"),
    "created_huge": ("run", "created_at", 1e300),
    "updated_null": ("run", "updated_at", None),
    "state_null": ("run", "state", None),
    "state_unknown": ("run", "state", "weird"),
    "id_null": ("run", "id", None),
    "id_path": ("run", "id", "../../etc"),
    "name_blob": ("run", "name", b"\x00\xff"),
    "step_text": ("run", "step", "ten"),
    "step_negative": ("run", "step", -5),
    "exit_text": ("run", "exit_code", "1.5x"),
    "pid_negative": ("run", "pid", -1),
    "tags_numbers": ("run", "tags", "[1, 2]"),
    "summary_null": ("run", "summary", "null"),
    "extra_metrics": ("run", "extra", '{"metrics": [1]}'),
    "extra_deep": ("run", "extra", '{"last": ' + "[" * 300 + "]" * 300 + "}"),
    "project_null": ("run", "project", None),
}


@pytest.mark.parametrize("name", sorted(RUN_DAMAGE))
def test_a_damaged_run_row_is_a_store_error_and_the_others_are_listed(base, tmp_path, name):
    """A value of the run's row (or the schema version) of the wrong type, NULL, out of
    range, not the JSON it should be, or JSON nested 100,000 deep: RunReader raises a
    StoreError naming the file, and ``Api.runs()`` leaves the run out with that
    message in ``errors`` and lists the good run."""
    good = make_run(tmp_path, "good", base)
    bad = make_run(tmp_path, "bad", base)
    table, column, value = RUN_DAMAGE[name]
    force(bad / "run.db", table, column, value)
    with pytest.raises(StoreError) as caught:
        with RunReader(str(bad)) as reader:
            reader.info()
    one_line_naming(caught.value, bad)
    api = Api(str(tmp_path))
    assert [r.dir for r in api.runs()] == [str(good)]
    assert list(api.errors) == [str(bad)]
    assert str(bad) in api.errors[str(bad)]
    assert [r.dir for r in api.runs(order="config.lr")] == [str(good)]


HISTORY_DAMAGE = {  # (table, column, value, the reader call that must refuse it)
    "nrows_huge": ("history_chunk", "nrows", 10**12, "history"),
    "nrows_text": ("history_chunk", "nrows", "x", "history"),
    "steps_text": ("history_chunk", "steps", "abcdefgh", "history"),
    "steps_short": ("history_chunk", "steps", b"\x00" * 7, "history"),
    "keys_object": ("history_chunk", "keys", '{"a": 1}', "keys"),
    "keys_deep": ("history_chunk", "keys", DEEP, "keys"),
    "first_step_wrong": ("history_chunk", "first_step", 5, "history"),
    "idx_negative": ("history_column", "idx", b"\xff\xff\xff\xff", "history"),
    "idx_beyond": ("history_column", "idx", array("i", [5000]).tobytes(), "history"),
    "data_short": ("history_column", "data", b"\x00", "history"),
    "data_text": ("history_column", "data", "[1]", "history"),
    "kind_null": ("history_column", "kind", None, "history"),
    "kind_unknown": ("history_column", "kind", "f4", "history"),
    "system_list": ("system", "data", "[1]", "system"),
    "system_ts_text": ("system", "ts", "yesterday", "system"),
}


@pytest.mark.parametrize("name", sorted(HISTORY_DAMAGE))
def test_damaged_history_is_a_store_error_naming_the_file(base, tmp_path, name):
    """History or system metrics damaged in one cell (every row of that table): the run
    is still listed (its row is fine) and every read of what is damaged, through
    RunReader and ApiRun (DataFrame, rows, system metrics), raises a StoreError naming
    the file; nothing else escapes."""
    bad = make_run(tmp_path, "bad", base)
    table, column, value, refused = HISTORY_DAMAGE[name]
    force(bad / "run.db", table, column, value)
    (run,) = Api(str(tmp_path)).runs()
    calls = {
        "history": [lambda r: r.history(), lambda r: list(r.raw_chunks()),
                    lambda r: list(r.chunks(keys=["a"])), lambda r: list(r.rows(min_step=2))],
        "keys": [lambda r: r.keys()],
        "system": [lambda r: r.system()],
    }[refused]
    with RunReader(str(bad)) as reader:
        for call in calls:
            with pytest.raises(StoreError) as caught:
                call(reader)
            one_line_naming(caught.value, bad)
        for other in ("info", "keys", "row_count", "history", "system"):
            try:
                getattr(reader, other)()
            except StoreError as exc:
                one_line_naming(exc, bad)
    api_calls = {"history": [lambda: run.history(), lambda: run.history(keys=["a"]),
                             lambda: run.history(pandas=False), lambda: list(run.scan_history())],
                 "keys": [lambda: list(run.scan_history())],
                 "system": [lambda: run.system_metrics()]}[refused]
    for call in api_calls:
        with pytest.raises(StoreError) as caught:
            call()
        one_line_naming(caught.value, bad)


@pytest.mark.parametrize("steps, first, last", [
    ([1, 2, 3, 4, 5, 6], 0, 6),  # not starting at first_step
    ([0, 1, 2, 3, 4, 5], 0, 9),  # not ending at last_step
    ([-6, -5, -4, -3, -2, -1], -6, -1),  # negative
    ([2**63 - 6 + i for i in range(6)], 2**63 - 6, 2**63 - 1),  # past the largest step
], ids=["start", "end", "negative", "past"])
def test_stored_steps_must_fit_their_chunk(base, tmp_path, steps, first, last):
    """A chunk's steps must run from its first_step to its last_step, within 0 and the
    largest step; a range beyond int64 asked of a good run reads nothing instead of
    overflowing."""
    bad = make_run(tmp_path, "bad", base, ((
        "UPDATE history_chunk SET steps=?, first_step=?, last_step=? WHERE nrows=6",
        (array("q", steps).tobytes(), first, last)),))
    with RunReader(str(bad)) as reader, pytest.raises(StoreError, match="do not run from"):
        reader.history()
    good = make_run(tmp_path, "good", base)
    with RunReader(str(good)) as reader:
        assert list(reader.rows(min_step=2**70)) == []
        assert [r["_step"] for r in reader.rows(min_step=-(2**70), max_step=1)] == [0, 1]


# -- defect 3: a column named _step never replaces a row's step -----------------------


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_a_stored_step_column_is_ignored_on_every_read_path(base, tmp_path, sparse):
    """``_step`` of a row is its stored step on every read path (pivot, rows, history,
    chunks, raw_chunks, keys, the DataFrame, scan_history), with or without keys."""
    run_dir = make_run(tmp_path, "stepped", base)
    step_column(run_dir / "run.db", sparse)
    steps = list(range(ROWS))
    with RunReader(str(run_dir)) as reader:
        assert "_step" not in reader.keys()
        assert [r["_step"] for r in reader.history()] == steps
        assert [r["_step"] for r in reader.rows(min_step=5, max_step=8)] == [5, 6, 7, 8]
        assert [r["_step"] for r in reader.rows(keys=["_step", "a"])] == steps
        for _, cols in reader.chunks():
            assert "_step" not in cols
        for _, cols in reader.raw_chunks(keys=["_step", "a"]):
            assert list(cols) == ["a"]
    (run,) = Api(str(tmp_path)).runs()
    frame = run.history()
    assert frame["_step"].tolist() == steps and list(frame.columns).count("_step") == 1
    assert run.history(keys=["a"])["_step"].tolist() == steps
    assert run.history(keys=["_step", "sparse"])["_step"].tolist() == steps[::10]
    assert [r["_step"] for r in run.history(pandas=False)] == steps
    assert [r["_step"] for r in run.scan_history()] == steps
    assert [r["_step"] for r in run.scan_history(keys=["_step", "a"])] == steps
    assert [r["_step"] for r in run.scan_history(min_step=1020)] == steps[1020:]


def test_pivot_keeps_the_rows_own_step():
    rows = pivot([3, 4], {"_step": (None, [70, 80]), "a": ([1], [0.5])})
    assert rows == [{"_step": 3}, {"_step": 4, "a": 0.5}]


# -- the fuzz: damaged copies read in this process ------------------------------------

TABLES = ("meta", "run", "history_chunk", "history_column", "system")
CELLS = [("meta", "value"), *(("run", c) for c in (
    "id", "project", "name", "state", "created_at", "updated_at", "exit_code", "step",
    "config", "summary", "tags", "notes", "run_group", "job_type", "host", "pid", "extra")),
    *(("history_chunk", c) for c in ("chunk", "first_step", "last_step", "nrows", "steps",
                                     "keys")),
    *(("history_column", c) for c in ("chunk", "key", "kind", "idx", "data")),
    *(("system", c) for c in ("ts", "runtime", "data"))]
VIEW_BODIES = {
    "copy": "SELECT * FROM {t}_0",
    "forever": FOREVER + "SELECT {t}_0.* FROM c, {t}_0",
    "zeroblob": "SELECT {zeros} FROM {t}_0",
    "randomblob": "SELECT {randoms} FROM {t}_0",
}
cell_values = st.one_of(
    st.none(),
    st.sampled_from([0, -1, 1, 6, 1024, 1025, 2**31, 2**63 - 1, -(2**63), 10**12]),
    st.floats(allow_nan=False),
    st.sampled_from([float("inf"), 1e300, 0.5]),
    st.text(max_size=12),
    st.sampled_from(["yesterday", "x", "[", "]", "{}", "[]", "null", '{"a":', "[1, 2]", '["a"]',
                     '["a", "a"]', '{"metrics": []}', '{"last": 5}', "f8", "i8", "json",
                     "finished", "running", "1", "<deep 3000>", "<deep 100000>"]
                    ).map(lambda v: "[" * int(v[6:-1]) + "]" * int(v[6:-1])
                          if v.startswith("<deep") else v),
    st.binary(max_size=24),
    st.sampled_from([b"", b"\x00" * 8, b"\xff" * 8, b"\x00" * 8 * 1024, b"\x00" * 8 * 1025,
                     b"[1]", array("i", [-1]).tobytes(), array("q", [2**63 - 1]).tobytes()]),
)
sql_damage = st.one_of(
    st.tuples(st.just("cell"), st.sampled_from(CELLS), cell_values, st.booleans()),
    st.tuples(st.just("view"), st.sampled_from(TABLES), st.sampled_from(sorted(VIEW_BODIES))),
    st.tuples(st.just("trigger"), st.sampled_from(TABLES)),
    st.tuples(st.just("drop"), st.sampled_from(TABLES)),
    st.tuples(st.just("column"), st.sampled_from(TABLES),
              st.sampled_from(["add", "generated", "rename", "drop"])),
    st.tuples(st.just("extra"), st.sampled_from(["table", "index", "expression index"])),
    st.tuples(st.just("declared"), st.sampled_from(["nrows", "steps", "idx", "data"]),
              st.integers(-2, 10**6)),
    st.tuples(st.just("step column"), st.booleans()),
)
byte_damage = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)),
                                        min_size=1, max_size=8)),
    st.tuples(st.just("zero page"), st.floats(0, 1)),
    st.tuples(st.just("header"), st.integers(0, 99), st.integers(0, 255)),
)
damages = st.tuples(st.lists(sql_damage, max_size=3), st.lists(byte_damage, max_size=2)
                    ).filter(lambda d: d[0] or d[1])


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_xinfo({table})")]


def apply_sql(path: Path, op: tuple) -> None:
    """One SQL-level damage; one that SQLite itself will not make, or that needs what an
    earlier damage took away, is skipped."""
    try:
        _apply_sql(path, op)
    except (sqlite3.Error, ValueError, TypeError, IndexError):
        pass


def _apply_sql(path: Path, op: tuple) -> None:
    kind = op[0]
    if kind == "cell" and op[3]:
        force(path, op[1][0], op[1][1], op[2])
        return
    if kind == "step column":
        step_column(path, op[1])
        return
    with connect(path) as conn:
        if kind == "cell":
            (table, column), value = op[1], op[2]
            conn.execute(f"UPDATE {table} SET {column}=? WHERE rowid IN "
                         f"(SELECT rowid FROM {table} LIMIT 1)"
                         if table != "history_column" else
                         f"UPDATE {table} SET {column}=? WHERE key='a'", (value,))
        elif kind == "view":
            table, body = op[1], VIEW_BODIES[op[2]]
            cols = _columns(conn, table)
            conn.executescript(as_view(table, body.format(
                t=table, zeros=", ".join(f"zeroblob(80000000) AS {c}" for c in cols),
                randoms=", ".join(f"randomblob(1000000) AS {c}" for c in cols))))
        elif kind == "trigger":
            conn.execute(f"CREATE TRIGGER t_{op[1]} BEFORE DELETE ON {op[1]} "
                         "BEGIN SELECT 1; END")
        elif kind == "drop":
            conn.execute(f"DROP TABLE {op[1]}")
        elif kind == "column":
            table, how = op[1], op[2]
            cols = _columns(conn, table)
            conn.execute({
                "add": f"ALTER TABLE {table} ADD COLUMN junk TEXT",
                "generated": f"ALTER TABLE {table} ADD COLUMN junk BLOB GENERATED ALWAYS AS "
                             "(zeroblob(80000000)) VIRTUAL",
                "rename": f"ALTER TABLE {table} RENAME COLUMN {cols[-1]} TO renamed",
                "drop": f"ALTER TABLE {table} DROP COLUMN {cols[-1]}",
            }[how])
        elif kind == "extra":
            conn.executescript({
                "table": "CREATE TABLE later (x); INSERT INTO later VALUES (zeroblob(100));",
                "index": "CREATE INDEX ix ON history_column (kind);",
                "expression index": "CREATE INDEX ix ON run (length(config) + 1);",
            }[op[1]])
        elif kind == "declared":
            what, n = op[1], op[2]
            if what == "nrows":
                conn.execute("UPDATE history_chunk SET nrows=?", (n,))
            elif what == "steps":
                conn.execute("UPDATE history_chunk SET steps=zeroblob(?) WHERE nrows=6",
                             (max(n, 0) % 100_000,))
            elif what == "idx":
                conn.execute("UPDATE history_column SET idx=zeroblob(?) WHERE key='sparse'",
                             (max(n, 0) % 100_000,))
            else:
                conn.execute("UPDATE history_column SET data=zeroblob(?) WHERE key='a'",
                             (max(n, 0) % 1_000_000,))
        conn.commit()


def apply_bytes(data: bytes, op: tuple) -> bytes:
    kind = op[0]
    if kind == "truncate":
        return data[:int(len(data) * op[1])]
    if len(data) < 100:
        return data
    buf = bytearray(data)
    if kind == "flip":
        for at, mask in op[1]:
            buf[min(int(at * len(buf)), len(buf) - 1)] ^= mask
    elif kind == "zero page":
        page = int.from_bytes(data[16:18], "big") or 65536
        start = min(int(op[1] * len(buf)), len(buf) - 1) // page * page
        buf[start:start + page] = bytes(len(buf[start:start + page]))
    else:
        buf[op[1]] = op[2]
    return bytes(buf)


def check_info(info: dict) -> None:
    """What a successful ``info()`` gives: every field of the type readers rely on."""
    assert type(info["id"]) is str and type(info["project"]) is str
    assert type(info["state"]) is str and type(info["step"]) is int
    for f in ("created_at", "updated_at"):
        assert type(info[f]) in (int, float) and 0 <= info[f] < 1e12
    for f in ("config", "summary", "extra"):
        assert type(info[f]) is dict
    assert all(type(t) is str for t in info["tags"])


def check_rows(rows: list) -> None:
    assert all(type(r["_step"]) is int and all(type(k) is str for k in r) for r in rows)


def read_fuzzed(root: Path, good: Path, bad: Path) -> None:
    """Every reader call on ``bad``: a correct read or a StoreError naming it."""
    api = Api(str(root))
    listed = [r.dir for r in api.runs()]
    assert str(good) in listed
    assert (str(bad) in listed) != (str(bad) in api.errors), (listed, api.errors)
    if str(bad) in api.errors:
        assert str(bad) in api.errors[str(bad)] and "\n" not in api.errors[str(bad)]
    try:
        reader = RunReader(str(bad))
    except StoreError as exc:
        one_line_naming(exc, bad)
        return
    with reader:
        calls = {
            "info": lambda: check_info(reader.info()),
            "keys": lambda: all(type(k) is str for k in reader.keys()),
            "row_count": lambda: reader.row_count() >= 0,
            "history": lambda: check_rows(reader.history()),
            "rows": lambda: check_rows(list(reader.rows(min_step=3, max_step=1100,
                                                        keys=["a", "s", "_step"]))),
            "raw_chunks": lambda: list(reader.raw_chunks()),
            "system": lambda: check_rows([{**r, "_step": 0} for r in reader.system()]),
        }
        for call in calls.values():
            try:
                call()
            except StoreError as exc:
                one_line_naming(exc, bad)
    if str(bad) in listed:
        (run,) = [r for r in api.runs() if r.dir == str(bad)]
        for call in (lambda: run.history(), lambda: run.history(keys=["a", "v"]),
                     lambda: check_rows(list(run.scan_history())),
                     lambda: run.system_metrics()):
            try:
                call()
            except StoreError as exc:
                one_line_naming(exc, bad)


@pytest.mark.timeout(120)
@pytest.mark.filterwarnings("ignore:Generating overly large repr")
def test_fuzz_damaged_and_hostile_databases_in_process(base, tmp_path):
    """Damaged and hostile copies of a real run (SQL-level and byte-level damage, up to
    five at once), each read through Api.runs(), every RunReader call and the ApiRun
    reads: a correct read or a StoreError naming the file, each copy within a few
    seconds (QUERY_BUDGET is cut to 2 s here), and no memory growth beyond a little."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    count = [0]

    @settings(max_examples=FUZZ_EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much])
    @given(damages)
    def read_one(damage):
        count[0] += 1
        root = tmp_path / f"ex{count[0]}"
        try:
            good = make_run(root, "good", base)
            bad = make_run(root, "bad", base)
            path = bad / "run.db"
            for op in damage[0]:
                apply_sql(path, op)
            data = path.read_bytes()
            for op in damage[1]:
                data = apply_bytes(data, op)
            path.write_bytes(data)
            for side in ("-journal", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(str(path) + side)
            started = time.monotonic()
            with mock.patch.object(reader_module, "QUERY_BUDGET", 2.0, create=True):
                read_fuzzed(root, good, bad)
            assert time.monotonic() - started < 8, damage

        finally:
            shutil.rmtree(root, ignore_errors=True)

    read_one()
    assert count[0] >= FUZZ_EXAMPLES // 2
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before
    assert grown < 200, f"peak RSS grew by {grown:.0f} MB"


# -- the command on hostile files ------------------------------------------------------


def _cli_files(base: bytes, root: Path) -> dict[str, Path]:
    """The representative files, each in its own run directory under ``root``."""
    made = {"good": make_run(root, "good", base)}
    made["stepped"] = make_run(root, "stepped", base)
    step_column(made["stepped"] / "run.db")
    for name in ("cte_chunk", "cte_meta", "zeroblob", "trigger"):
        made[name] = make_run(root, name, base, (HOSTILE_SQL[name],))
    for name in ("version_x", "config_deep", "created_yesterday", "pid_negative"):
        made[name] = make_run(root, name, base)
        force(made[name] / "run.db", *RUN_DAMAGE[name])
    for name in ("nrows_huge", "idx_beyond"):
        made[name] = make_run(root, name, base)
        force(made[name] / "run.db", *HISTORY_DAMAGE[name][:3])
    made["truncated"] = make_run(root, "truncated", base, edit=lambda d: d[:len(d) // 2])
    made["flipped"] = make_run(root, "flipped", base, edit=lambda d: apply_bytes(
        d, ("flip", [(0.55 + i / 200, 0xFF) for i in range(16)])))
    return made


# Which commands run on which file: every command on the good run, on a view that
# never ends and on a chunk declaring 10**12 rows (refused at open, and refused at
# the first history read, in each command's own path); the rest on files of one
# kind each. 0: must succeed, 1: must fail cleanly, None: either (byte damage
# lands where the run's layout puts it, which the service's timing decides).
CLI_PLAN: dict[str, dict[str, int | None]] = {
    "good": dict.fromkeys(("show", "export", "tail", "plot", "report"), 0),
    "stepped": dict.fromkeys(("show", "export", "tail"), 0),
    "cte_chunk": dict.fromkeys(("show", "export", "tail", "plot", "report"), 1),
    "nrows_huge": {"show": 1, "export": 1, "tail": 1, "plot": 1, "report": 1},
    "zeroblob": {"show": 1, "export": 1},
    "idx_beyond": {"show": 0, "export": 1},
    "truncated": {"show": None, "export": None},
    "flipped": {"show": None, "export": None},
    **{name: {"show": 1} for name in ("cte_meta", "trigger", "version_x", "config_deep",
                                      "created_yesterday", "pid_negative")},
}


def _argv(command: str, run_dir: Path, root: Path, out: Path) -> list[str]:
    cli = ["-m", "mpbackend", command, "--dir", str(root)]
    return {
        "show": [*cli, str(run_dir)],
        "export": [*cli, str(run_dir), "-o", str(out / f"{run_dir.name}.csv")],
        "tail": [*cli, str(run_dir), "--no-follow", "-n", "5"],
        "plot": [*cli, str(run_dir), "-k", "a", "-o", str(out / f"{run_dir.name}.png")],
        "report": [*cli, str(run_dir), "-o", str(out / f"{run_dir.name}.html")],
    }[command]


def assert_clean(child: Child, names=()) -> None:
    """Bounded, no unexpected error; exit 0, or 1 with one ``Error:`` line (naming one of
    ``names``, when given), after at most one ``warning: skipped`` line per run left
    out (report and plot warn about each refused run, then fail if none is left)."""
    assert_bounded(child)
    assert "Error: unexpected" not in child.err and ": unexpected " not in child.err, child
    assert child.code in (0, 1), child
    if child.code == 1:
        lines = child.err.strip().splitlines()
        assert lines[-1].startswith("Error: "), child
        assert all(line.startswith("warning: skipped ") for line in lines[:-1]), child
        assert not names or any(str(n) in lines[-1] for n in names), child


@pytest.mark.timeout(120)
def test_every_command_on_hostile_files_fails_cleanly_or_reads(base, tmp_path):
    """``mpbackend ls/show/export/tail/plot/report`` on representative hostile files,
    each a subprocess under RLIMIT_AS and a timeout (CLI_PLAN): a file the rules
    refuse gives exit status 1 and one ``Error:`` line naming it; a readable one a
    correct result (the good run and the one with a ``_step`` column export and
    tail their stored steps); never a traceback, an unexpected error, a hang or a
    large peak RSS. ``ls`` over all of them lists exactly the readable runs and
    warns once for each other; ``report`` over all ends cleanly."""
    root = tmp_path / "runs"
    out = tmp_path / "out"
    out.mkdir()
    files = _cli_files(base, root)
    commands = [(name, command) for name, plan in CLI_PLAN.items() for command in plan]
    argvs = [_argv(command, files[name], root, out) for name, command in commands]
    argvs.append(["-m", "mpbackend", "ls", "--dir", str(root)])
    argvs.append(["-m", "mpbackend", "report", "--dir", str(root), "-o", str(out / "all.html")])
    children = run_children(argvs, tmp_path)
    for (name, command), child in zip(commands, children):
        assert_clean(child, [files[name]] if name != "flipped" else [])
        expected = CLI_PLAN[name][command]
        assert expected is None or child.code == expected, child
    for name in ("good", "stepped"):
        with open(out / f"{name}.csv", newline="") as fh:
            exported = list(csv.DictReader(fh))
        assert [int(r["_step"]) for r in exported] == list(range(ROWS))
        assert [float(r["a"]) for r in exported[:3]] == [0.0, 0.5, 1.0]
        (tail,) = [c for (n, command), c in zip(commands, children)
                   if n == name and command == "tail"]
        assert [line.split()[1] for line in tail.out.splitlines()] == [
            str(s) for s in range(ROWS - 5, ROWS)], tail
    ls, report = children[-2:]
    assert_clean(ls)
    assert ls.code == 0, ls
    listed = {line.split()[0] for line in ls.out.splitlines()[1:] if line.strip()}
    readable = {"good", "stepped", "nrows_huge", "idx_beyond"}
    assert readable <= listed <= readable | {"truncated", "flipped"}, ls
    skipped = [line for line in ls.err.splitlines() if line.startswith("warning: skipped")]
    assert len(skipped) == len(files) - len(listed), ls
    # report.py stops at the first listed run whose history is refused (one clean line)
    assert_clean(report, [files[n] for n in ("nrows_huge", "idx_beyond", "truncated",
                                             "flipped")])


def test_the_good_file_reads_whole(base, tmp_path):
    """The base run itself passes every rule: the fuzz and the CLI test start from a
    run that reads correctly (its info, every row, its keys and samples)."""
    run_dir = make_run(tmp_path, "good", base)
    with RunReader(str(run_dir)) as reader:
        info = reader.info()
        check_info(info)
        assert info["config"] == {"lr": 0.1, "opt": {"name": "adam"}}
        history = reader.history()
        assert [r["_step"] for r in history] == list(range(ROWS))
        assert history[14] == {**{k: history[14][k] for k in ("_runtime", "_timestamp")},
                               "_step": 14, "a": 7.0, "i": 14, "s": "x14", "v": [14, 15]}
        assert reader.keys()[:3] == ["a", "i", "s"] and reader.row_count() == ROWS
        assert [r["system/cpu_percent"] for r in reader.system()] == [0.0, 10.0, 20.0]
    frame = Api(str(tmp_path)).run("good").history()
    assert isinstance(frame, pd.DataFrame) and len(frame) == ROWS
    assert frame["i"].dtype == np.int64 and frame["sparse"].isna().sum() == ROWS - 103
    assert mpbackend.RunReader is RunReader
