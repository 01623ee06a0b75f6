"""The code base stays `ruff check` clean (the settings are in pyproject.toml)."""

import shutil
import subprocess

import pytest
from conftest import ROOT


@pytest.mark.timeout(120)
def test_ruff_clean():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it is in the 'test' extra)")
    result = subprocess.run([ruff, "check", "mpbackend", "tests", "examples", "bench"],
                            cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert result.returncode == 0, result.stdout + result.stderr
