"""Report: runs as pictures, a PNG plot (matplotlib) or one self-contained HTML page.

    run.db --store.RunReader.chunks--> read_series() --> {key: Series(x, y)}
        --> plot_png(): matplotlib, Agg backend, one panel per key, runs overlaid
        --> html_report(): downsample() each series --> report.html.j2 (Jinja2,
                           autoescape) + report.css + report.js, inlined
                           --> report.html (a run table, a chart per metric, a
                               chart per system metric; no server, no network)

The ``mpbackend`` command (``cli``) calls these; they are plain functions so a
notebook can call them too.

The HTML page carries everything it needs: its CSS, its data (one JSON document
in a ``<script type="application/json">``) and the script that draws each chart
on a ``<canvas>``. It loads nothing: no external script, style sheet, font or
image, so it reads the same offline, from an e-mail attachment or an archive.
When every chart is drawn the script sets ``document.body.dataset.chartsDrawn``
to their number and says so in ``<div id="status">``, which is how a headless
browser (and the tests) can tell that the page works.

Nothing read from a run is trusted (a run database can be crafted): the page is
rendered by Jinja2 with autoescape from the template ``report.html.j2``, a
package data file, so names, keys and values are only ever text in the page; the
chart data is written by the ``tojson`` filter, which escapes ``<``, ``>``,
``&`` and ``'`` (and, as JSON in ASCII, U+2028/U+2029), so no ``</script>`` or
``<!--`` can leave its element; control characters are shown as escapes
(``format.printable``), as in the terminal. The page's
``Content-Security-Policy`` (a ``<meta>``) is ``default-src 'none'`` with the
sha256 of its one script and its one style sheet: no inline event handler, no
other script, no load from anywhere would run even if markup got in. Jinja2 is
the ``report`` extra (``pip install 'mpbackend[report]'``); without it
``html_report`` raises MissingExtra.

Series are downsampled for the page, not for the PNG: each keeps its first and
last point and, in each of ``points / 2`` equal buckets of rows, its smallest
and largest value, so spikes and divergences survive the reduction (a plain
stride would step over them). Non-finite values (NaN, infinities) and values
that are not numbers (strings, lists, booleans) are left out of charts.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import time
import warnings
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, cast

from ..shared.errors import StoreError
from ..shared.states import TERMINAL_STATES
from ..store.reader import RunReader, spread
from .format import duration, flat_summary, flatten, format_value, is_number, printable

# Line colours for runs, in order; chosen to stay distinct on white and for the
# common forms of colour blindness (the first four most of all).
PALETTE = ("#1f6fd1", "#e4572e", "#2a9d3f", "#8e44ad", "#d4a017", "#17a2b8", "#c2185b",
           "#6d4c41", "#7f8c8d", "#1b1f3b")
DEFAULT_POINTS = 1500
HIDDEN_PREFIX = "_"  # _step, _runtime, _timestamp: axes, not metrics


@dataclass
class Series:
    """One metric of one run: x and y values, in step order."""

    x: array = field(default_factory=lambda: array("d"))
    y: array = field(default_factory=lambda: array("d"))

    def __len__(self) -> int:
        return len(self.y)


def read_series(run_dir: str, keys: Sequence[str] | None = None,
                x: str = "_step") -> dict[str, Series]:
    """The numeric history of one run, per key, against ``x``.

    ``keys`` None means every key not starting with ``_``; a key with no numeric
    value is absent from the result. Rows without a numeric ``x`` are skipped.
    Reads the run chunk by chunk (one consistent snapshot, also of a live run).
    """
    wanted = None if keys is None else list(dict.fromkeys([*keys, *([x] if x != "_step" else [])]))
    out: dict[str, Series] = {}
    with RunReader(run_dir) as reader:
        for steps, columns in reader.chunks(keys=wanted):
            if x == "_step":
                xs: Sequence[Any] = steps
            else:
                positions, values = columns.get(x, (None, [None] * len(steps)))
                xs = spread(positions, values, len(steps))
            for key, (positions, values) in columns.items():
                if key == x or (keys is None and key.startswith(HIDDEN_PREFIX)):
                    continue
                series = None
                for xv, value in zip(xs if positions is None else map(xs.__getitem__,
                                                                      positions), values):
                    if is_number(value) and is_number(xv):
                        if series is None:
                            series = _series(out, key)
                        series.x.append(xv)
                        series.y.append(value)
    return out


def _series(out: dict[str, Series], key: str) -> Series:
    """``out[key]``, a new empty Series the first time."""
    series = out.get(key)
    if series is None:
        series = out[key] = Series()
    return series


def rows_series(rows: Iterable[dict[str, Any]], x: str = "_runtime") -> dict[str, Series]:
    """Series from a list of dict rows (system metrics), every key but ``_*`` against ``x``."""
    out: dict[str, Series] = {}
    for row in rows:
        xv = row.get(x)
        if not is_number(xv):
            continue
        for key, value in row.items():
            if key.startswith(HIDDEN_PREFIX) or not is_number(value):
                continue
            series = _series(out, key)
            series.x.append(xv)
            series.y.append(value)
    return out


def downsample(series: Series, points: int = DEFAULT_POINTS) -> tuple[list, list]:
    """At most about ``points`` points of ``series``: the ends, and each bucket's min and max."""
    n = len(series)
    xs, ys = series.x, series.y
    if n <= max(points, 4):
        return list(xs), list(ys)
    buckets = max(1, (points - 2) // 2)
    keep = [0]
    inner = n - 2
    for b in range(buckets):
        lo = 1 + b * inner // buckets
        hi = 1 + (b + 1) * inner // buckets
        if lo >= hi:
            continue
        seg = ys[lo:hi]
        i_min = lo + seg.index(min(seg))
        i_max = lo + seg.index(max(seg))
        keep.extend(sorted({i_min, i_max}))
    keep.append(n - 1)
    return [xs[i] for i in keep], [ys[i] for i in keep]


def run_label(run: Any) -> str:
    """How a run is named in legends: its name, and its id when the name differs.

    As stored (matplotlib's legends); the HTML report shows ``printable()`` of it.
    """
    return run.id if run.name == run.id else f"{run.name} ({run.id})"


def colour(i: int) -> str:
    """The line colour of the ``i``-th run in a plot or report."""
    return PALETTE[i % len(PALETTE)]


# -- PNG ---------------------------------------------------------------------------


class MissingExtra(RuntimeError):
    """An optional dependency is not installed; the message names the pip command."""


def plot_png(runs: Sequence[Any], keys: Sequence[str], output: str, x: str = "_step",
             width: int = 1000, height: int = 600, logy: bool = False,
             title: str | None = None) -> dict[str, int]:
    """Draw ``keys`` of ``runs`` (ApiRun-like: ``dir``, ``id``, ``name``) into ``output``.

    One panel per key, runs overlaid, legend by run. The file type follows the
    extension (png, svg, pdf). Returns how many runs each key was drawn for.
    MissingExtra if matplotlib is not installed.
    """
    try:
        import matplotlib
    except ImportError as exc:
        raise MissingExtra("plotting needs matplotlib: pip install 'mpbackend[plot]'") from exc
    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    axes = fig.subplots(len(keys), 1, squeeze=False, sharex=True)[:, 0]
    drawn = dict.fromkeys(keys, 0)
    for i, run in enumerate(runs):
        series = read_series(run.dir, keys, x)
        for ax, key in zip(axes, keys):
            s = series.get(key)
            if s is None:
                continue
            style = "-o" if len(s) < 30 else "-"
            ax.plot(s.x, s.y, style, color=colour(i), label=run_label(run), linewidth=1.4,
                    markersize=3)
            drawn[key] += 1
    for ax, key in zip(axes, keys):
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
        if logy:
            ax.set_yscale("log")
        if drawn[key]:
            ax.legend(loc="best", fontsize="small")
    axes[-1].set_xlabel(x)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(output, dpi=dpi)
    return drawn


# -- HTML --------------------------------------------------------------------------


def runtime(run: Any) -> float | None:
    """A run's runtime in seconds: its last ``_runtime``, else last update minus start."""
    value = run.summary.get("_runtime") if isinstance(run.summary, dict) else None
    if is_number(value):
        return float(cast(float, value))
    if run.updated_at and run.created_at:
        return run.updated_at - run.created_at
    return None


def system_rows(run: Any) -> list[dict[str, Any]]:
    """The run's system metric samples, if this mpbackend stores them (else [])."""
    method = getattr(run, "system_metrics", None)
    if method is None:
        return []
    rows = method(pandas=False)
    return list(rows or [])


def _charts_for(all_series: list[dict[str, Series]], keys: Iterable[str],
                points: int) -> list[dict[str, Any]]:
    charts = []
    for key in keys:
        lines = []
        for i, series in enumerate(all_series):
            s = series.get(key)
            if s is None or not len(s):
                continue
            xs, ys = downsample(s, points)
            lines.append({"run": i, "n": len(s), "x": xs, "y": ys})
        if lines:
            charts.append({"key": key, "lines": lines})
    return charts


# The page's parts, package data files next to this module (setup.cfg's package_data).
TEMPLATE = "report.html.j2"
STYLE = "report.css"
SCRIPT = "report.js"
KNOWN_STATES = frozenset(("running", *TERMINAL_STATES))  # the states the page has a colour for


def _resource(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def csp_source(text: str) -> str:
    """The CSP source that allows exactly this inline ``<script>`` or ``<style>`` text."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


@functools.lru_cache(maxsize=1)
def _page() -> tuple[Any, str, str, str]:
    """(the compiled template, its style, its script, the Content-Security-Policy)."""
    try:
        import jinja2
    except ImportError as exc:
        raise MissingExtra(
            "the HTML report needs jinja2: pip install 'mpbackend[report]'") from exc
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    # tojson: compact, ASCII only (U+2028/U+2029 escaped), and never NaN, which
    # JSON.parse rejects (charts hold finite numbers only).
    env.policies["json.dumps_kwargs"] = {"sort_keys": False, "ensure_ascii": True,
                                         "allow_nan": False, "separators": (",", ":")}
    template = env.from_string(_resource(TEMPLATE))
    swatches = "".join(f".swatch.c{i} {{ background: {c}; }}\n" for i, c in enumerate(PALETTE))
    style = "\n" + _resource(STYLE) + swatches
    script = "\n" + _resource(SCRIPT)
    csp = "; ".join((
        "default-src 'none'",  # nothing is loaded: no font, frame, fetch
        "img-src data:",  # images only from the page itself (the logged images, inlined)
        f"script-src {csp_source(script)}",  # this script only: no other, no event handler
        f"style-src {csp_source(style)}",  # this style sheet only: no style attribute
        "base-uri 'none'", "form-action 'none'"))  # these two do not fall back to default
    return template, style, script, csp


def html_report(runs: Sequence[Any], output: str, keys: Sequence[str] | None = None,
                x: str = "_step", points: int = DEFAULT_POINTS,
                title: str | None = None,
                errors: dict[str, str] | None = None) -> dict[str, int]:
    """Write one self-contained HTML page about ``runs`` to ``output``.

    A chart per metric (``keys``, or every numeric key any run logged), all runs
    overlaid against ``x``; a chart per system metric when the runs have them;
    a run table and a config table. Returns counts: ``charts``, ``system_charts``.
    MissingExtra if jinja2 is not installed.

    A run whose history or system metrics a reader refuses (StoreError: a
    damaged or hostile file) is left out of the page and the others are
    reported: its message is kept in ``errors`` (run directory -> message, as
    ``Api.errors``) when given, else given to ``warnings.warn``. StoreError,
    and nothing written, if no run is left.
    """
    template, style, script, csp = _page()  # first: MissingExtra before any work
    from markupsafe import Markup  # jinja2's own dependency: there, since _page() is
    kept: list[Any] = []
    history: list[dict[str, Series]] = []
    systems: list[dict[str, Series]] = []
    refused: dict[str, str] = {}
    for run in runs:
        try:
            series = read_series(run.dir, keys, x)
            system = rows_series(system_rows(run))
        except StoreError as exc:
            refused[run.dir] = str(exc)
            continue
        kept.append(run)
        history.append(series)
        systems.append(system)
    if errors is not None:
        errors.update(refused)
    else:
        for run_dir, message in refused.items():
            warnings.warn(printable(f"mpbackend report: left out {run_dir}: {message}"),
                          stacklevel=2)
    if refused and not kept:
        if len(refused) == 1:
            raise StoreError(f"no run to report: {next(iter(refused.values()))}")
        raise StoreError(f"no run to report: none of the {len(runs)} runs can be read")
    runs = kept
    if keys is None:
        keys = list(dict.fromkeys(k for series in history for k in series))
    sys_keys = list(dict.fromkeys(k for series in systems for k in series))
    metric_charts = _charts_for(history, keys, points)
    system_charts = _charts_for(systems, sys_keys, points)
    labels = [printable(run_label(run)) for run in runs]
    media = [_media(i, run) for i, run in enumerate(runs)]
    logged_charts = [c for m in media for c in m["charts"]]
    sections = [(x, metric_charts), ("_runtime (s)", system_charts), ("", logged_charts)]
    data = {  # for the script: what it draws, and the text it writes (textContent, fillText)
        "runs": [{"label": label, "colour": colour(i)} for i, label in enumerate(labels)],
        "sections": [{"x": printable(axis), "charts": [
            {"key": printable(c["key"]), "lines": c["lines"], "x": printable(c.get("x", ""))}
            for c in charts]} for axis, charts in sections],
    }
    title = title or ("mpbackend report: " + ", ".join(labels[:4])
                      + (f" and {len(runs) - 4} more" if len(runs) > 4 else ""))
    shown = [c["key"] for c in metric_charts[:8]]  # the summary columns of the run table
    page = template.render(
        title=printable(title), csp=csp, style=Markup(style), script=Markup(script),
        generated=time.strftime("%Y-%m-%d %H:%M:%S"),
        total=len(metric_charts) + len(system_charts) + len(logged_charts),
        colours=len(PALETTE),
        images=[g for m in media for g in m["images"]],
        tables=[t for m in media for t in m["tables"]],
        run_heads=["", "run", "id", "project", "state", "steps", "runtime", "created",
                   *map(printable, shown)],
        runs=[_run_row(i, run, shown) for i, run in enumerate(runs)],
        sections=[_section(n, charts, labels) for n, (_, charts) in enumerate(sections)],
        config=_config(runs, labels), data=data)
    tmp = f"{output}.partial"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(page)
    os.replace(tmp, output)
    return {"charts": len(metric_charts), "system_charts": len(system_charts)}


# What the template shows, as plain strings (it escapes them) made printable.


def _run_row(i: int, run: Any, shown: Sequence[str]) -> dict[str, Any]:
    state = printable(run.state)
    return {"colour": i % len(PALETTE), "name": printable(run.name), "id": printable(run.id),
            "project": printable(run.project), "state": state,
            "state_class": state if state in KNOWN_STATES else "other",
            "steps": printable(run.step), "runtime": duration(runtime(run)),
            "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(run.created_at)),
            "cells": [format_value(flat_summary(run.summary).get(k)) for k in shown]}


def _section(index: int, charts: list[dict[str, Any]], labels: list[str]) -> dict[str, Any]:
    return {"index": index, "charts": [
        {"key": printable(chart["key"]),
         "lines": [{"colour": line.get("swatch", line["run"]) % len(PALETTE),
                    "label": printable(line.get("label", labels[line["run"]])),
                    "n": line["n"]} for line in chart["lines"]]}
        for chart in charts]}


# -- media: the last images of each image key, and the charts logged with wandb.plot --

IMAGE_TYPES = ("image-file", "images/separated")
LAST_IMAGES = 4  # the last logged images shown per key
MAX_INLINE = 2 << 20  # an image file larger than this is named, not inlined
_MIME = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
         (b"GIF8", "image/gif"), (b"BM", "image/bmp"))


def _data_uri(ref: Any) -> str | None:
    """An image file as a data: URI, if it is a PNG, JPEG, GIF or BMP of a sane size."""
    try:
        path = ref.path
        if not path.is_file() or path.stat().st_size > MAX_INLINE:
            return None
        data = path.read_bytes()
    except (OSError, ValueError):
        return None
    for magic, mime in _MIME:
        if data.startswith(magic):
            return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return None


def _media(index: int, run: Any) -> dict[str, Any]:
    """A run's images (the last few of each key), charts and chart tables for the page."""
    from ..media.refs import MediaRef

    label = printable(run_label(run))
    out: dict[str, Any] = {"images": [], "charts": [], "tables": []}
    summary = flat_summary(run.summary)
    for key, value in summary.items():
        if not (isinstance(value, dict) and value.get("_type") in IMAGE_TYPES):
            continue
        rows = [r for r in run.scan_history(keys=[key]) if isinstance(r.get(key), MediaRef)]
        items = []
        for row in rows[-LAST_IMAGES:]:
            for ref in row[key].images:
                src = _data_uri(ref)
                if src is not None:
                    items.append({"src": src, "step": printable(row["_step"]),
                                  "caption": printable(ref.get("caption") or "")})
        if items:
            out["images"].append({"key": printable(key), "run": label, "pictures": items})
    for key, value in summary.items():
        if isinstance(value, MediaRef) and value.kind == "plotly-file":
            _plotly(index, label, key, value, out)
    charts = run.info()["extra"].get("charts")
    for key, spec in (charts.items() if isinstance(charts, dict) else ()):
        ref = summary.get(str(spec.get("table_key"))) if isinstance(spec, dict) else None
        if not isinstance(ref, MediaRef) or ref.kind != "table-file":
            continue
        try:
            frame = ref.table()
        except Exception:  # a damaged table file: the chart is left out, the page drawn
            continue
        _chart(index, label, str(key), spec, frame, out)
    return out


def _plotly(index: int, label: str, key: str, ref: Any, out: dict[str, Any]) -> None:
    """A logged plotly figure (the last one of its key) drawn as lines: each trace
    with numeric ``y`` (and ``x``, else its index); other traces are left out."""
    try:
        if ref.path.stat().st_size > MAX_INLINE:
            return
        figure = json.loads(ref.read())
    except (OSError, ValueError):
        return
    traces = figure.get("data") if isinstance(figure, dict) else None
    lines = []
    for j, trace in enumerate(traces if isinstance(traces, list) else []):
        if not isinstance(trace, dict) or not isinstance(trace.get("y"), list):
            continue
        ys: list[Any] = trace["y"]
        given = trace.get("x")
        xs: list[Any] = given if isinstance(given, list) else list(range(len(ys)))
        points = [(float(x), float(y)) for x, y in zip(xs, ys) if is_number(x) and is_number(y)]
        if points:
            lines.append({"run": index, "swatch": j, "colour": colour(j),
                          "label": printable(trace.get("name") or f"trace {j}"),
                          "n": len(points), "dots": trace.get("mode") == "markers",
                          "x": [p[0] for p in points], "y": [p[1] for p in points]})
    if lines:
        out["charts"].append({"key": printable(f"{label}: {key} (plotly)"), "lines": lines,
                              "x": ""})


def _column(frame: Any, name: Any) -> list[Any]:
    return frame[name].tolist() if isinstance(name, str) and name in frame.columns else []


def _chart(index: int, label: str, key: str, spec: dict[str, Any], frame: Any,
           out: dict[str, Any]) -> None:
    """One wandb.plot chart: lines (line, scatter, line_series, pr_curve, roc_curve,
    histogram) drawn on a canvas, tables (bar, confusion_matrix) as tables."""
    stored = spec.get("fields")
    fields: dict[str, Any] = stored if isinstance(stored, dict) else {}
    kind = spec.get("type")
    title = printable(f"{label}: {spec.get('title') or key}")
    if kind in ("line", "scatter", "line_series", "pr_curve", "roc_curve"):
        xs, ys = _column(frame, fields.get("x")), _column(frame, fields.get("y"))
        strokes = _column(frame, fields.get("stroke")) or [""] * len(xs)
        groups: dict[str, list[tuple[float, float]]] = {}
        for x, y, stroke in zip(xs, ys, strokes):
            if is_number(x) and is_number(y):
                groups.setdefault(printable(stroke), []).append((float(x), float(y)))
        lines = []
        for j, (stroke, points) in enumerate(groups.items()):
            if kind != "scatter":
                points.sort()
            lines.append({"run": index, "swatch": j, "colour": colour(j),
                          "label": stroke or label, "n": len(points), "dots": kind == "scatter",
                          "x": [p[0] for p in points], "y": [p[1] for p in points]})
        if lines:
            out["charts"].append({"key": title, "lines": lines,
                                  "x": printable(spec.get("xname") or fields.get("x", ""))})
    elif kind == "histogram":
        values = [float(v) for v in _column(frame, fields.get("value")) if is_number(v)]
        if values:
            lo, hi = min(values), max(values)
            bins = 20
            width = (hi - lo) / bins or 1.0
            counts = [0] * bins
            for v in values:
                counts[min(int((v - lo) / width), bins - 1)] += 1
            centres = [lo + width * (i + 0.5) for i in range(bins)]
            out["charts"].append({"key": title, "x": printable(fields.get("value", "")),
                                  "lines": [{"run": index, "swatch": 0, "colour": colour(0),
                                             "label": "count", "n": len(values),
                                             "x": centres, "y": counts}]})
    elif kind == "bar":
        labels = _column(frame, fields.get("label"))
        values = _column(frame, fields.get("value"))
        out["tables"].append({"title": title, "head": [printable(fields.get("label")),
                                                       printable(fields.get("value"))],
                              "rows": [[printable(a), format_value(b)]
                                       for a, b in zip(labels, values)]})
    elif kind == "confusion_matrix":
        actual, predicted = _column(frame, "Actual"), _column(frame, "Predicted")
        counts = _column(frame, "nPredictions")
        classes = list(dict.fromkeys(map(printable, [*actual, *predicted])))
        cell = {(printable(a), printable(p)): n for a, p, n in zip(actual, predicted, counts)}
        out["tables"].append({"title": title + " (rows: actual, columns: predicted)",
                              "head": ["", *classes],
                              "rows": [[a, *(format_value(cell.get((a, p), 0)) for p in classes)]
                                       for a in classes]})


def _config(runs: Sequence[Any], labels: list[str]) -> dict[str, Any]:
    configs = [flatten(run.config) for run in runs]
    keys = sorted({k for c in configs for k in c})
    rows = []
    for key in keys:
        values = [c.get(key) for c in configs]
        differs = len({json.dumps(v, default=str, sort_keys=True) for v in values}) > 1
        rows.append({"key": printable(key), "differs": differs and len(runs) > 1,
                     "cells": [format_value(v) for v in values]})
    return {"labels": labels, "rows": rows}
