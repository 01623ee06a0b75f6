"""What log(), config and summary accept, checked and converted at the call.

    Run.log(data) --fast path: builtin str keys and numbers--> copied, sent as is
                  --otherwise: normalize()--> flat dict of plain values --serialise()-->
    Config / Summary updates --convert()--> plain values --serialise()--> bytes

Everything here runs in the caller's thread, so a bad key or value raises
TypeError or ValueError at the call that made it, naming the key, and nothing
already logged is touched. numpy and torch scalars become Python numbers,
arrays lists (up to ``Settings.max_array_size`` elements), nested dicts dotted
keys; open files and bytes are refused.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from .interface import dumps

# Types the fast path of log() lets through without a look inside.
PLAIN = frozenset({float, int, str, bool, type(None)})
NUMBERS = frozenset({float, int, bool, type(None)})
FLOATS = frozenset({float})
STR = frozenset({str})


def convert(value: Any, limit: int, depth: int = 0) -> Any:
    """A value as it is sent: numpy/torch scalars become numbers, arrays lists."""
    if type(value) in PLAIN:
        return value
    if isinstance(value, io.IOBase):
        raise TypeError(f"an open file ({value!r}) cannot be logged; log its name or "
                        "contents instead")
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError("bytes cannot be logged as a value; decode them to a str first")
    if isinstance(value, (list, tuple)):
        if len(value) > limit:
            raise ValueError(f"a list of {len(value)} items is over the limit of {limit} "
                             "(Settings.max_array_size)")
        if depth >= 64:
            raise ValueError("lists or dicts nested more than 64 deep (or containing "
                             "themselves)")
        return [convert(v, limit, depth + 1) for v in value]
    if isinstance(value, Mapping):
        if depth >= 64:
            raise ValueError("lists or dicts nested more than 64 deep (or containing "
                             "themselves)")
        return {k if isinstance(k, str) else str(k): convert(v, limit, depth + 1)
                for k, v in value.items()}
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "tolist"):
        if len(shape) == 0:
            return value.item()  # numpy scalar, 0-d array or tensor
        numel = getattr(value, "numel", None)
        size = numel() if callable(numel) else getattr(value, "size", 0)
        if size > limit:
            raise ValueError(f"an array of {size} elements is over the limit of {limit} "
                             "(Settings.max_array_size); log a summary of it instead")
        if hasattr(value, "detach"):
            value = value.detach().cpu()
        return value.tolist()
    return value


def flatten(prefix: str, value: Mapping, out: dict[str, Any], limit: int,
             path: tuple[int, ...] = ()) -> None:
    if id(value) in path:
        raise ValueError(f"log(): the dict under {prefix[:-1]!r} contains itself")
    if len(path) >= 64:
        raise ValueError(f"log(): dicts nested more than 64 deep (at {prefix[:-1]!r})")
    path = (*path, id(value))
    for key, item in value.items():
        if not isinstance(key, str):
            raise TypeError(f"log() keys must be str, not {type(key).__name__} "
                            f"({prefix}{key!r})")
        key = str.__str__(key)  # a str subclass (an Enum member) sends as its text
        if not key:
            raise ValueError(f"log() keys must not be empty (in {prefix or 'the top level'!r})")
        if isinstance(item, Mapping):
            flatten(f"{prefix}{key}.", item, out, limit, path)
            continue
        try:
            out[prefix + key] = convert(item, limit)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"log(): the value of {prefix + key!r} cannot be sent: {exc}"
                            ) from None


def normalize(data: Any, limit: int) -> dict[str, Any]:
    """The slow path of log(): check keys, convert values, flatten nested dicts."""
    if not isinstance(data, Mapping):
        raise TypeError(f"log() takes a dict, not {type(data).__name__}")
    out: dict[str, Any] = {}
    flatten("", data, out, limit)
    return out


def serialise(record: tuple, data: Mapping[str, Any], what: str) -> bytes:
    """dumps() a record, naming the key whose value cannot be sent."""
    try:
        return dumps(record)
    except TypeError:
        for key, value in data.items():
            try:
                dumps(value)
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
