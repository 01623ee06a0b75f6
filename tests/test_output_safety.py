"""What a run stored is shown as text, never acted on: the HTML report and the terminal.

Runs are built with hostile names, keys and values by the real library and then
tampered with in their SQLite file, as a crafted run directory would be:

* ``hostile``: named ``"\\x1b]0;pwned\\x07"`` (an OSC that retitles a terminal),
  with keys ``"@SCRIPT@"`` (the report's old placeholder), ``"k\\x1b[2J"``
  (clear screen) and ``"</script>..."``, a string value with ``\\r``, a C1 CSI
  (``\\x9b``) and a bidi override (U+202E), and such config, tags and notes;
* ``crafted``: its name set to attributes that run a script by themselves
  (``autofocus onfocus=...``) if they land in a tag, its notes and host to
  escape sequences; in the report it is shown with the state ``"@DATA@"`` (the
  report takes run-like objects: its escaping must not rely on the store's reader
  refusing a state it does not know);
* ``damaged``: named ``'" onmouseover="alert(1)'``, its state an OSC: a reader
  may list it or refuse it, but what reaches the terminal is text either way.

The report is rendered and opened in headless Chromium: no script from the data
runs, the Content-Security-Policy is there (and blocks markup slipped into the
page), the charts still draw. The ``mpbackend`` command (ls, show, tail, an error
quoting keys) runs as a subprocess with stdout a pipe: no raw control character
of the data reaches it. The end summary (terminal and Jupyter forms) is checked
in this process.
"""

from __future__ import annotations

import base64
import configparser
import csv
import hashlib
import html
import json
import os
import re
import sqlite3
import subprocess
import sys
import unicodedata
from html.parser import HTMLParser

import pytest
from conftest import ROOT, chromium_binary, headless

import mpbackend
from mpbackend.read import end_summary, report

OSC_NAME = "\x1b]0;pwned\x07"
CLEAR_KEY = "k\x1b[2J"
SCRIPT_KEY = "@SCRIPT@"
CLOSE_KEY = "</script><script>document.body.dataset.pwned='key'</script>"
NASTY = "\x1b[31mred\r\x9b\u202eevil"
ATTRS = " autofocus tabindex=1 onfocus=document.body.dataset.pwned=1 x="
QUOTED = '" onmouseover="alert(1)'
OSC_STATE = "\x1b]0;state\x07\x9b"

# Raw control characters that must never reach a terminal or a page from the data.
RAW = ("\x1b", "\x07", "\x9b", "\r", "\u202e", "\x00")
ENV = {"PYTHONPATH": ROOT, "MPBACKEND_SILENT": "1", "COLUMNS": "250", "NO_COLOR": "1",
       "TERM": "dumb"}


def _tamper(run_dir: str, **fields: object) -> None:
    db = sqlite3.connect(os.path.join(run_dir, "run.db"))
    try:
        sets = ", ".join(f"{k} = ?" for k in fields)
        db.execute(f"UPDATE run SET {sets}", list(fields.values()))
        db.commit()
    finally:
        db.close()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Runs p/hostile, p/crafted and p/damaged (see the module docstring)."""
    root = tmp_path_factory.mktemp("safety") / "mpruns"
    try:
        r = mpbackend.init(project="p", dir=str(root), name=OSC_NAME, id="hostile",
                           config={"c\x1b]0;cfg\x07": NASTY, "plain": 1},
                           tags=["t\x1b[2J"], notes="note\x1b]0;note\x07\nline two",
                           settings={"system_interval": 0})
        for i in range(6):
            r.log({SCRIPT_KEY: 1.0 + i, CLEAR_KEY: 2.0 * i, CLOSE_KEY: 3.0 - i, "s": NASTY})
        r.finish(quiet=True)
        dirs = {"hostile": r.dir}
        for rid in ("crafted", "damaged"):
            c = mpbackend.init(project="p", dir=str(root), name=rid, id=rid,
                               settings={"system_interval": 0})
            for i in range(4):
                c.log({"loss": 1.0 / (i + 1)})
            c.finish(quiet=True)
            dirs[rid] = c.dir
    finally:
        mpbackend.teardown()
    _tamper(dirs["crafted"], name=ATTRS, notes=QUOTED + "\x1b[2J", host="h\x1b]0;host\x07")
    _tamper(dirs["damaged"], state=OSC_STATE, name=QUOTED)
    return root


class _Stated:
    """A run as ``report`` takes it (ApiRun-like), with the state a crafted file holds."""

    def __init__(self, run, state: str) -> None:
        self._run, self.state = run, state

    def __getattr__(self, name):
        return getattr(self._run, name)


def _runs(root):
    """crafted (first: its label opens the data) as "@DATA@", crafted as an OSC, hostile."""
    api = mpbackend.Api(str(root))
    crafted, hostile = api.run("crafted"), api.run("hostile")
    return [_Stated(crafted, "@DATA@"), _Stated(crafted, OSC_STATE), hostile]


# -- printable ----------------------------------------------------------------------------


def test_printable_shows_every_control_character_as_text():
    from mpbackend.read.format import format_value, printable

    assert printable(OSC_NAME) == "\\x1b]0;pwned\\x07"
    assert printable("a\r\n\tb") == "a\\r\\n\\tb"  # no exception for newline and tab
    assert printable("\x9b\x85\x7f\x00") == "\\x9b\\x85\\x7f\\x00"  # C1, DEL, NUL
    assert printable("\u202eevil\u2066\u200b\ufeff") == "\\u202eevil\\u2066\\u200b\\ufeff"
    assert printable("\u2028\u2029\ud800\U000e0001") == "\\u2028\\u2029\\ud800\\U000e0001"
    for plain in ("loss/val", "é 日本語 🙂 a b", "x" * 500, ""):
        assert printable(plain) == plain
    every = "".join(map(chr, range(0x00, 0x3000)))
    once = printable(every)
    assert printable(once) == once  # nothing left to escape
    assert not [c for c in once if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")]
    assert printable(7) == "7"
    # format_value is the same path: values, the keys of a dict, and JSON
    assert format_value(NASTY) == "\\x1b[31mred\\r\\x9b\\u202eevil"
    assert format_value("two\nlines") == "two\\nlines"
    assert format_value({"k\x1b": 1.5}) == "k\\x1b 1.5"
    assert format_value(NASTY, 12) == "\\x1b[31mr..."


# -- the HTML report ----------------------------------------------------------------------


def _data(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="mp-data">(.*?)</script>', page,
                      re.S)
    assert found, page[:2000]
    return json.loads(found.group(1))


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text of every <script>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_report_keeps_the_data_text_in_process(root, tmp_path):
    out = tmp_path / "report.html"
    counts = report.html_report(_runs(root), str(out))
    page = out.read_text(encoding="utf-8")
    data = _data(page)
    keys = [c["key"] for c in data["sections"][0]["charts"]]
    assert keys == ["loss", SCRIPT_KEY, "k\\x1b[2J", CLOSE_KEY], keys  # all four, as text
    assert counts == {"charts": 4, "system_charts": 0}
    labels = [r["label"] for r in data["runs"]]
    assert labels == [ATTRS + " (crafted)"] * 2 + ["\\x1b]0;pwned\\x07 (hostile)"]

    assert page.count("<script") == 2 and page.count("</script>") == 2  # data, and the code
    assert page.count('"use strict"') == 1  # the script once: no placeholder filled twice
    assert "\\u003c/script\\u003e" in page  # the key in the JSON
    assert "&lt;/script&gt;&lt;script&gt;" in page  # the key as a caption
    assert not any(c in page for c in RAW)
    assert "@DATA@" in page and SCRIPT_KEY in page  # shown as text, nothing put in their place
    assert "\\x1b]0;state\\x07\\x9b" in page

    parser = _Tags()
    parser.feed(page)
    names = {name for _, attrs in parser.tags for name in attrs}
    assert names <= {"lang", "charset", "http-equiv", "content", "name", "class", "id",
                     "type", "data-charts-total", "data-section", "data-chart", "height"}, names
    assert [a["class"] for t, a in parser.tags if "state" in a.get("class", "")] == [
        "state other", "state other", "state finished"]
    (csp,) = [a["content"] for t, a in parser.tags
              if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    code = parser.scripts[1]
    assert directives["script-src"] == _csp_hash(code), (directives, code[:100])
    assert "unsafe" not in csp and "http" not in csp and "*" not in csp
    (style,) = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert directives["style-src"] == _csp_hash(style)
    assert not re.search(r"https?:|<link|\bsrc=|@import|url\(", page)  # still self-contained


def headless_dom(tmp_path, page) -> str:
    """The DOM of ``page`` after its scripts, from one headless Chromium run."""
    return headless(chromium_binary(), tmp_path, "--window-size=1200,1400", "--dump-dom",
                    page.resolve().as_uri())


def _body(dom: str) -> str:
    found = re.search(r"<body[^>]*>", dom)
    assert found, dom[:2000]
    return found.group(0)


@pytest.mark.timeout(120)
def test_report_in_chromium_runs_no_script_from_the_data(root, tmp_path):
    out = tmp_path / "report.html"
    report.html_report(_runs(root), str(out))
    dom = headless_dom(tmp_path, out)
    body = _body(dom)
    assert "pwned" not in body, body  # neither the attributes nor the </script> key ran
    total = 4  # loss, @SCRIPT@, k\x1b[2J and the </script> key
    assert f'data-charts-drawn="{total}"' in body, body  # the charts, all drawn
    assert "data-charts-error" not in body
    assert f"{total} of {total} charts drawn" in dom
    assert 'http-equiv="Content-Security-Policy"' in dom
    data = _data(out.read_text(encoding="utf-8"))
    assert sum(len(s["charts"]) for s in data["sections"]) == total

    # Markup slipped into the page anyway runs nothing: the CSP allows only the page's script.
    page = out.read_text(encoding="utf-8")
    slipped = ('<img src="x" onerror="document.body.dataset.pwned=1">'
               '<script>document.body.dataset.pwned=2</script>'
               '<span tabindex="1" autofocus onfocus="document.body.dataset.pwned=3">x</span>')
    assert page.count("<h2>Config</h2>") == 1
    injected = tmp_path / "injected.html"
    injected.write_text(page.replace("<h2>Config</h2>", slipped + "<h2>Config</h2>"),
                        encoding="utf-8")
    body = _body(headless_dom(tmp_path, injected))
    assert "pwned" not in body, body
    assert f'data-charts-drawn="{total}"' in body, body


@pytest.mark.timeout(60)
def test_report_without_jinja2_names_the_extra(root, tmp_path):
    out = tmp_path / "report.html"
    code = ("import sys; sys.modules['jinja2'] = None; from mpbackend.read.cli import main; "
            f"main(['report', 'hostile', '-o', {str(out)!r}])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **ENV, "MPBACKEND_DIR": str(root)})
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), proc.stderr
    assert "pip install 'mpbackend[report]'" in lines[0]
    assert not out.exists() and not os.listdir(tmp_path)


def test_setup_cfg_has_the_report_extra_and_its_files():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    extras = cfg["options.extras_require"]
    for extra in ("report", "test"):
        assert "jinja2>=3.0" in extras[extra].split(), extra
    files = [f.strip() for f in cfg["options.package_data"]["mpbackend.read"].split(",")]
    assert report.TEMPLATE in files and report.STYLE in files and report.SCRIPT in files
    for name in files:
        assert os.path.isfile(os.path.join(ROOT, "mpbackend", "read", name)), name


# -- the terminal ---------------------------------------------------------------------------


def _cli(root, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m mpbackend ARGS``, stdout a pipe, output as text (no decoding errors)."""
    env = {**os.environ, **ENV, "MPBACKEND_DIR": str(root)}
    env.pop("FORCE_COLOR", None)
    proc = subprocess.run([sys.executable, "-m", "mpbackend", *args], env=env,
                          capture_output=True, timeout=timeout, cwd=str(root.parent))
    out = subprocess.CompletedProcess(proc.args, proc.returncode,
                                      proc.stdout.decode("utf-8", "strict"),
                                      proc.stderr.decode("utf-8", "strict"))
    assert "Traceback" not in out.stderr, out.stderr
    return out


def _clean(text: str, what: str) -> None:
    found = sorted({repr(c) for c in RAW if c in text})
    assert not found, f"{what}: raw {', '.join(found)} in {text!r}"


@pytest.mark.timeout(120)
def test_cli_shows_control_characters_as_text(root, tmp_path):
    ls = _cli(root, "ls", "-m", "s")
    assert ls.returncode == 0, ls.stderr
    _clean(ls.stdout + ls.stderr, "ls")  # the damaged run listed, or skipped with a warning
    assert "\\x1b]0;pwned\\x07" in ls.stdout and ATTRS.strip() in ls.stdout
    assert "\\x1b[31mred\\r\\x9b\\u202eevil" in ls.stdout  # the -m column
    assert "\\x1b]0;state\\x07\\x9b" in ls.stdout + ls.stderr

    show = _cli(root, "show", "hostile")
    assert show.returncode == 0, show.stderr
    _clean(show.stdout + show.stderr, "show")
    for shown in ("\\x1b]0;pwned\\x07", "k\\x1b[2J", "\\x1b[31mred\\r\\x9b\\u202eevil",
                  "c\\x1b]0;cfg\\x07", "t\\x1b[2J", "note\\x1b]0;note\\x07\\nline two",
                  SCRIPT_KEY, CLOSE_KEY):
        assert shown in show.stdout, (shown, show.stdout)
    show = _cli(root, "show", "crafted")
    assert show.returncode == 0, show.stderr
    _clean(show.stdout + show.stderr, "show crafted")
    assert QUOTED + "\\x1b[2J" in show.stdout and "h\\x1b]0;host\\x07" in show.stdout
    damaged = _cli(root, "show", "damaged")  # shown, or "Error: ... damaged" quoting it
    assert damaged.returncode in (0, 1), damaged.stderr
    _clean(damaged.stdout + damaged.stderr, "show damaged")
    assert "\\x1b]0;state\\x07\\x9b" in damaged.stdout + damaged.stderr

    tail = _cli(root, "tail", "hostile", "--no-follow", "-n", "2")
    assert tail.returncode == 0, tail.stderr
    _clean(tail.stdout + tail.stderr, "tail")
    lines = tail.stdout.splitlines()
    assert len(lines) == 2, lines
    assert "k\\x1b[2J=10" in lines[1] and "s=\\x1b[31mred\\r\\x9b\\u202eevil" in lines[1]
    tail = _cli(root, "tail", "damaged", "-n", "1", "--timeout", "0.2", "--interval", "0.05")
    assert tail.returncode in (0, 1), tail.stderr  # "(still <state>)", or an error
    _clean(tail.stdout + tail.stderr, "tail damaged")
    assert "\\x1b]0;state\\x07\\x9b" in tail.stderr, tail.stderr

    # An error that quotes the keys of a run: one line, the keys as text.
    plot = _cli(root, "plot", "hostile", "-k", "nope", "-o", str(tmp_path / "x.png"))
    assert plot.returncode == 1, plot.stderr
    _clean(plot.stdout + plot.stderr, "plot error")
    assert len(plot.stderr.splitlines()) == 1 and "k\\x1b[2J" in plot.stderr, plot.stderr

    # export writes data, not terminal output: the values as they were logged
    path = tmp_path / "h.csv"
    assert _cli(root, "export", "hostile", "-o", str(path)).returncode == 0
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[-1]["s"] == NASTY and rows[-1][CLEAR_KEY] == "10.0"


def test_cli_state_and_markup_in_process():
    """What the command prints a run's state and any run text with, whatever a reader lets by."""
    from rich.console import Console

    from mpbackend.read import cli

    class Run:
        state, exit_code = OSC_STATE, "\x1b[2J"

    console = Console(width=200, color_system=None, force_terminal=False)
    with console.capture() as got:
        console.print(cli.state_text(Run()))
        console.print(cli.escape("[bold]" + OSC_NAME + "[/]"))
    shown = got.get()
    _clean(shown, "state_text, escape")
    assert shown == ("\\x1b]0;state\\x07\\x9b (exit \\x1b[2J)\n"
                     "[bold]\\x1b]0;pwned\\x07[/]\n"), shown


# -- the end summary --------------------------------------------------------------------------


def test_end_summary_shows_control_characters_as_text(root, monkeypatch, capsys):
    run_dir = str(root / "p" / "hostile")
    data = end_summary.read(run_dir)
    assert data["name"] == OSC_NAME  # read as stored; shown as text
    text = end_summary.text(data)
    _clean(text, "end summary text")
    assert text.startswith("mpbackend: run \\x1b]0;pwned\\x07 (hostile) finished\n"), text
    assert "k\\x1b[2J" in text and "\\x1b[31mred\\r\\x9b\\u202eevil" in text

    class Ended:  # what show() is given as a run ends
        id = "hostile"
        dir = run_dir
        _quiet = False

    monkeypatch.setattr(end_summary, "how", lambda quiet, settings_quiet=False: "text")
    end_summary.show(Ended())
    assert capsys.readouterr().out == text  # the terminal path prints just that

    crafted = end_summary.read(str(root / "p" / "crafted"))
    assert crafted["name"] == ATTRS
    damaged = {**data, "name": QUOTED, "state": OSC_STATE, "dir": run_dir + "\x1b[2J"}
    page = "".join(end_summary.html_summary(d) for d in (data, crafted, damaged))
    _clean(page, "end summary html")
    assert html.escape(QUOTED) in page and QUOTED not in page
    assert "\\x1b]0;state\\x07\\x9b" in page and "\\x1b]0;pwned\\x07 (hostile)" in page
    assert "&lt;/script&gt;" in page and "</script>" not in page
    parser = _Tags()
    parser.feed(page)
    assert not [n for _, attrs in parser.tags for n in attrs if n.startswith("on")]
    assert {t for t, _ in parser.tags} <= {"div", "b", "table", "tr", "th", "td", "svg",
                                           "polyline", "circle", "p", "code"}
    text = end_summary.text(damaged)
    _clean(text, "end summary of a damaged run")
    assert QUOTED in text and "\\x1b]0;state\\x07\\x9b" in text and "\\x1b[2J" in text


# -- a damaged run among others: shown around, never a traceback ------------------------------


def _sql(run_dir: str, statement: str, *args: object) -> None:
    """Run one statement on the run's database, as a damaged or hand-made file would hold."""
    db = sqlite3.connect(os.path.join(run_dir, "run.db"))
    try:
        db.execute(statement, args)
        db.commit()
    finally:
        db.close()


def _finished(root, rid: str, rows: int = 40, **extra) -> str:
    """The directory of run ``p/<rid>`` under ``root``: ``loss`` (f8), ``acc`` (f8) and
    ``label`` (json) logged ``rows`` times, finished, the service torn down."""
    try:
        r = mpbackend.init(project="p", dir=str(root), name=rid, id=rid,
                           settings={"system_interval": 0}, **extra)
        for i in range(rows):
            r.log({"loss": 1.0 / (i + 1), "acc": i / rows, "label": f"x{i}"})
        r.finish(quiet=True)
        return r.dir
    finally:
        mpbackend.teardown()


@pytest.mark.timeout(120)
def test_report_leaves_out_a_run_whose_history_is_refused(tmp_path):
    root = tmp_path / "mpruns"
    _finished(root, "good")
    bad = _finished(root, "bad")
    _sql(bad, "UPDATE history_column SET data=? WHERE key='loss'", b"\x00" * 13)  # not 8*n

    out = tmp_path / "report.html"
    proc = _cli(root, "report", "-o", str(out))  # every run under --dir
    assert proc.returncode == 0, proc.stderr
    assert "warning:" in proc.stderr and "skipped" in proc.stderr, proc.stderr
    assert bad in proc.stderr and "loss" in proc.stderr, proc.stderr  # names the run, the column
    assert "wrote" in proc.stderr and "1 run," in proc.stderr, proc.stderr
    data = _data(out.read_text(encoding="utf-8"))
    assert [r["label"] for r in data["runs"]] == ["good"]
    charts = {c["key"]: c["lines"] for c in data["sections"][0]["charts"]}
    assert set(charts) == {"loss", "acc"} and [ln["run"] for ln in charts["loss"]] == [0]

    # In process: the same, the refused run given to warnings.warn when no errors dict is.
    api = mpbackend.Api(str(root))
    runs = [api.run("bad"), api.run("good")]
    with pytest.warns(UserWarning, match="left out .*bad"):
        counts = report.html_report(runs, str(tmp_path / "in.html"))
    assert counts == {"charts": 2, "system_charts": 0}
    errors: dict = {}
    report.html_report(runs, str(tmp_path / "in.html"), errors=errors)
    assert list(errors) == [bad] and "loss" in errors[bad]

    # Every run refused: one Error line, nothing written.
    alone = tmp_path / "alone.html"
    proc = _cli(root, "report", "bad", "-o", str(alone))
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: no run to report"), proc.stderr
    assert "nothing written" in lines[0] and not alone.exists()

    # plot, the same: the good run drawn, the refused one warned about.
    png = tmp_path / "loss.png"
    proc = _cli(root, "plot", "good", "bad", "--key", "loss", "-o", str(png))
    assert proc.returncode == 0, proc.stderr
    assert "skipped" in proc.stderr and bad in proc.stderr and png.stat().st_size > 0
    proc = _cli(root, "plot", "bad", "--key", "loss", "-o", str(tmp_path / "none.png"))
    assert proc.returncode == 1 and proc.stderr.startswith("Error: no run to plot"), \
        proc.stderr


BLOCKS_SET = set(end_summary.BLOCKS)
DEEP = b"[" * 100_000 + b"]" * 100_000  # json.loads: RecursionError, not a StoreError


@pytest.mark.parametrize("damage", ["deep json", "miscounted json", "short f8"])
def test_end_summary_shows_the_rest_when_a_column_is_damaged(tmp_path, monkeypatch, capsys,
                                                             damage):
    run_dir = _finished(tmp_path / "mpruns", "hurt")
    if damage == "deep json":
        _sql(run_dir, "UPDATE history_column SET data=? WHERE key='label'", DEEP)
        hurt = "label"
    elif damage == "miscounted json":
        _sql(run_dir, "UPDATE history_column SET data=? WHERE key='label'",
             json.dumps([f"x{i}" for i in range(39)]).encode())  # 39 values for 40 rows
        hurt = "label"
    else:
        _sql(run_dir, "UPDATE history_column SET data=substr(data, 1, 8 * 39) WHERE key='acc'")
        hurt = "acc"

    class Ended:  # what show() is given as a run ends (as in test_end_summary)
        id = "hurt"
        dir = run_dir
        _quiet = False

    monkeypatch.setattr(end_summary, "how", lambda quiet, settings_quiet=False: "text")
    end_summary.show(Ended())
    shown = capsys.readouterr()
    assert "Traceback" not in shown.out + shown.err
    assert shown.out.startswith("mpbackend: run hurt finished\n"), shown.out
    lines = {line.split()[0]: line for line in shown.out.splitlines()[4:-1]}
    assert set(lines) == {"acc", "label", "loss"}, shown.out  # every summary metric
    assert lines[hurt].endswith(end_summary.DAMAGED), lines
    for key in {"acc", "loss"} - {hurt}:  # the others keep their line
        assert set(lines[key].split()[-1]) <= BLOCKS_SET and len(lines[key].split()) == 3, lines
    assert "mpbackend show hurt" in shown.out

    data = end_summary.read(run_dir)
    assert data["damaged"] == [hurt]
    page = end_summary.html_summary(data)
    assert page.count("<svg") == (1 if hurt == "acc" else 2) and end_summary.DAMAGED in page


# -- a summary _timestamp is user data -------------------------------------------------------


@pytest.mark.timeout(120)
def test_cli_shows_a_timestamp_that_is_no_time_as_text(tmp_path):
    from mpbackend.read.cli import when
    from mpbackend.read.format import format_value

    root = tmp_path / "mpruns"
    run_dir = _finished(root, "late")
    _sql(run_dir, "UPDATE run SET summary=json_set(summary, '$._timestamp', 1e300)")
    assert mpbackend.Api(str(root)).run("late").summary["_timestamp"] == 1e300

    show = _cli(root, "show", "late")
    assert show.returncode == 0, show.stderr
    (line,) = [ln for ln in show.stdout.splitlines() if ln.startswith("_timestamp")]
    assert line.split() == ["_timestamp", "1e+300"], line
    assert "Config" in show.stdout and "History" in show.stdout  # the rest, as ever
    ls = _cli(root, "ls", "-m", "_timestamp")
    assert ls.returncode == 0, ls.stderr
    assert "late" in ls.stdout and "1e+300" in ls.stdout, ls.stdout

    for value in (1e300, -5.0, 253402300800, float("nan"), float("inf"), True, "soon"):
        assert when(value) == format_value(value), value
    assert when(None) == "" and when(0) == ""
    assert when(1.7e9).startswith("20") and when(253402300799)[:2] in ("99", "10")
