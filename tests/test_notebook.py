"""mpbackend in a real Jupyter kernel, driven through nbclient.

Notebooks are built in code with nbformat and run cell by cell in an ipykernel
``python3`` kernel started with MPBACKEND_DIR in its environment and a temporary
directory as its working directory. Cells report what the test needs as
``RESULT {json}`` lines; the runs are then read back from their databases.
Nothing is mocked; every cell has a timeout, and every kernel is shut down and
reaped (the service it started too).

Sections follow the issue: a run across cells, re-running the init() cell,
a kernel interrupt during a logging loop, classes and lambdas defined in
cells, the run's HTML view, and a kernel shut down without finish().
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import textwrap
import time

import nbformat
import psutil
import pytest
from conftest import ROOT
from conftest import assert_steps as _assert_steps
from conftest import exited as _exited
from conftest import stored as _stored
from conftest import wait_for as _wait_for
from nbclient import NotebookClient

pytestmark = pytest.mark.timeout(120)

RESULT = "RESULT "
CELL_TIMEOUT = 60


# -- helpers ---------------------------------------------------------------------


def _notebook(*cells: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(textwrap.dedent(code).strip()) for code in cells])


def _client(nb: nbformat.NotebookNode, tmp_path, **kwargs) -> NotebookClient:
    return NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT, startup_timeout=60,
                          resources={"metadata": {"path": str(tmp_path)}}, **kwargs)


def _kernel_env(tmp_path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": ROOT, "MPBACKEND_DIR": str(tmp_path / "mpruns")}


def _text(cell, name: str = "stdout") -> str:
    return "".join(out.get("text", "") for out in cell.get("outputs", [])
                   if out.get("output_type") == "stream" and out.get("name") == name)


def _cell_result(cell) -> dict:
    """The last ``RESULT {json}`` line a cell printed."""
    found = [line[len(RESULT):] for line in _text(cell).splitlines() if line.startswith(RESULT)]
    assert found, f"no result line in the cell's output: {cell.get('outputs')}"
    return json.loads(found[-1])


def _errors(nb: nbformat.NotebookNode) -> list[str]:
    """Error outputs and mpbackend warnings printed anywhere in the notebook."""
    out = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                out.append(f"{output['ename']}: {output['evalue']}")
        if "mpbackend" in _text(cell, "stderr"):
            out.append(_text(cell, "stderr"))
    return out


def _kernel_pid(client: NotebookClient) -> int:
    pid = getattr(client.km.provisioner, "pid", None)
    assert pid is not None, "no local kernel process"
    return pid


def _assert_gone(pids: list[int], timeout: float = 10) -> None:
    """The kernel and its service have exited; kill and fail if either is left."""
    if _wait_for(lambda: all(_exited(p) for p in pids), timeout):
        return
    left = [p for p in pids if not _exited(p)]
    for pid in left:
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            pass
    raise AssertionError(f"processes left running after the kernel shut down: {left}")


INIT = """
    import json, os, mpbackend
    run = mpbackend.init(project="nb", config={"lr": 0.1})
    print("RESULT " + json.dumps({"id": run.id, "dir": run.dir, "pid": os.getpid(),
                                  "service": mpbackend.setup().manager.service.pid,
                                  "cwd": os.getcwd()}))
"""


# -- 1. a run across cells -----------------------------------------------------------


def test_init_log_finish_in_separate_cells(tmp_path):
    nb = _notebook(
        INIT,
        """
        for i in range(300):
            run.log({"i": i, "sq": i * i})
        """,
        """
        for i in range(300, 500):
            run.log({"i": i})
        run.finish()
        print("RESULT " + json.dumps({"state": run.state}))
        """)
    client = _client(nb, tmp_path)
    with client.setup_kernel(env=_kernel_env(tmp_path)):
        kernel = _kernel_pid(client)
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
    started = _cell_result(nb.cells[0])
    _assert_gone([kernel, started["service"]])
    assert started["pid"] == kernel
    assert started["cwd"] == str(tmp_path)
    assert started["dir"].startswith(str(tmp_path / "mpruns")), started
    assert _cell_result(nb.cells[2])["state"] == "finished"
    assert not _errors(nb), _errors(nb)

    info, history = _stored(started["dir"])
    assert info["state"] == "finished"
    assert info["config"] == {"lr": 0.1}
    _assert_steps(history)
    assert [row["i"] for row in history] == list(range(500))
    assert [row["sq"] for row in history[:300]] == [i * i for i in range(300)]


# -- 2. running the init() cell again -----------------------------------------------


def test_rerunning_the_init_cell_finishes_the_previous_run(tmp_path):
    nb = _notebook(
        textwrap.dedent(INIT) + "run.log({'x': run.id})\n"
        "all_runs = globals().get('all_runs', []) + [run]",
        """
        run.flush()
        print("RESULT " + json.dumps({"states": [r.state for r in all_runs],
                                      "current": mpbackend.run.id}))
        """,
        """
        run.log({"x": "last"})
        run.finish()
        print("RESULT " + json.dumps({"states": [r.state for r in all_runs]}))
        """)
    client = _client(nb, tmp_path)
    with client.setup_kernel(env=_kernel_env(tmp_path)):
        kernel = _kernel_pid(client)
        client.execute_cell(nb.cells[0], 0)
        first = _cell_result(nb.cells[0])
        client.execute_cell(nb.cells[0], 0)  # the same init() cell, run again
        second = _cell_result(nb.cells[0])
        client.execute_cell(nb.cells[1], 1)
        middle = _cell_result(nb.cells[1])
        first_info, first_history = _stored(first["dir"])
        second_info, _ = _stored(second["dir"])
        client.execute_cell(nb.cells[2], 2)
        end = _cell_result(nb.cells[2])
    _assert_gone([kernel, first["service"]])
    assert not _errors(nb), _errors(nb)

    assert first["id"] != second["id"]
    assert first["service"] == second["service"]  # one service for the kernel
    assert middle == {"states": ["finished", "running"], "current": second["id"]}
    assert first_info["state"] == "finished"
    assert [row["x"] for row in first_history] == [first["id"]]
    assert second_info["state"] == "running"
    assert end["states"] == ["finished", "finished"]
    info, history = _stored(second["dir"])
    assert info["state"] == "finished"
    assert [row["x"] for row in history] == [second["id"], "last"]


# -- 3. a kernel interrupt during a logging loop -------------------------------------

LOOP = """
    import time
    n = 0
    print("started", flush=True)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        run.log({"loop": n})
        n += 1
        if n % 50 == 0:
            time.sleep(0.001)
"""


async def _interrupted_session(client: NotebookClient, nb, env) -> dict:
    out: dict = {}
    async with client.async_setup_kernel(env=env):
        out["kernel"] = _kernel_pid(client)
        await client.async_execute_cell(nb.cells[0], 0)
        loop_cell = nb.cells[1]
        task = asyncio.ensure_future(client.async_execute_cell(loop_cell, 1))
        deadline = time.monotonic() + 30
        while "started" not in _text(loop_cell):
            assert not task.done(), f"the loop cell ended early: {loop_cell.outputs}"
            assert time.monotonic() < deadline, "the loop cell did not start"
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        await client.km.interrupt_kernel()
        out["interrupted_at"] = time.monotonic()
        await asyncio.wait_for(task, CELL_TIMEOUT)
        out["loop_ended_at"] = time.monotonic()
        for index in range(2, len(nb.cells)):
            await client.async_execute_cell(nb.cells[index], index)
    return out


def test_kernel_interrupt_during_logging_then_more_cells(tmp_path):
    nb = _notebook(
        INIT,
        LOOP,
        """
        print("RESULT " + json.dumps({"n": n, "state": run.state,
                                      "service": mpbackend.setup().manager.service.pid}))
        for j in range(100):
            run.log({"after": j})
        """,
        """
        run.log({"after": 100})
        run.finish()
        print("RESULT " + json.dumps({"state": run.state}))
        """)
    client = _client(nb, tmp_path, allow_errors=True)
    out = asyncio.run(_interrupted_session(client, nb, _kernel_env(tmp_path)))
    started = _cell_result(nb.cells[0])
    _assert_gone([out["kernel"], started["service"]])

    loop_errors = [o for o in nb.cells[1].outputs if o.get("output_type") == "error"]
    assert [o["ename"] for o in loop_errors] == ["KeyboardInterrupt"], nb.cells[1].outputs
    assert out["loop_ended_at"] - out["interrupted_at"] < 10
    after = _cell_result(nb.cells[2])
    assert after["state"] == "running" and after["n"] > 0, after
    assert after["service"] == started["service"]  # the SIGINT did not end the service
    assert _cell_result(nb.cells[3])["state"] == "finished"
    assert not [e for e in _errors(nb) if "KeyboardInterrupt" not in e], _errors(nb)

    info, history = _stored(started["dir"])
    assert info["state"] == "finished"
    _assert_steps(history)
    loop = [row["loop"] for row in history if "loop" in row]
    # The interrupt may land inside log() or just after it, before ``n += 1``.
    assert loop == list(range(len(loop))), "rows logged before the interrupt are missing"
    assert len(loop) in (after["n"], after["n"] + 1), (len(loop), after["n"])
    assert [row["after"] for row in history if "after" in row] == list(range(101))
    assert len(history) == len(loop) + 101


# -- 4. classes and lambdas defined in cells -----------------------------------------


def test_cell_defined_classes_and_lambdas_are_converted_or_refused(tmp_path):
    """A class defined in a cell with ``__float__`` is stored as its float, a lambda
    by its name (as wandb); an instance with no stored form raises TypeError in the
    cell that logs it (never stored as its repr), and the kernel, its service and
    the run go on."""
    nb = _notebook(
        """
        import json, mpbackend

        class Meter:
            def __init__(self, value):
                self.value = value

            def __float__(self):
                return float(self.value)

        class Optimizer:
            def __init__(self, lr):
                self.lr = lr

            def __repr__(self):
                return f"Optimizer(lr={self.lr})"

        refused = []
        for config in ({"optimizer": Optimizer(0.01)}, {"meter": [Optimizer(0.1)]}):
            try:
                mpbackend.init(project="nb", config=config)
            except TypeError as exc:
                refused.append(str(exc))
        run = mpbackend.init(project="nb", config={"lr": 0.01,
                                                   "schedule": lambda step: 0.5 ** step})
        run.config.update({"meter": Meter(1.5)})
        print("RESULT " + json.dumps({"service": mpbackend.setup().manager.service.pid,
                                      "refused": refused}))
        """,
        """
        try:
            run.log({"acc": Meter(0.75), "opt": Optimizer(0.3)})
        except TypeError as exc:
            refused = str(exc)
        run.log({"acc": Meter(0.75), "nested": {"m": Meter(3)}, "fn": lambda x: 2 * x})
        run.log({"acc": Meter(0.5)})
        run.flush()
        print("RESULT " + json.dumps({"acc": run.summary["acc"], "refused": refused}))
        """,
        """
        run.finish()
        print("RESULT " + json.dumps({"dir": run.dir, "state": run.state}))
        """)
    client = _client(nb, tmp_path)
    with client.setup_kernel(env=_kernel_env(tmp_path)):
        kernel = _kernel_pid(client)
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        time.sleep(0.3)  # a warning the service sent would reach the cell's stderr
    first_cell = _cell_result(nb.cells[0])
    _assert_gone([kernel, first_cell["service"]])
    assert not _errors(nb), _errors(nb)
    assert len(first_cell["refused"]) == 2
    assert "'optimizer'" in first_cell["refused"][0]
    assert "Optimizer has no stored form" in first_cell["refused"][0]
    assert "'meter'" in first_cell["refused"][1]
    second_cell = _cell_result(nb.cells[1])
    assert second_cell["acc"] == 0.5 and "'opt'" in second_cell["refused"]
    end = _cell_result(nb.cells[2])
    assert end["state"] == "finished"

    info, history = _stored(end["dir"])
    assert info["state"] == "finished"
    assert info["config"] == {"lr": 0.01, "schedule": "__main__.<lambda>", "meter": 1.5}
    assert len(history) == 2, history
    first, second = history
    assert first["acc"] == 0.75 and isinstance(first["acc"], float)
    assert first["nested.m"] == 3.0 and first["fn"] == "__main__.<lambda>"
    assert second["acc"] == 0.5
    assert info["summary"]["acc"] == 0.5


# -- 5. the run as HTML --------------------------------------------------------------


def _html(cell) -> str:
    results = [o for o in cell.outputs if o.get("output_type") == "execute_result"]
    assert results, f"the cell displayed nothing: {cell.outputs}"
    data = results[-1]["data"]
    assert "text/html" in data, data
    return data["text/html"]


def _field(page: str, name: str) -> str:
    """The value shown in the row headed ``name`` of the run's HTML table."""
    found = re.findall(rf"<th[^>]*>{name}</th>\s*<td[^>]*>(.*?)</td>", page)
    assert len(found) == 1, (name, page)
    return found[0]


def test_run_shows_itself_as_html(tmp_path):
    nb = _notebook(
        """
        import json, mpbackend
        run = mpbackend.init(project="nb", name="html-run")
        print("RESULT " + json.dumps({"id": run.id, "dir": run.dir,
                                      "service": mpbackend.setup().manager.service.pid}))
        run
        """,
        """
        run.log({"loss": 0.25, "acc": 0.875})
        run.log({"loss": 0.125, "acc": 0.9375})
        run.finish()
        run
        """)
    client = _client(nb, tmp_path)
    with client.setup_kernel(env=_kernel_env(tmp_path)):
        kernel = _kernel_pid(client)
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
    started = _cell_result(nb.cells[0])
    _assert_gone([kernel, started["service"]])
    assert not _errors(nb), _errors(nb)

    running = _html(nb.cells[0])
    assert _field(running, "name") == "html-run"
    assert _field(running, "id") == started["id"]
    assert _field(running, "state") == "running"
    assert _field(running, "dir") == html.escape(started["dir"])
    assert "mpbackend-summary" not in running

    finished = _html(nb.cells[1])
    assert _field(finished, "name") == "html-run"
    assert _field(finished, "state") == "finished"
    assert _field(finished, "dir") == html.escape(started["dir"])
    assert "mpbackend-summary" in finished
    summary = finished[finished.index("mpbackend-summary"):]
    rows = dict(re.findall(r"<tr><td[^>]*>(.*?)</td><td[^>]*>(.*?)</td></tr>", summary))
    assert rows == {"loss": "0.125", "acc": "0.9375"}, summary  # no _runtime, _step


# -- 6. the kernel shut down without finish() -------------------------------------------


def test_kernel_shutdown_without_finish_finishes_the_run(tmp_path):
    nb = _notebook(
        INIT,
        """
        for i in range(400):
            run.log({"i": i})
        """)
    client = _client(nb, tmp_path)
    with client.setup_kernel(env=_kernel_env(tmp_path)):
        kernel = _kernel_pid(client)
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        time.sleep(0.5)  # the kernel is idle, as when a user shuts it down
        shutdown_at = time.monotonic()
    # jupyter_client's normal shutdown: shutdown_request, SIGTERM after half of
    # shutdown_wait_time if the kernel has not exited, SIGKILL at its end.
    shutdown_seconds = time.monotonic() - shutdown_at
    started = _cell_result(nb.cells[0])
    _assert_gone([kernel, started["service"]])
    assert not _errors(nb), _errors(nb)

    # The service may still be storing what the kernel's exit sent it: wait, bounded.
    def ended() -> bool:
        return _stored(started["dir"])[0]["state"] != "running"

    assert _wait_for(ended, timeout=10)
    info, history = _stored(started["dir"])
    assert info["state"] == "finished", \
        f"the run ended {info['state']!r} (exit code {info['exit_code']}) after a normal " \
        f"kernel shutdown that took {shutdown_seconds:.2f} s"
    assert info["exit_code"] in (None, 0)
    _assert_steps(history)
    assert [row["i"] for row in history] == list(range(400))


# -- media in a notebook ----------------------------------------------------------------


def test_an_image_shows_in_the_notebook_and_is_logged(tmp_path):
    nb = _notebook(
        INIT,
        """
        import numpy as np
        img = mpbackend.Image(np.full((8, 8, 3), (0, 128, 255), dtype=np.uint8), caption="c")
        img
        """,
        """
        table = mpbackend.Table(columns=["a", "b"], data=[[1, "x"]])
        run.log({"img": img, "t": table})
        table
        """,
        """
        run.finish()
        ref = mpbackend.Api().run(run.id).history(pandas=False)[0]["img"]
        print("RESULT " + json.dumps({"path": ref["path"], "size": ref.image().size}))
        """)
    client = _client(nb, tmp_path)
    with client.setup_kernel(env=_kernel_env(tmp_path)):
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
    assert not _errors(nb), _errors(nb)
    (shown,) = [o for o in nb.cells[1].outputs if o.output_type == "execute_result"]
    import base64
    import io

    from PIL import Image as PILImage

    picture = PILImage.open(io.BytesIO(base64.b64decode(shown.data["image/png"])))
    assert picture.size == (8, 8) and picture.convert("RGB").getpixel((3, 3)) == (0, 128, 255)
    (table,) = [o for o in nb.cells[2].outputs if o.output_type == "execute_result"]
    assert "<table" in table.data["text/html"] and ">x<" in table.data["text/html"]
    stored = _cell_result(nb.cells[3])
    assert stored["path"].startswith("media/images/") and stored["size"] == [8, 8]
