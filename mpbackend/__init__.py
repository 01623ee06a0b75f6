"""mpbackend: local-first experiment logging with wandb's API, over multiprocessing queues.

``import mpbackend as wandb`` in a training script: ``init()`` starts (once per
process) a background service process, ``log()`` hands records to it through a
multiprocessing queue without waiting, and the service writes each run to an
SQLite database under ``<dir>/<project>/<run id>/``. See ``mpbackend.manager``
for the message flow.
"""

from __future__ import annotations

from typing import Any

from .errors import Error, RequestTimeout, ServiceError, UsageError
from .run import Run, init
from .settings import Settings
from .setup import setup, teardown
from .store import RunReader, StoreError
from .version import __version__

run: Run | None = None


def log(data: dict[str, Any], step: int | None = None, commit: bool | None = None) -> None:
    """Log to the current run (``mpbackend.run``)."""
    if run is None:
        raise UsageError("call mpbackend.init() before mpbackend.log()")
    run.log(data, step=step, commit=commit)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """Finish the current run, if there is one."""
    if run is not None:
        run.finish(exit_code=exit_code, quiet=quiet)


__all__ = [
    "Error", "RequestTimeout", "Run", "RunReader", "ServiceError", "Settings", "StoreError",
    "UsageError", "__version__", "finish", "init", "log", "run", "setup", "teardown",
]
