"""What log(), config and summary accept, checked and converted at the call.

    Run.log(data) --fast path: builtin str keys and numbers--> copied, sent as is
                  --otherwise: normalize()--> dict of plain values --serialise()-->
    Config / Summary updates --convert()--> plain values --serialise()--> bytes

Everything here runs in the caller's thread, so a bad key or value raises
TypeError or ValueError at the call that made it, naming the key, and nothing
already logged is touched. numpy and torch scalars become Python numbers,
arrays lists (up to ``Settings.max_array_size`` elements); nested dicts stay
nested (the service makes ``a.b`` history keys of them). Open files, non-UTF-8
bytes and objects with no faithful stored form (a class instance, a module, a
figure) are refused with TypeError.
"""

from __future__ import annotations

import datetime
import enum
import io
import os
import sys
import types
from collections.abc import Mapping
from typing import Any

from .interface import dumps_plain

# Types the fast path of log() lets through without a look inside.
PLAIN = frozenset({float, int, str, bool, type(None)})
NUMBERS = frozenset({float, int, bool, type(None)})
FLOATS = frozenset({float})
STR = frozenset({str})


# Keys log() sets itself on every row: a user's value under them is refused.
RESERVED = frozenset({"_step", "_runtime", "_timestamp"})


def check_text(text: str, what: str) -> str:
    """``text`` (a key, a name) as the store can keep it: UTF-8 encodable, else ValueError.

    A lone surrogate (``"k\\ud800"``, from a badly decoded file name) has no UTF-8
    form, so SQLite cannot store it as text.
    """
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{what} {text!r} cannot be stored: it holds a lone surrogate "
                             f"({exc.reason} at {exc.start})") from None
    return text


def convert(value: Any, limit: int, depth: int = 0, media: list | None = None) -> Any:
    """A value as it is sent: plain data only, made here, in the caller's thread.

    Builtin scalars stay (subclasses become the builtin); numpy and torch
    scalars become numbers, arrays lists; mappings and sequences are converted
    item by item; dates become ISO text, durations seconds, paths and UUIDs their
    text, dataclasses and argparse namespaces dicts, anything with ``__float__``
    (Decimal, Fraction) its float. As wandb stores them: UTF-8 bytes become text,
    enum members their name, functions and classes their qualified name
    (``"torch.nn.modules.activation.ReLU"``), slices a dict. Any other object
    raises TypeError: it has no faithful stored form, and its repr is not data. The service
    never sees a user's object, so it never runs a user's ``__float__``,
    ``__str__`` or ``__reduce__``: one that raises, raises here (TypeError, naming
    the key), and one that blocks, blocks the caller, not the service.

    Media (``mpbackend.media``: an Image, a Table, a chart; a matplotlib figure,
    which becomes an Image, and a plotly figure, a Plotly) become their
    ``messages.Media``, appended to ``media`` too; where ``media`` is None (the
    config) they raise TypeError.
    """
    kind = type(value)
    if kind in PLAIN:
        return value
    to_media = getattr(kind, "_mp_media", None)
    if to_media is not None or _is_figure(value):
        if media is None:
            raise TypeError(f"{describe(value)} is media: log it, or set it on the summary; "
                            "the config keeps plain values")
        if to_media is None:
            value = _figure_media(value)
        sent = value._mp_media(lambda cell: convert(cell, limit, depth + 1, media))
        media.append(sent)
        return sent
    if isinstance(value, io.IOBase):
        raise TypeError(f"an open file ({value!r}) cannot be logged; log its name or "
                        "contents instead")
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:  # as wandb: bytes are taken as UTF-8 text
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TypeError(f"bytes that are not UTF-8 text cannot be logged ({exc.reason} at "
                            f"{exc.start}); log their length or a digest instead") from None
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, float):  # also numpy.float64, a float subclass
        return float.__float__(value)
    if isinstance(value, int):  # an IntEnum member
        return int.__int__(value)
    if isinstance(value, str):  # a StrEnum member
        return str.__str__(value)
    if depth >= 64:
        raise ValueError("lists or dicts nested more than 64 deep (or containing themselves)")
    if isinstance(value, (list, tuple, set, frozenset)):
        if len(value) > limit:
            raise ValueError(f"a list of {len(value)} items is over the limit of {limit} "
                             "(Settings.max_array_size)")
        return [convert(v, limit, depth + 1, media) for v in value]
    if isinstance(value, Mapping):
        return {str.__str__(k) if isinstance(k, str) else _text(k):
                convert(v, limit, depth + 1, media) for k, v in value.items()}
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "tolist"):
        if len(shape) == 0:
            item = value.item()  # numpy scalar, 0-d array or tensor
            return item if type(item) in PLAIN else convert(item, limit, depth + 1, media)
        numel = getattr(value, "numel", None)
        size = numel() if callable(numel) else getattr(value, "size", 0)
        if size > limit:
            raise ValueError(f"an array of {size} elements is over the limit of {limit} "
                             "(Settings.max_array_size); log a summary of it instead")
        if hasattr(value, "detach"):
            value = value.detach().cpu()
        items = value.tolist()
        if getattr(getattr(value, "dtype", None), "kind", "f") in "fiub":
            return items  # numbers (a torch dtype has no kind: its tolist() is numbers)
        return convert(items, limit, depth + 1, media)  # object, str or datetime64 arrays
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):  # (an IntEnum or StrEnum member is an int or str)
        return value.name  # as wandb stores it
    if isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType,
                          types.MethodType)):
        # As wandb: a function or class by its qualified name, "torch.optim.adam.Adam"
        # (a config of ``activation=nn.ReLU`` is common); that name is what it is.
        name = getattr(value, "__qualname__", None)
        module = getattr(value, "__module__", None)
        if isinstance(name, str) and isinstance(module, str):
            return f"{module}.{name}"
    if isinstance(value, slice):
        return {"slice_start": convert(value.start, limit, depth + 1),
                "slice_step": convert(value.step, limit, depth + 1),
                "slice_stop": convert(value.stop, limit, depth + 1)}
    if isinstance(value, os.PathLike):
        return str.__str__(os.fsdecode(os.fspath(value)))
    # uuid, argparse and dataclasses are looked up, not imported: a value of theirs
    # exists only where its module was imported, and init() need not pay for them.
    uuid = sys.modules.get("uuid")
    if uuid is not None and isinstance(value, uuid.UUID):
        return str(value)
    argparse = sys.modules.get("argparse")
    if argparse is not None and isinstance(value, argparse.Namespace):
        return convert(vars(value), limit, depth + 1)
    if hasattr(kind, "__dataclass_fields__") and not isinstance(value, type):
        import dataclasses

        return convert({f.name: getattr(value, f.name) for f in dataclasses.fields(value)},
                       limit, depth + 1)
    if hasattr(value, "__float__"):  # Decimal, Fraction, a number type of the user's
        try:
            return float(value)
        except (TypeError, ValueError, OverflowError):
            pass
        except Exception as exc:
            raise TypeError(f"float() of the {kind.__name__} raised {exc!r}") from None
    # Anything else (an instance of an arbitrary class, a module, a matplotlib
    # figure, a callable object) has no faithful stored form: its repr is not its value, and a
    # run that silently keeps "<Figure size 640x480>" has lost what the user meant.
    raise TypeError(f"{describe(value)} has no stored form; log a number, str, list or "
                    "dict made from it")


def _is_figure(value: Any) -> bool:
    """A matplotlib or plotly figure (or the pyplot module), logged directly."""
    module = type(value).__module__ or ""
    if module.startswith(("matplotlib", "plotly")):
        return hasattr(value, "savefig") or hasattr(value, "to_json")
    return isinstance(value, types.ModuleType) and value.__name__ == "matplotlib.pyplot"


def _figure_media(value: Any) -> Any:
    """A figure logged directly: matplotlib's as an Image (as wandb stores one it
    cannot convert), plotly's as a Plotly."""
    from .. import media

    if (type(value).__module__ or "").startswith("plotly"):
        return media.Plotly(value)
    return media.Image(value)


def describe(value: Any) -> str:
    """``value`` as an error names it: ``the module 'os'``, ``a matplotlib.figure.Figure``."""
    if isinstance(value, types.ModuleType):
        return f"the module {value.__name__!r}"
    if isinstance(value, type):
        return f"the class {_qualified(value)}"
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return f"the function {getattr(value, '__qualname__', '?')}"
    return f"a value of type {_qualified(type(value))}"


def _qualified(kind: type) -> str:
    if kind.__module__ in ("builtins", "__main__", "__mp_main__"):
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _text(value: Any) -> str:
    """``str(value)`` as a plain str; TypeError if the object's ``__str__`` raises."""
    try:
        return str.__str__(str(value))
    except Exception as exc:
        raise TypeError(f"str() of the {type(value).__name__} raised {exc!r}") from None


def check_row(prefix: str, value: Mapping, limit: int, path: tuple[int, ...] = (),
              media: list | None = None) -> dict[str, Any]:
    """A logged dict with its keys checked and its values converted; nested dicts
    stay nested (the service flattens them into ``a.b`` history keys and keeps the
    summary nested, as wandb does). ``prefix`` names where it sits, for errors."""
    if id(value) in path:
        raise ValueError(f"log(): the dict under {prefix[:-1]!r} contains itself")
    if len(path) >= 64:
        raise ValueError(f"log(): dicts nested more than 64 deep (at {prefix[:-1]!r})")
    path = (*path, id(value))
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise TypeError(f"log() keys must be str, not {type(key).__name__} "
                            f"({prefix}{key!r})")
        key = str.__str__(key)  # a str subclass (an Enum member) sends as its text
        if not key:
            raise ValueError(f"log() keys must not be empty (in {prefix or 'the top level'!r})")
        check_text(key, "log(): the key")
        if not prefix and key in RESERVED:
            raise ValueError(f"log(): the key {key!r} is set by mpbackend on every row; "
                             "give the step as log(..., step=N), or use another name")
        if isinstance(item, Mapping):
            out[key] = check_row(f"{prefix}{key}.", item, limit, path, media)
        else:
            out[key] = convert_item("log()", prefix + key, item, limit, media)
    return out


def nan_to_none(value: Any) -> Any:
    """NaN (at any depth) as None: how wandb stores a NaN set on the config or the
    summary (not one logged in a row, which stays NaN)."""
    if type(value) is float:
        return None if value != value else value
    if type(value) is list:
        return [nan_to_none(v) for v in value]
    if type(value) is dict:
        return {k: nan_to_none(v) for k, v in value.items()}
    return value


def convert_item(what: str, key: str, value: Any, limit: int, media: list | None = None
                 ) -> Any:
    """``convert(value)``, its TypeError or ValueError naming the call and the key."""
    try:
        return convert(value, limit, 0, media)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{what}: the value of {key!r} cannot be sent: {exc}") from None


def learn_keys(data: dict, known: set[str]) -> bool:
    """Add ``data``'s keys to ``known`` (a run's keys checked before) if each is a
    builtin, non-empty, storable, unreserved ``str``; False (and nothing added) if not."""
    for key in data:
        if type(key) is not str or not key or key in RESERVED:
            return False
        if not key.isascii():
            try:
                key.encode("utf-8")
            except UnicodeEncodeError:
                return False
    known.update(data)
    return True


def normalize(data: Any, limit: int, media: list | None = None) -> dict[str, Any]:
    """The slow path of log(): check keys and convert values (nested dicts kept);
    the media found are appended to ``media``."""
    if not isinstance(data, Mapping):
        raise TypeError(f"log() takes a dict, not {type(data).__name__}")
    return check_row("", data, limit, (), media)


def serialise(record: tuple, data: Mapping[str, Any], what: str) -> bytes:
    """Pickle a record of converted (plain) values, naming the key whose value
    cannot be sent (``interface.dumps_plain``)."""
    try:
        return dumps_plain(record)
    except TypeError:
        for key, value in data.items():
            try:
                dumps_plain(value)
            except TypeError as exc:
                raise TypeError(f"{what}: the value of {key!r} cannot be sent: {exc}") from None
        raise


# Steps are stored as int64, and so is the run's next step: the largest step is
# one below int64's largest value.
MAX_STEP = 2**63 - 2


def check_step(step: Any) -> int:
    """A step as log() accepts it: an int (or an index-like number) in [0, MAX_STEP]."""
    if isinstance(step, bool) or not hasattr(step, "__index__"):
        raise TypeError(f"step must be a non-negative int, not {step!r}")
    step = step.__index__()
    if not 0 <= step <= MAX_STEP:
        raise ValueError(f"step must be a non-negative int up to 2**63 - 2, not {step}")
    return step


def check_exit_code(code: Any) -> int | None:
    """An exit code as finish() accepts it: None or an int that fits a stored int64."""
    if code is None:
        return None
    if isinstance(code, bool) or not isinstance(code, int):
        raise TypeError(f"exit_code must be an int or None, not {code!r}")
    if not -(2**63) <= code < 2**63:
        raise ValueError(f"exit_code {code} is out of range")
    return code


def as_mapping(data: Any) -> dict[str, Any]:
    """What config.update() accepts: a mapping, an argparse.Namespace, an object's vars."""
    if data is None:
        return {}
    if isinstance(data, Mapping):
        return dict(data)
    if hasattr(data, "__dict__"):  # an argparse.Namespace too
        return {k: v for k, v in vars(data).items() if not k.startswith("_")}
    raise TypeError(f"config takes a dict, an argparse.Namespace or an object with "
                    f"attributes, not {type(data).__name__}")


def same(a: Any, b: Any) -> bool:
    return a is b or a == b or (a != a and b != b)
