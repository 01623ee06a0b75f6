"""Where a run lives on disk, and which names may become part of that path.

    init() (user process) --check_name(), make_dirs()--> <dir>/<project>/<run id>/
    Internal (service)    --db_path()--> .../run.db, written by store.writer
    readers               --db_path()--> .../run.db, read by store.reader

Both processes and every reader agree on these through this one module.
"""

from __future__ import annotations

import os
import re
from typing import Any

DB_NAME = "run.db"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_id() -> str:
    """A new run id: eight random characters of [0-9a-z] (the modulo bias is below one
    in six million)."""
    n = int.from_bytes(os.urandom(8), "little") % 36**8
    out = []
    for _ in range(8):
        n, digit = divmod(n, 36)
        out.append(_ID_ALPHABET[digit])
    return "".join(out)


def db_path(run_dir: str) -> str:
    """The database file of the run stored in ``run_dir``."""
    return os.path.join(run_dir, DB_NAME)


def safe_name(value: Any) -> bool:
    """True if ``value`` can be one path component: 1-128 of [A-Za-z0-9_.-], no ``..``."""
    return isinstance(value, str) and bool(_SAFE_NAME.fullmatch(value)) and ".." not in value


def check_name(kind: str, value: Any) -> str:
    """A run id or project name that is safe as one path component (else ValueError)."""
    if not safe_name(value):
        raise ValueError(f"{kind} {value!r} is not valid: use 1-128 letters, digits, '_', "
                         "'-' or '.', starting with a letter or digit (no '..' or '/')")
    return value


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


LOCK_NAME = "run.lock"  # store.files.RunLock: one writer per run


def is_store_file(name: str) -> bool:
    """A name in a run directory that belongs to the store (``run.db`` and its WAL,
    journal and temporary files, ``run.lock``), not to the run's saved files."""
    return name.startswith(DB_NAME) or name == LOCK_NAME


def files_dir(run_dir: str) -> str:
    """Where a run's saved files are: the run directory itself (``run.dir``), as
    wandb's ``run.dir`` holds its files; the store's own files are not among them."""
    return run_dir
