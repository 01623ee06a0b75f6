"""mpbackend: local-first experiment logging with wandb's API, over multiprocessing queues.

``import mpbackend as wandb`` in a training script: ``init()`` starts (once per
process) a background service process, ``log()`` hands records to it through a
multiprocessing queue without waiting, and the service writes each run to an
SQLite database under ``<dir>/<project>/<run id>/``. ``Api`` reads runs back.
See ``mpbackend.manager`` for the message flow.
"""

from __future__ import annotations

from typing import Any

from .api import Api, ApiRun
from .errors import Error, RequestTimeout, ServiceError, UsageError
from .run import Config, ConfigError, DisabledRun, Metric, Run, Summary, init
from .settings import Settings
from .setup import setup, teardown
from .store import RunReader, StoreError
from .version import __version__

run: Run | None = None
config: Config | None = None
summary: Summary | None = None


def _current() -> Run:
    if run is None:
        raise UsageError("call mpbackend.init() first")
    return run


def log(data: dict[str, Any], step: int | None = None, commit: bool | None = None) -> None:
    """Log to the current run (``mpbackend.run``)."""
    _current().log(data, step=step, commit=commit)


def define_metric(name: str, step_metric: str | None = None, summary: str | None = None,
                  goal: str | None = None, hidden: bool = False,
                  step_sync: bool | None = None) -> Metric:
    """``define_metric`` on the current run."""
    return _current().define_metric(name, step_metric=step_metric, summary=summary, goal=goal,
                                     hidden=hidden, step_sync=step_sync)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """Finish the current run, if there is one."""
    if run is not None:
        run.finish(exit_code=exit_code, quiet=quiet)


def require(*requirements: str, **kwargs: Any) -> None:
    """Accepted for wandb compatibility (``wandb.require("service")``); it changes nothing."""


__all__ = [
    "Api", "ApiRun", "Config", "ConfigError", "DisabledRun", "Error", "Metric", "RequestTimeout",
    "Run", "RunReader", "ServiceError", "Settings", "StoreError", "Summary", "UsageError",
    "__version__", "config", "define_metric", "finish", "init", "log", "require", "run",
    "setup", "summary", "teardown",
]
