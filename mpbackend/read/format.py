r"""How every reader writes a value and a duration: the CLI's tables, the report, the
end summary, and a Run's HTML in Jupyter all show the same text for the same value.

    summary / config value --format_value()--> "0.123457", "min 0.1 max 2", "true"
    seconds                --duration()------> "12.3s", "4m05s", "1h02m03s"
    any text read from a run --printable()---> control characters as visible escapes

Nothing read from a run directory is trusted: a run's name, a key or a string
value can hold terminal escape sequences (``\x1b]0;title\x07`` retitles a
terminal, ``\x1b[2J`` clears it, ``\r`` overwrites a line, ``\x9b`` is a C1
CSI) or bidi overrides (U+202E shows text reversed). Every reader passes such
text through ``printable()`` (``format_value`` does it for values) before it is
shown, so they are shown as text (``\x1b]0;title\x07``), never acted on.
"""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Any

# Shown as their escape, never as themselves: C0 and C1 controls and DEL (Cc),
# format controls such as bidi overrides and isolates, zero-width characters and
# the BOM (Cf), lone surrogates (Cs: they cannot even be encoded to UTF-8), and
# the line and paragraph separators U+2028/U+2029 (Zl, Zp).
_HIDDEN_CATEGORIES = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(char: str) -> str:
    if unicodedata.category(char) not in _HIDDEN_CATEGORIES:
        return char
    short = _SHORT.get(char)
    if short is not None:
        return short
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: Any) -> str:
    """``text`` (str() of it) with every control character shown as its escape.

    C0 and C1 controls (``\\n``, ``\\t`` and ``\\r`` included), DEL, bidi and
    other format controls (U+202E as ``\\u202e``), lone surrogates and U+2028/
    U+2029 become the text of a Python-style escape (``\\x1b``, ``\\u202e``),
    so what a run stored can be seen but cannot drive a terminal or reorder a
    line. Everything else, spaces and any printable letter, is kept as it is.
    The result holds no such character, so ``printable`` of it is itself.
    """
    if not isinstance(text, str):
        text = str(text)
    if text.isprintable():  # the common case: nothing to look at one by one
        return text
    return "".join(map(_visible, text))


def is_number(value: Any) -> bool:
    """A finite int or float (booleans and NaN are not points on a chart)."""
    if type(value) is int:
        return True
    return type(value) is float and math.isfinite(value)


JSON_WIDTH = 80  # lists and dicts as JSON are cut here when no width is given


def format_value(value: Any, width: int | None = None) -> str:
    """A value as one-line text.

    Floats to 6 significant digits; booleans as ``true``/``false``; a dict of
    str keys (a summary's ``{"min": 0.1, "max": 2}``) as ``min 0.1 max 2``;
    other lists and dicts as compact JSON; None as the empty string. Control
    characters are shown as escapes (``printable``: a newline as ``\\n``). With
    a ``width``, the text is cut to it (the end summary, a Run's HTML); without,
    only JSON is cut (at JSON_WIDTH), and a string is shown whole (``show``).
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict) and isinstance(value.get("_type"), str):
        text = media_text(value)
    elif isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
        text = " ".join(f"{printable(k)} {format_value(v, width)}" for k, v in value.items())
    elif isinstance(value, dict | list):
        text = printable(json.dumps(value, default=str, separators=(",", ":")))
        width = JSON_WIDTH if width is None else width
    else:
        text = printable(value)
    if width is None or len(text) <= width:
        return text
    return text[:max(width - 3, 0)] + "..."


def media_text(ref: dict[str, Any]) -> str:
    """A media reference in a word or two: ``image 64x64``, ``table 10x3``,
    ``histogram (64 bins)``, ``3 images``."""
    kind = str(ref.get("_type", "")).removesuffix("-file")
    if kind == "images/separated":
        return f"{ref.get('count', '?')} images {ref.get('width', '?')}x{ref.get('height', '?')}"
    if kind == "histogram":
        bins = ref.get("values")
        return f"histogram ({len(bins) if isinstance(bins, list) else '?'} bins)"
    if kind == "table":
        return f"table {ref.get('nrows', '?')}x{ref.get('ncols', '?')}"
    if "width" in ref and "height" in ref:
        return printable(f"{kind} {ref['width']}x{ref['height']}")
    return printable(kind)


def duration(seconds: float | None) -> str:
    """Seconds as 12.3s, 4m05s or 1h02m03s ("" when unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys: ``{"opt": {"lr": 1}}`` -> ``{"opt.lr": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


# The keys of a define_metric summary value (``{"min": .., "max": ..}``).
_OPS = frozenset({"min", "max", "mean", "best", "first", "last"})


def flat_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """A (nested) summary by history key: ``{"train": {"loss": 1}}`` -> ``{"train.loss": 1}``;
    a define_metric value such as ``{"max": 0.9}`` and a media reference
    (``{"_type": "image-file", ...}``) stay whole under their key."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, tree: dict[str, Any]) -> None:
        for key, value in tree.items():
            name = f"{prefix}{key}"
            if (isinstance(value, dict) and value and not set(value) <= _OPS
                    and "_type" not in value):
                walk(name + ".", value)
            else:
                flat[name] = value

    walk("", summary)
    return flat
