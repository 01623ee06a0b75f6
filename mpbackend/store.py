"""Store: one SQLite database per run, written by the service, read by anyone.

    Internal --rows, config, summary, state--> RunWriter --transactions--> run.db
                                                           (WAL: readers see each commit)
    Api, cli, tests <-- RunReader <--------------------------------------- run.db

The service process is the only writer. Each run lives at
``<dir>/<project>/<run id>/run.db`` in WAL mode, so other processes can read a
run while it is being written.

History is stored by column, in chunks of up to ``CHUNK_ROWS`` committed rows:
one ``history_chunk`` row holds the chunk's steps, and one ``history_column`` row
per key holds that key's values in the chunk. Numbers go in as raw little-endian
int64/float64 arrays (NaN and infinities included); any other value, and a key
whose values mix types, goes in as a JSON list. A key that is missing from some
rows of a chunk also stores the positions of the rows that have it. Reading a
column of a million rows is then a few hundred ``frombuffer`` calls rather than a
million JSON parses, and writing a row costs a few list appends
(``bench/store_forms.py`` measures this form against a JSON row per step and a
wide table with a column per key). Each commit appends only its new rows, as a
*part* of the open chunk; once the open chunk has ``MAX_PARTS`` parts, or is
full, it is rewritten as one chunk in place of its parts. So slow logging
neither rewrites the whole open chunk on every commit nor leaves a trail of
one-row chunks. A chunk keeps its keys in the order they were first logged.

Readers take one read transaction for a whole read, so a commit that merges
parts while they read cannot show them a half-written view.

System metrics (``mpbackend.system``) go in a table of their own, ``system``:
one row per sample, its time, the run's runtime then, and its figures as a JSON
object. The service writes them in transactions of their own
(``RunWriter.write_system``). The table was added without a new
``SCHEMA_VERSION``: tables are only ever added, never changed, so a database
written before it (which has none) reads as a run without samples, and an older
reader ignores it.

Nothing pickled is ever written: every value is a number, a JSON text or a
plain SQLite value.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from array import array
from collections.abc import Iterator, Sequence
from operator import itemgetter
from typing import Any

from .errors import Error

SCHEMA_VERSION = 1
CHUNK_ROWS = 1024
MAX_PARTS = 32
# Rows kept in memory while commits fail (a full disk); older ones are dropped, counted.
MAX_UNWRITTEN_CHUNKS = 256
WRITER_CACHE_KIB = 256
DB_NAME = "run.db"
STATES = ("running", "finished", "failed", "crashed", "interrupted")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS run (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    name TEXT,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    exit_code INTEGER,
    step INTEGER NOT NULL DEFAULT 0,
    config TEXT NOT NULL DEFAULT '{}',
    summary TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '[]',
    notes TEXT,
    run_group TEXT,
    job_type TEXT,
    host TEXT,
    pid INTEGER,
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS history_chunk (
    chunk INTEGER PRIMARY KEY,
    first_step INTEGER NOT NULL,
    last_step INTEGER NOT NULL,
    nrows INTEGER NOT NULL,
    steps BLOB NOT NULL,
    keys TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS history_column (
    chunk INTEGER NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    idx BLOB,
    data BLOB NOT NULL,
    PRIMARY KEY (chunk, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS system (
    ts REAL NOT NULL,
    runtime REAL NOT NULL,
    data TEXT NOT NULL
);
"""

_RUN_FIELDS = ("id", "project", "name", "state", "created_at", "updated_at", "exit_code",
               "step", "config", "summary", "tags", "notes", "run_group", "job_type",
               "host", "pid", "extra")
_JSON_FIELDS = ("config", "summary", "tags", "extra")


class StoreError(Error):
    """A run database cannot be read or written; the message names the file."""


def db_path(run_dir: str) -> str:
    """The database file of the run stored in ``run_dir``."""
    return os.path.join(run_dir, DB_NAME)


def to_json(value: Any) -> str:
    """JSON text for the store: NaN/Infinity kept, anything unknown as its str()."""
    return json.dumps(value, allow_nan=True, separators=(",", ":"), default=str)


def make_dirs(path: str) -> None:
    """Create ``path`` and its missing parents with mode 0o755 (at most; the umask may
    take more away), so that no umask, not even 0, leaves a run's directories
    world-writable. ``os.makedirs`` gives its mode to the last directory only.
    """
    path = os.path.abspath(path)
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o755)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise


def _swap(arr: array) -> array:
    if sys.byteorder != "little":
        arr.byteswap()
    return arr


def _encode(positions: list[int] | None, values: Sequence[Any], nrows: int,
            kind: str | None = None) -> tuple[str, bytes | None, bytes]:
    idx = (None if positions is None or len(positions) == nrows
           else _swap(array("i", positions)).tobytes())
    if kind == "f8":
        return "f8", idx, _swap(array("d", values)).tobytes()
    kinds = set(map(type, values))
    if kinds == {float}:
        return "f8", idx, _swap(array("d", values)).tobytes()
    if kinds == {int}:
        try:
            return "i8", idx, _swap(array("q", values)).tobytes()
        except OverflowError:
            pass
    return "json", idx, to_json(list(values)).encode()


def decode(kind: str, idx: bytes | None, data: bytes) -> tuple[list[int] | None, list[Any]]:
    """A stored history column as (positions or None, values); StoreError if damaged."""
    try:
        if kind == "f8":
            values: list[Any] = _swap(array("d", data)).tolist()
        elif kind == "i8":
            values = _swap(array("q", data)).tolist()
        elif kind == "json":
            values = json.loads(data)
        else:
            raise StoreError(f"unknown history column kind {kind!r}")
        positions = None if idx is None else _swap(array("i", idx)).tolist()
    except (ValueError, TypeError) as exc:
        raise StoreError(f"a damaged history column ({kind}): {exc}") from exc
    if positions is not None and len(positions) != len(values):
        raise StoreError("a damaged history column: positions and values differ in length")
    return positions, values


def _connect(path: str, readonly: bool) -> sqlite3.Connection:
    if readonly:
        uri = "file:" + os.path.abspath(path).replace("?", "%3f").replace("#", "%23") + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=10.0, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, timeout=10.0, isolation_level=None,
                               check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    if readonly:
        conn.execute("PRAGMA mmap_size = 268435456")
    return conn


class _Chunk:
    """The rows of one history chunk, as logged, and how many of them are written.

    Rows stay dicts until they are written: appending a row is then one list
    append, and the rows become columns once per write, mostly in C.
    """

    __slots__ = ("steps", "rows", "times", "parts", "written", "mixed")

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.rows: list[dict[str, Any]] = []
        # The _timestamp of each row that came through ``extend`` (its dict has no
        # _runtime/_timestamp), None for a row from ``append`` (its dict has them).
        self.times: list[float | None] = []
        self.parts: list[int] = []  # chunk numbers its rows were written under so far
        self.written = 0  # rows already in the store
        self.mixed = -1  # the last row not known to hold floats only


def _columns(rows: list[dict[str, Any]], floats: bool
             ) -> dict[str, tuple[list[int] | None, Sequence[Any], str | None]]:
    """``rows`` by column: key -> (positions of the rows that have it or None, values, kind).

    Keys come in the order they were first logged. When every row has the same
    keys (the usual case), the columns are taken with itemgetter and zip, and
    if the rows are known to hold ``floats`` only, their kind is "f8" without
    looking at the values; otherwise kind is None (``_encode`` looks).
    """
    keys = list(rows[0])
    if len(keys) > 1:
        try:
            values = list(map(itemgetter(*keys), rows))
        except KeyError:
            values = None
        if values is not None and sum(map(len, rows)) == len(keys) * len(rows):
            kind = "f8" if floats else None
            return {key: (None, column, kind) for key, column in zip(keys, zip(*values))}
    columns: dict[str, tuple[list[int] | None, Sequence[Any], str | None]] = {}
    for pos, row in enumerate(rows):
        for key, value in row.items():
            col = columns.get(key)
            if col is None:
                columns[key] = col = ([], [], None)
            col[0].append(pos)
            col[1].append(value)
    return columns


def _rows_of(number: int, steps: list[int], rows: list[dict[str, Any]],
             times: list[float | None], time_base: float, floats: bool
             ) -> tuple[tuple, list[tuple]]:
    """The history_chunk row and history_column rows of one chunk.

    ``_runtime`` (``time_base + _timestamp``) and ``_timestamp`` come from
    ``times`` where the rows do not hold them.
    """
    n = len(steps)
    if None not in times:
        columns = _columns(rows, floats)
        clock = {"_runtime": (None, [time_base + t for t in times], "f8"),
                 "_timestamp": (None, times, "f8")}
        first = len(rows[0])
        if first < len(columns):  # as if in the rows: after the first row's keys
            items = list(columns.items())
            columns = {**dict(items[:first]), **clock, **dict(items[first:])}
        else:
            columns.update(clock)
    else:
        for row, ts in zip(rows, times):
            if ts is not None:
                row["_runtime"] = time_base + ts
                row["_timestamp"] = ts
        columns = _columns(rows, False)
    head = (number, steps[0], steps[-1], n, _swap(array("q", steps)).tobytes(),
            to_json(list(columns)))
    return head, [(number, key, *_encode(positions, values, n, kind))
                  for key, (positions, values, kind) in columns.items()]


class RunWriter:
    """The service's handle on one run database; not thread-safe, one per run."""

    def __init__(self, run_dir: str, run: dict[str, Any], resume: bool) -> None:
        """Open (or create) the database in ``run_dir`` and write the run's row.

        ``run`` holds the run table's fields; on ``resume`` an existing row is
        updated (state back to running) and history continues after its chunks.
        """
        self.path = db_path(run_dir)
        try:
            make_dirs(run_dir)
            self._conn = _connect(self.path, readonly=False)
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            # The writer appends: a small page cache is enough, and one service may
            # hold many runs open (SQLite's default is 2 MB per connection).
            self._conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
            self._conn.executescript(_SCHEMA)
            self._check_schema()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot write the run database {self.path}: {exc}") from exc
        now = time.time()
        row = {f: run.get(f) for f in _RUN_FIELDS}
        row.update(state="running", updated_at=now)
        row["created_at"] = row["created_at"] or now
        row["step"] = row["step"] or 0
        for f in _JSON_FIELDS:
            row[f] = to_json(row[f] if row[f] is not None else ([] if f == "tags" else {}))
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        if resume and conn.execute("SELECT 1 FROM run").fetchone():
            conn.execute("UPDATE run SET state='running', updated_at=?, pid=?, exit_code=NULL",
                         (now, row["pid"]))
        else:
            conn.execute("DELETE FROM run")
            conn.execute(f"INSERT INTO run ({','.join(_RUN_FIELDS)}) VALUES "
                         f"({','.join('?' * len(_RUN_FIELDS))})",
                         [row[f] for f in _RUN_FIELDS])
        conn.execute("COMMIT")
        last = conn.execute("SELECT MAX(chunk) FROM history_chunk").fetchone()[0]
        self._next = 0 if last is None else last + 1
        self._open = _Chunk()
        self._sealed: list[_Chunk] = []
        self._run_updates: dict[str, Any] = {}
        self.rows_pending = 0
        self.lost_rows = 0  # dropped because the store could not be written
        # The user process's last batch (token, number) whose records are stored:
        # ``mark`` is written with the next commit, ``stored_mark`` is in the file.
        self.mark: tuple[str, int] | None = None
        self.stored_mark: tuple[str, int] | None = None
        if resume:
            found = conn.execute("SELECT value FROM meta WHERE key='replay'").fetchone()
            if found is not None:
                token, _, seq = found[0].partition(" ")
                self.stored_mark = (token, int(seq))
        self.time_base = 0.0  # _runtime = time_base + _timestamp, for rows from extend()

    def _check_schema(self) -> None:
        conn = self._conn
        found = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if found is None:
            conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(found[0]) != SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema version {found[0]}, "
                             f"this mpbackend writes version {SCHEMA_VERSION}")

    def append(self, step: int, row: dict[str, Any]) -> None:
        """Add one committed history row (``_step`` is ``step``; not in ``row``).

        The store keeps ``row`` (the caller must not change it afterwards).
        """
        chunk = self._open
        chunk.steps.append(step)
        chunk.rows.append(row)
        chunk.times.append(None)
        chunk.mixed = len(chunk.rows) - 1
        self.rows_pending += 1
        if len(chunk.rows) >= CHUNK_ROWS:
            self._sealed.append(chunk)
            self._open = _Chunk()

    def extend(self, step: int, rows: list[dict[str, Any]], times: list[float],
               floats: bool = False) -> None:
        """Add committed rows at ``step``, ``step + 1``, ... with their ``_timestamp``s.

        The rows hold the logged keys only; ``_runtime`` and ``_timestamp`` are
        made from ``times`` as the rows are written. ``floats``: every value in
        ``rows`` is known to be a float.
        """
        while rows:
            chunk = self._open
            room = CHUNK_ROWS - len(chunk.rows)
            take = rows[:room]
            chunk.times.extend(times[:room])
            times = times[room:]
            chunk.rows.extend(take)
            if not floats:
                chunk.mixed = len(chunk.rows) - 1
            chunk.steps.extend(range(step, step + len(take)))
            self.rows_pending += len(take)
            if len(chunk.rows) >= CHUNK_ROWS:
                self._sealed.append(chunk)
                self._open = _Chunk()
            rows = rows[len(take):]
            step += len(take)

    def update_run(self, **fields: Any) -> None:
        """Set run-table fields (config, summary, state, step, ...) at the next commit."""
        for key in fields:
            if key not in _RUN_FIELDS:
                raise KeyError(key)
        self._run_updates.update(fields)

    @property
    def dirty(self) -> bool:
        return bool(self.rows_pending or self._run_updates)

    def commit(self) -> None:
        """Write everything appended or updated since the last commit, in one transaction.

        A full chunk, or an open one with MAX_PARTS parts, is written whole under
        its first part's number (its other parts are deleted); otherwise the open
        chunk's new rows are written as one more part. On failure nothing changes
        here, so the next commit tries again with the same rows.
        """
        if not self.dirty:
            return
        next_number = self._next
        heads: list[tuple] = []
        columns: list[tuple] = []
        dropped: list[int] = []

        def whole(chunk: _Chunk) -> int:
            nonlocal next_number
            if chunk.parts:
                number = chunk.parts[0]
                dropped.extend(chunk.parts[1:])
            else:
                number, next_number = next_number, next_number + 1
            head, cols = _rows_of(number, chunk.steps, chunk.rows, chunk.times, self.time_base,
                                  chunk.mixed < 0)
            heads.append(head)
            columns.extend(cols)
            return number

        for chunk in self._sealed:
            whole(chunk)
        opened = self._open
        open_parts = None
        if len(opened.steps) > opened.written:
            if len(opened.parts) + 1 >= MAX_PARTS:
                open_parts = [whole(opened)]
            else:
                number, next_number = next_number, next_number + 1
                start = opened.written
                head, cols = _rows_of(number, opened.steps[start:], opened.rows[start:],
                                      opened.times[start:], self.time_base,
                                      opened.mixed < start)
                heads.append(head)
                columns.extend(cols)
                open_parts = [*opened.parts, number]
        updates = dict(self._run_updates)
        updates["updated_at"] = time.time()
        for f in _JSON_FIELDS:
            if f in updates:
                updates[f] = to_json(updates[f])
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            if dropped:
                marks = ",".join("?" * len(dropped))
                conn.execute(f"DELETE FROM history_column WHERE chunk IN ({marks})", dropped)
                conn.execute(f"DELETE FROM history_chunk WHERE chunk IN ({marks})", dropped)
            conn.executemany("INSERT OR REPLACE INTO history_chunk VALUES (?,?,?,?,?,?)", heads)
            conn.executemany("INSERT OR REPLACE INTO history_column VALUES (?,?,?,?,?)", columns)
            conn.execute(f"UPDATE run SET {', '.join(k + '=?' for k in updates)}",
                         list(updates.values()))
            mark = self.mark
            if mark is not None and mark != self.stored_mark:
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('replay', ?)",
                             (f"{mark[0]} {mark[1]}",))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._bound_unwritten()
            raise StoreError(f"cannot write the run database {self.path}: {exc}") from exc
        self._next = next_number
        self._sealed.clear()
        if open_parts is not None:
            opened.parts = open_parts
            opened.written = len(opened.steps)
        self._run_updates.clear()
        self.rows_pending = 0
        if mark is not None:
            self.stored_mark = mark

    def _bound_unwritten(self) -> None:
        """While commits fail, keep at most MAX_UNWRITTEN_CHUNKS full chunks in memory."""
        excess = len(self._sealed) - MAX_UNWRITTEN_CHUNKS
        if excess > 0:
            for chunk in self._sealed[:excess]:
                self.lost_rows += len(chunk.steps) - chunk.written
            del self._sealed[:excess]

    def write_system(self, rows: list[tuple[float, float, dict[str, float]]]) -> None:
        """Append system-metric samples ``(timestamp, runtime, figures)`` in one transaction.

        Separate from ``commit()``: samples come every few seconds and history
        rows do not wait for them. StoreError if they cannot be written (the
        caller keeps them to try again).
        """
        if not rows:
            return
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO system (ts, runtime, data) VALUES (?,?,?)",
                             [(ts, runtime, to_json(data)) for ts, runtime, data in rows])
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"cannot write the run database {self.path}: {exc}") from exc

    def close(self) -> None:
        """Commit what is left and close the database."""
        try:
            self.commit()
        finally:
            self._conn.close()


class RunReader:
    """Read one run database, finished or still being written, from any process."""

    def __init__(self, run_dir_or_db: str) -> None:
        path = run_dir_or_db
        if os.path.isdir(path):
            path = db_path(path)
        if not os.path.isfile(path):
            raise StoreError(f"no run database at {path}")
        self.path = path
        try:
            self._conn = _connect(path, readonly=True)
            found = self._conn.execute(
                "SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the run database {path}: {exc}") from exc
        if found is None or int(found[0]) != SCHEMA_VERSION:
            raise StoreError(f"{path}: unsupported schema version "
                             f"{None if found is None else found[0]}")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> RunReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the run database {self.path}: {exc}") from exc

    def info(self) -> dict[str, Any]:
        """The run's row: id, project, name, state, config, summary, tags, ..."""
        rows = self._query(f"SELECT {','.join(_RUN_FIELDS)} FROM run")
        if not rows:
            raise StoreError(f"{self.path} holds no run")
        info = dict(zip(_RUN_FIELDS, rows[0]))
        for f in _JSON_FIELDS:
            try:
                info[f] = json.loads(info[f])
            except (TypeError, ValueError) as exc:
                raise StoreError(f"{self.path}: the run's {f} is damaged: {exc}") from exc
        info["group"] = info.pop("run_group")
        return info

    def raw_chunks(self, keys: list[str] | None = None, min_step: int | None = None,
                   max_step: int | None = None
                   ) -> Iterator[tuple[bytes, dict[str, tuple[str, bytes | None, bytes]]]]:
        """Yield ``(steps, {key: (kind, idx, data)})`` per chunk, as stored.

        ``steps`` is little-endian int64, ``idx`` int32 positions or None; see
        the module docstring. ``keys`` limits the columns read.
        """
        lo = -(2**63) if min_step is None else min_step
        hi = 2**63 - 1 if max_step is None else max_step
        if keys is None:
            sql, extra = "SELECT key, kind, idx, data FROM history_column WHERE chunk=?", ()
        else:
            marks = ",".join("?" * len(keys))
            sql = (f"SELECT key, kind, idx, data FROM history_column "
                   f"WHERE chunk=? AND key IN ({marks})")
            extra = tuple(keys)
        self._query("BEGIN")  # one snapshot for the whole read
        try:
            heads = self._query("SELECT chunk, steps, keys FROM history_chunk WHERE "
                                "last_step >= ? AND first_step <= ? ORDER BY chunk", (lo, hi))
            for number, steps, order in heads:
                cols = {key: (kind, idx, data)
                        for key, kind, idx, data in self._query(sql, (number, *extra))}
                try:
                    ordered = [k for k in json.loads(order) if k in cols]
                except ValueError as exc:
                    raise StoreError(f"{self.path}: a damaged history chunk: {exc}") from exc
                yield steps, {key: cols[key] for key in ordered}
        finally:
            if self._conn.in_transaction:
                self._conn.execute("COMMIT")

    def keys(self) -> list[str]:
        """Every history key, in the order first logged."""
        keys: dict[str, None] = {}
        for (order,) in self._query("SELECT keys FROM history_chunk ORDER BY chunk"):
            keys.update(dict.fromkeys(json.loads(order)))
        return list(keys)

    def chunks(self, min_step: int | None = None, max_step: int | None = None,
               keys: list[str] | None = None
               ) -> Iterator[tuple[list[int], dict[str, tuple]]]:
        """Yield ``(steps, {key: (positions or None, values)})`` per chunk, in step order.

        Only chunks that overlap ``[min_step, max_step]`` are read, and only the
        columns in ``keys`` when it is given.
        """
        for steps_blob, cols in self.raw_chunks(keys, min_step, max_step):
            steps = _swap(array("q", steps_blob)).tolist()
            yield steps, {key: decode(*col) for key, col in cols.items()}

    def rows(self, min_step: int | None = None, max_step: int | None = None,
             keys: list[str] | None = None) -> Iterator[dict[str, Any]]:
        """Each history row as a dict with ``_step`` and its keys (only ``keys``, if given)."""
        for steps, columns in self.chunks(min_step, max_step, keys):
            rows = [{"_step": s} for s in steps]
            for key, (positions, values) in columns.items():
                if positions is None:
                    for row, value in zip(rows, values):
                        row[key] = value
                else:
                    for pos, value in zip(positions, values):
                        rows[pos][key] = value
            for row in rows:
                step = row["_step"]
                if (min_step is None or step >= min_step) and (max_step is None
                                                               or step <= max_step):
                    yield row

    def history(self, min_step: int | None = None,
                max_step: int | None = None) -> list[dict[str, Any]]:
        """Every history row as a dict with ``_step`` and the keys it was logged with."""
        return list(self.rows(min_step, max_step))

    def system(self) -> list[dict[str, Any]]:
        """The run's system-metric samples in time order, each a dict with ``_timestamp``,
        ``_runtime`` and the figures (``system/cpu_percent``, ...; see ``mpbackend.system``).

        A database written before system metrics existed has none: ``[]``.
        """
        if not self._query("SELECT 1 FROM sqlite_master WHERE type='table' AND name='system'"):
            return []
        out = []
        for ts, runtime, data in self._query("SELECT ts, runtime, data FROM system "
                                             "ORDER BY rowid"):
            try:
                figures = json.loads(data)
            except ValueError as exc:
                raise StoreError(f"{self.path}: a damaged system-metrics row: {exc}") from exc
            if isinstance(figures, dict):
                out.append({"_timestamp": ts, "_runtime": runtime, **figures})
        return out

    def row_count(self) -> int:
        return self._query("SELECT COALESCE(SUM(nrows), 0) FROM history_chunk")[0][0]
