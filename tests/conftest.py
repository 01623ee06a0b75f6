"""Shared fixtures: a run directory per test, scripts run as real subprocesses, reaping."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

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


class Script:
    """A training script in its own session; stdout and stderr go to files."""

    def __init__(self, code: str, where: Path, name: str = "script.py",
                 args: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 pass_fds: tuple[int, ...] = ()) -> None:
        where.mkdir(parents=True, exist_ok=True)
        path = where / name
        path.write_text(textwrap.dedent(code))
        self.out = where / (name + ".out")
        self.err = where / (name + ".err")
        full_env = {**os.environ, "PYTHONPATH": ROOT, "MPBACKEND_DIR": str(where / "mpruns")}
        full_env.update(env or {})
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, str(path), *args], cwd=where,
                                         env=full_env, stdout=out, stderr=err,
                                         start_new_session=True, pass_fds=pass_fds)
        self.pgid = self.proc.pid

    def lines(self) -> list[str]:
        """Complete lines written so far."""
        return self.out.read_text().split("\n")[:-1]

    def stderr(self) -> str:
        return self.err.read_text()

    def wait_line(self, prefix: str, timeout: float) -> str:
        """The first line starting with ``prefix``, waited for at most ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines():
                if line.startswith(prefix):
                    return line
            if self.proc.poll() is not None:
                found = [ln for ln in self.lines() if ln.startswith(prefix)]
                if found:
                    return found[0]
                raise AssertionError(f"the script ended (code {self.proc.returncode}) "
                                     f"before printing {prefix!r}; stderr:\n{self.stderr()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {prefix!r} line within {timeout} s; "
                                     f"stderr:\n{self.stderr()}")
            time.sleep(0.005)

    def outcome(self, timeout: float) -> dict:
        """Wait for the script to end (killed after ``timeout``); its result line."""
        try:
            self.proc.wait(timeout=timeout)
        finally:
            self.kill_group()
        assert self.proc.returncode == 0, self.stderr()
        return self.result()

    def result(self, timeout: float = 0.0) -> dict:
        """The script's ``RESULT`` line as JSON; waited for up to ``timeout`` s."""
        if timeout > 0:
            return json.loads(self.wait_line(RESULT, timeout)[len(RESULT):])
        for line in self.lines():
            if line.startswith(RESULT):
                return json.loads(line[len(RESULT):])
        raise AssertionError(f"no result line (code {self.proc.returncode}); stdout:\n"
                             f"{self.out.read_text()}\nstderr:\n{self.stderr()}")

    def wait(self, timeout: float) -> int:
        """The script's exit code, once it ends (AssertionError after ``timeout`` s)."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the script did not end within {timeout} s; "
                                 f"stderr:\n{self.stderr()}") from None

    def flushed(self) -> int:
        """The count printed by the last completed ``FLUSHED <n>`` line, or 0."""
        counts = [int(m.group(1)) for m in map(re.compile(r"FLUSHED (\d+)").match,
                                                self.lines()) if m]
        return max(counts, default=0)

    def kill_group(self) -> None:
        """SIGKILL everything left in the script's process group and reap the script."""
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


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


def chromium_binary() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe is not None, "chromium is not installed (apt-get install chromium; .ci/run does)"
    return exe


def headless(exe: str, tmp_path, *args: str, timeout: float = 60) -> str:
    """Run headless Chromium once (its stdout); its whole process group is killed after."""
    proc = subprocess.Popen(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
         *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, cwd=tmp_path)
    try:
        out, errors = proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
    assert proc.returncode == 0, errors[-2000:]
    return out
