"""Is this process a Jupyter kernel? Asked by init() (reinit), at exit and by the end summary.

Only looks at modules already imported: it never imports IPython itself.
"""

from __future__ import annotations

import sys


def _shell() -> object | None:
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where init() finishes the previous run)."""
    if "ipykernel" not in sys.modules:
        return False
    return type(_shell()).__name__ == "ZMQInteractiveShell"


def kernel_shutting_down() -> bool:
    """True in a Jupyter kernel whose shutdown was requested (it then SIGTERMs itself)."""
    return bool(getattr(_shell(), "exit_now", False))
