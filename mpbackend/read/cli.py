"""The ``mpbackend`` command: look at stored runs from a terminal.

    mpbackend ls | show | export | plot | report | tail
        --> resolve RUN (an id, project/id, a name, or a run directory)
        --> api.ApiRun / store.RunReader (read-only, live runs included)
        --> rich tables on the terminal, files (csv, jsonl, parquet, png, html)

Like every reader, the command only opens run databases read-only, so it can be
pointed at a run that is being written. Runs are looked up under ``--dir``
(environment ``MPBACKEND_DIR``, default ``./mpruns``), the library's default.

click (the command line) and rich (tables, progress bar) are imported here only,
so ``import mpbackend`` in a training script does not pay for them; matplotlib
(``plot``) and pyarrow (``export --format parquet``) are optional extras and a
missing one is named with the ``pip install`` that brings it.

Every expected failure (no such run, an unreadable database, an empty run, a
missing extra, an unwritable output) ends with one ``Error:`` line on stderr and
exit status 1; usage errors exit 2; Ctrl-C exits 130. No traceback is shown
unless ``MPBACKEND_DEBUG=1``.

Nothing read from a run is written to the terminal as it is: names, ids,
projects, states, keys, values, paths and the error messages that quote them go
through ``escape()`` (rich markup escaped, control characters shown as escapes
by ``format.printable``) or ``printable`` itself, so a run named
``"\\x1b]0;x\\x07"`` is listed as that text and cannot retitle or clear the
terminal. ``export`` writes data, not terminal output: its files keep every
value as stored.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import sqlite3
import sys
import time
from collections.abc import Generator, Iterator, Sequence
from contextlib import ExitStack, closing
from typing import Any

import click
import psutil
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..shared import environ
from ..shared.errors import StoreError
from ..shared.paths import DB_NAME
from ..shared.states import TERMINAL_STATES
from ..shared.version import __version__
from ..store.reader import RunReader, pivot
from . import report
from .api import Api, ApiRun, stored_columns
from .format import (
    duration,
    flat_summary,
    flatten,
    format_value,
    is_number,
    media_text,
    printable,
)

EXIT_ERROR = 1
EXIT_RUN_FAILED = 3  # tail: the run ended, but not "finished"
EXIT_INTERRUPTED = 130
PROGRESS_MIN_ROWS = 20_000  # show the export progress bar from this many rows on
STALE_GRACE = 3.0  # tail: seconds to give the watchdog (about 2 s) before calling a run abandoned

_console: Console | None = None
_err_console: Console | None = None


def out() -> Console:
    """The console for results (stdout)."""
    global _console
    if _console is None:
        # Piped output is not cut to 80 columns: a row stays one line for grep and friends.
        wide = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS") or 0) or 4000
        _console = Console(highlight=False, soft_wrap=False, width=wide)
    return _console


def err() -> Console:
    """The console for notes, warnings and the progress bar (stderr)."""
    global _err_console
    if _err_console is None:
        _err_console = Console(stderr=True, highlight=False, soft_wrap=True)
    return _err_console


class CliError(click.ClickException):
    """An expected failure: printed as one ``Error:`` line, exit status 1.

    The message may quote a run's id, name or keys: its control characters are
    shown as escapes.
    """

    exit_code = EXIT_ERROR

    def format_message(self) -> str:
        return printable(self.message)


# -- finding runs --------------------------------------------------------------------


def open_run(ref: str, root: str) -> ApiRun:
    """The run ``ref`` names: a run directory or its run.db, an id, project/id, or a name."""
    path = os.path.expanduser(ref)
    if os.path.basename(path) == DB_NAME and os.path.isfile(path):
        path = os.path.dirname(path) or "."
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, DB_NAME)):
            raise CliError(f"{ref} is a directory but holds no run ({DB_NAME} is missing)")
        return _load(path)
    api = Api(root)
    try:
        return api.run(ref)
    except KeyError:
        pass
    except StoreError as exc:
        raise CliError(str(exc)) from exc
    named = [r for r in api.runs(order="-created_at") if r.name == ref]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        ids = ", ".join(r.path for r in named)
        raise CliError(f"{len(named)} runs are named {ref!r} ({ids}); give an id")
    where = api.dir if os.path.isdir(api.dir) else f"{api.dir} (which does not exist)"
    raise CliError(f"no run {ref!r} under {where}; `mpbackend ls --dir DIR` lists the runs")


def _load(run_dir: str) -> ApiRun:
    try:
        return ApiRun(run_dir)
    except StoreError as exc:
        raise CliError(f"cannot read the run in {run_dir}: {exc}") from exc


def open_runs(refs: Sequence[str], root: str, project: str | None) -> list[ApiRun]:
    """Runs by reference, or every run (of ``project``) under ``root`` when none is given."""
    if refs:
        return [open_run(ref, root) for ref in refs]
    api = Api(root)
    runs = api.runs(project=project)
    warn_skipped(api.errors)
    if not runs:
        raise CliError(f"no runs under {os.path.abspath(root)}"
                       + (f" in project {project!r}" if project else ""))
    return runs


def warn_skipped(errors: dict[str, str]) -> None:
    """A warning on stderr for each run left out (run directory -> why, as ``Api.errors``)."""
    for run_dir, message in errors.items():
        err().print(f"[yellow]warning:[/] skipped {escape(run_dir)}: {escape(message)}")


def liveness(run: ApiRun) -> str | None:
    """For a run stored as running: why it may not really be, or None if it may be live.

    The run row keeps the training process's host and pid. If that process is
    gone (on this host) the service's watchdog marks the run crashed within a few
    seconds, unless the service died with it; then the row says running forever.
    """
    if run.state != "running":
        return None
    info = run.info()
    pid, host = info.get("pid"), info.get("host")
    if not pid or host != socket.gethostname():
        return None
    try:
        proc = psutil.Process(pid)
        if proc.create_time() <= run.created_at + 1.0 and proc.status() != psutil.STATUS_ZOMBIE:
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        pass
    return f"its process {pid} is gone"


# -- formatting ----------------------------------------------------------------------


MAX_WHEN = 253402300799  # 9999-12-31 23:59:59 UTC: the last time ``when`` shows as one


def when(ts: Any) -> str:
    """A timestamp as local date and time ("" for None or 0).

    A value that is not a time within ``0..MAX_WHEN`` (a summary ``_timestamp``
    is user data: 1e300, -5, NaN, a bool, a string) is shown as text by
    ``format_value``: ``time.localtime`` would raise on it.
    """
    if ts is None or (is_number(ts) and ts == 0):
        return ""
    if is_number(ts) and 0 < ts <= MAX_WHEN:
        try:
            return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
        except (OverflowError, OSError, ValueError):  # a platform's narrower time_t
            pass
    return format_value(ts)


_STATE_STYLE = {"finished": "green", "running": "cyan", "failed": "red", "crashed": "red",
                "interrupted": "yellow"}


def state_text(run: ApiRun) -> Text:
    """The run's state, coloured, with its exit code and whether its process is gone."""
    text = Text(printable(run.state), style=_STATE_STYLE.get(run.state, ""))
    stale = liveness(run)
    if stale:
        text.append(f" ({printable(stale)})", style="red")
    if run.exit_code not in (None, 0):
        text.append(f" (exit {printable(run.exit_code)})")
    return text


def escape(text: Any) -> str:
    """``text`` (str() of it) as rich markup that prints as that text, and only as text.

    For anything read from a run (names, ids, paths, states, keys, values):
    control characters are shown as escapes (``format.printable``: ``\\x1b``,
    ``\\u202e``), so none reaches the terminal, and rich markup is escaped.
    """
    from rich.markup import escape as rich_escape

    return rich_escape(printable(text))


def kv_table(title: str, items: Sequence[tuple[str, Any]]) -> Table:
    """A two-column key/value table; rich Text values keep their style."""
    table = Table(title=title, title_justify="left", show_header=False, box=None,
                  padding=(0, 2, 0, 0))
    table.add_column(style="bold", overflow="fold")
    table.add_column(overflow="fold")
    for key, value in items:
        table.add_row(escape(key),
                      value if isinstance(value, Text) else escape(format_value(value)))
    return table


# -- the command ---------------------------------------------------------------------


def _dir_option(fn: Any) -> Any:
    return click.option(
        "--dir", "root", default=lambda: environ.runs_dir() or "mpruns",
        show_default="MPBACKEND_DIR, <WANDB_DIR>/mpruns or mpruns",
        type=click.Path(file_okay=False),
        help="Where runs are stored (<dir>/<project>/<run id>/run.db).")(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog="RUN is a run id, project/id, a run name, or a run directory. Exit status: "
                    "0 ok, 1 error (no such run, unreadable, nothing to show), 2 usage, "
                    "130 Ctrl-C.")
@click.version_option(__version__, message="mpbackend %(version)s")
def cli() -> None:
    """Look at mpbackend runs: list, show, export, plot, report, and follow live ones."""


@cli.command("ls")
@_dir_option
@click.option("--project", "-p", help="Only runs of this project.")
@click.option("--state", "-s", "states", multiple=True,
              type=click.Choice(["running", *TERMINAL_STATES]),
              help="Only runs in this state (repeatable: any of them).")
@click.option("--tag", "-t", "tags", multiple=True,
              help="Only runs with this tag (repeatable: all of them).")
@click.option("--metric", "-m", "metrics", multiple=True,
              help="Also show this summary metric as a column (repeatable).")
@click.option("--limit", "-n", type=click.IntRange(min=1), help="Show at most this many runs.")
def ls_cmd(root: str, project: str | None, states: tuple[str, ...], tags: tuple[str, ...],
           metrics: tuple[str, ...], limit: int | None) -> None:
    """List the runs under --dir, newest first: id, name, project, state, steps, runtime."""
    filters: dict[str, Any] = {}
    if states:
        filters["state"] = {"$in": list(states)}
    if tags:
        filters["$and"] = [{"tags": tag} for tag in tags]
    api = Api(root)
    runs = api.runs(project=project, filters=filters or None)
    warn_skipped(api.errors)
    if not runs:
        if not os.path.isdir(api.dir):
            err().print(f"no runs: {escape(api.dir)} does not exist")
        else:
            err().print(f"no runs under {escape(api.dir)}"
                        + (" match" if filters or project else ""))
        return
    shown = runs[:limit] if limit else runs
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("id", "name", "project", "state", "steps", "runtime", "created", *metrics):
        table.add_column(escape(name), overflow="fold",
                         justify="right" if name in ("steps", "runtime") or name in metrics
                         else "left")
    for run in shown:
        table.add_row(escape(run.id), escape(run.name), escape(run.project), state_text(run),
                      escape(run.step), duration(report.runtime(run)),
                      escape(when(run.created_at)),
                      *(escape(format_value(_summary_value(run, m))) for m in metrics))
    out().print(table)
    if limit and len(runs) > limit:
        err().print(f"({len(runs) - limit} more; --limit to see them)")


def _summary_value(run: ApiRun, key: str) -> Any:
    if key in run.summary:
        return run.summary[key]
    return flat_summary(run.summary).get(key)


@cli.command("show")
@_dir_option
@click.argument("run_ref", metavar="RUN")
def show_cmd(root: str, run_ref: str) -> None:
    """Show one run: metadata, config, summary, history keys and system metrics."""
    run = open_run(run_ref, root)
    with RunReader(run.dir) as reader:
        rows = reader.row_count()
        keys = reader.keys()
    info = run.info()
    extra = info.get("extra") or {}
    items: list[tuple[str, Any]] = [
        ("id", run.id), ("name", run.name), ("project", run.project),
        ("state", state_text(run)), ("dir", run.dir),
        ("created", when(run.created_at)), ("updated", when(run.updated_at)),
        ("runtime", duration(report.runtime(run))), ("steps", run.step),
        ("rows", rows)]
    for key in ("tags", "notes", "group", "job_type", "host", "pid"):
        value = info.get(key)
        if value not in (None, "", []):
            items.append((key, ", ".join(map(str, value)) if isinstance(value, list)
                          else value))
    for key in ("dropped_steps", "dropped_records", "lost_rows"):
        if extra.get(key):
            items.append((key.replace("_", " "), extra[key]))
    console = out()
    console.print(kv_table("Run", items))
    config = flatten(run.config)
    console.print()
    console.print(kv_table("Config", sorted(config.items())) if config else "Config: (empty)")
    summary = [(k, when(v) if k == "_timestamp" and is_number(v) else v)
               for k, v in flat_summary(run.summary).items()]
    console.print()
    console.print(kv_table("Summary", summary) if summary else "Summary: (empty)")
    console.print()
    if rows:
        console.print(f"[bold]History[/]: {rows} rows, keys: "
                      + escape(", ".join(k for k in keys)))
    else:
        note = " yet (the run is live)" if run.state == "running" and not liveness(run) else ""
        console.print(f"[bold]History[/]: no rows logged{note}")
    media = [f"{k} ({media_text(v)})" for k, v in flat_summary(run.summary).items()
             if isinstance(v, dict) and isinstance(v.get("_type"), str)]
    charts = extra.get("charts")
    if media or charts:
        console.print("[bold]Media[/]: " + escape(", ".join(media) or "none")
                      + (f"; charts: {escape(', '.join(map(str, charts)))}" if charts else ""))
    _show_system(run, console)


def _show_system(run: ApiRun, console: Console) -> None:
    try:
        samples = report.system_rows(run)
    except Exception as exc:  # an optional section: report it, show the rest
        console.print(f"\n[bold]System metrics[/]: could not be read ({escape(str(exc))})")
        return
    if not samples:
        return
    series = report.rows_series(samples)
    table = Table(title=f"System metrics ({len(samples)} samples)", title_justify="left",
                  box=None, header_style="bold", pad_edge=False)
    for name in ("metric", "last", "min", "mean", "max"):
        table.add_column(name, justify="left" if name == "metric" else "right",
                         overflow="fold")
    for key, s in series.items():
        table.add_row(escape(key), format_value(s.y[-1]), format_value(min(s.y)),
                      format_value(sum(s.y) / len(s.y)), format_value(max(s.y)))
    console.print()
    console.print(table)


# -- export --------------------------------------------------------------------------


def _columns(all_keys: Sequence[str], keys: Sequence[str] | None) -> list[str]:
    if keys:
        return ["_step", *[k for k in dict.fromkeys(keys) if k != "_step"]]
    tail = [k for k in ("_runtime", "_timestamp") if k in all_keys]
    return ["_step", *[k for k in all_keys if k not in tail and k != "_step"], *tail]


def _rows(reader: RunReader, total: int, keys: Sequence[str] | None,
          advance: Any) -> Generator[dict[str, Any], None, None]:
    """The first ``total`` rows (a live run's later rows are not part of this export)."""
    done = 0
    wanted = None if not keys else [k for k in keys if k != "_step"]
    with closing(reader.chunks(keys=wanted)) as chunks:  # ends its read while the db is open
        for steps, columns in chunks:
            rows = pivot(steps, columns)
            if done + len(rows) > total:
                rows = rows[:total - done]
            for row in rows:
                if wanted is None or any(k in row for k in wanted):
                    yield row
            done += len(rows)
            advance(len(rows))
            if done >= total:
                return


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, default=str, separators=(",", ":"))
    if isinstance(value, float):
        return repr(value)  # round-trips exactly; nan, inf as such
    return value


def _write_csv(fh: Any, columns: list[str], rows: Iterator[dict[str, Any]]) -> int:
    writer = csv.writer(fh)
    writer.writerow(columns)
    n = 0
    for row in rows:
        writer.writerow([_csv_cell(row.get(c)) for c in columns])
        n += 1
    return n


def _write_jsonl(fh: Any, columns: list[str], rows: Iterator[dict[str, Any]]) -> int:
    n = 0
    for row in rows:
        fh.write(json.dumps({c: row[c] for c in columns if c in row}, default=str,
                            separators=(",", ":")))
        fh.write("\n")
        n += 1
    return n


def _arrow_column(pa: Any, values: list[Any]) -> Any:
    """An arrow array for one column: numbers, strings, bools, lists; else JSON text."""
    try:
        kinds = {type(v) for v in values if v is not None}
        if kinds == {int, float}:
            values = [None if v is None else float(v) for v in values]
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        return pa.array([None if v is None else json.dumps(v, default=str) for v in values],
                        type=pa.string())


def _write_parquet(path: str, reader: RunReader, total: int, columns: list[str],
                   keys: Sequence[str], advance: Any) -> int:
    """The first ``total`` rows as a parquet file, column by column: numbers go from
    the stored arrays to arrow arrays (null where a key was not logged) without a
    Python object per value; other columns as ``_arrow_column`` makes them."""
    try:
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise CliError("parquet export needs pyarrow: pip install 'mpbackend[parquet]'") from exc
    wanted = [k for k in keys if k != "_step"]
    steps, found = stored_columns(reader, wanted or None, plain=True)
    steps = steps[:total]
    keep = None
    if wanted:  # the rows that logged one of the keys, as the csv and jsonl exports
        keep = np.zeros(len(steps), dtype=bool)
        for key in wanted:
            if key in found:
                keep |= found[key][1][:total]
    arrays: dict[str, Any] = {}
    for name in columns:
        if name == "_step":
            arrays[name] = pa.array(steps if keep is None else steps[keep])
            continue
        if name not in found:
            arrays[name] = pa.nulls(len(steps) if keep is None else int(keep.sum()))
            continue
        values, present = (part[:total] for part in found[name])
        if keep is not None:
            values, present = values[keep], present[keep]
        if values.dtype == object:
            arrays[name] = _arrow_column(pa, [v if p else None
                                              for v, p in zip(values.tolist(), present)])
        else:  # no mask where every row logged it: arrow takes the array as it is
            arrays[name] = pa.array(values, mask=None if present.all() else ~present)
    table = pa.table(arrays)
    # A dictionary only pays for text and the like: tried on floats (each value
    # distinct) it doubles the time of the write and makes the file larger.
    pq.write_table(table, path, use_dictionary=[
        f.name for f in table.schema
        if not (pa.types.is_floating(f.type) or pa.types.is_integer(f.type))])
    advance(total)
    return table.num_rows


class _Progress:
    """A rich progress bar on stderr for long exports; nothing for short ones."""

    def __init__(self, total: int, mode: bool | None, label: str) -> None:
        show = total >= PROGRESS_MIN_ROWS and err().is_terminal if mode is None else mode
        self.bar = None
        if show:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                MofNCompleteColumn(), TextColumn("rows"),
                                TimeRemainingColumn(), console=err(), transient=False)
            self.task = self.bar.add_task(label, total=total)

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.start()
        return self

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


@cli.command("export")
@_dir_option
@click.argument("run_ref", metavar="RUN")
@click.option("--format", "-f", "fmt_", type=click.Choice(["csv", "jsonl", "parquet"]),
              help="Output format (default: from the file's extension, else csv).")
@click.option("--output", "-o", required=True,
              help="The file to write ('-' for stdout, csv and jsonl only).")
@click.option("--key", "-k", "keys", multiple=True,
              help="Only these columns (and _step), and rows that have one of them "
                   "(repeatable).")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar (default: on a terminal, for long runs).")
def export_cmd(root: str, run_ref: str, fmt_: str | None, output: str, keys: tuple[str, ...],
               progress: bool | None) -> None:
    """Export a run's history, one row per step, to csv, jsonl or parquet.

    Columns are _step, the logged keys in the order first logged, then _runtime
    and _timestamp. In csv a missing value is an empty cell and lists and dicts
    are JSON; jsonl rows hold only the keys logged at that step (NaN and
    infinities as NaN, Infinity). A live run is exported as far as it is stored
    when the export starts.
    """
    if fmt_ is None:
        ext = os.path.splitext(output)[1].lower().lstrip(".")
        fmt_ = ext if ext in ("csv", "jsonl", "parquet") else "json" if ext == "json" else "csv"
        if fmt_ == "json":
            fmt_ = "jsonl"
    if output == "-" and fmt_ == "parquet":
        raise CliError("parquet cannot be written to stdout; give a file with -o")
    if fmt_ == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise CliError("parquet export needs pyarrow: "
                           "pip install 'mpbackend[parquet]'") from exc
    run = open_run(run_ref, root)
    with ExitStack() as stack:
        reader = stack.enter_context(RunReader(run.dir))
        total = reader.row_count()  # first: a key logged later is then at worst an extra column
        columns = _columns(reader.keys(), keys)
        if not total:
            raise CliError(f"run {run.path} has no history rows"
                           + (" yet (it is still running)" if run.state == "running" else "")
                           + "; nothing exported")
        with _Progress(total, progress, f"export {run.id}") as bar:
            rows = stack.enter_context(closing(_rows(reader, total, keys, bar.advance)))
            if output == "-":
                writer = _write_csv if fmt_ == "csv" else _write_jsonl
                n = writer(sys.stdout, columns, rows)
                sys.stdout.flush()
                return
            tmp = f"{output}.partial"
            try:
                if fmt_ == "parquet":
                    n = _write_parquet(tmp, reader, total, columns, keys, bar.advance)
                else:
                    with open(tmp, "w", encoding="utf-8", newline="") as fh:
                        n = (_write_csv if fmt_ == "csv" else _write_jsonl)(fh, columns, rows)
                os.replace(tmp, output)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    err().print(f"wrote {n} rows x {len(columns)} columns of {escape(run.path)} "
                f"({escape(run.state)}) to {escape(output)}")


# -- plot and report -----------------------------------------------------------------


@cli.command("plot")
@_dir_option
@click.argument("run_refs", metavar="RUN...", nargs=-1, required=True)
@click.option("--key", "-k", "keys", multiple=True, required=True,
              help="The metric to plot (repeatable: one panel each).")
@click.option("--x", "x", default="_step", show_default=True,
              help="The x axis: _step, _runtime, or any logged key.")
@click.option("--output", "-o", help="The image to write; png, svg or pdf by its extension "
                                     "[default: KEY.png].")
@click.option("--width", type=click.IntRange(100, 10000), default=1000, show_default=True,
              help="Width in pixels.")
@click.option("--height", type=click.IntRange(100, 10000), default=600, show_default=True,
              help="Height in pixels.")
@click.option("--logy", is_flag=True, help="A log scale for y.")
@click.option("--title", help="A title above the plot.")
def plot_cmd(root: str, run_refs: tuple[str, ...], keys: tuple[str, ...], x: str,
             output: str | None, width: int, height: int, logy: bool,
             title: str | None) -> None:
    """Plot metrics of one or more runs, overlaid, to an image (needs mpbackend[plot])."""
    runs = open_runs(run_refs, root, None)
    keys = tuple(dict.fromkeys(keys))
    output = output or "".join(c if c.isalnum() or c in "-_." else "_" for c in keys[0]) + ".png"
    missing: dict[str, list[str]] = {}
    refused: dict[str, str] = {}
    readable = []
    for run in runs:  # a run whose history is refused is left out, as report does
        try:
            missing[run.path] = list(report.read_series(run.dir, keys, x))
        except StoreError as exc:
            refused[run.dir] = str(exc)
            continue
        readable.append(run)
    if not readable:
        raise CliError(f"no run to plot: {'; '.join(refused.values())}")
    warn_skipped(refused)
    runs = readable
    nothing = [k for k in keys if not any(k in found for found in missing.values())]
    if nothing:
        raise CliError(f"no numeric {', '.join(map(repr, nothing))} against {x!r} in "
                       f"{'these runs' if len(runs) > 1 else runs[0].path}"
                       + _known_keys(runs))
    for path, found in missing.items():
        absent = [k for k in keys if k not in found]
        if absent:
            err().print(f"[yellow]warning:[/] {escape(path)} has no numeric "
                        f"{escape(', '.join(absent))}")
    try:
        report.plot_png(runs, keys, output, x=x, width=width, height=height, logy=logy,
                        title=title)
    except report.MissingExtra as exc:
        raise CliError(str(exc)) from exc
    err().print(f"wrote {escape(output)} ({width}x{height}): {escape(', '.join(keys))} of "
                f"{len(runs)} run{'s' if len(runs) > 1 else ''}")


def _known_keys(runs: Sequence[ApiRun]) -> str:
    keys: dict[str, None] = {}
    for run in runs:
        with RunReader(run.dir) as reader:
            keys.update(dict.fromkeys(reader.keys()))
    if not keys:
        return " (no rows are logged)"
    return f" (logged keys: {', '.join(list(keys)[:20])}{', ...' if len(keys) > 20 else ''})"


@cli.command("report")
@_dir_option
@click.argument("run_refs", metavar="[RUN]...", nargs=-1)
@click.option("--project", "-p", help="With no RUN: every run of this project.")
@click.option("--output", "-o", default="report.html", show_default=True,
              help="The HTML file to write.")
@click.option("--key", "-k", "keys", multiple=True,
              help="Chart only these metrics (repeatable; default: every numeric key).")
@click.option("--x", "x", default="_step", show_default=True,
              help="The x axis of metric charts: _step, _runtime, or any logged key.")
@click.option("--points", type=click.IntRange(10, 1_000_000), default=report.DEFAULT_POINTS,
              show_default=True, help="At most about this many points per line.")
@click.option("--title", help="The page title.")
def report_cmd(root: str, run_refs: tuple[str, ...], project: str | None, output: str,
               keys: tuple[str, ...], x: str, points: int, title: str | None) -> None:
    """Write one self-contained HTML report of runs: a run table, a chart per metric.

    All runs are overlaid in each chart; system metrics, when stored, get a chart
    each in their own section. The file loads nothing from anywhere (no server,
    no network): open it in any browser, offline. With no RUN, every run under
    --dir (of --project) is included. Needs jinja2: pip install 'mpbackend[report]'.
    """
    runs = open_runs(run_refs, root, project)
    refused: dict[str, str] = {}  # run directory -> why its history cannot be read
    try:
        counts = report.html_report(runs, output, keys=list(keys) or None, x=x, points=points,
                                    title=title, errors=refused)
    except report.MissingExtra as exc:
        raise CliError(str(exc)) from exc
    except StoreError as exc:  # not one run left: nothing written
        if len(refused) > 1:
            warn_skipped(refused)
        raise CliError(f"{exc}; nothing written") from exc
    warn_skipped(refused)
    runs = [run for run in runs if run.dir not in refused]
    for run in runs:
        if run.state == "running":
            stale = liveness(run)
            err().print(f"note: {escape(run.path)} is "
                        + (f"marked running but {escape(stale)}" if stale
                           else "still running; the report shows it as stored now"))
    if keys:
        charted = counts["charts"]
        if charted < len(keys):
            err().print(f"[yellow]warning:[/] {len(keys) - charted} of the keys have no "
                        "numeric values in these runs")
    err().print(f"wrote {escape(output)}: {len(runs)} run{'s' if len(runs) > 1 else ''}, "
                f"{counts['charts']} metric charts, {counts['system_charts']} system charts")


# -- tail ----------------------------------------------------------------------------


def _line(row: dict[str, Any], keys: Sequence[str] | None) -> str:
    """One row as a line of text: its step, runtime and ``key=value`` (all printable)."""
    shown = keys or [k for k in row if k not in ("_step", "_timestamp", "_runtime")]
    parts = [f"step {printable(row['_step'])}"]
    if "_runtime" in row:
        parts.append(f"{row['_runtime']:8.2f}s" if isinstance(row["_runtime"], float)
                     else printable(row["_runtime"]))
    parts += [f"{printable(k)}={format_value(row[k])}" for k in shown if k in row]
    return "  ".join(parts)


def _last_rows(reader: RunReader, n: int) -> int | None:
    """The smallest step of the last ``n`` rows (None: there are no rows)."""
    tail: list[int] = []
    for steps, _ in reader.chunks(keys=[]):
        tail = (tail + steps)[-n:] if n else steps[-1:]
    if not tail:
        return None
    return tail[0] if n else tail[-1] + 1


@cli.command("tail")
@_dir_option
@click.argument("run_ref", metavar="RUN")
@click.option("--lines", "-n", type=click.IntRange(min=0), default=10, show_default=True,
              help="Print this many of the rows already stored first.")
@click.option("--follow/--no-follow", default=True, show_default=True,
              help="Keep printing new rows until the run ends (or Ctrl-C).")
@click.option("--interval", type=click.FloatRange(0.01, 60), default=0.5, show_default=True,
              help="Seconds between looks for new rows.")
@click.option("--timeout", type=click.FloatRange(min=0), default=None,
              help="Stop following after this many seconds (exit status 0).")
@click.option("--key", "-k", "keys", multiple=True,
              help="Print only these keys (repeatable).")
@click.option("--jsonl", is_flag=True, help="Print rows as JSON lines.")
def tail_cmd(root: str, run_ref: str, lines: int, follow: bool, interval: float,
             timeout: float | None, keys: tuple[str, ...], jsonl: bool) -> None:
    """Print a run's last rows, then follow it: new rows as they are stored.

    Stops when the run ends: exit status 0 if it finished, 3 if it failed,
    crashed or was interrupted (or was left marked running by a process that is
    gone), 130 on Ctrl-C.
    """
    run = open_run(run_ref, root)
    wanted = list(keys) or None

    def emit(rows: Generator[dict[str, Any], None, None]) -> int | None:
        last = None
        with closing(rows):  # a broken pipe or Ctrl-C ends the read while the db is open
            for row in rows:
                last = row["_step"]
                if wanted and not any(k in row for k in wanted):
                    continue
                if jsonl:
                    shown = {k: v for k, v in row.items()
                             if not wanted or k in wanted or k == "_step"}
                    click.echo(json.dumps(shown, default=str, separators=(",", ":")))
                else:
                    click.echo(_line(row, wanted))
        sys.stdout.flush()
        return last

    deadline = None if timeout is None else time.monotonic() + timeout
    stale_since: float | None = None
    try:
        with RunReader(run.dir) as reader:
            start = _last_rows(reader, lines)
            next_step = start
            if start is not None and lines:
                last = emit(reader.rows(min_step=start))
                next_step = start if last is None else last + 1
            elif start is None and not follow:
                err().print(f"{escape(run.path)} has no rows ({escape(run.state)})")
            while follow:
                info = reader.info()
                state = info["state"]
                rows = reader.rows(min_step=next_step) if next_step is not None else reader.rows()
                last = emit(rows)
                if last is not None:
                    next_step = last + 1
                if state in TERMINAL_STATES:
                    err().print(f"run {escape(run.path)} ended: {escape(state)}"
                                + (f" (exit {escape(info['exit_code'])})"
                                   if info["exit_code"] not in (None, 0) else ""))
                    if state != "finished":
                        sys.exit(EXIT_RUN_FAILED)
                    return
                run.state, run.created_at = state, info["created_at"]
                stale = liveness(run)
                now = time.monotonic()
                if stale and last is None:
                    stale_since = stale_since or now
                    if now - stale_since >= STALE_GRACE:
                        err().print(f"run {escape(run.path)} is marked running but "
                                    f"{escape(stale)} "
                                    "and nothing was stored since; it was never closed "
                                    "(the service must have died with it)")
                        sys.exit(EXIT_RUN_FAILED)
                else:
                    stale_since = None
                if deadline is not None and now >= deadline:
                    err().print(f"stopped following {escape(run.path)} after {timeout:g}s "
                                f"(still {escape(state)})")
                    return
                time.sleep(interval)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


# -- entry point ---------------------------------------------------------------------


# -- sweeps ------------------------------------------------------------------------------


@cli.command("sweep")
@_dir_option
@click.argument("config_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--project", "-p", help="The project (default: the config's, or uncategorized).")
def sweep_cmd(root: str, config_file: str, project: str | None) -> None:
    """Store a sweep from a YAML (or JSON) file of wandb's format; print its id."""
    import json as json_module

    from ..sweeps import store

    with open(config_file, encoding="utf-8") as f:
        text = f.read()
    try:
        config = json_module.loads(text)
    except ValueError:
        try:
            import yaml  # type: ignore[import-untyped]
        except ImportError:
            raise click.ClickException("a YAML sweep file needs PyYAML "
                                       "(pip install pyyaml), or give JSON") from None
        config = yaml.safe_load(text)
    if not isinstance(config, dict):
        raise click.ClickException(f"{config_file} holds no sweep configuration")
    project = project or config.get("project") or "uncategorized"
    try:
        sweep_id = store.create(os.path.abspath(root), project, config)
    except (TypeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{project}/{sweep_id}")
    err().print(f"run its trials with: mpbackend agent {project}/{sweep_id}")


@cli.command("agent")
@_dir_option
@click.argument("sweep_path")
@click.option("--count", "-c", type=click.IntRange(min=1), help="Run at most this many trials.")
def agent_cmd(root: str, sweep_path: str, count: int | None) -> None:
    """Run trials of a sweep (``project/id``): the config's ``program``, each with its
    parameters as ``--name=value`` arguments and as its run's config. Start as many
    agents as you like: none runs a trial twice."""
    import subprocess
    import sys

    from ..sweeps import store
    from ..sweeps.trials import STOP_WAIT, Watch, run_trials

    root = os.path.abspath(root)
    project, _, sweep_id = sweep_path.rpartition("/")
    project = project.rpartition("/")[2] or store.project_of(root, sweep_id) or "uncategorized"
    try:
        config = store.load(root, project, sweep_id)["config"]
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    program = config.get("program")
    if not isinstance(program, str) or not os.path.isfile(program):
        raise click.ClickException(f"the sweep's program {program!r} is not a file here")

    def run_one(trial: dict[str, Any], variables: dict[str, str], watch: Watch) -> str:
        args = [f"--{k}={json.dumps(v) if isinstance(v, dict) else v}"
                for k, v in sorted(trial["params"].items())]
        err().print(f"trial {trial['n']}: {program} {' '.join(args)}")
        proc = subprocess.Popen([sys.executable, program, *args],
                                env={**os.environ, **variables})

        def stop(reason: str) -> bool:
            # As Ctrl-C would: SIGTERM lets the program write all it logged (its
            # run ends ``interrupted``); one that does not end in STOP_WAIT is killed.
            err().print(f"trial {trial['n']} stopped: {reason}")
            proc.terminate()
            try:
                proc.wait(timeout=STOP_WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
            return True

        watch.start(stop)
        # The program is the user's training run: it takes as long as it takes.
        code = proc.wait()
        return "finished" if code == 0 else "failed"

    ran = run_trials(root, project, sweep_id, count, run_one)
    err().print(f"{ran} trial(s) run")


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command (the ``mpbackend`` console script and ``python -m mpbackend``)."""
    debug = bool(os.environ.get("MPBACKEND_DEBUG"))
    try:
        code = cli.main(args=list(argv) if argv is not None else None, prog_name="mpbackend",
                        standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        code = EXIT_INTERRUPTED
    except (StoreError, sqlite3.Error, OSError) as exc:
        if debug:
            raise
        click.echo(f"Error: {printable(exc)}", err=True)
        code = EXIT_ERROR
    except Exception as exc:  # a bug: say what; MPBACKEND_DEBUG=1 keeps the traceback
        if debug:
            raise
        click.echo(f"Error: unexpected {type(exc).__name__}: {printable(exc)} "
                   "(MPBACKEND_DEBUG=1 shows the traceback)", err=True)
        code = EXIT_ERROR
    sys.exit(code if isinstance(code, int) else 0)
