"""mpbackend: local-first experiment logging with wandb's API, over multiprocessing queues.

``import mpbackend as wandb`` in a training script: ``init()`` starts (once per
process) a background service process, ``log()`` hands records to it through a
multiprocessing queue without waiting, and the service writes each run to an
SQLite database under ``<dir>/<project>/<run id>/``. ``Api`` reads runs back.

The package is the picture of its two processes::

    mpbackend.shared   what both processes share: messages, queues, settings, errors
    mpbackend.user     the training process: setup, manager, launcher, interface,
                       router, Run and its parts (init, config, summary, values, child)
    mpbackend.service  the service process: mux (its main loop), internal (one run),
                       system (system metrics)
    mpbackend.store    the SQLite store: schema, writer (the service's), reader (anyone's)
    mpbackend.read     reading runs back: api, cli, report, end summary, format
    mpbackend.media    media (Image, Table, Histogram, plot.*, ...): made in the user
                       process, written as files by the service, read back by readers

Every public name resolves lazily (PEP 562 ``__getattr__``): a spawned service
process imports this package on its way to ``mpbackend.service.mux`` and then
loads only what it runs, never the user side or the readers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .shared.version import __version__

if TYPE_CHECKING:
    from .artifacts.artifact import Artifact
    from .media.data import Histogram, Table
    from .media.files import Audio, Html, Molecule, Object3D, Plotly, Video
    from .media.image import Image
    from .read.api import Api, ApiRun
    from .shared.errors import (
        Error,
        NoSuchRun,
        RequestTimeout,
        ServiceError,
        StoreError,
        TrialStopped,
        UsageError,
    )
    from .shared.metrics import Metric
    from .shared.settings import Settings
    from .store.reader import RunReader
    from .user.config import Config, ConfigError
    from .user.everyday import login, termerror, termlog, termwarn
    from .user.init import init
    from .user.run import DisabledRun, Run
    from .user.setup import setup, teardown
    from .user.summary import Summary

# Where each public name lives; looked up on first use.
_LAZY = {
    "Api": "read.api", "ApiRun": "read.api",
    "Error": "shared.errors", "RequestTimeout": "shared.errors", "NoSuchRun": "shared.errors",
    "ServiceError": "shared.errors", "StoreError": "shared.errors",
    "UsageError": "shared.errors", "TrialStopped": "shared.errors",
    "Metric": "shared.metrics", "Settings": "shared.settings",
    "RunReader": "store.reader",
    "Config": "user.config", "ConfigError": "user.config", "Summary": "user.summary",
    "DisabledRun": "user.run", "Run": "user.run",
    "init": "user.init", "setup": "user.setup", "teardown": "user.setup",
    "login": "user.everyday", "termlog": "user.everyday", "termwarn": "user.everyday",
    "termerror": "user.everyday",
    "Image": "media.image", "Histogram": "media.data", "Table": "media.data",
    "Audio": "media.files", "Video": "media.files", "Html": "media.files",
    "Object3D": "media.files", "Molecule": "media.files", "Plotly": "media.files",
    "Artifact": "artifacts.artifact", "NoSuchArtifact": "shared.errors",
    "sweep": "sweeps.agent", "agent": "sweeps.agent",
}
# Submodules scripts reach as attributes (``wandb.util.generate_id()``, ``wandb.plot.line``).
_SUBMODULES = {"util": "util", "plot": "media.plot", "sdk": "compat.sdk",
               "wandb_run": "compat.wandb_run", "compat": "compat"}

# The current run and its config and summary (set by init(), as wandb.run is).
run: Run | None = None
config: Config | None = None
summary: Summary | None = None


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{_SUBMODULES[name]}")
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'mpbackend' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value  # the next lookup is a plain global
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


def _current() -> Run:
    if run is None:
        from .shared.errors import UsageError

        raise UsageError("call mpbackend.init() first")
    return run


def log(data: dict[str, Any], step: int | None = None, commit: bool | None = None) -> None:
    """Log to the current run (``mpbackend.run``)."""
    _current().log(data, step=step, commit=commit)


def define_metric(name: str, step_metric: str | None = None, summary: str | None = None,
                  goal: str | None = None, hidden: bool | None = None,
                  step_sync: bool | None = None, overwrite: bool | None = None) -> Metric:
    """``define_metric`` on the current run."""
    return _current().define_metric(name, step_metric=step_metric, summary=summary, goal=goal,
                                    hidden=hidden, step_sync=step_sync, overwrite=overwrite)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """Finish the current run, if there is one."""
    if run is not None:
        run.finish(exit_code=exit_code, quiet=quiet)


def save(glob_str: Any, base_path: Any = None, policy: str = "live",
         glob: bool = True) -> list[str]:
    """``save`` on the current run: copy files into its files."""
    return _current().save(glob_str, base_path=base_path, policy=policy, glob=glob)


def restore(name: str, run_path: str | None = None, replace: bool = False,
            root: str | None = None) -> Any:
    """A saved file of the current run, or of ``run_path`` (``"project/id"``), opened."""
    if run is not None:
        return run.restore(name, run_path=run_path, replace=replace, root=root)
    import os

    from .shared.settings import Settings
    from .user.runfiles import restore as restore_file

    return restore_file(name, run_path, replace, root, None, os.path.abspath(Settings().dir))


def alert(title: str, text: str, level: Any = None, wait_duration: Any = None) -> None:
    """``alert`` on the current run: stored with it and printed."""
    _current().alert(title, text, level=level, wait_duration=wait_duration)


def mark_preempting() -> None:
    """``mark_preempting`` on the current run."""
    _current().mark_preempting()


def log_artifact(artifact_or_path: Any, name: str | None = None, type: str | None = None,
                 aliases: list[str] | None = None, tags: list[str] | None = None) -> Artifact:
    """``log_artifact`` on the current run: store the next version of an artifact."""
    return _current().log_artifact(artifact_or_path, name=name, type=type, aliases=aliases,
                                   tags=tags)


def use_artifact(artifact_or_name: Any, type: str | None = None,
                 aliases: list[str] | None = None, use_as: str | None = None) -> Artifact:
    """``use_artifact`` on the current run: a logged artifact, recorded as used."""
    return _current().use_artifact(artifact_or_name, type=type, aliases=aliases, use_as=use_as)


def log_model(path: Any, name: str | None = None, aliases: list[str] | None = None) -> None:
    """``log_model`` on the current run: a model file or directory as an artifact."""
    _current().log_model(path, name=name, aliases=aliases)


def use_model(name: str) -> str:
    """``use_model`` on the current run: the local path of a model artifact's file."""
    return _current().use_model(name)


def link_artifact(artifact: Artifact, target_path: str,
                  aliases: list[str] | None = None) -> Artifact:
    """``link_artifact`` on the current run."""
    return _current().link_artifact(artifact, target_path, aliases=aliases)


def watch(models: Any, criterion: Any = None, log: str | None = "gradients",
          log_freq: int = 1000, idx: int | None = None, log_graph: bool = False) -> None:
    """``watch`` on the current run: gradient/parameter histograms of torch models."""
    _current().watch(models, criterion=criterion, log=log, log_freq=log_freq, idx=idx,
                     log_graph=log_graph)


def unwatch(models: Any = None) -> None:
    """``unwatch`` on the current run (nothing without one)."""
    if run is not None:
        run.unwatch(models)


def require(*requirements: str, **kwargs: Any) -> None:
    """Accepted for wandb compatibility (``wandb.require("service")``); it changes nothing."""


__all__ = [
    "Api", "ApiRun", "Artifact", "Audio", "Config", "ConfigError", "DisabledRun", "Error",
    "Histogram", "Html", "Image", "Metric", "Molecule", "NoSuchArtifact", "NoSuchRun", "Object3D",
    "Plotly", "RequestTimeout", "Run", "RunReader", "ServiceError", "Settings", "StoreError",
    "Summary", "Table", "TrialStopped", "UsageError", "Video", "__version__", "alert", "config",
    "define_metric", "finish", "init", "link_artifact", "log", "log_artifact", "log_model", "login",
    "mark_preempting", "plot", "require", "restore", "run", "save", "setup", "summary", "teardown",
    "termerror", "termlog", "termwarn", "unwatch", "sweep", "agent", "use_artifact",
    "use_model", "util", "watch",
]
