"""A sweep's ``early_terminate`` (hyperband): the rule on plain histories (wandb's,
bands from ``min_iter`` or ``max_iter``/``s``, strict or not, either goal), and
real agents stopping real trials: a script's agent (the trial's next log() raises
TrialStopped) and the command line's (the program gets SIGTERM); every row the
stopped trials logged is kept, and the trial is recorded ``stopped``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT

from mpbackend.sweeps import hyperband, plan, store


def test_bands_from_min_iter_and_from_max_iter():
    spec = hyperband.check({"type": "hyperband", "min_iter": 3, "eta": 3})
    assert spec["strict"] is True and hyperband.bands(spec, 100) == [3, 9, 27, 81]
    assert hyperband.bands(hyperband.check({"type": "hyperband", "max_iter": 18, "s": 2}),
                           100) == [2, 6]
    assert hyperband.bands(hyperband.check({"type": "hyperband", "max_iter": 81, "eta": 3,
                                            "s": 3}), 100) == [3, 9, 27]
    assert hyperband.bands(spec, 8) == [3]  # only the bands a history has reached


def test_a_trial_is_judged_at_the_last_band_it_reached():
    spec = hyperband.check({"type": "hyperband", "max_iter": 5, "eta": 2, "s": 2})
    histories = {"a": [10, 9], "b": [10, 10], "c": [10, 8, 8], "d": [10, 7, 7],
                 "e": [10, 6, 6]}
    # band 2's values 9, 10, 8, 7, 6: the top half ends at 8
    assert "worse than 8" in hyperband.verdict(histories, "b", spec)
    assert hyperband.verdict(histories, "c", spec) is None  # 8 is not worse than 8
    assert hyperband.verdict(histories, "d", spec) is None
    histories["b"] = [11]  # judged at band 1, where every value is 10 but its own
    assert hyperband.verdict(histories, "b", spec) is not None


def test_strict_judges_the_value_at_the_band_and_loose_the_best_so_far():
    strict = hyperband.check({"type": "hyperband", "min_iter": 3, "eta": 3})
    loose = {**strict, "strict": False}
    histories = {"good": [5, 4, 3], "dips": [9, 1, 9, 9]}
    assert hyperband.verdict(histories, "dips", strict) is not None  # 9 at iteration 3
    assert hyperband.verdict(histories, "dips", loose) is None  # it has been at 1
    assert hyperband.verdict({"alone": [9, 9, 9]}, "alone", strict) is None


def test_maximize_keeps_the_highest():
    spec = hyperband.check({"type": "hyperband", "min_iter": 2, "eta": 3})
    histories = {"high": [0.5, 0.9], "low": [0.5, 0.2]}
    assert hyperband.verdict(histories, "low", spec, "maximize") is not None
    assert hyperband.verdict(histories, "high", spec, "maximize") is None
    assert hyperband.verdict(histories, "high", spec, "minimize") is not None


def test_a_bad_early_terminate_fails_at_sweep():
    base = {"method": "grid", "metric": {"name": "loss"}, "parameters": {"a": {"values": [1]}}}
    for bad, match in [({"type": "median"}, "type is hyperband"),
                       ({"type": "hyperband"}, "needs min_iter"),
                       ({"type": "hyperband", "max_iter": 9}, "needs s"),
                       ({"type": "hyperband", "min_iter": 0}, "min_iter is a whole"),
                       ({"type": "hyperband", "min_iter": 3, "eta": 1}, "eta is a number"),
                       ({"type": "hyperband", "max_iter": 2, "eta": 3, "s": 1}, "no band"),
                       ({"type": "hyperband", "min_iter": 3, "every": 2}, "unknown key")]:
        with pytest.raises(ValueError, match=match):
            plan.check({**base, "early_terminate": bad})
    with pytest.raises(ValueError, match="needs metric"):
        plan.check({"method": "grid", "parameters": {"a": {"values": [1]}},
                    "early_terminate": {"type": "hyperband", "min_iter": 3}})


def test_no_new_trial_once_one_reached_the_target(tmp_path):
    config = {"method": "random", "metric": {"name": "acc", "goal": "maximize", "target": 0.9},
              "parameters": {"a": {"min": 0.0, "max": 1.0}}}
    sweep_id = store.create(str(tmp_path), "t", config)
    first = store.claim(str(tmp_path), "t", sweep_id)
    store.finish(str(tmp_path), "t", sweep_id, first, "finished", 0.5)
    second = store.claim(str(tmp_path), "t", sweep_id)
    assert second is not None
    store.finish(str(tmp_path), "t", sweep_id, second, "finished", 0.95)
    assert store.claim(str(tmp_path), "t", sweep_id) is None


def test_bayes_learns_from_stopped_trials_too(tmp_path, monkeypatch):
    """A trial hyperband stopped is an observation of its parameters (its value when
    stopped): the next bayes suggestion is told it, as it is told finished ones."""
    config = {"method": "bayes", "metric": {"name": "loss"},
              "parameters": {"a": {"min": 0.0, "max": 1.0}}}
    sweep_id = store.create(str(tmp_path), "t", config)
    for state, value in (("finished", 0.5), ("stopped", 0.9), ("failed", None)):
        trial = store.claim(str(tmp_path), "t", sweep_id)
        store.finish(str(tmp_path), "t", sweep_id, trial, state, value)
    told: list = []
    monkeypatch.setattr(plan, "bayes_params",
                        lambda config, done, seed: told.extend(done) or {"a": 0.1})
    store.claim(str(tmp_path), "t", sweep_id)
    assert sorted(value for _, value in told) == [0.5, 0.9]


# The first trial is good and short; the others are worse from their first value on
# and would log for 30 s: only being stopped ends them within the test's time.
TRAIN = """
    import time, mpbackend as wandb

    def train():
        run = wandb.init()
        bad = run.config.offset
        for i in range(12 if not bad else 600):
            wandb.log({"loss": bad + 1.0 / (i + 1)})
            time.sleep(0.05 if bad else 0.0)
        if bad:
            raise RuntimeError("not stopped in 30 s")
"""


def _sweep_env(tmp_path, config: dict) -> tuple[dict, str]:
    mp = tmp_path / "mpruns"
    env = {**os.environ, "PYTHONPATH": ROOT, "MPBACKEND_DIR": str(mp), "MPBACKEND_SILENT": "1",
           "MPBACKEND_SWEEP_POLL_SECONDS": "0.1"}
    sweep_id = store.create(str(mp), "hb", plan.check(config))
    return env, sweep_id


def _check_stopped(tmp_path, sweep_id: str, run_state: str) -> None:
    import mpbackend

    mp = str(tmp_path / "mpruns")
    trials = store.trials(mp, "hb", sweep_id)
    assert [t["state"] for t in trials] == ["finished", "stopped", "stopped"], trials
    api = mpbackend.Api(mp)
    good = api.run(f"hb/{trials[0]['run_id']}")
    assert good.state == "finished" and good.lastHistoryStep == 11
    for trial in trials[1:]:
        assert "hyperband: at iteration 3" in trial["stopped"]
        run = api.run(f"hb/{trial['run_id']}")
        assert run.state == run_state
        losses = [row["loss"] for row in run.scan_history(keys=["loss"])]
        # Stopped after the band at iteration 3, long before its 600 steps; what it
        # logged before it was stopped is all there, in order.
        assert 3 <= len(losses) < 300
        offset = trial["params"]["offset"]
        assert losses == pytest.approx([offset + 1.0 / (i + 1) for i in range(len(losses))])
        assert trial["value"] == pytest.approx(losses[-1])


CONFIG = {"method": "grid", "metric": {"name": "loss", "goal": "minimize"},
          "early_terminate": {"type": "hyperband", "min_iter": 3, "eta": 3},
          "parameters": {"offset": {"values": [0, 5, 7]}}}


@pytest.mark.timeout(120)
def test_a_scripts_agent_stops_the_worse_trials_at_their_next_log(tmp_path):
    env, sweep_id = _sweep_env(tmp_path, CONFIG)
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(TRAIN) + textwrap.dedent("""
        import sys
        print("ran", wandb.agent(sys.argv[1], train, project="hb"))
    """))
    done = subprocess.run([sys.executable, str(script), sweep_id], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=100)
    assert done.returncode == 0 and "ran 3" in done.stdout, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    _check_stopped(tmp_path, sweep_id, "finished")


@pytest.mark.timeout(120)
def test_the_command_line_agent_stops_the_worse_programs(tmp_path):
    (tmp_path / "train.py").write_text(textwrap.dedent(TRAIN) + "\ntrain()\n")
    env, sweep_id = _sweep_env(tmp_path, {**CONFIG, "program": "train.py"})
    done = subprocess.run([sys.executable, "-m", "mpbackend", "agent", f"hb/{sweep_id}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("stopped: hyperband") == 2, done.stderr[-3000:]
    # SIGTERM, as from a scheduler: the program writes what it logged and ends.
    _check_stopped(tmp_path, sweep_id, "interrupted")
    json.dumps(store.trials(str(tmp_path / "mpruns"), "hb", sweep_id))  # stored as JSON
