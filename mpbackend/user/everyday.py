"""wandb's small everyday calls that hold no state: ``login()`` and the terminal lines.

    login()                          --> True (nothing to log in to: runs are local)
    termlog / termwarn / termerror   --> one line on stderr, ``mpbackend: ...``
                                         (none under MPBACKEND_SILENT / WANDB_SILENT,
                                         or for a run with Settings(silent=True))

Scripts and notebooks call these first or in passing (``wandb.login()`` opens
about 40% of public notebooks); here they do what they can mean for a logger
with no account and no server, and take wandb's arguments so that a call that
runs under wandb runs here.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from ..shared import environ

log = logging.getLogger("mpbackend")


def login(anonymous: str | None = None, key: str | None = None, relogin: bool | None = None,
          host: str | None = None, force: bool | None = None, timeout: int | None = None,
          verify: bool = False, referrer: str | None = None, **kwargs: Any) -> bool:
    """Accept wandb's ``login()`` and return True: runs are stored locally, so there is
    no account to log in to and no key is needed (one given is not kept or sent)."""
    if key is not None or host is not None:
        log.debug("mpbackend: login(): a key or host is not needed; runs are stored locally")
    return True


_printed: set[str] = set()  # what was printed with repeat=False


def _silent_run() -> bool:
    """The current run was started with ``Settings(silent=True)`` (or ``quiet``)."""
    run = getattr(sys.modules.get("mpbackend"), "run", None)
    return bool(run is not None and getattr(run, "_quiet", False))


def _line(text: Any, newline: bool, repeat: bool, prefix: bool) -> None:
    text = str(text)
    if environ.flag("SILENT") or (not repeat and text in _printed) or _silent_run():
        return
    if not repeat:
        _printed.add(text)
    head = "mpbackend: " if prefix else ""
    sys.stderr.write("\n".join(head + line for line in text.split("\n"))
                     + ("\n" if newline else ""))
    sys.stderr.flush()


def termlog(string: Any = "", newline: bool = True, repeat: bool = True,
            prefix: bool = True) -> None:
    """Print ``string`` on stderr as ``mpbackend: ...`` (each line prefixed), as wandb's
    ``termlog`` prints ``wandb: ...``; with ``repeat=False`` a text is printed once.
    Nothing under ``WANDB_SILENT``/``MPBACKEND_SILENT``."""
    _line(string, newline, repeat, prefix)


def termwarn(string: Any, newline: bool = True, repeat: bool = True,
             prefix: bool = True) -> None:
    """``termlog`` for a warning: ``mpbackend: WARNING ...``."""
    _line(f"WARNING {string}", newline, repeat, prefix)


def termerror(string: Any, newline: bool = True, repeat: bool = True,
              prefix: bool = True) -> None:
    """``termlog`` for an error: ``mpbackend: ERROR ...``."""
    _line(f"ERROR {string}", newline, repeat, prefix)
