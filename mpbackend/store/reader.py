"""RunReader: one run database, read-only, from any process, live runs included.

    run.db --raw_chunks()--> (steps, {key: (kind, idx, data)}) per chunk, as stored
           --chunks()-----> (steps, {key: (positions, values)}) decoded
           --rows()-------> one dict per step (``pivot``: the one place columns become rows)
    readers: api.ApiRun, cli, report, end summary, tests

A reader opens the database with ``mode=ro`` and takes one read transaction
for a whole read, so a commit that merges parts while it reads cannot show it
a half-written view, and it sees every committed transaction of a live run.
Nothing read is trusted: a damaged value raises StoreError naming the file.
"""

from __future__ import annotations

import json
import os
import sqlite3
from array import array
from collections.abc import Generator, Iterator, Sequence
from typing import Any

from ..shared.errors import StoreError
from ..shared.paths import db_path
from .schema import JSON_FIELDS, RUN_FIELDS, SCHEMA_VERSION, connect, decode, little


def pivot(steps: Sequence[int], columns: dict[str, tuple[list[int] | None, Sequence[Any]]]
          ) -> list[dict[str, Any]]:
    """One chunk's columns as rows: ``[{"_step": s, key: value, ...}, ...]`` in step order.

    A key is in a row only where it was logged (``positions`` says where, None
    for every row).
    """
    rows: list[dict[str, Any]] = [{"_step": s} for s in steps]
    for key, (positions, values) in columns.items():
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
            self._conn = connect(path, readonly=True)
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
        rows = self._query(f"SELECT {','.join(RUN_FIELDS)} FROM run")
        if not rows:
            raise StoreError(f"{self.path} holds no run")
        info = dict(zip(RUN_FIELDS, rows[0]))
        for f in JSON_FIELDS:
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
        extra: tuple[str, ...] = ()
        if keys is None:
            sql = "SELECT key, kind, idx, data FROM history_column WHERE chunk=?"
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
               ) -> Generator[tuple[list[int], dict[str, tuple]], None, None]:
        """Yield ``(steps, {key: (positions or None, values)})`` per chunk, in step order.

        Only chunks that overlap ``[min_step, max_step]`` are read, and only the
        columns in ``keys`` when it is given.
        """
        for steps_blob, cols in self.raw_chunks(keys, min_step, max_step):
            steps = little(array("q", steps_blob)).tolist()
            yield steps, {key: decode(*col) for key, col in cols.items()}

    def rows(self, min_step: int | None = None, max_step: int | None = None,
             keys: list[str] | None = None) -> Generator[dict[str, Any], None, None]:
        """Each history row as a dict with ``_step`` and its keys (only ``keys``, if given)."""
        for steps, columns in self.chunks(min_step, max_step, keys):
            rows = pivot(steps, columns)
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
        ``_runtime`` and the figures (``system/cpu_percent``, ...; see
        ``mpbackend.service.system``).

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
