"""setup: the per-process singleton that holds the Manager (wandb's _WandbSetup).

    mpbackend.setup() --> _Setup (one per process) --> Manager --> Service --> service process
    mpbackend.init()  --> setup() first, so a run always finds the service up
    mpbackend.teardown() --> finish open runs, stop the service ([b]..[e])

Setting up also makes spawned children of a script without a main guard run
only its definitions (``spawnmain``). A second ``setup()`` in the same process
reuses the running service after an ensure-up check ([3]/[4]). A forked child
that inherited the singleton does not own its service: ``setup()`` there starts
the child's own.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from ..shared.settings import Settings

_lock = threading.RLock()
_singleton: _Setup | None = None


class _Setup:
    """What a process needs to log: its settings and the Manager of its service."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = os.getpid()
        # Imported here, not at import: a spawned service process imports this
        # package, and these imports overlap the service's start instead.
        from . import spawnmain
        from .launcher import Service

        spawnmain.install()
        service = Service(settings)
        service.launch()
        try:
            from .manager import Manager

            self.manager = Manager(settings, service)
        except BaseException:
            service.kill()
            raise


def setup(settings: Settings | dict[str, Any] | None = None) -> _Setup:
    """Start the service for this process, or check and reuse the one already running.

    ``settings`` apply when the service starts; a reused service keeps its own.
    """
    global _singleton
    with _lock:
        current = _singleton
        if current is not None and current.pid == os.getpid() and current.manager.alive:
            current.manager.ensure_up()
            return current
        _singleton = _Setup(Settings.coerce(settings))
        return _singleton


def current() -> _Setup | None:
    """This process's singleton, if it owns a live service; does not start one."""
    current = _singleton
    if current is not None and current.pid == os.getpid():
        return current
    return None


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.RLock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)


def teardown(exit_code: int | None = None) -> None:
    """Finish every open run and stop this process's service, within ``exit_timeout``."""
    global _singleton
    with _lock:
        current = _singleton
        if current is None or current.pid != os.getpid():
            return
        _singleton = None
        manager = current.manager
        state = "finished" if not exit_code else "failed"
        deadline = time.monotonic() + manager.settings.exit_timeout
        manager.finish_runs(state, deadline, exit_code)
        manager.stop(max(deadline - time.monotonic(), 0.5), state=state)
