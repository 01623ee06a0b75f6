"""RunReader: one run database, read-only, from any process, live runs included.

    run.db --raw_chunks()--> (steps, {key: (kind, idx, data)}) per chunk, as stored (checked)
           --chunks()-----> (steps, {key: (positions, values)}) decoded
           --rows()-------> one dict per step (``pivot``: the one place columns become rows)
    readers: api.ApiRun, cli, report, end summary, tests

A reader opens the database with ``mode=ro`` and takes one read transaction
for a whole read, so a commit that merges parts while it reads cannot show it
a half-written view, and it sees every committed transaction of a live run.

Nothing read is trusted and nothing read is executed. A file in a run
directory may be damaged (a full disk, a crash, a bad copy) or made by hand to
harm whoever reads it, so ``open_readonly`` and RunReader keep to these rules:

* **Only real tables of this schema are read.** Before any read, the file's
  ``sqlite_master`` is checked: every table the reader queries (``meta``,
  ``run``, ``history_chunk``, ``history_column``, and ``system`` when present)
  must be an ordinary table (``CREATE TABLE``, not a view or a virtual table)
  with exactly the columns of ``schema.SCHEMA`` (names, types, constraints, no
  generated columns); a file holding any view or trigger is refused. Other
  tables and indexes may be present (tables are only ever added) and are not
  read.
* **SQL brought by the file cannot run.** ``PRAGMA trusted_schema=OFF``;
  an authorizer refuses, while a statement is prepared, anything but reading
  these tables and a few built-in functions (so a view, a trigger or a
  recursive query that appeared after the check is refused too); connection
  limits bound a value's length (``SQLITE_LIMIT_LENGTH``: the larger of 64 MiB
  and the file's size, as no stored value can be larger than the file), the
  SQL, its depth and its columns; no other database can be attached; and a
  progress handler aborts any statement running longer than QUERY_BUDGET.
* **Every value read is checked** for its type and range: text where text is
  expected, finite numbers where numbers are (times within year 9999), JSON
  that parses (at most MAX_JSON_DEPTH deep) into the expected container, a
  chunk's ``nrows`` within ``1..CHUNK_ROWS`` with its ``steps`` exactly
  ``8 * nrows`` bytes, starting at ``first_step`` and ending at ``last_step``
  (``0 <= first_step <= last_step <= MAX_STEP``), a column's ``idx`` (if any)
  at most ``nrows`` positions, each inside the chunk, and its ``data`` exactly 8
  bytes per value for ``f8``/``i8`` (a ``json`` column must decode to exactly one
  value per row or position). These checks cost O(1) per chunk, or C-speed
  passes (``min``/``max``) over positions: reading stays about as fast as
  without them. Values inside these bounds (a step out of order in the middle
  of a chunk) are read as stored: they cannot make a reader fail or overrun.
* **A history column named ``_step`` is ignored**: the step of a row is the
  step stored with its chunk, never a value (an old run that logged
  ``{"_step": 5}`` kept it as a column; readers leave it out everywhere:
  ``keys()``, ``raw_chunks()``, ``chunks()``, ``rows()``, ``pivot``).

Anything else raises StoreError naming the file (and the part that is damaged);
a reader never hangs on a file, never raises anything but StoreError for what
a file holds, and never needs memory far beyond the file's size.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import sqlite3
import stat
import time
from array import array
from collections.abc import Generator, Iterator, Sequence
from typing import Any

from ..shared.errors import StoreError
from ..shared.paths import db_path, safe_name
from ..shared.states import STATES
from .schema import CHUNK_ROWS, RUN_FIELDS, SCHEMA, SCHEMA_VERSION, little

QUERY_BUDGET = 10.0  # seconds one statement may run before it is aborted
PROGRESS_OPS = 1000  # SQLite VM instructions between looks at the clock
MIN_VALUE_LIMIT = 64 << 20  # SQLITE_LIMIT_LENGTH is at least this (bytes)
MAX_JSON_DEPTH = 256  # the writer keeps values to 128 levels
MAX_TIME = 253402300799.0  # 9999-12-31 23:59:59 UTC: later times cannot be shown
MAX_STEP = 2**63 - 2  # as log() accepts it (user.values.MAX_STEP)
MAX_PID = 2**31 - 1
STEP_KEY = "_step"  # a row's own step; a stored column of that name is ignored
KINDS = ("f8", "i8", "json")

_INT64 = (-(2**63), 2**63 - 1)
_REQUIRED_TABLES = ("meta", "run", "history_chunk", "history_column")
_OPTIONAL_TABLES = ("system",)
_SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite's files beside the database
_FUNCTIONS = frozenset({"coalesce", "sum", "length", "typeof"})  # all the reader calls
_LIMITS = (  # (name in sqlite3, its number in SQLite for Python 3.10, value)
    ("SQLITE_LIMIT_SQL_LENGTH", 1, 1 << 20),
    ("SQLITE_LIMIT_COLUMN", 2, 100),
    ("SQLITE_LIMIT_EXPR_DEPTH", 3, 100),
    ("SQLITE_LIMIT_COMPOUND_SELECT", 4, 4),
    ("SQLITE_LIMIT_FUNCTION_ARG", 6, 8),
    ("SQLITE_LIMIT_ATTACHED", 7, 0),
    ("SQLITE_LIMIT_LIKE_PATTERN_LENGTH", 8, 100),
    ("SQLITE_LIMIT_TRIGGER_DEPTH", 10, 1),
    ("SQLITE_LIMIT_WORKER_THREADS", 11, 0),
)
_LIMIT_LENGTH = ("SQLITE_LIMIT_LENGTH", 0)
_SQLITE_MAX_LENGTH = 1_000_000_000  # SQLite's own default and ceiling


def _cut(value: Any, width: int = 80) -> str:
    """A value from the file for an error message: its repr (str for an exception),
    one line, at most ``width`` characters."""
    text = str(value) if isinstance(value, BaseException) else repr(value)
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= width else text[:width - 3] + "..."


def _too_deep(value: Any, limit: int) -> bool:
    """True if the lists and dicts in ``value`` nest more than ``limit`` deep."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for inner in (item.values() if type(item) is dict else item):
            if type(inner) is list or type(inner) is dict:
                stack.append((inner, depth + 1))
    return False


def load_json(path: str, text: Any, what: str) -> Any:
    """``text`` (str or bytes from the file) parsed; StoreError naming ``path`` and
    ``what`` if it is not JSON, or nests deeper than MAX_JSON_DEPTH."""
    if type(text) is not str and type(text) is not bytes:
        raise StoreError(f"{path}: {what} is damaged: {type(text).__name__} where JSON "
                         "text was expected")
    try:
        value = json.loads(text)
    except (ValueError, TypeError, RecursionError) as exc:
        raise StoreError(f"{path}: {what} is damaged: {_cut(exc, 120)}") from None
    if type(value) is list or type(value) is dict:
        opened = (text.count("[") + text.count("{") if isinstance(text, str)
                  else text.count(b"[") + text.count(b"{"))
        if opened > MAX_JSON_DEPTH and _too_deep(value, MAX_JSON_DEPTH):
            raise StoreError(f"{path}: {what} is damaged: nested more than "
                             f"{MAX_JSON_DEPTH} deep")
    return value


def checked_values(path: str, kind: str, data: bytes, count: int) -> Sequence[Any]:
    """A column's ``count`` values (``kind``, ``data`` as ``raw_chunks`` yields them): an
    ``array`` for f8/i8 (its length was checked by raw_chunks), a list for json;
    StoreError naming ``path`` unless there are exactly ``count``."""
    if kind == "f8" or kind == "i8":
        values: Sequence[Any] = little(array("d" if kind == "f8" else "q", data))
    else:
        values = load_json(path, data, "a history column")
        if type(values) is not list:
            raise StoreError(f"{path}: a damaged history column: not a JSON list")
    if len(values) != count:
        raise StoreError(f"{path}: a damaged history column: {len(values)} values for "
                         f"{count} rows")
    return values


def pivot(steps: Sequence[int], columns: dict[str, tuple[list[int] | None, Sequence[Any]]]
          ) -> list[dict[str, Any]]:
    """One chunk's columns as rows: ``[{"_step": s, key: value, ...}, ...]`` in step order.

    A key is in a row only where it was logged (``positions`` says where, None
    for every row). A column named ``_step`` is left out: a row's step is its own.
    """
    rows: list[dict[str, Any]] = [{STEP_KEY: s} for s in steps]
    for key, (positions, values) in columns.items():
        if key == STEP_KEY:
            continue
        if positions is None:
            for row, value in zip(rows, values):
                row[key] = value
        else:
            for pos, value in zip(positions, values):
                rows[pos][key] = value
    return rows


def spread(positions: list[int] | None, values: Sequence[Any], n: int) -> Sequence[Any]:
    """A column as one value per row of its chunk: None where the key was not logged."""
    if positions is None:
        return values
    out: list[Any] = [None] * n
    for pos, value in zip(positions, values):
        out[pos] = value
    return out


# -- opening -------------------------------------------------------------------------


class _Clock:
    """The progress handler: aborts the running statement once ``deadline`` is past."""

    __slots__ = ("deadline",)

    def __init__(self) -> None:
        self.deadline = math.inf

    def __call__(self) -> int:
        return time.monotonic() > self.deadline

    def start(self) -> None:
        self.deadline = time.monotonic() + QUERY_BUDGET

    def expired(self) -> bool:
        return time.monotonic() > self.deadline


def _authorize(action: int, arg1: str | None, arg2: str | None, db: str | None,
               source: str | None) -> int:
    """The authorizer of a reader's connection: reads of tables and a few functions.

    ``source`` is the view or trigger a statement reaches: any is refused.
    """
    if source is not None:
        return sqlite3.SQLITE_DENY
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_TRANSACTION):
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _FUNCTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() == "table_xinfo":
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def _normal(sql: str) -> str:
    return " ".join(sql.split())


@functools.lru_cache(maxsize=1)
def _layouts() -> dict[str, tuple[str, tuple[tuple, ...]]]:
    """Each table of SCHEMA as a file made from it holds it: its ``CREATE TABLE`` text
    (whitespace made single spaces) and its columns as ``PRAGMA table_xinfo`` shows
    them (name, type, constraints, hidden)."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(SCHEMA)
        sql = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type='table'"))
        return {name: (_normal(sql[name]),
                       tuple(conn.execute(f"PRAGMA table_xinfo({name})").fetchall()))
                for name in (*_REQUIRED_TABLES, *_OPTIONAL_TABLES)}
    finally:
        conn.close()


def _check_files(path: str) -> int:
    """The bytes of the database and its WAL; StoreError if it or a file SQLite would
    open beside it is not a regular file (a FIFO there would block the open)."""
    size = 0
    for suffix in ("", *_SIDE_FILES):
        try:
            st = os.stat(path + suffix)
        except FileNotFoundError:
            if not suffix:
                raise StoreError(f"no run database at {path}") from None
            continue
        except OSError as exc:
            raise StoreError(f"cannot read the run database {path}: {exc}") from None
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"{path}{suffix} is not a regular file; it is not read")
        if suffix in ("", "-wal"):
            size += st.st_size
    return size


def _setlimit(conn: sqlite3.Connection, name: str, number: int, value: int) -> None:
    setlimit = getattr(conn, "setlimit", None)  # Python 3.11+
    if setlimit is not None:
        setlimit(getattr(sqlite3, name, number), value)


def open_readonly(path: str) -> tuple[sqlite3.Connection, _Clock]:
    """A guarded read-only connection to the database at ``path``, and its clock.

    The limits, pragmas, authorizer and progress handler of the module docstring
    are set; the schema is not checked yet (``check_schema``). The clock's
    ``start()`` gives the next statement QUERY_BUDGET seconds. Raises
    sqlite3.Error or StoreError.
    """
    size = _check_files(path)
    uri = "file:" + os.path.abspath(path).replace("?", "%3f").replace("#", "%23") + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=10.0, isolation_level=None,
                           check_same_thread=False)
    try:
        _setlimit(conn, *_LIMIT_LENGTH, min(max(MIN_VALUE_LIMIT, size), _SQLITE_MAX_LENGTH))
        for name, number, value in _LIMITS:
            _setlimit(conn, name, number, value)
        clock = _Clock()
        conn.set_progress_handler(clock, PROGRESS_OPS)
        clock.start()
        for pragma in ("trusted_schema = OFF", "cell_size_check = ON", "query_only = ON",
                       "busy_timeout = 10000", "mmap_size = 268435456"):
            conn.execute(f"PRAGMA {pragma}")
        conn.set_authorizer(_authorize)
    except BaseException:
        conn.close()
        raise
    return conn, clock


def check_schema(conn: sqlite3.Connection, path: str) -> set[str]:
    """The tables of SCHEMA the file holds, after checking the rules of the module
    docstring (StoreError naming ``path`` if one is broken)."""
    tables: dict[str, str] = {}
    for kind, name, sql in conn.execute("SELECT type, name, sql FROM sqlite_master"):
        if kind in ("view", "trigger"):
            raise StoreError(f"{path} holds a {kind} ({_cut(name, 40)}); a run database has "
                             "none and it is not read")
        if kind == "table":
            if type(name) is not str or type(sql) is not str:
                raise StoreError(f"{path}: a damaged schema entry {_cut(name, 40)}")
            if not sql.lstrip()[:12].upper().startswith("CREATE TABLE"):
                raise StoreError(f"{path}: the table {_cut(name, 40)} is not an ordinary "
                                 "table; it is not read")
            tables[name.lower()] = sql
        elif kind != "index":
            raise StoreError(f"{path}: an unknown schema entry {_cut(kind, 20)}")
    missing = [name for name in _REQUIRED_TABLES if name not in tables]
    if missing:
        raise StoreError(f"{path} is not a run database: no {', '.join(missing)} table"
                         + ("s" if len(missing) > 1 else ""))
    layouts = _layouts()
    found = {name for name in (*_REQUIRED_TABLES, *_OPTIONAL_TABLES) if name in tables}
    for name in sorted(found):
        sql, columns = layouts[name]
        if _normal(tables[name]) == sql:  # as this schema makes it: no need to look closer
            continue
        if tuple(conn.execute(f"PRAGMA table_xinfo({name})").fetchall()) != columns:
            raise StoreError(f"{path}: the {name} table has unexpected columns; "
                             "it is not read")
    return found


# -- the reader ----------------------------------------------------------------------


def _int(value: Any) -> bool:
    return type(value) is int


def _number(value: Any) -> bool:
    return (type(value) is int or type(value) is float) and math.isfinite(value)


def _time(value: Any) -> bool:
    return _number(value) and 0 <= value <= MAX_TIME


def _opt_str(value: Any) -> bool:
    return value is None or type(value) is str


def _opt_int(value: Any) -> bool:
    return value is None or type(value) is int


# What each field of the run row must be once read (JSON fields once parsed).
_RUN_CHECKS: dict[str, tuple[Any, str]] = {
    "id": (safe_name, "a run id (1-128 of [A-Za-z0-9_.-])"),
    "project": (safe_name, "a project name (1-128 of [A-Za-z0-9_.-])"),
    "name": (_opt_str, "a str or null"),
    "state": (lambda v: v in STATES, f"one of {', '.join(STATES)}"),
    "created_at": (_time, "a time (seconds since 1970)"),
    "updated_at": (_time, "a time (seconds since 1970)"),
    "exit_code": (_opt_int, "an int or null"),
    "step": (lambda v: _int(v) and 0 <= v <= MAX_STEP + 1, "a step count"),
    "config": (lambda v: type(v) is dict, "a JSON object"),
    "summary": (lambda v: type(v) is dict, "a JSON object"),
    "tags": (lambda v: type(v) is list and all(type(t) is str for t in v),
             "a JSON list of str"),
    "notes": (_opt_str, "a str or null"),
    "run_group": (_opt_str, "a str or null"),
    "job_type": (_opt_str, "a str or null"),
    "host": (_opt_str, "a str or null"),
    "pid": (lambda v: v is None or (_int(v) and 0 <= v <= MAX_PID), "a pid or null"),
    "extra": (lambda v: type(v) is dict, "a JSON object"),
}
_TEXT_FIELDS = ("config", "summary", "tags", "extra")
# Keys of ``extra`` (written by the service) that readers use, and what they must be;
# the summary's values are the user's, of any JSON type.
_EXTRA_CHECKS: dict[str, tuple[Any, str]] = {
    **{k: (lambda v: type(v) is dict, "a JSON object")
       for k in ("aggregates", "user_summary", "last", "pending")},
    "metrics": (lambda v: type(v) is dict and all(type(d) is dict for d in v.values()),
                "a JSON object of objects"),
    "service_errors": (lambda v: type(v) is list, "a JSON list"),
    **{k: (lambda v: _int(v) and v >= 0, "a count")
       for k in ("dropped_steps", "dropped_records", "lost_rows", "service_error_count")},
}


class RunReader:
    """Read one run database, finished or still being written, from any process.

    Every problem with the file (missing, not a database, damaged, of another
    schema, or holding anything the module docstring refuses) raises StoreError
    naming it, when the reader is made or when a read finds it.
    """

    def __init__(self, run_dir_or_db: str) -> None:
        path = run_dir_or_db
        if os.path.isdir(path):
            path = db_path(path)
        if not os.path.isfile(path):
            raise StoreError(f"no run database at {path}")
        self.path = path
        self._conn: sqlite3.Connection | None = None
        try:
            self._conn, self._clock = open_readonly(path)
            self._clock.start()
            self._tables = check_schema(self._conn, path)
        except sqlite3.Error as exc:
            self.close()
            raise StoreError(self._message(exc)) from None
        except BaseException:
            self.close()
            raise
        found = self._query("SELECT value FROM meta WHERE key='schema_version'")
        version = found[0][0] if found else None
        if version != str(SCHEMA_VERSION):
            self.close()
            raise StoreError(f"{path}: unsupported schema version "
                             f"{'(none)' if version is None else _cut(version, 40)}")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def __enter__(self) -> RunReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _message(self, exc: sqlite3.Error) -> str:
        if self._conn is not None and self._clock.expired():
            return (f"cannot read the run database {self.path}: a query ran longer than "
                    f"{QUERY_BUDGET:g} s and was stopped")
        return f"cannot read the run database {self.path}: {_cut(exc, 200)}"

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        if self._conn is None:
            raise StoreError(f"{self.path}: the reader is closed")
        self._clock.start()
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(self._message(exc)) from None
        finally:
            self._clock.deadline = math.inf

    def _damaged(self, what: str) -> StoreError:
        return StoreError(f"{self.path}: {what}")

    def info(self) -> dict[str, Any]:
        """The run's row: id, project, name, state, config, summary, tags, ...

        Each field is checked: StoreError naming the file and the field if one
        is missing, of the wrong type, out of range, or not the JSON it should be.
        """
        rows = self._query(f"SELECT {','.join(RUN_FIELDS)} FROM run LIMIT 2")
        if not rows:
            raise self._damaged("holds no run")
        if len(rows) > 1:
            raise self._damaged("holds more than one run row")
        info = dict(zip(RUN_FIELDS, rows[0]))
        for f in _TEXT_FIELDS:
            info[f] = load_json(self.path, info[f], f"the run's {f}")
        for f, (check, what) in _RUN_CHECKS.items():
            if not check(info[f]):
                raise self._damaged(f"the run's {f} is damaged: {_cut(info[f], 60)} where "
                                    f"{what} was expected")
        extra = info["extra"]
        for key, (check, what) in _EXTRA_CHECKS.items():
            if key in extra and not check(extra[key]):
                raise self._damaged(f"the run's extra is damaged: its {key} is "
                                    f"{_cut(extra[key], 60)}, not {what}")
        info["group"] = info.pop("run_group")
        return info

    # -- history ---------------------------------------------------------------------

    def _head(self, row: tuple) -> tuple[int, array, bytes, list[str]]:
        """A history_chunk row checked: (chunk, steps, steps as stored, keys)."""
        number, first, last, nrows, steps, order = row
        if not (_int(number) and _int(first) and _int(last) and _int(nrows)):
            raise self._damaged(f"a damaged history chunk {_cut(number, 30)}: "
                                "a number where it is not one")
        where = f"history chunk {number}"
        if not 1 <= nrows <= CHUNK_ROWS:
            raise self._damaged(f"{where} is damaged: it declares {nrows} rows "
                                f"(1 to {CHUNK_ROWS})")
        if type(steps) is not bytes or len(steps) != 8 * nrows:
            size = len(steps) if type(steps) is bytes else type(steps).__name__
            raise self._damaged(f"{where} is damaged: its steps ({size}) are not "
                                f"{8 * nrows} bytes for its {nrows} rows")
        arr = little(array("q", steps))
        if arr[0] != first or arr[-1] != last or not 0 <= first <= last <= MAX_STEP:
            raise self._damaged(f"{where} is damaged: its steps do not run from "
                                "first_step to last_step")
        keys = load_json(self.path, order, f"the keys of {where}")
        if type(keys) is not list or not all(type(k) is str for k in keys):
            raise self._damaged(f"{where} is damaged: its keys are not a list of str")
        return number, arr, steps, keys

    def _column(self, where: str, nrows: int, row: tuple) -> tuple[str, str, bytes | None,
                                                                  bytes]:
        """A history_column row checked against its chunk's ``nrows``."""
        key, kind, idx, data = row
        if type(key) is not str:
            raise self._damaged(f"{where} is damaged: a key {_cut(key, 30)}")
        if kind not in KINDS:
            raise self._damaged(f"{where}: the column {_cut(key, 40)} is of an unknown "
                                f"kind {_cut(kind, 20)}")
        count = nrows
        if idx is not None:
            if type(idx) is not bytes or not 0 < len(idx) <= 4 * nrows or len(idx) % 4:
                raise self._damaged(f"{where}: the positions of {_cut(key, 40)} are damaged")
            positions = little(array("i", idx))
            if min(positions) < 0 or max(positions) >= nrows:
                raise self._damaged(f"{where}: the positions of {_cut(key, 40)} are not "
                                    f"within its {nrows} rows")
            count = len(positions)
        if type(data) is not bytes:
            raise self._damaged(f"{where}: the column {_cut(key, 40)} is "
                                f"{type(data).__name__}, not bytes")
        if kind != "json" and len(data) != 8 * count:
            raise self._damaged(f"{where}: the column {_cut(key, 40)} holds {len(data)} "
                                f"bytes for {count} values of {kind}")
        return key, kind, idx, data

    def _checked_chunks(self, keys: list[str] | None, min_step: int | None,
                        max_step: int | None
                        ) -> Iterator[tuple[array, bytes, dict[str, tuple[str, bytes | None,
                                                                            bytes]]]]:
        lo = _INT64[0] if min_step is None else min(max(min_step, _INT64[0]), _INT64[1])
        hi = _INT64[1] if max_step is None else min(max(max_step, _INT64[0]), _INT64[1])
        extra: tuple[str, ...] = ()
        if keys is None:
            sql = "SELECT key, kind, idx, data FROM history_column WHERE chunk=?"
        else:
            extra = tuple(k for k in dict.fromkeys(keys) if k != STEP_KEY)
            marks = ",".join("?" * len(extra))
            sql = (f"SELECT key, kind, idx, data FROM history_column "
                   f"WHERE chunk=? AND key IN ({marks})")
        self._query("BEGIN")  # one snapshot for the whole read
        done = False
        try:
            heads = [self._head(row) for row in self._query(
                "SELECT chunk, first_step, last_step, nrows, steps, keys FROM history_chunk "
                "WHERE last_step >= ? AND first_step <= ? ORDER BY chunk", (lo, hi))]
            for number, steps, blob, order in heads:
                where = f"history chunk {number}"
                cols = {}
                for row in self._query(sql, (number, *extra)):
                    key, kind, idx, data = self._column(where, len(steps), row)
                    if key != STEP_KEY:
                        cols[key] = (kind, idx, data)
                yield steps, blob, {key: cols[key] for key in order if key in cols}
            done = True
        finally:
            self._end_read(done)

    def _end_read(self, report: bool) -> None:
        """End a read's transaction; a failure to (a damaged file) is a StoreError if
        ``report`` (the read itself went well), else only rolled back (an error of the
        read, or the caller's ``close()`` of the generator, is on its way)."""
        conn = self._conn
        if conn is None or not conn.in_transaction:
            return
        self._clock.start()
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if report:
                raise StoreError(self._message(exc)) from None
        finally:
            self._clock.deadline = math.inf

    def raw_chunks(self, keys: list[str] | None = None, min_step: int | None = None,
                   max_step: int | None = None
                   ) -> Iterator[tuple[bytes, dict[str, tuple[str, bytes | None, bytes]]]]:
        """Yield ``(steps, {key: (kind, idx, data)})`` per chunk, as stored.

        ``steps`` is little-endian int64, ``idx`` int32 positions or None; see
        the module docstring. ``keys`` limits the columns read. What is yielded
        is checked: ``steps`` holds ``nrows`` steps from ``first_step`` to
        ``last_step``, ``idx`` positions within them, an f8/i8 ``data`` 8 bytes per value
        (decode a json ``data`` with ``checked_values``). A column named
        ``_step`` is left out.
        """
        for _, blob, cols in self._checked_chunks(keys, min_step, max_step):
            yield blob, cols

    def keys(self) -> list[str]:
        """Every history key, in the order first logged (a stored ``_step`` left out)."""
        keys: dict[str, None] = {}
        for (order,) in self._query("SELECT keys FROM history_chunk ORDER BY chunk"):
            found = load_json(self.path, order, "the keys of a history chunk")
            if type(found) is not list or not all(type(k) is str for k in found):
                raise self._damaged("a history chunk is damaged: its keys are not a list "
                                    "of str")
            keys.update(dict.fromkeys(found))
        keys.pop(STEP_KEY, None)
        return list(keys)

    def chunks(self, min_step: int | None = None, max_step: int | None = None,
               keys: list[str] | None = None
               ) -> Generator[tuple[list[int], dict[str, tuple]], None, None]:
        """Yield ``(steps, {key: (positions or None, values)})`` per chunk, in step order.

        Only chunks that overlap ``[min_step, max_step]`` are read, and only the
        columns in ``keys`` when it is given.
        """
        for steps, _, cols in self._checked_chunks(keys, min_step, max_step):
            decoded = {}
            for key, (kind, idx, data) in cols.items():
                positions = None if idx is None else little(array("i", idx)).tolist()
                count = len(steps) if positions is None else len(positions)
                values = checked_values(self.path, kind, data, count)
                decoded[key] = (positions, values.tolist() if isinstance(values, array)
                                else values)
            yield steps.tolist(), decoded

    def rows(self, min_step: int | None = None, max_step: int | None = None,
             keys: list[str] | None = None) -> Generator[dict[str, Any], None, None]:
        """Each history row as a dict with ``_step`` and its keys (only ``keys``, if given)."""
        for steps, columns in self.chunks(min_step, max_step, keys):
            rows = pivot(steps, columns)
            for row in rows:
                step = row[STEP_KEY]
                if (min_step is None or step >= min_step) and (max_step is None
                                                               or step <= max_step):
                    yield row

    def history(self, min_step: int | None = None,
                max_step: int | None = None) -> list[dict[str, Any]]:
        """Every history row as a dict with ``_step`` and the keys it was logged with."""
        return list(self.rows(min_step, max_step))

    def system(self) -> list[dict[str, Any]]:
        """The run's system-metric samples in time order, each a dict with ``_timestamp``,
        ``_runtime`` and the figures (``system/cpu_percent``, ...; see
        ``mpbackend.service.system``).

        A database written before system metrics existed has none: ``[]``. A
        figure named ``_timestamp`` or ``_runtime`` is left out.
        """
        if "system" not in self._tables:
            return []
        out = []
        for ts, runtime, data in self._query("SELECT ts, runtime, data FROM system "
                                             "ORDER BY rowid"):
            figures = load_json(self.path, data, "a system-metrics row")
            if not (_time(ts) and _number(runtime) and type(figures) is dict):
                raise self._damaged(f"a damaged system-metrics row at {_cut(ts, 30)}")
            row = {"_timestamp": ts, "_runtime": runtime}
            row.update((k, v) for k, v in figures.items() if k not in row)
            out.append(row)
        return out

    def last_step(self) -> int:
        """The step of the last history row, -1 if there is none."""
        rows = self._query("SELECT last_step FROM history_chunk ORDER BY last_step DESC LIMIT 1")
        found = rows[0][0] if rows else None
        if found is None:
            return -1
        if not _int(found) or found < 0:
            raise self._damaged(f"a history chunk is damaged: its last step is {_cut(found, 30)}")
        return found

    def row_count(self) -> int:
        """How many history rows the run holds (each chunk's ``nrows``, checked)."""
        total = 0
        for nrows, kind, size in self._query("SELECT nrows, typeof(steps), length(steps) "
                                             "FROM history_chunk"):
            if not (_int(nrows) and 1 <= nrows <= CHUNK_ROWS and kind == "blob"
                    and size == 8 * nrows):
                raise self._damaged(f"a history chunk is damaged: it declares "
                                    f"{_cut(nrows, 30)} rows")
            total += nrows
        return total
