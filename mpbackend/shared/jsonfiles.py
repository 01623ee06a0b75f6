"""Small JSON documents beside the store, and the lock their writers take.

    artifacts.registry (versions, aliases, lineage)  --write_json / read_json--+
    sweeps.store (a sweep, its trials)               --locked(directory)-------+--> disk

A document is written under a temporary name and renamed into place, so a
reader sees the whole of it or the one before; ``read_json`` gives None for a
missing file and raises ``error`` (the caller's exception type) for one that
cannot be parsed. ``locked`` takes an exclusive ``flock`` on ``<directory>/.lock``
and waits for it at most ``timeout`` seconds: a process that holds it and hangs
(a stopped agent, a wedged NFS client) makes the caller fail with StoreError,
never wait for ever (the service takes it to number an artifact version).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from typing import Any

from .errors import StoreError
from .paths import make_dirs

LOCK_TIMEOUT = 60.0  # seconds a writer waits for another one's lock


def write_json(path: str, doc: Any) -> None:
    """``doc`` as ``path``, whole or not at all."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, sort_keys=True, allow_nan=True)
    os.replace(tmp, path)


def read_json(path: str, error: type[Exception] = StoreError) -> Any:
    """The document at ``path``, or None if there is none; ``error`` if it is unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise error(f"{path} cannot be read: {exc}") from None


@contextlib.contextmanager
def locked(directory: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the exclusive lock of ``directory`` (made if missing) for the block."""
    make_dirs(directory)
    fd = os.open(os.path.join(directory, ".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW,
                 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreError(f"{directory} stayed locked by another process for "
                                     f"{timeout:g} s") from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)
