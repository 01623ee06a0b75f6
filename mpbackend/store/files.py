"""A run's files on disk: its lock, its database made whole or not at all, no links.

    Internal (service) --RunLock(run_dir)--> <run dir>/run.lock  (flock, held while open)
                       --RunWriter--> create(): run.db built as run.db.new-<pid>, renamed
                       --RunWriter.commit--> gone(): run.db deleted or replaced under it?

**One writer per run.** ``RunLock`` takes an exclusive ``flock`` on
``run.lock`` in the run directory for as long as the run is open in a service,
and writes who holds it (pid, host) into the file for the error the next one
gets (``UsageError: run X is in use by pid P on host H``). The kernel drops the
lock when its holder dies, however it dies, so a stale lock is never waited for
or broken by hand: the next ``init()`` takes it over. Linux's NFS client maps
``flock`` onto the server's byte-range locks, so processes on machines that
share the filesystem exclude each other too. (Two opens of one run in the same
service are refused before this, by the service's own table of open runs.)

**Whole or not at all.** A new database is built under a temporary name with
its schema, then renamed to ``run.db``: a process killed while creating it
leaves a stray temporary file, never a ``run.db`` without tables.

**No links.** The service writes only inside the directory the user gave: the
project and run directories and the run's files must not be symbolic links
(``check_links``), else StoreError.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sqlite3
from collections.abc import Callable

from ..shared.errors import StoreError, UsageError
from ..shared.paths import DB_NAME, LOCK_NAME

# The files SQLite keeps beside a database, and the lock: none may be a link.
_RUN_FILES = (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", DB_NAME + "-journal", LOCK_NAME)


class RunLock:
    """An exclusive lock on one run directory, held until ``close()``."""

    def __init__(self, run_dir: str, run_id: str, owner_pid: int) -> None:
        """Take the lock or raise UsageError naming its holder (StoreError if it
        cannot be made at all)."""
        self.run_dir = run_dir
        self.run_id = run_id
        self.owner_pid = owner_pid
        self._fd = -1
        self._take()

    def _take(self) -> None:
        path = os.path.join(self.run_dir, LOCK_NAME)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot make the run lock {path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise UsageError(f"run {self.run_id} is in use by pid {holder.get('pid', '?')} "
                             f"on host {holder.get('host', '?')}: one process writes a run "
                             "at a time (finish it there first, or choose another id)"
                             ) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock the run {path}: {exc}") from exc
        label = json.dumps({"pid": self.owner_pid, "host": socket.gethostname(),
                            "service_pid": os.getpid()}).encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, label, 0)
        except OSError:
            pass  # the lock holds without its label; only the error message loses it
        self._fd = fd

    def retake(self) -> None:
        """The run directory was deleted and made anew: lock the new ``run.lock``."""
        self.close()
        self._take()

    def close(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)  # closing the only descriptor drops the flock


def _read_holder(fd: int) -> dict:
    """Who holds a lock, as its file says (read as data, checked, never trusted)."""
    try:
        found = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    if not isinstance(found, dict):
        return {}
    return {k: v for k, v in found.items()
            if k in ("pid", "host") and isinstance(v, (int, str)) and len(str(v)) < 256}


def check_links(run_dir: str) -> None:
    """StoreError if the run's or its project's directory, or a run file, is a link.

    The directory above the project (the user's ``dir``) may be a link: it is
    the user's choice where runs go. Below it, a link would let a file in the
    store make the service write elsewhere.
    """
    project_dir = os.path.dirname(run_dir)
    for path in (project_dir, run_dir, *(os.path.join(run_dir, f) for f in _RUN_FILES)):
        if os.path.islink(path):
            raise StoreError(f"{path} is a symbolic link; the store does not follow links "
                             "out of its directory")


def create(path: str, build: Callable[[sqlite3.Connection], None],
           connect: Callable[[str], sqlite3.Connection]) -> None:
    """Make the database ``path`` whole or not at all: ``build`` it under a temporary
    name (schema, first rows), close it (its WAL checkpointed into the file), rename."""
    tmp = f"{path}.new-{os.getpid()}"
    for stale in (tmp, tmp + "-wal", tmp + "-shm", tmp + "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)
    conn = connect(tmp)
    try:
        build(conn)
    finally:
        conn.close()
    os.replace(tmp, path)
    _sync_dir(os.path.dirname(path))


def empty(path: str) -> bool:
    """True for a database file of 0 bytes: made by an SQLite that was killed before it
    wrote anything (older versions did not use ``create``). It holds nothing to keep."""
    try:
        return os.lstat(path).st_size == 0
    except FileNotFoundError:
        return False


def remove_empty(path: str) -> None:
    """Remove a 0-byte database and what SQLite kept beside it (nothing was in it)."""
    for name in (path, path + "-wal", path + "-shm", path + "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def identity(path: str) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of the file now at ``path``, None if there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _sync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
