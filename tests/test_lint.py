"""The code base stays clean and the two processes stay apart.

ruff, mypy and the import contracts (import-linter) run from this interpreter
(``sys.executable -m ...``), so they never skip because a venv's scripts are not
on PATH; their settings are in pyproject.toml. The last tests check what the
contracts cannot see: the modules a service process and ``import mpbackend``
really load.
"""

import json
import subprocess
import sys

import pytest
from conftest import ROOT


def _run(*args: str, timeout: float = 200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.timeout(120)
def test_ruff_clean():
    result = _run("-m", "ruff", "check", "mpbackend", "tests", "examples", "bench", "tools")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(300)
def test_mypy_clean():
    result = _run("-m", "mypy", timeout=280)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(120)
def test_import_contracts_kept():
    """shared imports no side; the service never the user side or the readers; the
    user side never the service or the store; the store and readers neither side."""
    result = _run("-c", "import sys; from importlinter.cli import lint_imports_command; "
                  "sys.exit(lint_imports_command())")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


def _loaded(code: str) -> list[str]:
    """The mpbackend modules a fresh interpreter has loaded after running ``code``."""
    script = (code + "\nimport json, sys\n"
              "print(json.dumps(sorted(m for m in sys.modules if m.startswith('mpbackend'))))")
    result = _run("-c", script, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.timeout(60)
def test_a_service_process_loads_only_the_service_the_store_and_shared():
    """What a spawned service imports: its entry point (by name), then mux and what
    mux imports, and the classes of its arguments (the queues, Settings)."""
    loaded = _loaded("import pickle\n"
                     "from mpbackend.shared import entry, queues, settings\n"
                     "import importlib; importlib.import_module(entry.SERVICE_MODULE)")
    assert "mpbackend.service.mux" in loaded
    outside = [name for name in loaded if name != "mpbackend" and not name.startswith(
        ("mpbackend.shared", "mpbackend.service", "mpbackend.store"))]
    assert outside == [], outside


@pytest.mark.timeout(60)
def test_import_mpbackend_loads_no_side_until_a_name_is_used():
    loaded = _loaded("import mpbackend")
    assert loaded == ["mpbackend", "mpbackend.shared", "mpbackend.shared.version"], loaded
    used = _loaded("import mpbackend\nmpbackend.Api\nmpbackend.Settings")
    assert "mpbackend.read.api" in used and "mpbackend.shared.settings" in used
    assert not any(name.startswith(("mpbackend.user", "mpbackend.service")) for name in used)
    names = _run("-c", "import json, mpbackend; print(json.dumps({n: type(getattr(mpbackend, n))"
                       ".__name__ for n in mpbackend.__all__}))").stdout
    assert all(kind != "NoneType" or name in ("run", "config", "summary")
               for name, kind in json.loads(names).items()), names
    everything = _loaded("from mpbackend import *")
    assert "mpbackend.user.init" in everything
    assert not any(name.startswith("mpbackend.service") for name in everything), everything


def test_the_interface_keeps_its_attributes_in_slots():
    """log() reads the Interface's attributes on every call: in slots those reads stay
    fast however many it has (past 30 in an instance dict each read cost twice as much)."""
    from mpbackend.user.interface import Interface

    assert not hasattr(Interface.__new__(Interface), "__dict__")


def test_format_value_cuts_strings_only_when_asked():
    from mpbackend.read.format import format_value

    long = "x" * 200
    assert format_value(long) == long  # `mpbackend show` prints a dir or a note whole
    assert format_value(long, 40) == "x" * 37 + "..."
    assert format_value(list(range(100))).endswith("...")  # JSON is cut at JSON_WIDTH
    assert format_value({"min": 0.1234567, "max": 2}) == "min 0.123457 max 2"
    assert format_value(True) == "true" and format_value(None) == ""
