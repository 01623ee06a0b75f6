"""The Hugging Face integrations under the real frameworks: MpbackendCallback in the
transformers Trainer (a tiny BERT from a config, 2 epochs with evaluation,
checkpoints as artifacts with WANDB_LOG_MODEL=checkpoint), and MpbackendTracker in an
accelerate loop."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import RESULT, ROOT

FRAMEWORKS = os.path.join(os.path.dirname(__file__), "frameworks")


def _run(tmp_path, script: str, **env: str) -> dict:
    env = {**os.environ, "PYTHONPATH": ROOT, "MPBACKEND_DIR": str(tmp_path / "mpruns"),
           "PYTHONWARNINGS": "ignore", **env}
    done = subprocess.run([sys.executable, os.path.join(FRAMEWORKS, script)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=240)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1][len(RESULT):])


@pytest.mark.timeout(300)
def test_trainer_logs_as_wandbs_callback(tmp_path):
    got = _run(tmp_path, "hf_train.py", WANDB_LOG_MODEL="checkpoint")
    assert {"train/loss", "train/learning_rate", "train/global_step", "eval/loss"} <= set(
        got["keys"])
    summary = got["summary"]
    assert summary["train_loss"] == pytest.approx(got["train_loss"])  # as WandbCallback
    assert summary["eval/loss"] == pytest.approx(got["eval"]["eval_loss"])
    assert summary["train/global_step"] == 8  # 32 samples / 8 a batch x 2 epochs
    assert got["nparams"] > 0 and got["lr"] == 5e-05 and got["hidden"] == 16
    assert got["artifacts"][-1].endswith(":v1") and len(got["artifacts"]) == 2  # one a save


@pytest.mark.timeout(300)
def test_an_accelerate_loop_logs_through_the_tracker(tmp_path):
    got = _run(tmp_path, "accelerate_loop.py")
    assert got["state"] == "finished" and got["config"] == {"lr": 0.05, "epochs": 3}
    assert got["rows"] == [[i, loss] for i, loss in enumerate(got["losses"])]
