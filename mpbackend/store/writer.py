"""RunWriter: the service's handle on one run database (the only writer there is).

    Internal --append()/extend() rows, update_run() fields--> RunWriter
        --commit() every commit_interval, at a flush, at finish--> run.db (one transaction)
    SystemMonitor --write_system() samples--> run.db (a transaction of their own)

Rows stay dicts until they are written: appending a row is one list append,
and rows become columns once per commit, mostly in C (``_columns``). Each
commit appends only its new rows, as a *part* of the open chunk; once the open
chunk has ``MAX_PARTS`` parts, or is full, it is rewritten as one chunk in place
of its parts. So slow logging neither rewrites the whole open chunk on every
commit nor leaves a trail of one-row chunks. A chunk keeps its keys in the
order they were first logged. ``schema`` describes the stored form.

A commit that fails (a full disk) changes nothing here, so the next one tries
the same rows again; at most ``MAX_UNWRITTEN_CHUNKS`` full chunks wait in
memory meanwhile, older ones are dropped and counted (``lost_rows``).
"""

from __future__ import annotations

import os
import sqlite3
import time
from array import array
from collections.abc import Sequence
from operator import itemgetter
from typing import Any, cast

from ..shared.errors import StoreError
from ..shared.paths import db_path, make_dirs
from . import files
from .files import RunLock
from .reader import RunReader
from .schema import (
    CHUNK_ROWS,
    JSON_FIELDS,
    RUN_FIELDS,
    SCHEMA,
    SCHEMA_VERSION,
    connect,
    encode,
    little,
    to_json,
    transaction,
)

MAX_PARTS = 32
# Rows kept in memory while commits fail (a full disk); older ones are dropped, counted.
MAX_UNWRITTEN_CHUNKS = 256
# The writer appends: a small page cache is enough, and one service may hold many
# runs open (SQLite's default is 2 MB per connection).
WRITER_CACHE_KIB = 256


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


# A column being built: (positions of the rows that have it, or None for every
# row; its values; its kind if known without looking, else None).
_Column = tuple[list[int] | None, Sequence[Any], str | None]


def _columns(rows: list[dict[str, Any]], floats: bool) -> dict[str, _Column]:
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
    built: dict[str, tuple[list[int], list[Any]]] = {}
    for pos, row in enumerate(rows):
        for key, value in row.items():
            col = built.get(key)
            if col is None:
                built[key] = col = ([], [])
            col[0].append(pos)
            col[1].append(value)
    return {key: (positions, values, None) for key, (positions, values) in built.items()}


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
        stamps = cast("list[float]", times)  # no None among them
        clock: dict[str, _Column] = {"_runtime": (None, [time_base + t for t in stamps], "f8"),
                                     "_timestamp": (None, stamps, "f8")}
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
    head = (number, steps[0], steps[-1], n, little(array("q", steps)).tobytes(),
            to_json(list(columns)))
    return head, [(number, key, *encode(positions, values, n, kind))
                  for key, (positions, values, kind) in columns.items()]


def _parse_mark(text: str, path: str) -> tuple[str, int, int | None]:
    """The stored replay mark, checked (nothing read from a run directory is trusted)."""
    parts = text.split(" ")
    try:
        if len(parts) in (2, 3):
            return parts[0], int(parts[1]), int(parts[2]) if len(parts) == 3 else None
    except ValueError:
        pass
    raise StoreError(f"{path}: a damaged replay mark {text!r}")


class RunWriter:
    """The service's handle on one run database; not thread-safe, one per run."""

    def __init__(self, run_dir: str, run: dict[str, Any], resume: bool,
                 lock: RunLock | None = None) -> None:
        """Open (or create) the database in ``run_dir`` and write the run's row.

        ``run`` holds the run table's fields; on ``resume`` an existing row is
        updated (state back to running) and history continues after its chunks.
        ``lock`` (``files.RunLock``, taken by the caller) is released by ``close``.
        """
        self.run_dir = run_dir
        self.path = db_path(run_dir)
        self.lock = lock
        # Things to tell the user about the run's files (see _check_file), not yet told.
        self.events: list[str] = []
        self._gone_told = False
        now = time.time()
        row = {f: run.get(f) for f in RUN_FIELDS}
        row.update(state="running", updated_at=now)
        row["created_at"] = row["created_at"] or now
        row["step"] = row["step"] or 0
        for f in JSON_FIELDS:
            row[f] = to_json(row[f] if row[f] is not None else ([] if f == "tags" else {}))
        insert = (f"INSERT INTO run ({','.join(RUN_FIELDS)}) VALUES "
                  f"({','.join('?' * len(RUN_FIELDS))})")
        values = [row[f] for f in RUN_FIELDS]

        def build(conn: sqlite3.Connection) -> None:
            """A new database: tables, schema version and the run's row, whole."""
            conn.executescript(SCHEMA)
            with transaction(conn, self.path):
                conn.execute("INSERT INTO meta VALUES ('schema_version', ?)",
                             (str(SCHEMA_VERSION),))
                conn.execute(insert, values)

        try:
            make_dirs(run_dir)
            files.check_links(run_dir)
            if not os.path.exists(self.path):
                files.create(self.path, build, _writer_connection)
            self._conn = _writer_connection(self.path)
            self._conn.executescript(SCHEMA)  # a table newer than the file is added
            self._check_schema()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot write the run database {self.path}: {exc}") from exc
        self._ident = files.identity(self.path)
        conn = self._conn
        with transaction(conn, self.path):
            if resume and conn.execute("SELECT 1 FROM run").fetchone():
                conn.execute("UPDATE run SET state='running', updated_at=?, pid=?, "
                             "exit_code=NULL", (now, row["pid"]))
            else:
                conn.execute("DELETE FROM run")
                conn.execute(insert, values)
        last = conn.execute("SELECT MAX(chunk) FROM history_chunk").fetchone()[0]
        self._next = 0 if last is None else last + 1
        self._open = _Chunk()
        self._sealed: list[_Chunk] = []
        self._run_updates: dict[str, Any] = {}
        self.rows_pending = 0
        self.lost_rows = 0  # dropped because the store could not be written
        self.unstorable: list[str] = []  # why rows were dropped (see _lose), not yet reported
        # How far the user process's records are stored, (token, seq, upto): every
        # batch before ``seq`` and the first ``upto`` records of batch ``seq`` (None:
        # all of it). ``mark`` is written with the next commit, ``stored_mark`` is
        # in the file (meta ``replay``: "token seq" or "token seq upto").
        self.mark: tuple[str, int, int | None] | None = None
        self.stored_mark: tuple[str, int, int | None] | None = None
        if resume:
            found = conn.execute("SELECT value FROM meta WHERE key='replay'").fetchone()
            if found is not None:
                self.stored_mark = _parse_mark(found[0], self.path)
        self.time_base = 0.0  # _runtime = time_base + _timestamp, for rows from extend()

    def _check_schema(self) -> None:
        conn = self._conn
        found = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if found is None:
            conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif found[0] != str(SCHEMA_VERSION):
            raise StoreError(f"{self.path} has schema version {found[0]!r}, "
                             f"this mpbackend writes version {SCHEMA_VERSION}")

    def _check_file(self) -> None:
        """Before a commit: is ``run.db`` still the file this writer has open?

        If the run directory (or the file) was deleted while the run is live,
        the open database still holds every row: it is copied to a new
        ``run.db`` (SQLite's backup, built whole by ``files.create``), which this
        writer then goes on with, and the user is told once. If another file
        now stands at the path (another run made there since), it is not
        touched: the user is told that this run's rows go to a file no one can
        read.
        """
        now = files.identity(self.path)
        if now == self._ident:
            return
        if now is not None:
            if not self._gone_told:
                self._gone_told = True
                self.events.append(f"{self.path} was replaced by another file while the run "
                                   "was live; this run's rows from now on are not kept")
            return
        try:
            make_dirs(self.run_dir)
            files.check_links(self.run_dir)
            old = self._conn
            files.create(self.path, old.backup, _writer_connection)
            self._conn = _writer_connection(self.path)
            old.close()
            self._ident = files.identity(self.path)
            if self.lock is not None:
                self.lock.retake()
        except (OSError, sqlite3.Error, StoreError) as exc:
            if not self._gone_told:
                self._gone_told = True
                self.events.append(f"{self.path} was deleted while the run was live and "
                                   f"could not be written anew ({exc}); its rows are not kept")
            return
        self.events.append(f"{self.path} was deleted while the run was live; it was written "
                           "anew from the open database, with every row stored so far")

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

    @property
    def open_rows(self) -> int:
        """Rows of the open chunk (held in memory until it fills and is written whole)."""
        return len(self._open.rows)

    def seal_open(self) -> int:
        """End the open chunk here, short of CHUNK_ROWS: the next commit writes it
        whole and lets its rows go. The service calls it when many runs are open, so
        that their open chunks do not hold CHUNK_ROWS rows each in memory. A reader
        takes a short chunk as any other (the last one of a run, or of a resumed
        run, is short too). Returns how many rows it held."""
        chunk = self._open
        if not chunk.rows:
            return 0
        self._sealed.append(chunk)
        self._open = _Chunk()
        return len(chunk.rows)

    def logged_values(self, keys: list[str]) -> dict[str, list[Any]]:
        """Every value logged so far under each of ``keys``, in step order: the rows
        stored (read back read-only, checked as any reader checks them) and then the
        rows not written yet. For ``define_metric`` on keys logged before it."""
        out: dict[str, list[Any]] = {key: [] for key in keys}
        try:
            with RunReader(self.run_dir) as reader:
                for _, columns in reader.chunks(keys=keys):
                    for key, (_, values) in columns.items():
                        if key in out:
                            out[key].extend(values)
        except (StoreError, sqlite3.Error, OSError):
            pass  # nothing stored yet (or unreadable): the rows in memory still count
        for chunk in [*self._sealed, self._open]:
            for row in chunk.rows[chunk.written:]:
                for key in keys:
                    if key in row:
                        out[key].append(row[key])
        return out

    def update_run(self, **fields: Any) -> None:
        """Set run-table fields (config, summary, state, step, ...) at the next commit."""
        for key in fields:
            if key not in RUN_FIELDS:
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
        self._check_file()
        if not self.dirty:
            return
        next_number = self._next
        heads: list[tuple] = []
        columns: list[tuple] = []
        dropped: list[int] = []

        def whole(chunk: _Chunk) -> int:
            nonlocal next_number
            number = chunk.parts[0] if chunk.parts else next_number
            head, cols = _rows_of(number, chunk.steps, chunk.rows, chunk.times, self.time_base,
                                  chunk.mixed < 0)
            if chunk.parts:
                dropped.extend(chunk.parts[1:])
            else:
                next_number += 1
            heads.append(head)
            columns.extend(cols)
            return number

        for chunk in list(self._sealed):
            try:
                whole(chunk)
            except Exception as exc:  # rows that cannot be stored: not retried for ever
                self._sealed.remove(chunk)
                self._lose(chunk, chunk.written, exc)
        opened = self._open
        open_parts = None
        if len(opened.steps) > opened.written:
            try:
                if len(opened.parts) + 1 >= MAX_PARTS:
                    open_parts = [whole(opened)]
                else:
                    start = opened.written
                    head, cols = _rows_of(next_number, opened.steps[start:],
                                          opened.rows[start:], opened.times[start:],
                                          self.time_base, opened.mixed < start)
                    heads.append(head)
                    columns.extend(cols)
                    open_parts = [*opened.parts, next_number]
                    next_number += 1
            except Exception as exc:
                self._lose(opened, opened.written, exc)
                del opened.steps[opened.written:], opened.rows[opened.written:]
                del opened.times[opened.written:]
                opened.mixed = min(opened.mixed, opened.written - 1)
        updates = dict(self._run_updates)
        updates["updated_at"] = time.time()
        for f in JSON_FIELDS:
            if f in updates:
                updates[f] = to_json(updates[f])
        conn = self._conn
        mark = self.mark
        try:
            with transaction(conn, self.path):
                if dropped:
                    marks = ",".join("?" * len(dropped))
                    conn.execute(f"DELETE FROM history_column WHERE chunk IN ({marks})",
                                 dropped)
                    conn.execute(f"DELETE FROM history_chunk WHERE chunk IN ({marks})",
                                 dropped)
                conn.executemany("INSERT OR REPLACE INTO history_chunk VALUES (?,?,?,?,?,?)",
                                 heads)
                conn.executemany("INSERT OR REPLACE INTO history_column VALUES (?,?,?,?,?)",
                                 columns)
                conn.execute(f"UPDATE run SET {', '.join(k + '=?' for k in updates)}",
                             list(updates.values()))
                # The replay mark moves in the same transaction as the rows it covers:
                # after a restart, what the store holds and what it says it holds agree.
                if mark is not None and mark != self.stored_mark:
                    text = f"{mark[0]} {mark[1]}" + ("" if mark[2] is None else f" {mark[2]}")
                    conn.execute("INSERT OR REPLACE INTO meta VALUES ('replay', ?)", (text,))
        except StoreError:
            self._bound_unwritten()
            raise
        self._next = next_number
        self._sealed.clear()
        if open_parts is not None:
            opened.parts = open_parts
            opened.written = len(opened.steps)
        self._run_updates.clear()
        self.rows_pending = 0
        if mark is not None:
            self.stored_mark = mark

    def _lose(self, chunk: _Chunk, start: int, exc: Exception) -> None:
        """Rows from ``start`` of ``chunk`` cannot be made into columns: count them lost.

        Keeping them would fail every later commit of the run the same way. The
        reason waits in ``unstorable`` for the service to report it.
        """
        n = len(chunk.steps) - start
        self.lost_rows += n
        self.rows_pending = max(0, self.rows_pending - n)
        self.unstorable.append(f"{n} row(s) from step {chunk.steps[start]} could not be "
                               f"stored and were dropped: {type(exc).__name__}: {exc}")

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
        with transaction(conn, self.path):
            conn.executemany("INSERT INTO system (ts, runtime, data) VALUES (?,?,?)",
                             [(ts, runtime, to_json(data)) for ts, runtime, data in rows])

    def close(self) -> None:
        """Commit what is left, close the database, release the run's lock."""
        try:
            self.commit()
        finally:
            self._conn.close()
            if self.lock is not None:
                self.lock.close()


def _writer_connection(path: str) -> sqlite3.Connection:
    """The service's connection to a run database: WAL, a small page cache."""
    conn = connect(path, readonly=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
    return conn



# The fields of a finished run that ``edit_run`` (``ApiRun.update()``) may set.
EDITABLE = ("name", "notes", "tags", "config", "summary", "run_group", "job_type")


def edit_run(run_dir: str, run_id: str, fields: dict[str, Any]) -> None:
    """Store edits to a run that no process is writing (``ApiRun.update()``).

    The run's lock is taken first, so a live run is never written behind its
    service's back: UsageError naming its writer. Only ``EDITABLE`` fields.
    """
    bad = [key for key in fields if key not in EDITABLE]
    if bad:
        raise KeyError(f"these fields of a run cannot be edited: {bad}")
    lock = RunLock(run_dir, run_id, os.getpid())
    try:
        path = db_path(run_dir)
        if not os.path.isfile(path):
            raise StoreError(f"{path} does not exist")
        conn = _writer_connection(path)
        try:
            values = {k: to_json(v) if k in JSON_FIELDS else v for k, v in fields.items()}
            values["updated_at"] = time.time()
            with transaction(conn, path):
                conn.execute(f"UPDATE run SET {', '.join(k + '=?' for k in values)}",
                             list(values.values()))
        finally:
            conn.close()
    finally:
        lock.close()
