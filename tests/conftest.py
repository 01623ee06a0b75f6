"""Shared fixtures: a run directory per test, scripts run as real subprocesses, reaping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

import mpbackend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def rundir(tmp_path, monkeypatch):
    """A fresh MPBACKEND_DIR for the test; the service is torn down afterwards."""
    path = tmp_path / "mpruns"
    monkeypatch.setenv("MPBACKEND_DIR", str(path))
    yield path
    mpbackend.teardown()


def _shared_helper(proc: psutil.Process) -> bool:
    """multiprocessing's resource tracker and fork server outlive tests by design."""
    try:
        cmdline = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return "resource_tracker" in cmdline or "forkserver" in cmdline


@pytest.fixture(autouse=True)
def _reap_children():
    """Every process a test starts is gone when it ends (killed if need be)."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    mpbackend.teardown()  # a no-op when this process has no service
    leftovers = [p for p in psutil.Process().children(recursive=True)
                 if p.pid not in before and not _shared_helper(p)]
    for proc in leftovers:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(leftovers, timeout=5)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI nothing may be skipped: a skip there is a failure (the environment
    .ci/run builds has everything the tests need)."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, which must run every test: {report.longrepr}"


def run_script(code: str, tmp_path, timeout: float = 60, env: dict | None = None,
               name: str = "script.py") -> subprocess.CompletedProcess:
    """Write ``code`` to a file under ``tmp_path`` and run it with this Python."""
    script = tmp_path / name
    script.write_text(textwrap.dedent(code))
    full_env = {**os.environ, "PYTHONPATH": ROOT, "MPBACKEND_DIR": str(tmp_path / "mpruns")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def stored(run_dir) -> tuple[dict, list[dict]]:
    """(info, history rows) of the run stored in ``run_dir``, read in this process."""
    with mpbackend.RunReader(str(run_dir)) as reader:
        return reader.info(), reader.history()


def exited(pid: int) -> bool:
    """True if ``pid`` has exited (gone, or a zombie nobody reaped yet)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def assert_steps(history: list[dict]) -> None:
    """Steps are exactly 0..k-1: none missing, none twice."""
    steps = [row["_step"] for row in history]
    assert steps == list(range(len(steps))), steps


RESULT = "RESULT "


def result(completed: subprocess.CompletedProcess) -> dict:
    """The JSON of a finished script's ``RESULT `` line."""
    for line in completed.stdout.splitlines():
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT):])
    raise AssertionError(f"no result line (code {completed.returncode});\n"
                         f"stdout:\n{completed.stdout}\nstderr:\n{completed.stderr}")
