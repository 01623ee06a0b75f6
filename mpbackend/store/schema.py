"""The run database's format: tables, value encodings, connections and transactions.

    service: Internal --> writer.RunWriter --encode()--> run.db (this schema)
    readers: api / cli / report / end summary --> reader.RunReader --decode()--> rows

Each run lives at ``<dir>/<project>/<run id>/run.db`` (``shared.paths.db_path``),
an SQLite database in WAL mode, so other processes can read a run while the
service writes it. Tables:

* ``meta``: ``schema_version`` and ``replay`` (the user process's last batch,
  ``"<token> <seq>"``, whose records are stored: see ``writer.RunWriter.mark``);
* ``run``: one row, the run's metadata, state, config, summary (JSON texts) and
  ``extra`` (what the summary is computed from, drop counts, service errors);
* ``history_chunk`` / ``history_column``: history by column, in chunks of up to
  ``CHUNK_ROWS`` rows. One ``history_chunk`` row holds a chunk's steps (int64)
  and its keys in the order first logged; one ``history_column`` row per key
  holds that key's values in the chunk;
* ``system``: one row per system-metrics sample (its time, the run's runtime
  then, and its figures as a JSON object).

A column's values are stored as raw little-endian ``f8`` (float64, NaN and
infinities included) or ``i8`` (int64) arrays, or as a ``json`` list for any
other value and for a key whose values mix types. A key missing from some rows
of a chunk also stores ``idx``, the int32 positions of the rows that have it.
Reading a column of a million rows is then a few hundred ``frombuffer`` calls
rather than a million JSON parses (``bench/store_forms.py`` measures this form
against a JSON row per step and a wide table).

Tables are only ever added, never changed, so a database without the newer
``system`` table reads as a run without samples, without a new
``SCHEMA_VERSION``. Nothing pickled is ever written: every value is a number, a
JSON text or a plain SQLite value, and nothing read is executed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import sys
from array import array
from collections.abc import Iterator, Sequence
from typing import Any

from ..shared.errors import StoreError

SCHEMA_VERSION = 1
CHUNK_ROWS = 1024

SCHEMA = """
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

RUN_FIELDS = ("id", "project", "name", "state", "created_at", "updated_at", "exit_code",
              "step", "config", "summary", "tags", "notes", "run_group", "job_type",
              "host", "pid", "extra")
JSON_FIELDS = ("config", "summary", "tags", "extra")


def to_json(value: Any) -> str:
    """JSON text for the store: NaN/Infinity kept, anything unknown as its str().

    An int too long to write as text (over ``sys.get_int_max_str_digits()``
    digits, which no reader could parse back either) is stored as a float, or as
    an infinity of its sign, rather than making the whole text unwritable.
    """
    try:
        return json.dumps(value, allow_nan=True, separators=(",", ":"), default=str)
    except ValueError:
        return json.dumps(_no_long_ints(value), allow_nan=True, separators=(",", ":"),
                          default=str)


def _no_long_ints(value: Any) -> Any:
    if type(value) is int:
        if value.bit_length() < 10_000:
            return value
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, dict):
        return {k: _no_long_ints(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_no_long_ints(v) for v in value]
    return value


def little(arr: array) -> array:
    """``arr`` in little-endian byte order (the stored order), in place."""
    if sys.byteorder != "little":
        arr.byteswap()
    return arr


def encode(positions: list[int] | None, values: Sequence[Any], nrows: int,
           kind: str | None = None) -> tuple[str, bytes | None, bytes]:
    """One column of a chunk as ``(kind, idx, data)``; ``kind="f8"`` skips the type check."""
    idx = (None if positions is None or len(positions) == nrows
           else little(array("i", positions)).tobytes())
    if kind == "f8":
        return "f8", idx, little(array("d", values)).tobytes()
    kinds = set(map(type, values))
    if kinds == {float}:
        return "f8", idx, little(array("d", values)).tobytes()
    if kinds == {int}:
        try:
            return "i8", idx, little(array("q", values)).tobytes()
        except OverflowError:
            pass
    return "json", idx, to_json(list(values)).encode()


def decode_values(kind: str, data: bytes) -> Sequence[Any]:
    """A stored column's values: an ``array`` for f8/i8 (not copied), a list for json.

    StoreError if the column is damaged or of an unknown kind.
    """
    try:
        if kind == "f8":
            return little(array("d", data))
        if kind == "i8":
            return little(array("q", data))
        if kind == "json":
            values = json.loads(data)
            if not isinstance(values, list):
                raise ValueError("not a JSON list")
            return values
    except (ValueError, TypeError) as exc:
        raise StoreError(f"a damaged history column ({kind}): {exc}") from exc
    raise StoreError(f"unknown history column kind {kind!r}")


def decode(kind: str, idx: bytes | None, data: bytes) -> tuple[list[int] | None, list[Any]]:
    """A stored history column as (positions or None, values); StoreError if damaged."""
    values = decode_values(kind, data)
    listed: list[Any] = values.tolist() if isinstance(values, array) else list(values)
    try:
        positions = None if idx is None else little(array("i", idx)).tolist()
    except ValueError as exc:
        raise StoreError(f"a damaged history column ({kind}): {exc}") from exc
    if positions is not None and len(positions) != len(listed):
        raise StoreError("a damaged history column: positions and values differ in length")
    return positions, listed


def connect(path: str, readonly: bool) -> sqlite3.Connection:
    """A connection to a run database: read-only (URI ``mode=ro``) or the service's own."""
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


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, path: str) -> Iterator[sqlite3.Connection]:
    """One write transaction (``BEGIN IMMEDIATE``): committed whole, or rolled back whole.

    Any error inside it rolls the transaction back (a transaction left open would
    keep the database locked), then an SQLite error or any other Exception (a
    value SQLite cannot bind) is re-raised as StoreError naming the file. The
    caller changes its in-memory state only after the block, so that state still
    matches the file and the same write can be tried again.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield conn
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        if isinstance(exc, Exception) and not isinstance(exc, StoreError):
            raise StoreError(f"cannot write the run database {path}: {exc}") from exc
        raise
