"""The exceptions mpbackend raises, and how one raised in the service reaches the caller.

    service: a request handler raises --> error_reply(exc) --> Response.error =
             (type name, message, the service's traceback text) --> rsp_q
    user:    Router --> remote_error(error) --> the same type (for the types in
             REMOTE_ERRORS, else RuntimeError), its __cause__ a RemoteTraceback
             holding the service's traceback --> raised in the caller

Both processes import this module (it imports nothing else of mpbackend), so
the table of exception types that cross the queue is written once.
"""

from __future__ import annotations

import builtins
import traceback


class Error(Exception):
    """Base class of mpbackend's own errors."""


class ServiceError(Error):
    """The service process is gone or broke; the request could not be answered.

    ``exitcode`` is the service's exit code when it is known (negative: killed by
    that signal number), else None.
    """

    def __init__(self, message: str, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.exitcode = exitcode


class RequestTimeout(Error, TimeoutError):
    """A blocking request got no reply within its timeout."""


class UsageError(Error):
    """A call that cannot be made here, for example from a child process."""


class NoSuchRun(Error, KeyError, ValueError):
    """``Api.run(path)``: there is no such run (a KeyError and a ValueError, so that
    code written for either catches it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no such run"


class NoSuchArtifact(Error, KeyError, ValueError):
    """``use_artifact`` / ``Api.artifact``: no such artifact, version or alias."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no such artifact"


class TrialStopped(Error):
    """``log()`` in a sweep trial that the sweep's ``early_terminate`` (hyperband)
    stopped. It ends the trial's function; the agent records the trial ``stopped``
    and finishes its run. Code that catches every exception around ``log()`` should
    let this one through."""


class StoreError(Error):
    """A run database cannot be read or written; the message names the file."""


class RemoteTraceback(Exception):
    """The ``__cause__`` of an error raised in the service: its traceback, as text.

    Shown under the caller's own traceback ("The above exception was the direct
    cause of ..."), as ``concurrent.futures.ProcessPoolExecutor`` shows a worker's.
    """

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


# The exceptions a request may fail with in the service that the caller gets as
# the same type; any other is a bug in the service and arrives as RuntimeError.
REMOTE_ERRORS: dict[str, type[Exception]] = {
    name: getattr(builtins, name)
    for name in ("FileExistsError", "FileNotFoundError", "PermissionError", "ValueError",
                 "TypeError", "KeyError", "RuntimeError")
}
REMOTE_ERRORS["StoreError"] = StoreError
REMOTE_ERRORS["UsageError"] = UsageError


def error_reply(exc: BaseException) -> tuple[str, str, str]:
    """``Response.error`` for ``exc``, raised while the service handled a request.

    An exception of a type the caller knows keeps its type and message; any
    other is reported as a RuntimeError naming its type. The traceback goes along.
    """
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    name = type(exc).__name__
    # str() of a KeyError is the repr of its key; its message is what was meant.
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    if REMOTE_ERRORS.get(name) is type(exc):
        return name, text, tb
    return "RuntimeError", f"{name}: {text}", tb


def remote_error(error: tuple[str, ...]) -> Exception:
    """The exception to raise for a request the service answered with ``error``."""
    name, text = error[0], error[1]
    exc = REMOTE_ERRORS.get(name, RuntimeError)(text)
    if len(error) > 2 and error[2]:
        exc.__cause__ = RemoteTraceback(error[2])
    return exc
