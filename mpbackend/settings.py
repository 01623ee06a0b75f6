"""Settings: every knob of the user side and the service in one picklable object.

A ``Settings`` is built in the user process (``mpbackend.Settings(...)``, the
``settings=`` argument of ``setup()``/``init()``, and ``MPBACKEND_*`` environment
variables) and handed to the service process when it starts, so both sides read
the same values.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

START_METHODS = ("spawn", "fork", "forkserver")
BUFFER_POLICIES = ("block", "drop")


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_interval(name: str, default: float) -> float | None:
    """A number of seconds from the environment; empty, ``0`` or ``off`` mean off (None)."""
    text = os.environ.get(name)
    if text is None:
        return default
    text = text.strip().lower()
    if text in ("", "0", "off", "none", "false", "no"):
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds (or 0 for off), not {text!r}"
                         ) from None


@dataclass
class Settings:
    """What a user may tune. Unknown wandb settings passed as a dict are ignored.

    Attributes:
        start_method: how the service process starts: ``spawn`` (default),
            ``fork`` or ``forkserver``; environment ``MPBACKEND_START_METHOD``.
        dir: where runs are stored (``<dir>/<project>/<run id>/``); environment
            ``MPBACKEND_DIR``, default ``./mpruns``.
        start_timeout: seconds to wait for the service's ready reply.
        request_timeout: default seconds a blocking request (init, flush, finish)
            waits for its reply.
        exit_timeout: seconds the atexit path may take in all: finishing open
            runs, stopping the service and joining it.
        buffer_bytes: bound of the user-side buffer of serialised records that
            have not reached the queue yet.
        buffer_policy: what ``log()`` does when that buffer is full: ``block``
            (wait for the service, nothing lost) or ``drop`` (count and warn).
        send_interval: seconds the sender thread lets records gather before it
            writes a batch to the queue; a full batch or a request goes at once.
        batch_records: records per batch that make the sender write at once.
        commit_interval: seconds the service lets history gather before it
            commits a transaction to the store.
        watchdog_interval: seconds between the service's checks that the user
            process is alive.
        max_array_size: the most elements an array or list logged as a value
            may have; it is stored as a list. Larger ones raise ValueError.
        max_restarts: how many times the manager starts a new service when its
            service dies while runs are open (the runs resume in it).
        system_interval: seconds between the service's samples of system metrics
            (``mpbackend.system``); ``0`` or None turns sampling off. Environment
            ``MPBACKEND_SYSTEM_INTERVAL``, default 2.
        quiet: print no summary when a run ends (``mpbackend.end_summary``); the
            environment ``MPBACKEND_SILENT=1`` does the same.
    """

    start_method: str = field(default_factory=lambda: _env("MPBACKEND_START_METHOD", "spawn"))
    dir: str = field(default_factory=lambda: _env("MPBACKEND_DIR", "mpruns"))
    start_timeout: float = 60.0
    request_timeout: float = 30.0
    exit_timeout: float = 30.0
    buffer_bytes: int = 16 * 1024 * 1024
    buffer_policy: str = "block"
    send_interval: float = 0.005
    batch_records: int = 2000
    commit_interval: float = 0.05
    watchdog_interval: float = 0.1
    max_array_size: int = 10_000
    max_restarts: int = 3
    system_interval: float | None = field(
        default_factory=lambda: _env_interval("MPBACKEND_SYSTEM_INTERVAL", 2.0))
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.start_method not in START_METHODS:
            raise ValueError(
                f"start_method must be one of {START_METHODS}, not {self.start_method!r}"
            )
        if self.buffer_policy not in BUFFER_POLICIES:
            raise ValueError(
                f"buffer_policy must be one of {BUFFER_POLICIES}, not {self.buffer_policy!r}"
            )
        for name in ("start_timeout", "request_timeout", "exit_timeout", "send_interval",
                     "commit_interval", "watchdog_interval"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        interval = self.system_interval
        if interval is not None and (isinstance(interval, bool) or
                                     not isinstance(interval, (int, float)) or interval < 0):
            raise ValueError(f"system_interval must be a number of seconds >= 0 (0 or None: "
                             f"off), not {interval!r}")
        if not isinstance(self.buffer_bytes, int) or self.buffer_bytes < 1024:
            raise ValueError(f"buffer_bytes must be an int >= 1024, not {self.buffer_bytes!r}")

    @classmethod
    def coerce(cls, value: Settings | dict[str, Any] | None, **overrides: Any) -> Settings:
        """A Settings from ``None``, a Settings or a dict; ``overrides`` win where not None."""
        if value is None:
            base: dict[str, Any] = {}
        elif isinstance(value, Settings):
            base = dataclasses.asdict(value)
        elif isinstance(value, dict):
            known = {f.name for f in dataclasses.fields(cls)}
            base = {k: v for k, v in value.items() if k in known}
        else:
            raise TypeError(f"settings must be a mpbackend.Settings or a dict, not {type(value)}")
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)
