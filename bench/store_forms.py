"""Benchmark of three forms of run history in SQLite: write speed, size and read-back speed.

    python bench/store_forms.py [--rows 200000] [--big-rows 1000000] [--repeat 3] [--batch 2000]
                                [--workloads dense sparse]

About 3 minutes on 2 cores with the defaults.

The same rows are written, in the same process, to real SQLite files (WAL mode,
``synchronous=NORMAL``, one transaction per ``--batch`` rows, as the service
commits) in each form:

* columnar: the store as it is (``mpbackend.store``): columnar chunks of up to
  1,024 rows, written with ``RunWriter.append`` + ``commit`` and read with
  ``ApiRun(run_dir).history()``; both are the package's own code;
* json row: ``history(step INTEGER PRIMARY KEY, data TEXT)``, one JSON object per
  row (``json.dumps`` per row, ``executemany``);
* wide table: one SQLite column per key (``ALTER TABLE ADD COLUMN`` when a key
  first appears), ``executemany`` of tuples.

Workloads (values are random float64, so the JSON text has realistic lengths):

* dense: every row holds metric_0..metric_9, _runtime and _timestamp (12 floats);
* sparse: every row holds metric_0..metric_7, _runtime and _timestamp (10 keys),
  and every 10th row also val_0..val_4 (validation metrics).

Measured, median of ``--repeat`` (interleaved across forms, so drift hits them alike):

* write rows/s: rows / time to open the database, store every row and close it
  (the final checkpoint included); the rows are generated before the clock starts;
* on disk: bytes of every file the form leaves behind after closing;
* read: time from nothing open to a pandas DataFrame with ``_step`` and a column per
  key (NaN where a row lacks the key), warm OS page cache. Every read path tried is
  listed; the main table shows each form's fastest;
* every DataFrame is checked against one built directly from the generated values
  (same columns, same length, same dtypes, same values bit for bit, NaN where
  missing), so the forms agree with each other; a different column order is
  reported but not counted as a difference.

The columnar writer also updates its ``run`` row (``updated_at``) at each commit,
as the service does; the two other forms only write history.

Then, separately: a run of ``--big-rows`` rows (10 user floats + _runtime and
_timestamp, as the service stores a ``log()`` of 10 floats) is written in the
columnar form and read with ``ApiRun.history()``: one warm-up read (imports and
caches), then the median of ``--repeat`` reads, each with a fresh reader. The
target is under 1 s for 1,000,000 rows.

The Python garbage collector is left on, but the generated rows are frozen out of
it (``gc.freeze``), so that no form pays for scanning the benchmark's own data.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import platform
import shlex
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mpbackend.read.api import ApiRun  # noqa: E402
from mpbackend.store.writer import RunWriter  # noqa: E402

# -- data -------------------------------------------------------------------------------


class Workload:
    """Rows to store (dicts, without ``_step``) and the DataFrame they must read back as."""

    def __init__(self, name: str, description: str, rows: list[dict[str, Any]],
                 expected: pd.DataFrame) -> None:
        self.name = name
        self.description = description
        self.rows = rows
        self.expected = expected


def _blocks(n: int, extra_every: int, n_metrics: int, n_extra: int, seed: int,
            block: int = 20000) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Columns of the workload, ``block`` rows at a time: (first step, {key: values})."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, block):
        m = min(block, n - start)
        cols = {f"metric_{i}": rng.standard_normal(m) for i in range(n_metrics)}
        if n_extra:
            has = (np.arange(start, start + m) % extra_every) == 0
            for i in range(n_extra):
                vals = np.full(m, np.nan)
                vals[has] = rng.standard_normal(int(has.sum()))
                cols[f"val_{i}"] = vals
        runtime = np.arange(start, start + m) * 0.01 + rng.random(m) * 1e-3
        cols["_runtime"] = runtime
        cols["_timestamp"] = 1.7e9 + runtime
        yield start, cols


def _rows_of(start: int, cols: dict[str, np.ndarray], extra_every: int
             ) -> list[dict[str, Any]]:
    """The row dicts of a block, in the key order the service builds them in."""
    always = [k for k in cols if not k.startswith("val_")]
    extra = [k for k in cols if k.startswith("val_")]
    user = [k for k in always if not k.startswith("_")]
    lists = {k: v.tolist() for k, v in cols.items()}
    out = []
    for i in range(len(lists["_runtime"])):
        row = {k: lists[k][i] for k in user}
        if extra and (start + i) % extra_every == 0:
            for k in extra:
                row[k] = lists[k][i]
        row["_runtime"] = lists["_runtime"][i]
        row["_timestamp"] = lists["_timestamp"][i]
        out.append(row)
    return out


def _expected(n: int, blocks: list[dict[str, np.ndarray]], order: list[str]) -> pd.DataFrame:
    columns: dict[str, Any] = {"_step": np.arange(n, dtype=np.int64)}
    for key in order:
        columns[key] = np.concatenate([b[key] for b in blocks])
    return pd.DataFrame(columns)


def make_workload(name: str, n: int, seed: int) -> Workload:
    if name == "dense":
        spec = dict(extra_every=1, n_metrics=10, n_extra=0)
        order = [f"metric_{i}" for i in range(10)] + ["_runtime", "_timestamp"]
        description = "metric_0..9 + _runtime, _timestamp on every row (12 floats)"
    else:
        spec = dict(extra_every=10, n_metrics=8, n_extra=5)
        order = ([f"metric_{i}" for i in range(8)] + [f"val_{i}" for i in range(5)]
                 + ["_runtime", "_timestamp"])
        description = ("metric_0..7 + _runtime, _timestamp on every row, "
                       "val_0..4 on every 10th row")
    rows: list[dict[str, Any]] = []
    blocks = []
    for start, cols in _blocks(n, seed=seed, **spec):
        rows.extend(_rows_of(start, cols, spec["extra_every"]))
        blocks.append(cols)
    return Workload(name, description, rows, _expected(n, blocks, order))


# -- the three forms --------------------------------------------------------------------


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _connect_ro(path: str) -> sqlite3.Connection:
    return sqlite3.connect("file:" + os.path.abspath(path) + "?mode=ro", uri=True)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def write_columnar(where: str, rows: list[dict[str, Any]], batch: int) -> str:
    run_dir = os.path.join(where, "bench", "columnar")
    writer = RunWriter(run_dir, {"id": "columnar", "project": "bench"}, resume=False)
    for step, row in enumerate(rows):
        writer.append(step, row)
        if (step + 1) % batch == 0:
            writer.commit()
    writer.close()
    return run_dir


def write_json(where: str, rows: list[dict[str, Any]], batch: int) -> str:
    path = os.path.join(where, "json.db")
    conn = _connect(path)
    conn.execute("CREATE TABLE history (step INTEGER PRIMARY KEY, data TEXT NOT NULL)")
    # a prebuilt encoder: json.dumps(row, separators=...) would build one per call
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    for start in range(0, len(rows), batch):
        records = [(step, dumps(row))
                   for step, row in enumerate(rows[start:start + batch], start)]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO history VALUES (?, ?)", records)
        conn.execute("COMMIT")
    conn.close()
    return path


def write_wide(where: str, rows: list[dict[str, Any]], batch: int) -> str:
    path = os.path.join(where, "wide.db")
    conn = _connect(path)
    conn.execute("CREATE TABLE history (_step INTEGER PRIMARY KEY)")
    keys: list[str] = []
    known: set[str] = set()
    insert = ""
    for start in range(0, len(rows), batch):
        part = rows[start:start + batch]
        new = []
        for row in part:
            if not known.issuperset(row):
                for key in row:
                    if key not in known:
                        known.add(key)
                        keys.append(key)
                        new.append(key)
        conn.execute("BEGIN IMMEDIATE")
        if new or not insert:
            for key in new:
                conn.execute(f"ALTER TABLE history ADD COLUMN {_quote(key)}")
            insert = (f"INSERT INTO history (_step, {', '.join(map(_quote, keys))}) "
                      f"VALUES (?{', ?' * len(keys)})")
        conn.executemany(insert, [(step, *map(row.get, keys))
                                  for step, row in enumerate(part, start)])
        conn.execute("COMMIT")
    conn.close()
    return path


def read_columnar(run_dir: str) -> pd.DataFrame:
    return ApiRun(run_dir).history()


def _json_texts(path: str) -> tuple[list[int], list[str]]:
    conn = _connect_ro(path)
    rows = conn.execute("SELECT step, data FROM history ORDER BY step").fetchall()
    conn.close()
    if not rows:
        return [], []
    steps, texts = zip(*rows)
    return list(steps), list(texts)


def _with_step(frame: pd.DataFrame, steps: list[int]) -> pd.DataFrame:
    frame.insert(0, "_step", np.array(steps, dtype=np.int64))
    return frame


def read_json_loads(path: str) -> pd.DataFrame:
    steps, texts = _json_texts(path)
    loads = json.loads
    return _with_step(pd.DataFrame([loads(t) for t in texts]), steps)


def read_json_one_parse(path: str) -> pd.DataFrame:
    steps, texts = _json_texts(path)
    return _with_step(pd.DataFrame(json.loads("[" + ",".join(texts) + "]")), steps)


def read_json_normalize(path: str) -> pd.DataFrame:
    steps, texts = _json_texts(path)
    loads = json.loads
    return _with_step(pd.json_normalize([loads(t) for t in texts]), steps)


def read_json_lines(path: str) -> pd.DataFrame:
    steps, texts = _json_texts(path)
    # precise_float: the default parser may be off by an ulp; dtype=False: no guessing
    frame = pd.read_json(io.StringIO("\n".join(texts)), lines=True, precise_float=True,
                         dtype=False)
    return _with_step(frame, steps)


def read_json_extract(path: str) -> pd.DataFrame:
    """SQLite parses the JSON: keys from json_each, then one json_extract per key."""
    conn = _connect_ro(path)
    keys = [r[0] for r in conn.execute(
        "SELECT j.key FROM history AS h, json_each(h.data) AS j "
        "GROUP BY j.key ORDER BY MIN(h.step * 4294967296 + j.id)")]
    select = ", ".join(f"json_extract(data, '$.' || {_quote_sql(k)})" for k in keys)
    cur = conn.execute(f"SELECT step{', ' + select if keys else ''} FROM history "
                       "ORDER BY step")
    frame = pd.DataFrame.from_records(cur.fetchall(), columns=["_step", *keys],
                                      coerce_float=True)
    conn.close()
    return frame


def _quote_sql(text: str) -> str:
    return "'" + json.dumps(text).replace("'", "''") + "'"


def read_wide_sql(path: str) -> pd.DataFrame:
    conn = _connect_ro(path)
    frame = pd.read_sql_query("SELECT * FROM history ORDER BY _step", conn)
    conn.close()
    return frame


def read_wide_records(path: str) -> pd.DataFrame:
    conn = _connect_ro(path)
    cur = conn.execute("SELECT * FROM history ORDER BY _step")
    names = [d[0] for d in cur.description]
    frame = pd.DataFrame.from_records(cur.fetchall(), columns=names, coerce_float=True)
    conn.close()
    return frame


class Form:
    def __init__(self, name: str, write: Callable[[str, list, int], str],
                 reads: dict[str, Callable[[str], pd.DataFrame]]) -> None:
        self.name = name
        self.write = write
        self.reads = reads


FORMS = [
    Form("columnar chunks (current)", write_columnar,
         {"ApiRun.history()": read_columnar}),
    Form("json row", write_json,
         {"json.loads per row + DataFrame(dicts)": read_json_loads,
          "one json.loads of '[...]' + DataFrame(dicts)": read_json_one_parse,
          "json.loads per row + json_normalize": read_json_normalize,
          "pd.read_json(lines=True, precise_float=True)": read_json_lines,
          "SQLite json_each keys + json_extract per key": read_json_extract}),
    Form("wide table", write_wide,
         {"pd.read_sql_query": read_wide_sql,
          "fetchall + DataFrame.from_records": read_wide_records}),
]


# -- measuring ---------------------------------------------------------------------------


def disk_bytes(path: str) -> int:
    """Bytes of the database and whatever it leaves next to it (-wal, -shm)."""
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))


def same_content(got: pd.DataFrame, expected: pd.DataFrame) -> str:
    """'yes', or what differs."""
    order = ""
    if list(got.columns) != list(expected.columns):
        if set(got.columns) != set(expected.columns):
            return f"columns {list(got.columns)}"
        order = "columns in another order; "
        got = got[list(expected.columns)]
    if got.shape != expected.shape:
        return f"{order}shape {got.shape} != {expected.shape}"
    for key in expected.columns:
        a = got[key].to_numpy()
        b = expected[key].to_numpy()
        if a.dtype != b.dtype:
            return f"{order}{key}: dtype {a.dtype} != {b.dtype}"
        floats = a.dtype.kind == "f"
        if not np.array_equal(a, b, equal_nan=floats):
            same = (a == b) | (np.isnan(a) & np.isnan(b)) if floats else a == b
            bad = int(np.flatnonzero(~same)[0])
            return f"{order}{key}: row {bad}: {a[bad]!r} != {b[bad]!r}"
    return f"yes ({order.rstrip('; ')})" if order else "yes"


def timed(fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - t0, result


def bench_workload(work: Workload, tmp: str, repeat: int, batch: int) -> list[dict[str, Any]]:
    n = len(work.rows)
    gc.collect()
    gc.freeze()
    writes: dict[str, list[float]] = {f.name: [] for f in FORMS}
    stored: dict[str, str] = {}
    sizes: dict[str, int] = {}
    try:
        for rep in range(repeat):
            for i, form in enumerate(FORMS):
                where = os.path.join(tmp, f"{work.name}-{i}-{rep}")
                os.makedirs(where)
                seconds, path = timed(form.write, where, work.rows, batch)
                writes[form.name].append(seconds)
                sizes[form.name] = disk_bytes(path)
                stored[form.name] = path
        reads: dict[tuple[str, str], list[float]] = {}
        checks: dict[tuple[str, str], str] = {}
        for _ in range(repeat):
            for form in FORMS:
                for label, read in form.reads.items():
                    seconds, frame = timed(read, stored[form.name])
                    reads.setdefault((form.name, label), []).append(seconds)
                    checks[(form.name, label)] = same_content(frame, work.expected)
                    del frame
    finally:
        gc.unfreeze()
    results = []
    for form in FORMS:
        write_s = statistics.median(writes[form.name])
        paths = []
        for label in form.reads:
            read_s = statistics.median(reads[(form.name, label)])
            paths.append({"path": label, "read_s": read_s, "read_rows_s": n / read_s,
                          "equal": checks[(form.name, label)],
                          "all_s": reads[(form.name, label)]})
        results.append({"workload": work.name, "form": form.name, "rows": n,
                        "write_s": write_s, "write_rows_s": n / write_s,
                        "write_all_s": writes[form.name], "bytes": sizes[form.name],
                        "paths": paths})
    return results


def bench_big_read(tmp: str, n: int, repeat: int, batch: int) -> dict[str, Any]:
    """Write n rows (10 floats + _runtime/_timestamp) columnar, time ApiRun.history()."""
    run_dir = os.path.join(tmp, "big", "bench", "columnar")
    writer = RunWriter(run_dir, {"id": "columnar", "project": "bench"}, resume=False)
    blocks = []
    for start, cols in _blocks(n, extra_every=1, n_metrics=10, n_extra=0, seed=3):
        for step, row in enumerate(_rows_of(start, cols, 1), start):
            writer.append(step, row)
            if (step + 1) % batch == 0:
                writer.commit()
        blocks.append(cols)
    writer.close()
    order = [f"metric_{i}" for i in range(10)] + ["_runtime", "_timestamp"]
    expected = _expected(n, blocks, order)
    del blocks
    warm_s, frame = timed(read_columnar, run_dir)
    equal = same_content(frame, expected)
    del frame, expected
    times = []
    for _ in range(repeat):
        gc.collect()
        seconds, frame = timed(read_columnar, run_dir)
        times.append(seconds)
        del frame
    return {"rows": n, "warmup_s": warm_s, "times": times,
            "median_s": statistics.median(times), "bytes": disk_bytes(run_dir),
            "equal": equal}


# -- report ------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _num(x: float) -> str:
    return f"{x:,.0f}"


def report(results: list[dict[str, Any]], big: dict[str, Any] | None,
           works: list[tuple[str, int, str]], args: argparse.Namespace, total_s: float) -> None:
    print("\n## History storage forms: write and read speed\n")
    print(f"- command: `{shlex.join(['python', *sys.argv])}`")
    print(f"- machine: {os.cpu_count()} cores ({_cpu_model()}), {platform.system()} "
          f"{platform.release()}; python {platform.python_version()}, SQLite "
          f"{sqlite3.sqlite_version}, numpy {np.__version__}, pandas {pd.__version__}")
    if hasattr(os, "getloadavg"):
        print(f"- 1-minute load average: {args.load_start:.2f} at the start, "
              f"{os.getloadavg()[0]:.2f} at the end (other processes skew the timings)")
    print(f"- SQLite: WAL, synchronous=NORMAL, one transaction per {args.batch:,} rows; "
          f"medians of {args.repeat} runs; reads with a warm page cache")
    for name, n, description in works:
        print(f"- {name}: {n:,} rows, {description}")
    print("\n| workload | form | write rows/s | write s | columnar's write speed-up "
          "| on disk MB | bytes/row | read s | read rows/s | columnar's read speed-up "
          "| fastest read path | DataFrame = expected |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|")
    base = {r["workload"]: r for r in results if r["form"] == FORMS[0].name}
    for r in results:
        best = min(r["paths"], key=lambda p: p["read_s"])
        ref = base[r["workload"]]
        ref_read = min(p["read_s"] for p in ref["paths"])
        print(f"| {r['workload']} | {r['form']} | {_num(r['write_rows_s'])} "
              f"| {r['write_s']:.3f} | {r['write_s'] / ref['write_s']:.1f}x "
              f"| {r['bytes'] / 1e6:.1f} | {r['bytes'] / r['rows']:.0f} "
              f"| {best['read_s']:.3f} | {_num(best['read_rows_s'])} "
              f"| {best['read_s'] / ref_read:.1f}x | {best['path']} | {best['equal']} |")
    print("\nEvery read path tried (median s; the runs in brackets):\n")
    print("| workload | form | read path | read s | read rows/s | DataFrame = expected |")
    print("|---|---|---|--:|--:|---|")
    for r in results:
        for p in r["paths"]:
            runs = ", ".join(f"{s:.3f}" for s in p["all_s"])
            print(f"| {r['workload']} | {r['form']} | {p['path']} | {p['read_s']:.3f} "
                  f"[{runs}] | {_num(p['read_rows_s'])} | {p['equal']} |")
    print("\nWrite times, every run (s):\n")
    for r in results:
        runs = ", ".join(f"{s:.3f}" for s in r["write_all_s"])
        print(f"- {r['workload']} / {r['form']}: {runs}")
    if big is not None:
        verdict = "meets" if big["median_s"] < 1.0 else "MISSES"
        runs = ", ".join(f"{s:.3f}" for s in big["times"])
        print(f"\nColumnar form, {big['rows']:,} rows x (10 floats + _runtime, _timestamp), "
              f"{big['bytes'] / 1e6:.1f} MB on disk: `ApiRun(run_dir).history()` takes "
              f"**{big['median_s']:.3f} s** (median of {len(big['times'])} fresh reads: "
              f"{runs}; warm-up {big['warmup_s']:.3f} s), "
              f"{_num(big['rows'] / big['median_s'])} rows/s; {verdict} the < 1 s target. "
              f"DataFrame = expected: {big['equal']}.")
    print(f"\nTotal benchmark time {total_s:.0f} s.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows per workload")
    parser.add_argument("--big-rows", type=int, default=1_000_000,
                        help="rows of the columnar read check (0 to skip)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement")
    parser.add_argument("--batch", type=int, default=2000, help="rows per transaction")
    parser.add_argument("--workloads", nargs="+", default=["dense", "sparse"],
                        choices=["dense", "sparse"])
    args = parser.parse_args()
    args.load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    t0 = time.perf_counter()
    results = []
    works = []
    with tempfile.TemporaryDirectory(prefix="store_forms-") as tmp:
        for seed, name in enumerate(args.workloads, 1):
            print(f"{name}: generating {args.rows:,} rows", file=sys.stderr, flush=True)
            work = make_workload(name, args.rows, seed)
            print(f"{name}: writing and reading {len(FORMS)} forms x {args.repeat}",
                  file=sys.stderr, flush=True)
            results.extend(bench_workload(work, tmp, args.repeat, args.batch))
            works.append((work.name, len(work.rows), work.description))
            del work
        big = None
        if args.big_rows:
            print(f"columnar: {args.big_rows:,} rows, ApiRun.history()", file=sys.stderr,
                  flush=True)
            big = bench_big_read(tmp, args.big_rows, args.repeat, args.batch)
    report(results, big, works, args, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
