"""``wandb.util``'s helpers that training scripts call, for ``import mpbackend as wandb``.

User-process helpers only: ids, optional imports, names and paths. They sit
beside the two processes' packages because scripts reach them as
``wandb.util.<name>``.
"""

from __future__ import annotations

import importlib
import re
from types import ModuleType
from typing import Any

from .user.init import new_id
from .user.values import convert


def generate_id(length: int = 8) -> str:
    """A random run id of ``length`` characters from ``[0-9a-z]``."""
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ValueError(f"length must be a positive int, not {length!r}")
    out = ""
    while len(out) < length:
        out += new_id()
    return out[:length]


def get_module(name: str, required: str | bool | None = None,
               lazy: bool = True) -> ModuleType | None:
    """Import ``name``; None if it is not installed, unless ``required`` (then an
    ImportError with ``required`` as its message, if it is text)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        if required:
            message = required if isinstance(required, str) else f"{name} is required"
            raise ImportError(message) from None
        return None


def make_artifact_name_safe(name: str) -> str:
    """``name`` with every character but letters, digits, ``-``, ``_`` and ``.``
    replaced by ``_`` (at most 128 characters)."""
    cleaned = re.sub(r"[^a-zA-Z0-9_\-.]", "_", name)
    return cleaned if len(cleaned) <= 128 else cleaned[:64] + "..." + cleaned[-61:]


def to_forward_slash_path(path: str) -> str:
    """``path`` with ``\\`` as ``/``."""
    return path.replace("\\", "/")


def json_friendly(obj: Any) -> tuple[Any, bool]:
    """``(obj as plain data, whether it was converted)``; TypeError if it has no
    stored form (see ``mpbackend.user.values.convert``)."""
    converted = convert(obj, 10_000_000)
    return converted, converted is not obj
