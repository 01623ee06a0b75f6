"""The service process's entry point, named here so the user process need not load it.

    user: launcher.Service --Process(target=entry.serve)--> new interpreter (spawn,
          forkserver) or forked child
    child: entry.serve --imports mpbackend.service.mux by name--> mux.serve(...)

A spawned child unpickles its target by reference, importing the module that
defines it; the user process, which only names the target, would import it too
if it were ``mux.serve`` itself. Naming the service's module as a string keeps
the training process from loading the service's main loop, and keeps the import
contracts (``pyproject.toml``) honest: the user side imports no service module.
"""

from __future__ import annotations

import importlib
from typing import Any

SERVICE_MODULE = "mpbackend.service.mux"


def serve(*args: Any) -> None:
    """Run the service (``mpbackend.service.mux.serve``) with the launcher's arguments."""
    importlib.import_module(SERVICE_MODULE).serve(*args)
