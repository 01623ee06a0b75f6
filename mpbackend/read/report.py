"""Report: runs as pictures, a PNG plot (matplotlib) or one self-contained HTML page.

    run.db --store.RunReader.chunks--> read_series() --> {key: Series(x, y)}
        --> plot_png(): matplotlib, Agg backend, one panel per key, runs overlaid
        --> html_report(): downsample() each series --> inline JSON + inline script
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

Series are downsampled for the page, not for the PNG: each keeps its first and
last point and, in each of ``points / 2`` equal buckets of rows, its smallest
and largest value, so spikes and divergences survive the reduction (a plain
stride would step over them). Non-finite values (NaN, infinities) and values
that are not numbers (strings, lists, booleans) are left out of charts.
"""

from __future__ import annotations

import html
import json
import os
import time
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from ..store.reader import RunReader, spread
from .format import duration, flatten, format_value, is_number

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
    """How a run is named in legends: its name, and its id when the name differs."""
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


def _script_json(value: Any) -> str:
    """JSON that is safe inside a <script> element (no "</script>", no "<!--")."""
    text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


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


def html_report(runs: Sequence[Any], output: str, keys: Sequence[str] | None = None,
                x: str = "_step", points: int = DEFAULT_POINTS,
                title: str | None = None) -> dict[str, int]:
    """Write one self-contained HTML page about ``runs`` to ``output``.

    A chart per metric (``keys``, or every numeric key any run logged), all runs
    overlaid against ``x``; a chart per system metric when the runs have them;
    a run table and a config table. Returns counts: ``charts``, ``system_charts``.
    """
    history = [read_series(run.dir, keys, x) for run in runs]
    systems = [rows_series(system_rows(run)) for run in runs]
    if keys is None:
        keys = list(dict.fromkeys(k for series in history for k in series))
    sys_keys = list(dict.fromkeys(k for series in systems for k in series))
    metric_charts = _charts_for(history, keys, points)
    system_charts = _charts_for(systems, sys_keys, points)
    data = {
        "runs": [{"label": run_label(run), "colour": colour(i)} for i, run in enumerate(runs)],
        "sections": [{"x": x, "charts": metric_charts},
                     {"x": "_runtime (s)", "charts": system_charts}],
    }
    title = title or ("mpbackend report: " + ", ".join(run_label(r) for r in runs[:4])
                      + (f" and {len(runs) - 4} more" if len(runs) > 4 else ""))
    page = (_PAGE.replace("@TITLE@", html.escape(title))
            .replace("@STYLE@", _STYLE)
            .replace("@GENERATED@", html.escape(time.strftime("%Y-%m-%d %H:%M:%S")))
            .replace("@RUNS@", _run_table(runs, [c["key"] for c in metric_charts]))
            .replace("@CONFIG@", _config_table(runs))
            .replace("@METRICS@", _figures(metric_charts, 0, runs,
                                           "No run has numeric history to chart yet."))
            .replace("@SYSTEM@", _system_section(system_charts, runs))
            .replace("@TOTAL@", str(len(metric_charts) + len(system_charts)))
            .replace("@DATA@", _script_json(data))
            .replace("@SCRIPT@", _SCRIPT))
    tmp = f"{output}.partial"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(page)
    os.replace(tmp, output)
    return {"charts": len(metric_charts), "system_charts": len(system_charts)}


def _swatch(i: int) -> str:
    return f'<span class="swatch" style="background:{colour(i)}"></span>'


def _run_table(runs: Sequence[Any], keys: Sequence[str]) -> str:
    shown = list(keys[:8])
    head = ["", "run", "id", "project", "state", "steps", "runtime", "created", *shown]
    out = ["<table class=runs><thead><tr>"]
    out += [f"<th>{html.escape(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for i, run in enumerate(runs):
        cells = [_swatch(i), html.escape(run.name), html.escape(run.id),
                 html.escape(run.project),
                 f'<span class="state {html.escape(run.state)}">{html.escape(run.state)}</span>',
                 str(run.step), duration(runtime(run)),
                 time.strftime("%Y-%m-%d %H:%M", time.localtime(run.created_at))]
        cells += [html.escape(format_value(run.summary.get(k))) for k in shown]
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _config_table(runs: Sequence[Any]) -> str:
    configs = [flatten(run.config) for run in runs]
    keys = sorted({k for c in configs for k in c})
    if not keys:
        return "<p class=note>No config.</p>"
    out = ["<table class=config><thead><tr><th>key</th>"]
    out += [f"<th>{_swatch(i)}{html.escape(run_label(r))}</th>" for i, r in enumerate(runs)]
    out.append("</tr></thead><tbody>")
    for key in keys:
        values = [c.get(key) for c in configs]
        differs = len({json.dumps(v, default=str, sort_keys=True) for v in values}) > 1
        out.append(f'<tr{" class=differs" if differs and len(runs) > 1 else ""}>'
                   f"<th>{html.escape(key)}</th>")
        out += [f"<td>{html.escape(format_value(v))}</td>" for v in values]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _figures(charts: list[dict[str, Any]], section: int, runs: Sequence[Any],
             empty: str) -> str:
    if not charts:
        return f"<p class=note>{html.escape(empty)}</p>"
    out = ['<div class="grid">']
    for n, chart in enumerate(charts):
        legend = "".join(
            f"<li>{_swatch(line['run'])}{html.escape(run_label(runs[line['run']]))}"
            f"<small>{line['n']} point{'s' if line['n'] != 1 else ''}</small></li>"
            for line in chart["lines"])
        out.append(f'<figure class="chart"><figcaption>{html.escape(chart["key"])}</figcaption>'
                   f'<canvas data-section="{section}" data-chart="{n}" height="260"></canvas>'
                   f'<div class="readout"></div><ul class="legend">{legend}</ul></figure>')
    out.append("</div>")
    return "".join(out)


def _system_section(charts: list[dict[str, Any]], runs: Sequence[Any]) -> str:
    if not charts:
        return ""
    return ("<section><h2>System metrics</h2><p class=note>Sampled by the service while the "
            "run was live, against seconds since the run started.</p>"
            + _figures(charts, 1, runs, "") + "</section>")


_STYLE = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 0 auto; padding: 16px 24px; max-width: 1400px; color: #1b1f23; background: #fff; }
h1 { font-size: 20px; margin: 4px 0; } h2 { font-size: 16px; margin: 24px 0 8px; }
.note, #status { color: #57606a; }
table { border-collapse: collapse; margin: 4px 0 12px; }
th, td { border-bottom: 1px solid #e1e4e8; padding: 3px 10px; text-align: left;
         font-variant-numeric: tabular-nums; }
thead th { background: #f6f8fa; }
tr.differs th { color: #c2185b; }
.state.finished { color: #2a9d3f; } .state.running { color: #1f6fd1; }
.state.crashed, .state.failed { color: #d73a49; } .state.interrupted { color: #b26b00; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
          margin-right: 6px; vertical-align: middle; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 16px; }
figure.chart { margin: 0; border: 1px solid #e1e4e8; border-radius: 6px; padding: 8px; }
figcaption { font-weight: 600; margin-bottom: 4px; }
canvas { width: 100%; height: 260px; display: block; }
.readout { min-height: 1.4em; font-size: 12px; color: #57606a; }
ul.legend { list-style: none; padding: 0; margin: 2px 0 0; font-size: 12px; }
ul.legend li { display: inline-block; margin-right: 12px; }
ul.legend small { color: #8b949e; margin-left: 4px; }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@TITLE@</title><style>@STYLE@</style></head>
<body data-charts-total="@TOTAL@">
<h1>@TITLE@</h1>
<div id="status">Drawing charts (this page needs JavaScript for them)...</div>
<p class=note>Written by mpbackend at @GENERATED@. Self-contained: it loads nothing.</p>
<h2>Runs</h2>@RUNS@
<h2>Metrics</h2>@METRICS@
@SYSTEM@
<h2>Config</h2>@CONFIG@
<script type="application/json" id="mp-data">@DATA@</script>
<script>@SCRIPT@</script>
</body></html>
"""

# The drawing script: reads #mp-data, draws each <canvas data-section data-chart>,
# redraws on resize, and shows the values under the pointer in the chart's readout.
_SCRIPT = r"""
(function () {
  "use strict";
  var status = document.getElementById("status");
  var data = JSON.parse(document.getElementById("mp-data").textContent);
  var canvases = Array.prototype.slice.call(document.querySelectorAll("canvas[data-chart]"));

  function fmt(v) {
    if (v === 0) return "0";
    var a = Math.abs(v);
    if (a >= 1e5 || a < 1e-3) return v.toExponential(2).replace("e+", "e");
    return String(Math.round(v * 1e4) / 1e4);
  }
  function ticks(lo, hi, count) {
    var span = hi - lo, step = Math.pow(10, Math.floor(Math.log10(span / count)));
    var err = span / count / step;
    if (err >= 7.5) step *= 10; else if (err >= 3.5) step *= 5; else if (err >= 1.5) step *= 2;
    var out = [], t = Math.ceil(lo / step) * step;
    for (; t <= hi + step * 1e-9; t += step) out.push(Math.abs(t) < step * 1e-9 ? 0 : t);
    return out;
  }
  function bounds(chart) {
    var b = {x0: Infinity, x1: -Infinity, y0: Infinity, y1: -Infinity};
    chart.lines.forEach(function (l) {
      for (var i = 0; i < l.x.length; i++) {
        if (l.x[i] < b.x0) b.x0 = l.x[i]; if (l.x[i] > b.x1) b.x1 = l.x[i];
        if (l.y[i] < b.y0) b.y0 = l.y[i]; if (l.y[i] > b.y1) b.y1 = l.y[i];
      }
    });
    if (b.x0 === b.x1) { b.x0 -= 1; b.x1 += 1; }
    if (b.y0 === b.y1) { var d = Math.abs(b.y0) * 0.1 || 1; b.y0 -= d; b.y1 += d; }
    var pad = (b.y1 - b.y0) * 0.05; b.y0 -= pad; b.y1 += pad;
    return b;
  }
  function draw(canvas, chart, xname, hover) {
    var ratio = window.devicePixelRatio || 1;
    var w = canvas.clientWidth || 400, h = canvas.clientHeight || 260;
    if (canvas.width !== Math.round(w * ratio)) {
      canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio);
    }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var L = 58, R = 12, T = 8, B = 34, pw = w - L - R, ph = h - T - B;
    var b = bounds(chart);
    var sx = function (v) { return L + (v - b.x0) / (b.x1 - b.x0) * pw; };
    var sy = function (v) { return T + ph - (v - b.y0) / (b.y1 - b.y0) * ph; };
    ctx.font = "11px system-ui, sans-serif"; ctx.lineWidth = 1;
    ctx.strokeStyle = "#e6e8eb"; ctx.fillStyle = "#57606a";
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    ticks(b.y0, b.y1, 5).forEach(function (t) {
      var y = Math.round(sy(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(L, y); ctx.lineTo(L + pw, y); ctx.stroke();
      ctx.fillText(fmt(t), L - 6, y);
    });
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    ticks(b.x0, b.x1, Math.max(2, Math.floor(pw / 90))).forEach(function (t) {
      var x = Math.round(sx(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, T); ctx.lineTo(x, T + ph); ctx.stroke();
      ctx.fillText(fmt(t), x, T + ph + 4);
    });
    ctx.fillText(xname, L + pw / 2, T + ph + 18);
    ctx.strokeStyle = "#8b949e"; ctx.strokeRect(L + 0.5, T + 0.5, pw, ph);
    ctx.save(); ctx.beginPath(); ctx.rect(L, T, pw, ph); ctx.clip();
    chart.lines.forEach(function (l) {
      ctx.strokeStyle = ctx.fillStyle = data.runs[l.run].colour; ctx.lineWidth = 2;
      ctx.beginPath();
      for (var i = 0; i < l.x.length; i++) {
        var px = sx(l.x[i]), py = sy(l.y[i]);
        if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
      }
      ctx.stroke();
      if (l.x.length < 40) {
        for (var j = 0; j < l.x.length; j++) {
          ctx.beginPath(); ctx.arc(sx(l.x[j]), sy(l.y[j]), 2.5, 0, 2 * Math.PI); ctx.fill();
        }
      }
    });
    ctx.restore();
    if (hover !== undefined) {
      var xv = b.x0 + (hover - L) / pw * (b.x1 - b.x0), parts = [];
      ctx.strokeStyle = "#57606a"; ctx.beginPath();
      ctx.moveTo(hover + 0.5, T); ctx.lineTo(hover + 0.5, T + ph); ctx.stroke();
      chart.lines.forEach(function (l) {
        var lo = 0, hi = l.x.length - 1;
        while (hi - lo > 1) {
          var mid = (lo + hi) >> 1;
          if (l.x[mid] < xv) lo = mid; else hi = mid;
        }
        var i = Math.abs(l.x[lo] - xv) <= Math.abs(l.x[hi] - xv) ? lo : hi;
        parts.push(data.runs[l.run].label + ": " + fmt(l.y[i]) + " @ " + fmt(l.x[i]));
      });
      return parts.join("   ");
    }
    return "";
  }
  function spec(canvas) {
    var section = data.sections[+canvas.dataset.section];
    return {chart: section.charts[+canvas.dataset.chart], x: section.x};
  }
  function drawAll() {
    var drawn = 0;
    canvases.forEach(function (canvas) {
      var s = spec(canvas);
      draw(canvas, s.chart, s.x);
      drawn += 1;
    });
    document.body.dataset.chartsDrawn = String(drawn);
    status.textContent = drawn + " of " + canvases.length + " charts drawn.";
  }
  try {
    drawAll();
    canvases.forEach(function (canvas) {
      var readout = canvas.parentNode.querySelector(".readout");
      canvas.addEventListener("mousemove", function (ev) {
        var s = spec(canvas), r = canvas.getBoundingClientRect();
        readout.textContent = draw(canvas, s.chart, s.x, ev.clientX - r.left);
      });
      canvas.addEventListener("mouseleave", function () {
        var s = spec(canvas); draw(canvas, s.chart, s.x); readout.textContent = "";
      });
    });
    var pending = null;
    window.addEventListener("resize", function () {
      clearTimeout(pending); pending = setTimeout(drawAll, 100);
    });
  } catch (err) {
    document.body.dataset.chartsError = String(err);
    status.textContent = "Charts could not be drawn: " + err;
  }
})();
"""
