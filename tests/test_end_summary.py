"""The summary shown when a run ends (mpbackend.end_summary).

Scripts run as real subprocesses: under a real pseudo-terminal (``pty.openpty``:
the script's stdout is the terminal's slave side, read here from the master side
with a deadline) they show the summary; with stdout a pipe they show nothing;
``quiet`` and ``MPBACKEND_SILENT`` silence it. In a real Jupyter kernel (nbclient)
the summary is HTML. Sparklines are checked on runs stored by this process.
"""

from __future__ import annotations

import logging
import os
import pty
import select
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import ROOT, run_script

import mpbackend
from mpbackend.read import end_summary

pytestmark = pytest.mark.timeout(60)

BLOCKS = set(end_summary.BLOCKS)

SCRIPT = """
    import math, mpbackend
    from mpbackend.read import end_summary

    run = mpbackend.init(project="end", name="loud", id="loud1")
    run.define_metric("acc", summary="max")
    run.define_metric("secret", hidden=True)
    for i in range(500):
        wobble = float("nan") if i % 5 == 0 else math.sin(i / 30)
        if i == 7:
            wobble = float("inf")
        run.log({"loss": 1 / (i + 1), "acc": i / 500, "wobble": wobble,
                 "label": f"x{i}", "secret": i})
    run.finish()
    print("MARK-1", flush=True)

    q = mpbackend.init(project="end", name="hushed-by-finish", id="quiet1")
    q.log({"a": 1})
    q.finish(quiet=True)
    s = mpbackend.init(project="end", name="hushed-by-settings", id="quiet2",
                       settings={"quiet": True})
    s.log({"a": 1})
    s.finish()

    class Ghost:  # a run whose store is gone: nothing shown, nothing raised
        id = "ghost"
        dir = "/nonexistent/ghost"
        _quiet = False

    end_summary.show(Ghost())
    print("MARK-2", flush=True)

    last = mpbackend.init(project="end", name="at-exit", id="exit1")
    last.log({"loss": 3.0})
    last.log({"loss": 2.0})
    # not finished: it ends at exit
"""


def _in_pty(code: str, tmp_path, env: dict | None = None,
            timeout: float = 40) -> tuple[str, str, int]:
    """Run ``code`` with its stdout on a pseudo-terminal: (terminal output, stderr, rc)."""
    script = tmp_path / "pty_script.py"
    script.write_text(textwrap.dedent(code))
    full_env = {**os.environ, "PYTHONPATH": ROOT, "MPBACKEND_DIR": str(tmp_path / "mpruns")}
    full_env.pop("MPBACKEND_SILENT", None)
    full_env.update(env or {})
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=full_env,
                                stdin=subprocess.DEVNULL, stdout=slave,
                                stderr=subprocess.PIPE, text=True)
    finally:
        os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every process holding the terminal has exited
                break
            if not data:
                break
            chunks.append(data)
        _, err = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    out = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    return out, err, proc.returncode


def _summary_lines(block: str) -> dict[str, str]:
    """metric -> its line, from the indented lines under ``summary``."""
    lines = block.split("  summary\n", 1)[1].splitlines()
    return {line.split()[0]: line for line in lines if line.startswith("    ")}


def test_summary_in_a_terminal_with_sparklines_quiet_runs_silent(tmp_path):
    out, err, rc = _in_pty(SCRIPT, tmp_path)
    assert rc == 0, err
    assert "Traceback" not in out + err, out + err
    assert "MARK-1" in out and "MARK-2" in out, out
    first, rest = out.split("MARK-1", 1)
    middle, last = rest.split("MARK-2", 1)
    root = str(tmp_path / "mpruns")

    assert "mpbackend: run loud (loud1) finished" in first, first
    assert f"dir      {os.path.join(root, 'end', 'loud1')}" in first
    assert "steps    500" in first
    assert f"mpbackend show loud1 --dir {root}" in first
    lines = _summary_lines(first)
    assert set(lines) == {"acc", "label", "loss", "wobble"}, lines  # not hidden, not _keys
    assert "max 0.998" in lines["acc"]
    loss_spark = lines["loss"].split()[-1]
    acc_spark = lines["acc"].split()[-1]
    wobble_spark = lines["wobble"].split()[-1]
    for spark in (loss_spark, acc_spark, wobble_spark):
        assert len(spark) == end_summary.SPARK_POINTS and set(spark) <= BLOCKS, spark
    assert loss_spark[0] == "█" and loss_spark[-1] == "▁"
    assert acc_spark[0] == "▁" and acc_spark[-1] == "█"
    assert len(set(wobble_spark)) > 3  # NaN and inf skipped, the sine still drawn
    assert lines["label"].split()[1:] == ["x499"]  # a str: its value, no sparkline

    assert "mpbackend: run" not in middle, middle  # quiet=True, Settings(quiet=True), ghost
    assert "mpbackend: run at-exit (exit1) finished" in last, last
    assert "steps    2" in last
    assert _summary_lines(last)["loss"].split()[1] == "2"

    api = mpbackend.Api(root)
    assert {r.id: r.state for r in api.runs()} == {
        "loud1": "finished", "quiet1": "finished", "quiet2": "finished", "exit1": "finished"}


def test_nothing_when_stdout_is_not_a_terminal(tmp_path):
    proc = run_script(SCRIPT, tmp_path, env={"MPBACKEND_SILENT": ""})
    assert proc.returncode == 0, proc.stderr
    assert "MARK-2" in proc.stdout
    assert "mpbackend: run" not in proc.stdout + proc.stderr, proc.stdout
    assert "Traceback" not in proc.stderr


def test_mpbackend_silent_silences_it_in_a_terminal(tmp_path):
    out, err, rc = _in_pty(SCRIPT, tmp_path, env={"MPBACKEND_SILENT": "1"})
    assert rc == 0, err
    assert "MARK-2" in out, out
    assert "mpbackend: run" not in out, out
    assert "Traceback" not in out + err


# -- in this process ----------------------------------------------------------------


def test_not_printing_reads_no_store(caplog):
    """Under pytest stdout is no terminal: show() returns before opening the store."""
    class Gone:
        id = "gone"
        dir = "/nonexistent/run"
        _quiet = False

    assert end_summary.how(None) is None
    with caplog.at_level(logging.DEBUG, logger="mpbackend"):
        end_summary.show(Gone())
        end_summary.show(Gone(), quiet=False)
    assert not caplog.records, caplog.records  # a read would have failed, and been logged


def test_sparklines_from_the_store(rundir):
    run = mpbackend.init(project="end", name="shapes", settings={"system_interval": 0})
    n = 3000
    for i in range(n):
        row = {"ramp": i, "const": 1.5, "never": "text"}
        row["gappy"] = float("nan") if n // 3 <= i < 2 * n // 3 else float(i % 10)
        if i % 2:
            row["sparse"] = -i  # logged in every other row only
        run.log(row)
    run.summary["set_only"] = 7
    run.finish()
    data = end_summary.read(run.dir)
    assert data["steps"] == n and data["state"] == "finished" and data["name"] == "shapes"
    metrics = {key: (value, points) for key, value, points in data["metrics"]}
    assert set(metrics) == {"ramp", "const", "never", "gappy", "sparse", "set_only"}
    ramp = end_summary.spark(metrics["ramp"][1])
    assert ramp[0] == "▁" and ramp[-1] == "█" and list(ramp) == sorted(ramp)
    assert end_summary.spark(metrics["const"][1]) == "▁" * end_summary.SPARK_POINTS
    assert metrics["never"][1] == [] and metrics["set_only"] == (7, [])
    gappy = end_summary.spark(metrics["gappy"][1])
    middle = gappy[end_summary.SPARK_POINTS // 3 + 1: 2 * end_summary.SPARK_POINTS // 3 - 1]
    assert middle.strip() == "" and gappy[0] != " " and gappy[-1] != " ", gappy
    sparse = end_summary.spark(metrics["sparse"][1])
    assert sparse[0] == "█" and sparse[-1] == "▁"
    text = end_summary.text(data)
    assert "never" in text and "text" in text
    html = end_summary.html_summary(data)
    assert html.count("<svg") == 4 and "mpbackend show" in html


# -- Jupyter -------------------------------------------------------------------------


def test_jupyter_shows_the_summary_as_html(tmp_path):
    import nbclient
    import nbformat

    cells = [
        """
        import mpbackend
        run = mpbackend.init(project="nb", name="nb-run<&>")
        for i in range(100):
            run.log({"loss": 1 / (i + 1), "tag": "a"})
        """,
        "run.finish()",
        """
        hushed = mpbackend.init(project="nb", name="hushed")
        hushed.log({"x": 1})
        hushed.finish(quiet=True)
        """,
    ]
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(textwrap.dedent(c).strip()) for c in cells])
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=40,
                                     startup_timeout=40,
                                     resources={"metadata": {"path": str(tmp_path)}})
    env = {**os.environ, "PYTHONPATH": ROOT, "MPBACKEND_DIR": str(tmp_path / "mpruns")}
    env.pop("MPBACKEND_SILENT", None)
    with client.setup_kernel(env=env):
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
    for cell in nb.cells:
        errors = [o for o in cell.outputs if o.get("output_type") == "error"]
        assert not errors, errors

    shown = [o for o in nb.cells[1].outputs if o.get("output_type") == "display_data"]
    assert len(shown) == 1, nb.cells[1].outputs
    page = shown[0]["data"]["text/html"]
    assert "mpbackend-end" in page and "nb-run&lt;&amp;&gt;" in page, page
    assert "finished" in page and "<svg" in page and "mpbackend show" in page
    assert "loss" in page and "tag" in page
    assert not [o for o in nb.cells[2].outputs if o.get("output_type") == "display_data"]
