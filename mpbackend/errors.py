"""The exceptions mpbackend raises to its users."""

from __future__ import annotations


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
