"""Local sweeps: wandb's sweep configuration, grid / random / bayes, 12 trials by two
agents in two processes at once, none run twice; each trial's run holds its
parameters as its config and the sweep, and the trial its metric value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT, result

from mpbackend.sweeps import plan, store

AGENT = textwrap.dedent("""
    import sys, mpbackend as wandb

    def train():
        run = wandb.init()
        lr, width = run.config.lr, run.config.model["width"]
        for epoch in range(run.config.epochs):
            wandb.log({"loss": (lr - 0.03) ** 2 + 1 / width + epoch * 0.001})

    wandb.agent(sys.argv[1], train)
    print("RESULT {}")
""")


def _config(method: str) -> dict:
    lr = ({"values": [0.1, 0.03, 0.01, 0.003, 0.001, 0.0003]} if method == "grid"
          else {"distribution": "log_uniform_values", "min": 1e-4, "max": 0.1})
    return {"method": method, "metric": {"name": "loss", "goal": "minimize"},
            "run_cap": 12, "parameters": {
                "lr": lr, "epochs": {"value": 2},
                "model": {"parameters": {"width": {"values": [8, 16]}}}}}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("method", ["grid", "random", "bayes"])
def test_two_agents_share_a_sweep_without_running_a_trial_twice(tmp_path, method):
    import mpbackend

    mp = tmp_path / "mpruns"
    env = {**os.environ, "PYTHONPATH": ROOT, "MPBACKEND_DIR": str(mp), "MPBACKEND_SILENT": "1"}
    os.environ["MPBACKEND_DIR"] = str(mp)
    try:
        sweep_id = mpbackend.sweep(_config(method), project="sw")
    finally:
        del os.environ["MPBACKEND_DIR"]
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    agents = [subprocess.Popen([sys.executable, str(script), sweep_id], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    for proc in agents:
        out, err = proc.communicate(timeout=200)
        assert proc.returncode == 0, err[-3000:]
        result(subprocess.CompletedProcess(proc.args, 0, out, err))
    trials = store.trials(str(mp), "sw", sweep_id)
    assert [t["n"] for t in trials] == list(range(12))
    assert {t["state"] for t in trials} == {"finished"}
    assert len({t["agent"] for t in trials}) == 2  # both agents ran trials
    if method == "grid":  # every combination once
        combos = {(t["params"]["lr"], t["params"]["model"]["width"]) for t in trials}
        assert len(combos) == 12
    api = mpbackend.Api(str(mp))
    for trial in trials:
        run = api.run(f"sw/{trial['run_id']}")
        params = trial["params"]
        assert run.config == params and run.info()["extra"]["sweep"] == sweep_id
        expected = (params["lr"] - 0.03) ** 2 + 1 / params["model"]["width"] + 0.001
        assert trial["value"] == pytest.approx(expected) == run.summary["loss"]
        assert 1e-4 <= params["lr"] <= 0.1 and params["epochs"] == 2
    swept = api.sweep(f"sw/{sweep_id}")  # the Api lists the sweep, its trials, their runs
    assert [r.id for r in swept.runs] == [t["run_id"] for t in trials]
    best = min(trials, key=lambda t: t["value"])
    assert swept.best_run().id == best["run_id"] and api.sweep(sweep_id).id == sweep_id


def test_a_bad_sweep_configuration_fails_at_the_call(tmp_path):
    with pytest.raises(ValueError, match="sweep method"):
        plan.check({"method": "hyper", "parameters": {"a": {"value": 1}}})
    with pytest.raises(ValueError, match="a grid sweep takes values"):
        plan.check({"method": "grid", "parameters": {"a": {"min": 0.0, "max": 1.0}}})
    with pytest.raises(ValueError, match="bayes sweep needs metric"):
        plan.check({"method": "bayes", "parameters": {"a": {"values": [1]}}})
    with pytest.raises(ValueError, match="min is above max"):
        plan.check({"method": "random", "parameters": {"a": {"min": 2, "max": 1}}})


def test_random_draws_follow_their_distributions():
    import random

    rng = random.Random(0)
    draws = [plan.sample({"distribution": "log_uniform_values", "min": 1e-4, "max": 1.0}, rng)
             for _ in range(2000)]
    assert min(draws) >= 1e-4 and max(draws) <= 1.0
    assert 0.4 < sum(d < 1e-2 for d in draws) / len(draws) < 0.6  # half the decades
    q = [plan.sample({"distribution": "q_uniform", "min": 0, "max": 10, "q": 2}, rng)
         for _ in range(200)]
    assert set(q) <= {0, 2, 4, 6, 8, 10}
    ints = [plan.sample({"distribution": "int_uniform", "min": 1, "max": 3}, rng)
            for _ in range(200)]
    assert set(ints) == {1, 2, 3}
    assert json.dumps(plan.grid({"parameters": {"a": {"values": [1, 2]},
                                                "b": {"value": "x"}}})) == \
        '[{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]'


@pytest.mark.timeout(240)
def test_the_command_line_sweep_and_two_agents_run_the_program(tmp_path):
    (tmp_path / "train.py").write_text(textwrap.dedent("""
        import argparse, mpbackend as wandb
        parser = argparse.ArgumentParser()
        parser.add_argument("--lr", type=float)
        parser.add_argument("--layers", type=int)
        args = parser.parse_args()
        run = wandb.init(config=args)
        wandb.log({"loss": (args.lr - 0.03) ** 2 + args.layers})
    """))
    (tmp_path / "sweep.json").write_text(json.dumps({
        "method": "grid", "program": "train.py", "metric": {"name": "loss"},
        "parameters": {"lr": {"values": [0.1, 0.01, 0.001]}, "layers": {"values": [1, 2]}}}))
    env = {**os.environ, "PYTHONPATH": ROOT, "MPBACKEND_DIR": str(tmp_path / "mpruns"),
           "MPBACKEND_SILENT": "1"}
    made = subprocess.run([sys.executable, "-m", "mpbackend", "sweep", "sweep.json", "-p", "cli"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    path = made.stdout.strip()
    assert path.startswith("cli/")
    agents = [subprocess.Popen([sys.executable, "-m", "mpbackend", "agent", path], cwd=tmp_path,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True) for _ in range(2)]
    for proc in agents:
        _, err = proc.communicate(timeout=200)
        assert proc.returncode == 0, err[-2000:]
    trials = store.trials(str(tmp_path / "mpruns"), "cli", path.split("/")[1])
    assert len(trials) == 6 and {t["state"] for t in trials} == {"finished"}
    assert len({(t["params"]["lr"], t["params"]["layers"]) for t in trials}) == 6
    for trial in trials:
        p = trial["params"]
        assert trial["value"] == pytest.approx((p["lr"] - 0.03) ** 2 + p["layers"])
