"""MpbackendMetricsLogger under real Keras 3 on the torch backend (no TensorFlow): epoch
and batch metrics as fit() reported them, and the model as an artifact each epoch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import RESULT, ROOT

SCRIPT = os.path.join(os.path.dirname(__file__), "frameworks", "keras_fit.py")


@pytest.mark.timeout(300)
def test_fit_logs_epoch_and_batch_metrics_and_models(tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT, "MPBACKEND_DIR": str(tmp_path / "mpruns"),
           "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, SCRIPT], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    got = json.loads(lines[-1][len(RESULT):])
    assert got["backend"] == "torch"
    history = got["history"]
    epochs = got["epochs"]
    assert [r["epoch/epoch"] for r in epochs] == [0, 1, 2]
    for name, values in history.items():  # loss, mae, val_loss, val_mae, as fit() said
        assert [r[f"epoch/{name}"] for r in epochs] == pytest.approx(values)
    assert all(r["epoch/learning_rate"] == pytest.approx(0.01) for r in epochs)
    assert got["batches"] == [2, 4, 6, 8]  # 3 batches an epoch, every second one
    assert [a for _, a in got["artifacts"]] == [["epoch_0"], ["epoch_1"],
                                                ["epoch_2", "latest"]]
