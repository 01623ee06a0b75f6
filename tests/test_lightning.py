"""MpbackendLogger under the real Lightning: a tiny LightningModule, 2 epochs, with
DataLoader workers, with both packages' imports, and with ddp_spawn and ddp on CPU
(2 processes, gloo): one run, logged by rank 0, finished once, read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import RESULT, ROOT

SCRIPT = os.path.join(os.path.dirname(__file__), "frameworks", "lightning_fit.py")


def _fit(tmp_path, package: str, strategy: str) -> dict:
    env = {**os.environ, "PYTHONPATH": ROOT, "MPBACKEND_DIR": str(tmp_path / "mpruns"),
           "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, SCRIPT, package, strategy], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1][len(RESULT):])


@pytest.mark.timeout(300)
@pytest.mark.parametrize("package,strategy", [("lightning", "auto"),
                                              ("pytorch_lightning", "auto"),
                                              ("lightning", "ddp_spawn"),
                                              ("lightning", "ddp")])
def test_a_tiny_module_is_one_finished_run(tmp_path, package, strategy):
    got = _fit(tmp_path, package, strategy)
    assert got["runs"] == 1 and got["state"] == "finished"
    assert got["config"] == {"lr": 0.1, "hidden": {"width": 4}}  # save_hyperparameters()
    steps = got["steps"]
    assert steps == sorted(steps) and None not in steps  # trainer/global_step in every row
    assert {"train_loss", "val_loss", "epoch", "trainer/global_step"} <= set(got["keys"])
    assert got["summary_val"] == pytest.approx(got["val"])  # the trainer's last val_loss
    (name, aliases), = got["artifacts"]  # log_model=True: the best checkpoint, at the end
    assert name.startswith("model-") and name.endswith(":v0")
    assert sorted(aliases) == ["best", "latest"]
