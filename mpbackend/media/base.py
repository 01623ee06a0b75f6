"""What every media type shares (user side): the base class and input helpers."""

from __future__ import annotations

import io
import os
from typing import Any

from ..shared.messages import Media as Sent


class Media:
    """A value ``log()`` stores as a file with a typed reference (``Image``, ``Table``, ...).

    Subclasses build the plain ``messages.Media`` they send at construction
    (``_sent``), so a later change to the caller's array or figure does not
    change what was logged, and ``log()`` only pickles it.
    """

    _sent: Sent

    def _mp_media(self, convert: Any = None) -> Sent:
        """What ``log()`` sends for this value (see ``messages.Media``); ``convert`` is
        log()'s conversion of a plain value, for types that hold user values (Table)."""
        return self._sent

    def __repr__(self) -> str:
        sent = getattr(self, "_sent", None)  # a Table makes its own at log()
        meta = {k: v for k, v in sent.meta.items() if isinstance(v, (int, str))} if sent else {}
        return f"<{type(self).__name__} {meta}>"


def need(module: str, extra: str, what: str) -> Any:
    """Import ``module`` or raise ImportError naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{what} needs {module.split('.')[0]}: "
                          f"pip install 'mpbackend[{extra}]'") from None


def read_source(source: Any, what: str) -> tuple[bytes, str]:
    """The bytes and file extension (lower case, without the dot) of a path or an
    open binary/text file object; TypeError or FileNotFoundError at the call."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{what}: no such file: {path!r}")
        with open(path, "rb") as f:
            data = f.read()
        name = os.path.basename(path).lower()
        ext = name.rsplit(".", 1)[1] if "." in name else ""
        if name.endswith(".pts.json"):
            ext = "pts.json"
        return data, ext
    if isinstance(source, io.IOBase) or hasattr(source, "read"):
        data = source.read()
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, bytes):
            raise TypeError(f"{what}: read() of the file object gave {type(data).__name__}")
        name = getattr(source, "name", "")
        ext = name.rsplit(".", 1)[1].lower() if isinstance(name, str) and "." in name else ""
        return data, ext
    raise TypeError(f"{what} takes a path or a file object here, not {type(source).__name__}")


def is_array(value: Any) -> bool:
    """A numpy array, or anything with ``shape`` and ``__array__`` (a torch tensor)."""
    return hasattr(value, "shape") and (hasattr(value, "__array__") or hasattr(value, "numpy"))


def as_numpy(value: Any) -> Any:
    """``value`` as a numpy array (a torch tensor detached and moved to the CPU first)."""
    np = need("numpy", "media", "logging an array")
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def caption_of(caption: Any) -> str | None:
    if caption is None:
        return None
    if not isinstance(caption, str):
        caption = str(caption)  # wandb keeps a number's text as the caption too
    return caption
