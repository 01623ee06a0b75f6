"""The ``mpbackend`` command, run as a user runs it: in a subprocess, on real runs.

Runs are written by real scripts through ``mpbackend.init()`` and a real service:
finished ones, an empty one, one whose script raised (failed), one whose process
was SIGKILLed (crashed, marked so by the service's watchdog), one left marked
running because its service was killed with it, and a live one still being
logged by another process while the command reads it. Nothing is mocked. Outputs
are checked for their contents: exported rows against the logged values, the
PNG's size and pixels, and the HTML report in headless Chromium (its script must
report every chart drawn and the screenshot must show the runs' lines).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import psutil
import pytest
from conftest import ROOT, chromium_binary, headless, wait_for

import mpbackend
from mpbackend.read import report

pytestmark = pytest.mark.timeout(90)

ALPHA_ROWS = 300
BIG_ROWS = 5000
SPIKE_STEP = 3333


def alpha_row(s: int) -> dict:
    """The row logged at step ``s`` of the run "alpha"."""
    row = {"loss": 1.0 / (s + 1), "acc": s / ALPHA_ROWS, "phase": "warm" if s < 10 else "train",
           "vec": [s, s + 0.5]}
    if s % 10 == 0:
        row["val"] = {"loss": 2.0 / (s + 1)}
    if s == 7:
        row["loss"] = float("nan")
    return row


def beta_loss(s: int) -> float:
    return 3.0 - s / 100


def big_value(s: int) -> float:
    return 1000.0 if s == SPIKE_STEP else math.sin(s / 50)


ENV = {"PYTHONPATH": ROOT, "MPBACKEND_SILENT": "1", "COLUMNS": "250"}

FINISHED = f"""
import math, mpbackend
ROWS, BIG, SPIKE = {ALPHA_ROWS}, {BIG_ROWS}, {SPIKE_STEP}

def alpha_row(s):
    row = {{"loss": 1.0 / (s + 1), "acc": s / ROWS, "phase": "warm" if s < 10 else "train",
           "vec": [s, s + 0.5]}}
    if s % 10 == 0:
        row["val"] = {{"loss": 2.0 / (s + 1)}}
    if s == 7:
        row["loss"] = float("nan")
    return row

run = mpbackend.init(project="cli", id="alpha", name="first", tags=["base"],
                     config={{"lr": 0.1, "opt": {{"name": "adam"}}}})
for s in range(ROWS):
    mpbackend.log(alpha_row(s))
run.finish()
run = mpbackend.init(project="cli", id="beta", name="second", tags=["exp", "base"],
                     config={{"lr": 0.01}})
for s in range(200):
    mpbackend.log({{"loss": 3.0 - s / 100}})
run.finish()
mpbackend.init(project="cli", id="empty", name="nothing", config={{"lr": 0.5}}).finish()
run = mpbackend.init(project="other", id="big")
for s in range(BIG):
    mpbackend.log({{"wave": 1000.0 if s == SPIKE else math.sin(s / 50)}})
run.finish()
"""

FAILING = """
import mpbackend
mpbackend.init(project="cli", id="boom")
for s in range(5):
    mpbackend.log({"loss": s})
raise RuntimeError("the training script broke")
"""

# Logs, flushes, says so, then waits to be killed.
HANGING = """
import sys, time, mpbackend
run = mpbackend.init(project="cli", id=sys.argv[1])
for s in range(20):
    mpbackend.log({"loss": s * 0.5})
run.flush()
print("ready", flush=True)
time.sleep(120)
"""

LIVE = """
import sys, time, mpbackend
run = mpbackend.init(project="live", id="live", name="growing")
mpbackend.log({"x": 0})
run.flush()
print("started", flush=True)
for s in range(1, int(sys.argv[1])):
    mpbackend.log({"x": s, "y": s * 2})
    run.flush()
    time.sleep(0.03)
run.finish()
"""


def start(code: str, tmp_path, root, *args: str, name: str) -> subprocess.Popen:
    script = tmp_path / name
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, **ENV, "MPBACKEND_DIR": str(root)}
    return subprocess.Popen([sys.executable, str(script), *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def await_line(proc: subprocess.Popen, word: str, timeout: float = 30) -> None:
    """Read the process's stdout until a line with ``word`` (the read ends at its exit)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if word in line:
            return
        if not line:
            break
    raise AssertionError(f"no {word!r} from the script: {proc.stderr.read()}")


def state_of(root, project: str, run_id: str) -> str:
    try:
        with mpbackend.RunReader(str(root / project / run_id)) as reader:
            return reader.info()["state"]
    except mpbackend.StoreError:
        return "missing"


def cli(root, *args: str, timeout: float = 60, check: int | None = 0
        ) -> subprocess.CompletedProcess:
    """``python -m mpbackend ARGS`` with --dir taken from MPBACKEND_DIR."""
    env = {**os.environ, **ENV, "MPBACKEND_DIR": str(root)}
    proc = subprocess.run([sys.executable, "-m", "mpbackend", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=str(root.parent))
    assert "Traceback" not in proc.stderr, proc.stderr
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    return proc


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A run directory with: cli/alpha, cli/beta, cli/empty (finished), cli/boom (failed),
    cli/dead (crashed: SIGKILLed), other/big (finished, BIG_ROWS rows with a spike)."""
    tmp = tmp_path_factory.mktemp("cli")
    root = tmp / "mpruns"
    procs = [start(FINISHED, tmp, root, name="finished.py"),
             start(FAILING, tmp, root, name="failing.py"),
             start(HANGING, tmp, root, "dead", name="hanging.py")]
    try:
        await_line(procs[2], "ready")
        procs[2].kill()
        for proc in procs[:2]:
            proc.wait(timeout=60)
        assert procs[0].returncode == 0, procs[0].stderr.read()
        assert procs[1].returncode == 1
        assert wait_for(lambda: state_of(root, "cli", "dead") == "crashed", timeout=15)
        assert wait_for(lambda: state_of(root, "cli", "boom") == "failed", timeout=15)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
            proc.stdout.close()
            proc.stderr.close()
    return root


# -- the command itself ---------------------------------------------------------------------


def test_help_for_every_subcommand(root):
    top = cli(root, "--help").stdout
    for sub in ("ls", "show", "export", "plot", "report", "tail"):
        assert sub in top
        text = cli(root, sub, "--help").stdout
        assert f"Usage: mpbackend {sub}" in text and "--dir" in text
    assert cli(root, "--version").stdout.strip() == f"mpbackend {mpbackend.__version__}"
    assert cli(root, "frobnicate", check=2).stderr


def test_console_script_entry_point(root):
    exe = shutil.which("mpbackend", path=os.path.dirname(sys.executable) + os.pathsep
                       + os.environ.get("PATH", ""))
    assert exe is not None, "the mpbackend console script is not installed (pip install -e .)"
    proc = subprocess.run([exe, "ls", "--dir", str(root)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **ENV})
    assert proc.returncode == 0, proc.stderr
    assert "alpha" in proc.stdout


def test_import_mpbackend_loads_no_cli_library():
    code = ("import sys, mpbackend; print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'click', 'rich', 'matplotlib', 'pyarrow'}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# -- ls and show -----------------------------------------------------------------------------


def table_rows(stdout: str) -> dict[str, str]:
    """The lines of an ``ls`` table by run id (the first word)."""
    return {line.split()[0]: line for line in stdout.splitlines()[1:] if line.strip()}


def test_ls_lists_runs_with_states_and_filters(root):
    out = cli(root, "ls", "--metric", "loss").stdout
    rows = table_rows(out)
    assert set(rows) == {"alpha", "beta", "empty", "boom", "dead", "big"}
    assert out.splitlines()[0].split() == ["id", "name", "project", "state", "steps",
                                           "runtime", "created", "loss"]
    assert re.search(r"alpha\s+first\s+cli\s+finished\s+300\s", rows["alpha"])
    assert rows["beta"].split()[-1] == "1.01"  # the last loss logged: 3 - 199 / 100
    assert re.search(r"\bcrashed\b", rows["dead"]) and re.search(r"\bfailed\b", rows["boom"])
    assert re.search(r"empty\s+nothing\s+cli\s+finished\s+0\s", rows["empty"])
    assert set(table_rows(cli(root, "ls", "--project", "other").stdout)) == {"big"}
    assert set(table_rows(cli(root, "ls", "-s", "crashed", "-s", "failed").stdout)) == {
        "boom", "dead"}
    assert set(table_rows(cli(root, "ls", "--tag", "base").stdout)) == {"alpha", "beta"}
    assert set(table_rows(cli(root, "ls", "--tag", "base", "--tag", "exp").stdout)) == {"beta"}
    nothing = cli(root, "ls", "--dir", str(root / "nowhere"))
    assert nothing.stdout == "" and "does not exist" in nothing.stderr
    assert "--state" in cli(root, "ls", "--state", "bogus", check=2).stderr


def test_show_finished_run(root):
    out = cli(root, "show", "alpha").stdout
    for pattern in (r"id\s+alpha", r"name\s+first", r"state\s+finished", r"rows\s+300",
                    r"lr\s+0\.1", r"opt\.name\s+adam", r"acc\s+0\.996667",
                    r"val\.loss\s+0\.00687285", r"tags\s+base", "History: 300 rows"):
        assert re.search(pattern, out), (pattern, out)
    samples = report.system_rows(mpbackend.Api(str(root)).run("alpha"))
    if samples:  # the service sampled system metrics (when this mpbackend has them)
        assert re.search(rf"System metrics \({len(samples)} samples\)", out)
        assert re.search(r"system/cpu_percent\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+", out)
    by_name = cli(root, "show", "second").stdout  # a name works where it is unique
    assert re.search(r"id\s+beta", by_name)
    by_dir = cli(root, "show", str(root / "cli" / "alpha")).stdout
    assert re.search(r"id\s+alpha", by_dir)
    by_path = cli(root, "show", "cli/alpha").stdout
    assert re.search(r"id\s+alpha", by_path)


def test_show_crashed_failed_and_empty_runs(root):
    dead = cli(root, "show", "dead").stdout
    assert re.search(r"state\s+crashed", dead) and "History: 20 rows" in dead
    assert re.search(r"state\s+failed \(exit 1\)", cli(root, "show", "boom").stdout)
    empty = cli(root, "show", "empty").stdout
    assert "History: no rows logged" in empty and re.search(r"lr\s+0\.5", empty)


def test_missing_run_is_an_error_not_a_traceback(root, tmp_path):
    for args in (["show", "nosuch"], ["export", "nosuch", "-o", str(tmp_path / "x.csv")],
                 ["tail", "nosuch"], ["plot", "nosuch", "-k", "loss"],
                 ["report", "alpha", "nosuch", "-o", str(tmp_path / "r.html")]):
        proc = cli(root, *args, check=1)
        assert "no run 'nosuch'" in proc.stderr, proc.stderr
    assert not os.listdir(tmp_path)
    (tmp_path / "notarun").mkdir()
    proc = cli(root, "show", str(tmp_path / "notarun"), check=1)
    assert "holds no run" in proc.stderr
    proc = cli(root, "show", "nosuch", "--dir", str(tmp_path / "nowhere"), check=1)
    assert "does not exist" in proc.stderr


# -- export ----------------------------------------------------------------------------------


def same(a, b) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
            ) or a == b


def test_export_csv_has_the_logged_values(root, tmp_path):
    out = tmp_path / "alpha.csv"
    proc = cli(root, "export", "alpha", "--format", "csv", "-o", str(out))
    assert "wrote 300 rows" in proc.stderr
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["_step", "loss", "acc", "phase", "vec", "val.loss", "_runtime",
                             "_timestamp"]
    assert len(rows) == ALPHA_ROWS
    for s, row in enumerate(rows):
        want = alpha_row(s)
        assert int(row["_step"]) == s
        assert same(float(row["loss"]), want["loss"]) and float(row["acc"]) == want["acc"]
        assert row["phase"] == want["phase"] and json.loads(row["vec"]) == want["vec"]
        assert row["val.loss"] == ("" if s % 10 else repr(want["val"]["loss"]))
        assert float(row["_runtime"]) >= 0 and float(row["_timestamp"]) > 1e9


def test_export_jsonl_and_parquet_read_back(root, tmp_path):
    cli(root, "export", "alpha", "-o", str(tmp_path / "a.jsonl"))  # format from the extension
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert len(lines) == ALPHA_ROWS
    for s, line in enumerate(lines):
        row, want = json.loads(line), alpha_row(s)
        assert row["_step"] == s and same(row["loss"], want["loss"])
        assert row["vec"] == want["vec"] and ("val.loss" in row) == (s % 10 == 0)

    cli(root, "export", "alpha", "-f", "parquet", "-o", str(tmp_path / "a.parquet"))
    frame = pd.read_parquet(tmp_path / "a.parquet")
    assert len(frame) == ALPHA_ROWS and frame["_step"].tolist() == list(range(ALPHA_ROWS))
    assert frame["_step"].dtype == np.int64
    for s in range(ALPHA_ROWS):
        want = alpha_row(s)
        assert same(float(frame["loss"][s]), want["loss"]) and frame["acc"][s] == want["acc"]
        assert frame["phase"][s] == want["phase"] and list(frame["vec"][s]) == want["vec"]
        assert same(float(frame["val.loss"][s]),
                    want["val"]["loss"] if s % 10 == 0 else float("nan"))


def test_export_keys_stdout_progress_and_big_run(root, tmp_path):
    proc = cli(root, "export", "alpha", "-k", "val.loss", "-o", "-")
    rows = list(csv.reader(proc.stdout.splitlines()))
    assert rows[0] == ["_step", "val.loss"] and len(rows) == 1 + ALPHA_ROWS // 10
    assert rows[2] == ["10", repr(2.0 / 11)]
    cli(root, "export", "alpha", "-k", "val.loss", "-k", "phase", "-o",
        str(tmp_path / "k.parquet"))  # the same rows and columns as csv, by columns
    frame = pd.read_parquet(tmp_path / "k.parquet")
    assert list(frame.columns) == ["_step", "val.loss", "phase"]
    assert frame["_step"].tolist() == list(range(ALPHA_ROWS))  # every row has a phase
    assert frame["val.loss"].isna().tolist() == [s % 10 != 0 for s in range(ALPHA_ROWS)]
    cli(root, "export", "alpha", "-k", "val.loss", "-o", str(tmp_path / "v.parquet"))
    only = pd.read_parquet(tmp_path / "v.parquet")
    assert only["_step"].tolist() == list(range(0, ALPHA_ROWS, 10))
    assert only["val.loss"].tolist()[1] == 2.0 / 11
    proc = cli(root, "export", "big", "-o", str(tmp_path / "big.csv"), "--progress")
    assert f"{BIG_ROWS}/{BIG_ROWS}" in proc.stderr  # the bar, drawn to the end
    with open(tmp_path / "big.csv", newline="") as fh:
        waves = [float(r["wave"]) for r in csv.DictReader(fh)]
    assert waves == [big_value(s) for s in range(BIG_ROWS)]


def test_export_empty_and_crashed_runs(root, tmp_path):
    proc = cli(root, "export", "empty", "-o", str(tmp_path / "e.csv"), check=1)
    assert "no history rows" in proc.stderr and not (tmp_path / "e.csv").exists()
    cli(root, "export", "dead", "-o", str(tmp_path / "d.csv"))
    with open(tmp_path / "d.csv", newline="") as fh:
        assert [float(r["loss"]) for r in csv.DictReader(fh)] == [s * 0.5 for s in range(20)]
    proc = cli(root, "export", "alpha", "-f", "parquet", "-o", "-", check=1)
    assert "stdout" in proc.stderr


# -- plot ------------------------------------------------------------------------------------


def rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255.0


def pixels_near(image: np.ndarray, hex_colour: str, tol: float = 0.08) -> int:
    return int((np.abs(image[..., :3] - rgb(hex_colour)).max(axis=-1) < tol).sum())


def test_plot_overlays_runs_in_a_png(root, tmp_path):
    import matplotlib.image

    out = tmp_path / "loss.png"
    proc = cli(root, "plot", "alpha", "beta", "dead", "empty", "--key", "loss", "-o", str(out),
               "--width", "800", "--height", "500")
    assert "wrote" in proc.stderr and "cli/empty has no numeric loss" in proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(str(out))
    assert image.shape[:2] == (500, 800)
    assert len(np.unique(image[..., :3].reshape(-1, 3), axis=0)) > 50
    assert (image[..., :3].min(axis=-1) < 0.9).mean() > 0.02  # not blank
    for i in range(3):  # a line in each run's colour
        assert pixels_near(image, report.colour(i)) > 100, i

    two = tmp_path / "two.png"
    cli(root, "plot", "alpha", "-k", "loss", "-k", "acc", "--x", "_runtime", "-o", str(two))
    assert matplotlib.image.imread(str(two)).shape[:2] == (600, 1000)

    proc = cli(root, "plot", "alpha", "-k", "nokey", "-o", str(tmp_path / "n.png"), check=1)
    assert "no numeric 'nokey'" in proc.stderr and "loss" in proc.stderr
    proc = cli(root, "plot", "empty", "-k", "loss", "-o", str(tmp_path / "e.png"), check=1)
    assert "no rows are logged" in proc.stderr
    assert not (tmp_path / "n.png").exists() and not (tmp_path / "e.png").exists()


# -- report ----------------------------------------------------------------------------------


def report_data(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="mp-data">(.*?)</script>', page,
                      re.S)
    return json.loads(found.group(1))


def test_report_is_self_contained_and_downsampled(root, tmp_path):
    out = tmp_path / "big.html"
    cli(root, "report", "big", "empty", "-o", str(out), "--points", "200")
    page = out.read_text()
    assert not re.search(r"https?:|<link|\bsrc=|@import|url\(", page)
    data = report_data(page)
    (chart,) = data["sections"][0]["charts"]
    (line,) = chart["lines"]
    assert chart["key"] == "wave" and line["n"] == BIG_ROWS and len(line["x"]) <= 202
    assert line["x"][0] == 0 and line["x"][-1] == BIG_ROWS - 1
    assert 1000.0 in line["y"] and min(line["y"]) < -0.99  # the spike and the troughs kept
    assert line["x"] == sorted(line["x"])
    assert "nothing" in page and "big" in page  # both runs in the run table


def test_report_in_headless_chromium(root, tmp_path):
    exe = chromium_binary()
    out = tmp_path / "report.html"
    proc = cli(root, "report", "alpha", "beta", "dead", "empty", "-o", str(out))
    assert "wrote" in proc.stderr
    data = report_data(out.read_text())
    keys = [c["key"] for c in data["sections"][0]["charts"]]
    assert keys == ["loss", "acc", "val.loss"]  # "phase" (text) and "vec" (lists) are no charts
    total = sum(len(s["charts"]) for s in data["sections"])
    api = mpbackend.Api(str(root))
    system_keys = {k for r in ("alpha", "beta", "dead", "empty")
                   for row in report.system_rows(api.run(r)) for k in row if k[0] != "_"}
    assert {c["key"] for c in data["sections"][1]["charts"]} == system_keys
    assert ("<h2>System metrics</h2>" in out.read_text()) == bool(system_keys)
    loss = data["sections"][0]["charts"][0]
    assert [line["run"] for line in loss["lines"]] == [0, 1, 2]  # empty has no line
    assert loss["lines"][0]["n"] == ALPHA_ROWS - 1  # the NaN is not a point

    shot = tmp_path / "shot.png"  # one browser run: the DOM after the scripts, and a screenshot
    dom = headless(exe, tmp_path, "--dump-dom", f"--screenshot={shot}", "--window-size=1200,1400",
                   out.resolve().as_uri())
    assert f'data-charts-drawn="{total}"' in dom, dom[:2000]
    assert f"{total} of {total} charts drawn" in dom
    assert "data-charts-error" not in dom

    import matplotlib.image

    image = matplotlib.image.imread(str(shot))
    assert image.shape[:2] == (1400, 1200)
    assert (image[..., :3].min(axis=-1) < 0.9).mean() > 0.02  # not a blank page
    assert len(np.unique(image[..., :3].reshape(-1, 3), axis=0)) > 50
    for i in range(3):  # each run's line is drawn in its colour
        assert pixels_near(image, report.colour(i)) > 200, i


# -- tail, and runs being written ----------------------------------------------------------


def test_tail_of_ended_runs(root):
    proc = cli(root, "tail", "dead", "-n", "3", check=3)
    assert [line.split()[1] for line in proc.stdout.splitlines()] == ["17", "18", "19"]
    assert "loss=9.5" in proc.stdout and "ended: crashed" in proc.stderr
    proc = cli(root, "tail", "alpha", "--no-follow", "-n", "2", "-k", "acc", "--jsonl")
    assert [json.loads(line) for line in proc.stdout.splitlines()] == [
        {"_step": 298, "acc": 298 / ALPHA_ROWS}, {"_step": 299, "acc": 299 / ALPHA_ROWS}]
    proc = cli(root, "tail", "empty", "--no-follow")
    assert proc.stdout == "" and "has no rows" in proc.stderr
    proc = cli(root, "tail", "empty")
    assert "ended: finished" in proc.stderr
    assert "ended: failed" in cli(root, "tail", "boom", check=3).stderr


def test_live_run_read_while_it_is_written(tmp_path):
    rows = 120
    root = tmp_path / "mpruns"
    writer = start(LIVE, tmp_path, root, str(rows), name="live.py")
    try:
        await_line(writer, "started")
        env = {**os.environ, **ENV, "MPBACKEND_DIR": str(root)}
        tail = subprocess.Popen([sys.executable, "-m", "mpbackend", "tail", "live", "-n", "1000",
                                 "--interval", "0.05", "--timeout", "60"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            listed = cli(root, "ls").stdout
            assert re.search(r"live\s+growing\s+live\s+running", listed), listed
            shown = cli(root, "show", "live").stdout
            assert re.search(r"state\s+running", shown) and "gone" not in shown
            out, errors = tail.communicate(timeout=60)
        finally:
            if tail.poll() is None:
                tail.kill()
                tail.communicate(timeout=10)
        assert tail.returncode == 0, errors
        assert "Traceback" not in errors and "ended: finished" in errors
        steps = [int(line.split()[1]) for line in out.splitlines()]
        assert steps == list(range(rows))  # every row, once, in order
        assert "x=119  y=238" in out.splitlines()[-1]
        assert writer.wait(timeout=30) == 0
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait(timeout=30)
        writer.stdout.close()
        writer.stderr.close()


def test_run_left_running_by_a_dead_service(tmp_path):
    """The script and its service are SIGKILLed together: the run stays 'running' on disk."""
    root = tmp_path / "mpruns"
    script = start(HANGING, tmp_path, root, "orphan", name="orphan.py")
    try:
        await_line(script, "ready")
        env = {**os.environ, **ENV, "MPBACKEND_DIR": str(root)}
        tail = subprocess.Popen([sys.executable, "-m", "mpbackend", "tail", "orphan", "-n", "1"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:  # Ctrl-C while following a live run: exit status 130, no traceback
            assert "loss=9.5" in tail.stdout.readline()
            tail.send_signal(signal.SIGINT)
            errors = tail.communicate(timeout=30)[1]
        finally:
            if tail.poll() is None:
                tail.kill()
                tail.communicate(timeout=10)
        assert tail.returncode == 130 and "Traceback" not in errors, errors
        user = psutil.Process(script.pid)
        user.suspend()  # so its manager cannot start a new service
        for child in user.children(recursive=True):
            child.kill()
        user.kill()
        script.wait(timeout=30)
    finally:
        if script.poll() is None:
            script.kill()
        script.wait(timeout=30)
        script.stdout.close()
        script.stderr.close()
    assert state_of(root, "cli", "orphan") == "running"
    shown = cli(root, "show", "orphan").stdout
    assert re.search(rf"state\s+running \(its process {script.pid} is gone\)", shown)
    started = time.monotonic()
    proc = cli(root, "tail", "orphan", "-n", "0", "--interval", "0.1", check=3)
    assert "never closed" in proc.stderr
    assert time.monotonic() - started < 30


def test_missing_extras_name_the_pip_command(root, tmp_path):
    """Without pyarrow or matplotlib (made unimportable here) the error says what to install."""
    for blocked, args, extra in (("pyarrow", ["export", "alpha", "-f", "parquet", "-o",
                                             str(tmp_path / "a.parquet")], "parquet"),
                                 ("matplotlib", ["plot", "alpha", "-k", "loss", "-o",
                                                 str(tmp_path / "a.png")], "plot")):
        code = (f"import sys; sys.modules[{blocked!r}] = None; "
                f"from mpbackend.read.cli import main; main({args!r})")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60, env={**os.environ, **ENV, "MPBACKEND_DIR": str(root)})
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"pip install 'mpbackend[{extra}]'" in proc.stderr
    assert not os.listdir(tmp_path)
