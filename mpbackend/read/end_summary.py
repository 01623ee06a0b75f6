r"""The summary shown when a run ends: in a terminal as text, in Jupyter as HTML.

    Run.finish() / exit --> Run._end --> the service's reply (state, step)
        --> end_summary.show(run, quiet)
              how()  : quiet? MPBACKEND_SILENT? a Jupyter kernel? stdout a terminal?
                       (decided first, with no store read: nothing to show, no cost)
              read() : RunReader(run.dir): the run's row, and each summary metric's
                       history, downsampled to SPARK_POINTS points
              text() --> sys.stdout            html() --> IPython.display

What it shows: the run's name and id, its state, its directory, steps and
runtime; the value of each summary metric (not the ``_`` keys, not the ones
``define_metric(hidden=True)`` hides) with a sparkline of its history; and the
command that shows more (``mpbackend show <id> --dir <dir>``). In a terminal the
sparkline is unicode blocks (``▁▂▃▄▅▆▇█``); in Jupyter an inline SVG line.

A history is cut into ``SPARK_POINTS`` equal spans of steps and each span drawn
at the mean of its finite values (read at most ``PER_POINT`` values per span, so
a run of millions of rows stays quick); NaN and infinities are skipped, a span
with no finite value is a gap, and a metric that is never a number has no line.
A metric whose stored history the reader refuses (a damaged column: StoreError)
is shown with its value and ``(history unreadable)``; the others as ever.

Nothing is shown with ``finish(quiet=True)``, ``Settings(quiet=True)`` or the
environment ``MPBACKEND_SILENT=1``; ``finish(quiet=False)`` overrides the setting
(but not the environment). Showing never raises: a failure is logged at DEBUG.

What the run stored (its name, id, state, directory, keys and values) is not
trusted: both forms show its control characters as escapes (``format.printable``:
a name ``"\x1b]0;x\x07"`` is printed as that text, it does not retitle the
terminal), and the HTML form escapes it for HTML as well. ``read()`` returns it
as stored; ``text()`` and ``html_summary()`` make it printable.
"""

from __future__ import annotations

import html
import logging
import math
import os
import shlex
import sys
import time
from typing import Any

from ..shared import environ
from ..shared.errors import StoreError
from ..shared.jupyter import in_notebook
from ..shared.metrics import MetricDefs
from ..store.reader import RunReader, checked_values
from .format import duration, flat_summary, format_value, printable

log = logging.getLogger("mpbackend")

SPARK_POINTS = 32
PER_POINT = 64
MAX_METRICS = 30
RETRY_BUDGET = 2.0  # seconds for reading a damaged history again, key by key
DAMAGED = "(history unreadable)"  # in place of the line of a metric whose column is damaged
BLOCKS = "▁▂▃▄▅▆▇█"


def how(quiet: bool | None, settings_quiet: bool = False) -> str | None:
    """``"html"`` (a Jupyter kernel), ``"text"`` (stdout is a terminal) or None (nothing).

    Cheap: it reads no store.
    """
    if quiet or (quiet is None and settings_quiet):
        return None
    if environ.flag("SILENT"):
        return None
    if in_notebook():
        return "html"
    stdout = sys.stdout
    try:
        return "text" if stdout is not None and stdout.isatty() else None
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return None


def show(run: Any, quiet: bool | None = None) -> None:
    """Show the summary of ``run`` (just ended) where ``how()`` says; never raises."""
    try:
        mode = how(quiet, bool(getattr(run, "_quiet", False)))
        if mode is None:
            return
        data = read(run.dir)
        if mode == "html":
            from IPython.display import HTML, display

            display(HTML(html_summary(data)))
        else:
            stdout = sys.stdout
            stdout.write(text(data))
            stdout.flush()
    except Exception:
        log.debug("mpbackend: the summary of run %s could not be shown",
                  getattr(run, "id", "?"), exc_info=True)


# -- reading ------------------------------------------------------------------------


def read(run_dir: str) -> dict[str, Any]:
    """What the summary shows, read from the run's store.

    ``{"id", "name", "state", "dir", "root", "steps", "runtime", "metrics":
    [(key, value, points)], "more", "damaged"}`` where ``points`` is a list of
    floats (NaN for a gap), empty when the metric has no numeric history; ``more``
    counts the metrics left out past MAX_METRICS; ``damaged`` lists the metrics
    whose history the reader refuses (a damaged column): their value is shown,
    with no line. StoreError if the run itself cannot be read.
    """
    with RunReader(run_dir) as reader:
        info = reader.info()
        metrics = MetricDefs(info["extra"].get("metrics"))
        summary = flat_summary(info["summary"])  # keys as the history has them
        keys = [k for k, _ in sorted(summary.items())
                if not k.startswith("_") and not (metrics.resolve(k) or {}).get("hidden")]
        shown, more = keys[:MAX_METRICS], max(len(keys) - MAX_METRICS, 0)
        lines, damaged = _sparklines(reader, shown) if shown else ({}, [])
    root = os.path.dirname(os.path.dirname(os.path.abspath(run_dir)))
    return {
        "id": info["id"], "name": info["name"] or info["id"], "state": info["state"],
        "dir": run_dir, "root": root, "steps": info["step"],
        "runtime": max(0.0, (info["updated_at"] or 0) - (info["created_at"] or 0)),
        "metrics": [(k, summary[k], lines.get(k, [])) for k in shown],
        "more": more, "damaged": damaged,
    }


def _sparklines(reader: RunReader, keys: list[str]) -> tuple[dict[str, list[float]], list[str]]:
    """Each key's history as SPARK_POINTS bin means (NaN for an empty bin), and the
    keys whose history the reader refuses (a damaged column: they get no line)."""
    try:
        columns, damaged = _columns(reader, keys)
    except StoreError:  # raw_chunks refused a chunk: read key by key, to lose only its own
        columns, damaged = {}, set()
        deadline = time.monotonic() + RETRY_BUDGET
        for key in keys:
            if time.monotonic() > deadline:  # a file slow to read: the rest get no line
                damaged.add(key)
                continue
            try:
                found, bad = _columns(reader, [key])
            except StoreError:
                log.debug("mpbackend: the history of %r could not be read", key, exc_info=True)
                bad = {key}
            else:
                columns.update(found)
            damaged |= bad
    out = {}
    for key, parts in columns.items():
        n = sum(len(p) for p in parts)
        if n == 0:
            continue
        points = _bins(parts, n, min(SPARK_POINTS, n))
        if any(p == p for p in points):
            out[key] = points
    return out, [k for k in keys if k in damaged]


def _columns(reader: RunReader, keys: list[str]) -> tuple[dict[str, list[Any]], set[str]]:
    """The values of each of ``keys``, chunk by chunk, and the keys of a column that
    ``checked_values`` refuses (too deep, or not one value per row): left out whole.

    StoreError if ``raw_chunks`` refuses the read itself.
    """
    columns: dict[str, list[Any]] = {k: [] for k in keys}
    damaged: set[str] = set()
    for steps, cols in reader.raw_chunks(keys):
        rows = len(steps) // 8
        for key, (kind, idx, data) in cols.items():
            if key in damaged:
                continue
            try:
                values = checked_values(reader.path, kind, data,
                                        rows if idx is None else len(idx) // 4)
            except StoreError:
                log.debug("mpbackend: the history of %r could not be read", key, exc_info=True)
                damaged.add(key)
                del columns[key]
                continue
            columns[key].append(values)
    return columns, damaged


def _bins(parts: list[Any], n: int, bins: int) -> list[float]:
    """Mean of the finite numbers in each of ``bins`` equal spans of the values."""
    starts = [0]
    for p in parts:
        starts.append(starts[-1] + len(p))

    def at(i: int) -> Any:
        lo, hi = 0, len(parts) - 1
        while lo < hi:  # the part holding position i
            mid = (lo + hi + 1) // 2
            if starts[mid] <= i:
                lo = mid
            else:
                hi = mid - 1
        return parts[lo][i - starts[lo]]

    points = []
    for b in range(bins):
        first, last = b * n // bins, (b + 1) * n // bins
        stride = max(1, (last - first) // PER_POINT)
        total, count = 0.0, 0
        for i in range(first, last, stride):
            v = at(i)
            if type(v) in (int, float) and math.isfinite(v):
                total += v
                count += 1
        points.append(total / count if count else math.nan)
    return points


# -- formatting ---------------------------------------------------------------------


def spark(points: list[float]) -> str:
    """``points`` as unicode blocks, lowest to highest; a gap (NaN) is a space."""
    finite = [p for p in points if p == p]
    if not finite:
        return ""
    lo, hi = min(finite), max(finite)
    top = len(BLOCKS) - 1
    out = []
    for p in points:
        if p != p:
            out.append(" ")
        elif hi == lo:
            out.append(BLOCKS[0])
        else:
            out.append(BLOCKS[min(top, int((p - lo) / (hi - lo) * top + 0.5))])
    return "".join(out)


def more_command(data: dict[str, Any]) -> str:
    """The command that shows the run (printable: its control characters as escapes)."""
    return printable(f"mpbackend show {shlex.quote(str(data['id']))} "
                     f"--dir {shlex.quote(str(data['root']))}")


def text(data: dict[str, Any]) -> str:
    """The terminal form: a few lines, metrics aligned, ending in a newline.

    Everything read from the run is shown with ``printable``: no control
    character of a name, key or value reaches the terminal.
    """
    run_id, name = printable(data["id"]), printable(data["name"])
    name = name if name == run_id else f"{name} ({run_id})"
    lines = [f"mpbackend: run {name} {printable(data['state'])}",
             f"  dir      {printable(data['dir'])}",
             f"  steps    {printable(data['steps'])}  runtime {duration(data['runtime'])}"]
    metrics = [(printable(k), v, points) for k, v, points in data["metrics"]]
    if metrics:
        width = min(max(len(k) for k, _, _ in metrics), 32)
        values = [format_value(v, 40) for _, v, _ in metrics]
        vwidth = min(max(len(v) for v in values), 40)
        lines.append("  summary")
        damaged = set(map(printable, data.get("damaged", ())))
        for (key, _, points), value in zip(metrics, values):
            shown = key if len(key) <= width else key[:width - 1] + "…"
            line = DAMAGED if key in damaged else spark(points)
            lines.append(f"    {shown:<{width}}  {value:>{vwidth}}  {line}".rstrip())
        if data["more"]:
            lines.append(f"    ... and {data['more']} more")
    lines.append(f"  more     {more_command(data)}")
    return "\n".join(lines) + "\n"


def svg(points: list[float], width: int = 120, height: int = 18) -> str:
    """``points`` as a small inline SVG line; gaps break it. Empty for no finite point."""
    finite = [p for p in points if p == p]
    if not finite:
        return ""
    lo, hi = min(finite), max(finite)
    span = (hi - lo) or 1.0
    n = max(len(points) - 1, 1)
    runs: list[list[str]] = [[]]
    for i, p in enumerate(points):
        if p != p:
            runs.append([])
            continue
        x = 1 + i * (width - 2) / n
        y = height - 2 - (p - lo) / span * (height - 4) if hi != lo else height - 2
        runs[-1].append(f"{x:.1f},{y:.1f}")
    lines = "".join(
        f"<polyline points='{' '.join(r)}' fill='none' stroke='#3b6fb6' stroke-width='1.5'/>"
        if len(r) > 1 else
        f"<circle cx='{r[0].split(',')[0]}' cy='{r[0].split(',')[1]}' r='1.5' fill='#3b6fb6'/>"
        for r in runs if r)
    return (f"<svg class='mpbackend-spark' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}' xmlns='http://www.w3.org/2000/svg'>{lines}</svg>")


def html_summary(data: dict[str, Any]) -> str:
    """The Jupyter form: a small table, a sparkline per metric, everything escaped.

    What the run stored is made ``printable`` (control characters as escapes)
    and then escaped for HTML.
    """
    def e(value: Any) -> str:
        return html.escape(printable(value))

    head = [("run", f"{data['name']} ({data['id']})"), ("state", data["state"]),
            ("dir", data["dir"]), ("steps", data["steps"]),
            ("runtime", duration(data["runtime"]))]
    rows = "".join(f"<tr><th style='text-align:left'>{e(k)}</th>"
                   f"<td style='text-align:left'>{e(v)}</td></tr>" for k, v in head)
    out = f"<div class='mpbackend-end'><b>mpbackend run ended</b><table>{rows}</table>"
    if data["metrics"]:
        damaged = set(data.get("damaged", ()))
        cells = "".join(
            f"<tr><td style='text-align:left'>{e(key)}</td>"
            f"<td style='text-align:right'>{e(format_value(value))}</td>"
            f"<td>{e(DAMAGED) if key in damaged else svg(points)}</td></tr>"
            for key, value, points in data["metrics"])
        if data["more"]:
            cells += f"<tr><td colspan='3'>... and {data['more']} more</td></tr>"
        out += f"<table class='mpbackend-summary'>{cells}</table>"
    out += f"<p>more: <code>{e(more_command(data))}</code></p>"
    return out + "</div>"
