"""How every reader writes a value and a duration: the CLI's tables, the report, the
end summary, and a Run's HTML in Jupyter all show the same text for the same value.

    summary / config value --format_value()--> "0.123457", "min 0.1 max 2", "true"
    seconds                --duration()------> "12.3s", "4m05s", "1h02m03s"
"""

from __future__ import annotations

import json
import math
from typing import Any


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
    other lists and dicts as compact JSON; None as the empty string. With a
    ``width``, the text is cut to it (the end summary, a Run's HTML); without,
    only JSON is cut (at JSON_WIDTH), and a string is shown whole (``show``).
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
        text = " ".join(f"{k} {format_value(v, width)}" for k, v in value.items())
    elif isinstance(value, dict | list):
        text = json.dumps(value, default=str, separators=(",", ":"))
        width = JSON_WIDTH if width is None else width
    else:
        text = str(value).replace("\n", " ")
    if width is None or len(text) <= width:
        return text
    return text[:max(width - 3, 0)] + "..."


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
