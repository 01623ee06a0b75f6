"""The user-facing run API against wandb's documented behaviour: real service, real SQLite.

Nothing is mocked. Each test opens runs with ``mpbackend.init()`` (which starts a
real service process), logs, and reads the result back from the run's database
with ``RunReader``/``Api``. The ``rundir`` fixture gives every test its own
MPBACKEND_DIR and tears the service down; conftest's reaper kills leftovers.

Sections follow the issue: step/commit rules, summary and define_metric,
config, the Run object, resume, value round trips, many runs, many threads, and
the wandb-style example script.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest
from conftest import ROOT, stored, wait_for

import mpbackend
import mpbackend as wandb
from mpbackend.user.setup import current as current_setup

pytestmark = pytest.mark.timeout(60)


# -- helpers ---------------------------------------------------------------------




def user_rows(rows: list[dict]) -> list[tuple[int, dict]]:
    """Rows as (_step, the user's keys), without the _runtime/_timestamp fields."""
    return [(r["_step"], {k: v for k, v in r.items() if not k.startswith("_")}) for r in rows]


def children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


# -- 1. steps and commits ---------------------------------------------------------

# Each case: the log() calls as (data, step, commit), the rows a flush() makes
# durable before finish ("flushed"; None = not checked) and the rows stored after
# finish, as (_step, user keys). Behaviour as documented for wandb.log.
STEP_CASES = {
    "plain logs take consecutive steps": dict(
        calls=[({"a": 1}, None, None), ({"a": 2}, None, None), ({"b": 3}, None, None)],
        flushed=[(0, {"a": 1}), (1, {"a": 2}), (2, {"b": 3})],
        rows=[(0, {"a": 1}), (1, {"a": 2}), (2, {"b": 3})]),
    "commit=False merges into the next row": dict(
        calls=[({"a": 1}, None, False), ({"b": 2}, None, False), ({"c": 3}, None, None),
               ({"d": 4}, None, None)],
        flushed=[(0, {"a": 1, "b": 2, "c": 3}), (1, {"d": 4})],
        rows=[(0, {"a": 1, "b": 2, "c": 3}), (1, {"d": 4})]),
    "commit=False: a later value of the same key wins": dict(
        calls=[({"a": 1, "b": 1}, None, False), ({"a": 2}, None, None)],
        flushed=[(0, {"a": 2, "b": 1})],
        rows=[(0, {"a": 2, "b": 1})]),
    "explicit commit=True without step commits the merged row": dict(
        calls=[({"a": 1}, None, False), ({"b": 2}, None, True), ({"c": 3}, None, True)],
        flushed=[(0, {"a": 1, "b": 2}), (1, {"c": 3})],
        rows=[(0, {"a": 1, "b": 2}), (1, {"c": 3})]),
    "log() with no data commits the pending row": dict(
        calls=[({"a": 1}, None, False), ({}, None, None), ({"b": 2}, None, None)],
        flushed=[(0, {"a": 1}), (1, {"b": 2})],
        rows=[(0, {"a": 1}), (1, {"b": 2})]),
    "log() with no data and nothing pending is a row of its own (as in wandb)": dict(
        calls=[({}, None, None), ({"a": 1}, None, None), ({}, None, None), ({}, None, True)],
        flushed=[(0, {}), (1, {"a": 1}), (2, {}), (3, {})],
        rows=[(0, {}), (1, {"a": 1}), (2, {}), (3, {})]),
    "a pending commit=False row is not committed by flush, only by finish": dict(
        calls=[({"a": 1}, None, None), ({"b": 2}, None, False)],
        flushed=[(0, {"a": 1})],
        rows=[(0, {"a": 1}), (1, {"b": 2})]),
    "step equal to the current step merges": dict(
        calls=[({"a": 1}, 0, None), ({"b": 2}, 0, None), ({"a": 3}, 0, None)],
        flushed=[],  # commit defaults to False with a step: nothing committed yet
        rows=[(0, {"a": 3, "b": 2})]),
    "a larger step commits the pending row and moves on": dict(
        calls=[({"a": 1}, 0, None), ({"b": 2}, 3, None), ({"c": 3}, 3, None),
               ({"d": 4}, 10, None)],
        flushed=[(0, {"a": 1}), (3, {"b": 2, "c": 3})],
        rows=[(0, {"a": 1}), (3, {"b": 2, "c": 3}), (10, {"d": 4})]),
    "a log without step after a stepped row merges into it and commits": dict(
        calls=[({"a": 1}, 4, None), ({"b": 2}, None, None), ({"c": 3}, None, None)],
        flushed=[(4, {"a": 1, "b": 2}), (5, {"c": 3})],
        rows=[(4, {"a": 1, "b": 2}), (5, {"c": 3})]),
    "a smaller step is dropped": dict(
        calls=[({"a": 1}, None, None), ({"a": 2}, None, None), ({"x": 9}, 0, None),
               ({"x": 8}, 1, True), ({"a": 3}, None, None)],
        flushed=[(0, {"a": 1}), (1, {"a": 2}), (2, {"a": 3})],
        rows=[(0, {"a": 1}), (1, {"a": 2}), (2, {"a": 3})]),
    "explicit commit=True with a step commits at once": dict(
        calls=[({"a": 1}, 2, True), ({"b": 2}, None, None), ({"c": 3}, 7, True)],
        flushed=[(2, {"a": 1}), (3, {"b": 2}), (7, {"c": 3})],
        rows=[(2, {"a": 1}), (3, {"b": 2}), (7, {"c": 3})]),
    "commit=True with the current step merges the commit=False row": dict(
        calls=[({"a": 1}, None, False), ({"b": 2}, 0, True)],
        flushed=[(0, {"a": 1, "b": 2})],
        rows=[(0, {"a": 1, "b": 2})]),
    "a commit=False row is committed at its own step when a larger step arrives": dict(
        calls=[({"a": 1}, None, False), ({"b": 2}, 5, None)],
        flushed=[(0, {"a": 1})],
        rows=[(0, {"a": 1}), (5, {"b": 2})]),
    "step=s with commit=False merges like the default": dict(
        calls=[({"a": 1}, 1, False), ({"b": 2}, 1, False), ({"c": 3}, 2, False)],
        flushed=[(1, {"a": 1, "b": 2})],
        rows=[(1, {"a": 1, "b": 2}), (2, {"c": 3})]),
    "nested dicts are stored as dotted keys": dict(
        calls=[({"train": {"loss": 0.5, "opt": {"lr": 0.1}}, "epoch": 1}, None, None),
               ({"train": {"loss": 0.25}}, None, False), ({"val": {"acc": 0.9}}, None, None)],
        flushed=[(0, {"train.loss": 0.5, "train.opt.lr": 0.1, "epoch": 1}),
                 (1, {"train.loss": 0.25, "val.acc": 0.9})],
        rows=[(0, {"train.loss": 0.5, "train.opt.lr": 0.1, "epoch": 1}),
              (1, {"train.loss": 0.25, "val.acc": 0.9})]),
}


def test_step_and_commit_rules_table(rundir):
    """Every STEP_CASES case is run in its own run; all mismatches are reported at once."""
    failures = {}
    for n, (name, case) in enumerate(STEP_CASES.items()):
        run = mpbackend.init(project="steps", id=f"case-{n}")
        for data, step, commit in case["calls"]:
            run.log(data, step=step, commit=commit)
        run.flush(timeout=20)
        flushed = user_rows(stored(run.dir)[1])
        run.finish()
        info, rows = stored(run.dir)
        got = user_rows(rows)
        if flushed != case["flushed"] or got != case["rows"]:
            failures[name] = {"flushed": flushed, "expected flushed": case["flushed"],
                              "rows": got, "expected rows": case["rows"]}
            continue
        # Every row has _runtime and _timestamp, non-decreasing in step order.
        runtimes = [r["_runtime"] for r in rows]
        stamps = [r["_timestamp"] for r in rows]
        if (not all(isinstance(v, float) and v >= 0 for v in runtimes)
                or runtimes != sorted(runtimes) or stamps != sorted(stamps)
                or not all(run.start_time <= s <= time.time() for s in stamps)):
            failures[name] = {"_runtime": runtimes, "_timestamp": stamps}
            continue
        expected_step = case["rows"][-1][0] + 1
        if info["step"] != expected_step or run.step != expected_step:
            failures[name] = {"info step": info["step"], "run.step": run.step,
                              "expected": expected_step}
    assert not failures, "\n".join(f"{k}: {v}" for k, v in failures.items())


def test_smaller_step_is_dropped_with_a_warning(rundir, caplog):
    caplog.set_level(logging.WARNING, logger="mpbackend")
    run = mpbackend.init(project="steps", id="drop")
    for i in range(5):
        run.log({"i": i})
    run.log({"late": 1, "other": 2}, step=2)
    run.log({"i": 5})
    run.flush(timeout=20)

    def warned() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name == "mpbackend" and r.levelno == logging.WARNING
                and "step 2 is less than the current step 5" in r.getMessage()]

    assert wait_for(lambda: bool(warned()), 5), [r.getMessage() for r in caplog.records]
    assert len(warned()) == 1
    assert "'late'" in warned()[0] and "'other'" in warned()[0]
    run.finish()
    info, rows = stored(run.dir)
    assert user_rows(rows) == [(i, {"i": i}) for i in range(6)]
    assert "late" not in info["summary"] and "late" not in run.summary


# -- 2. summary and define_metric ---------------------------------------------------


def test_summary_holds_last_values_and_live_reads_see_everything_logged(rundir):
    run = mpbackend.init(project="summary", id="last")
    assert dict(run.summary) == {}
    for i in range(2000):
        run.log({"i": i, "loss": 1.0 / (i + 1)})
        if i % 500 == 0:
            run.log({"sparse": i})
    # No flush: reading the summary asks the service, after everything logged before.
    assert run.summary["i"] == 1999
    assert run.summary["loss"] == 1.0 / 2000
    assert run.summary["sparse"] == 1500
    assert run.summary["_step"] == 2003
    assert run.step == 2004
    assert "i" in run.summary and "nope" not in run.summary
    assert run.summary.get("nope", "dflt") == "dflt"
    with pytest.raises(KeyError):
        run.summary["nope"]
    run.log({"i": -1})
    assert run.summary.i == -1  # attribute access reads the service too
    run.finish()
    info, _ = stored(run.dir)
    assert info["summary"] == run.summary.as_dict()
    assert info["summary"]["i"] == -1 and info["summary"]["_step"] == 2004


def test_define_metric_summary_ops(rundir):
    run = mpbackend.init(project="summary", id="ops")
    run.define_metric("mn", summary="min")
    run.define_metric("mx", summary="max")
    run.define_metric("avg", summary="mean")
    run.define_metric("lst", summary="last")
    run.define_metric("lo", summary="best", goal="minimize")
    run.define_metric("hi", summary="best", goal="maximize")
    run.define_metric("hidden_sum", summary="none")
    run.define_metric("both", summary="min,max")
    run.define_metric("added", summary="min")
    run.define_metric("added", summary="max")  # a repeated call adds ops (as in wandb)
    run.define_metric("added", summary="mean,first")
    keys = ["mn", "mx", "avg", "lst", "lo", "hi", "hidden_sum", "both", "added", "plain"]
    for value in (3.0, 1.0, 5.0, 2.0):
        run.log({k: value for k in keys})
    expected = {
        "mn": {"min": 1.0}, "mx": {"max": 5.0}, "avg": {"mean": 2.75}, "lst": {"last": 2.0},
        "lo": {"best": 1.0}, "hi": {"best": 5.0}, "both": {"min": 1.0, "max": 5.0},
        "added": {"min": 1.0, "max": 5.0, "mean": 2.75, "first": 3.0}, "plain": 2.0,
    }
    live = run.summary.as_dict()
    assert {k: live.get(k) for k in keys if k != "hidden_sum"} == expected
    assert "hidden_sum" not in live and "hidden_sum" not in run.summary
    run.finish()
    info, rows = stored(run.dir)
    final = run.summary.as_dict()
    assert {k: final.get(k) for k in keys if k != "hidden_sum"} == expected
    assert "hidden_sum" not in final
    assert info["summary"] == final
    # The history itself is untouched by summary ops.
    assert [r["hidden_sum"] for r in rows] == [3.0, 1.0, 5.0, 2.0]


def test_define_metric_globs_and_exact_name_precedence(rundir):
    run = mpbackend.init(project="summary", id="globs")
    run.define_metric("val/*", summary="max")
    run.define_metric("val/loss", summary="min")   # exact name wins over the glob
    run.define_metric("val/sub/*", summary="mean")  # the longer glob wins
    for value in (2, 1, 3):
        run.log({"val/loss": value, "val/acc": value, "val/sub/x": value,
                 "train/loss": value})
    summary = run.summary.as_dict()
    assert summary["val/loss"] == {"min": 1}
    assert summary["val/acc"] == {"max": 3}
    assert summary["val/sub/x"] == {"mean": 2.0}
    assert summary["train/loss"] == 3  # no definition matches: last value
    run.finish()
    assert stored(run.dir)[0]["summary"] == run.summary.as_dict()


def test_define_metric_step_metric_with_step_sync(rundir):
    run = mpbackend.init(project="summary", id="sync")
    run.define_metric("epoch")
    run.define_metric("val/*", step_metric="epoch")  # step_sync defaults to True
    run.define_metric("nosync", step_metric="epoch", step_sync=False)
    run.log({"val/loss": 9.0})            # no epoch logged yet: 0 (as in wandb)
    run.log({"epoch": 0, "train": 1.0})
    run.log({"val/loss": 0.5})            # gets epoch 0
    run.log({"epoch": 1})
    run.log({"train": 2.0})               # not a synced metric: no epoch
    run.log({"val/acc": 0.7, "nosync": 1})  # gets epoch 1
    run.log({"nosync": 2})                # step_sync=False: no epoch
    run.log({"val/loss": 0.4, "epoch": 7})  # its own epoch is kept
    run.finish()
    rows = user_rows(stored(run.dir)[1])
    assert rows == [
        (0, {"val/loss": 9.0, "epoch": 0}),
        (1, {"epoch": 0, "train": 1.0}),
        (2, {"val/loss": 0.5, "epoch": 0}),
        (3, {"epoch": 1}),
        (4, {"train": 2.0}),
        (5, {"val/acc": 0.7, "nosync": 1, "epoch": 1}),
        (6, {"nosync": 2}),
        (7, {"val/loss": 0.4, "epoch": 7}),
    ]
    assert run.summary["epoch"] == 7


def test_user_set_summary_keys_last_write_wins_and_delete(rundir):
    """A key set on the summary stays until a row logs it again (the last write wins,
    as in wandb 0.31)."""
    run = mpbackend.init(project="summary", id="user")
    run.summary["best_acc"] = 0.9
    run.summary.update({"note": "hand-set"}, extra=3)
    run.log({"best_acc": 0.1, "loss": 2.0, "tmp": 1})
    run.log({"best_acc": 0.2, "loss": 1.0})
    assert run.summary["best_acc"] == 0.2  # logged after the set: the logged value
    run.summary["best_acc"] = 0.9  # set after the last log: the set value stays
    assert run.summary["note"] == "hand-set" and run.summary["extra"] == 3
    assert run.summary["loss"] == 1.0

    del run.summary["tmp"]                 # a logged key
    del run.summary["extra"]               # a user-set key
    assert "tmp" not in run.summary and "extra" not in run.summary
    with pytest.raises(KeyError):
        del run.summary["never-there"]
    run.log({"loss": 0.5})
    run.summary["loss"] = -5.0             # overriding a logged key
    assert run.summary["loss"] == -5.0
    run.flush(timeout=20)
    live_store = stored(run.dir)[0]["summary"]
    assert live_store["best_acc"] == 0.9 and "tmp" not in live_store
    run.finish()

    info, rows = stored(run.dir)
    final = run.summary.as_dict()
    assert info["summary"] == final
    assert final["best_acc"] == 0.9 and final["loss"] == -5.0 and final["note"] == "hand-set"
    assert "tmp" not in final and "extra" not in final
    assert [r.get("tmp") for r in rows] == [1, None, None]  # history keeps the value


def test_bad_define_metric_arguments_raise_at_the_call(rundir):
    run = mpbackend.init(project="summary", id="bad")
    with pytest.raises(ValueError, match="unknown summary op"):
        run.define_metric("loss", summary="median")
    with pytest.raises(ValueError, match="unknown summary op"):
        run.define_metric("loss", summary="min,avg")
    with pytest.raises(ValueError, match="goal"):
        run.define_metric("loss", summary="best")
    with pytest.raises(ValueError, match="goal"):
        run.define_metric("loss", summary="best", goal="up")
    with pytest.raises(ValueError, match="goal"):
        run.define_metric("loss", goal="lower")
    with pytest.raises(TypeError):
        run.define_metric("loss", summary=["min"])
    with pytest.raises(TypeError):
        run.define_metric("")
    # None of the rejected definitions reached the service.
    run.log({"loss": 2.0})
    run.log({"loss": 1.0})
    run.log({"loss": 3.0})
    assert run.summary["loss"] == 3.0
    metric = run.define_metric("loss", summary="best", goal="min")
    assert metric.goal == "minimize" and metric.summary == ("best",)
    run.log({"loss": 0.5})
    run.log({"loss": 2.0})
    assert run.summary["loss"] == {"best": 0.5}
    run.finish()


# -- 3. config --------------------------------------------------------------------------


class _Hparams:
    def __init__(self) -> None:
        self.depth = 4
        self.width = 128
        self._private = "not config"


def test_config_access_update_and_storage(rundir):
    run = mpbackend.init(project="config", id="cfg", config={"lr": 0.1, "opt": "adam"})
    assert run.config.lr == run.config["lr"] == 0.1
    assert run.config.get("missing", 7) == 7
    with pytest.raises(AttributeError):
        _ = run.config.missing
    with pytest.raises(KeyError):
        run.config["missing"]

    run.config.batch = 32
    run.config["epochs"] = 3
    run.config.update({"seed": 1})
    run.config.update(argparse.Namespace(dropout=0.5, arch="mlp"))
    run.config.update(_Hparams())
    run.config.setdefaults({"lr": 99.0, "warmup": 10})  # only the missing key is added
    expected = {"lr": 0.1, "opt": "adam", "batch": 32, "epochs": 3, "seed": 1,
                "dropout": 0.5, "arch": "mlp", "depth": 4, "width": 128, "warmup": 10}
    assert run.config.as_dict() == expected
    assert list(run.config.keys()) == list(expected)
    assert dict(run.config.items()) == expected
    assert len(run.config) == len(expected) and "depth" in run.config
    assert "_private" not in run.config

    run.flush(timeout=20)
    assert stored(run.dir)[0]["config"] == expected  # updates after init are stored
    run.finish()
    assert stored(run.dir)[0]["config"] == expected


def test_config_changes_need_allow_val_change(rundir):
    run = mpbackend.init(project="config", id="change", config={"lr": 0.1, "n": 1})
    with pytest.raises(mpbackend.ConfigError):
        run.config.lr = 0.2
    with pytest.raises(mpbackend.ConfigError):
        run.config["lr"] = 0.2
    with pytest.raises(mpbackend.ConfigError):
        run.config.update({"lr": 0.2})
    with pytest.raises(mpbackend.ConfigError):
        run.config.update(argparse.Namespace(lr=0.3))
    # A rejected update changes nothing, not even its other keys.
    with pytest.raises(mpbackend.ConfigError):
        run.config.update({"new": 1, "n": 2})
    assert run.config.as_dict() == {"lr": 0.1, "n": 1}

    run.config.lr = 0.1                  # the same value again is fine
    run.config.update({"lr": 0.1, "n": 1})
    run.config.update({"lr": 0.5}, allow_val_change=True)
    assert run.config.lr == 0.5
    run.flush(timeout=20)
    assert stored(run.dir)[0]["config"] == {"lr": 0.5, "n": 1}
    run.finish()
    assert stored(run.dir)[0]["config"] == {"lr": 0.5, "n": 1}


def test_config_numpy_values_become_plain_numbers(rundir):
    run = mpbackend.init(project="config", id="np", config={"f": np.float32(0.5)})
    run.config.update({"i": np.int64(7), "b": np.bool_(True), "d": np.float64(0.25),
                       "arr": np.arange(3)})
    cfg = run.config.as_dict()
    assert cfg == {"f": 0.5, "i": 7, "b": True, "d": 0.25, "arr": [0, 1, 2]}
    assert type(cfg["f"]) is float and type(cfg["i"]) is int and type(cfg["b"]) is bool
    assert type(cfg["d"]) is float and type(cfg["arr"]) is list
    run.config.i = 7  # equal to the numpy value it was set from
    run.finish()
    stored_cfg = stored(run.dir)[0]["config"]
    assert stored_cfg == cfg
    assert type(stored_cfg["i"]) is int and type(stored_cfg["b"]) is bool


# -- 4. the Run ----------------------------------------------------------------------------


def test_run_attributes(rundir):
    before = time.time()
    run = mpbackend.init(project="attrs", id="run-1", name="my name", tags=["a", "b"],
                         notes="some notes", group="grp", job_type="train")
    after = time.time()
    assert run.id == "run-1" and run.name == "my name" and run.project == "attrs"
    assert run.dir == str(rundir / "attrs" / "run-1") and os.path.isdir(run.dir)
    assert run.path == "attrs/run-1"
    assert run.step == 0
    assert before <= run.start_time <= after
    assert list(run.tags) == ["a", "b"]
    assert (run.notes, run.group, run.job_type) == ("some notes", "grp", "train")
    assert run.state == "running" and mpbackend.run is run
    run.log({"x": 1})
    run.log({"x": 2})
    assert run.step == 2
    run.finish()
    assert run.step == 2
    info = stored(run.dir)[0]
    assert (info["id"], info["name"], info["project"]) == ("run-1", "my name", "attrs")
    assert info["tags"] == ["a", "b"] and info["notes"] == "some notes"
    assert (info["group"], info["job_type"]) == ("grp", "train")
    assert info["created_at"] == pytest.approx(run.start_time)

    other = mpbackend.init(project="attrs")
    assert re.fullmatch(r"[a-z]+-[a-z]+-2", other.name) and len(other.id) >= 6
    assert other.path == f"attrs/{other.id}"
    other.finish()


def test_second_init_returns_the_active_run_unless_reinit(rundir):
    first = mpbackend.init(project="re", id="one")
    assert mpbackend.init(project="re", id="two") is first
    second = mpbackend.init(project="re", id="two", reinit=True)
    assert second is not first and first.state == "finished"
    third = mpbackend.init(project="re", id="three", reinit="create_new")
    assert second.state == "running" and mpbackend.run is third
    second.finish()
    third.finish()
    assert stored(first.dir)[0]["state"] == "finished"


def test_finish_is_idempotent_and_log_after_finish_raises(rundir):
    run = mpbackend.init(project="fin", id="idem")
    run.log({"a": 1})
    run.finish()
    run.finish()
    run.finish(exit_code=1)  # a finished run stays finished
    assert run.state == "finished" and mpbackend.run is None
    info, rows = stored(run.dir)
    assert info["state"] == "finished" and info["exit_code"] is None and len(rows) == 1
    with pytest.raises(mpbackend.UsageError):
        run.log({"a": 2})
    with pytest.raises(mpbackend.UsageError):
        run.config.late = 1
    with pytest.raises(mpbackend.UsageError):
        run.define_metric("a", summary="max")
    assert len(stored(run.dir)[1]) == 1


def test_context_manager_states(rundir):
    with mpbackend.init(project="ctx", id="ok") as run:
        run.log({"a": 1})
        assert run.state == "running"
    assert run.state == "finished" and mpbackend.run is None
    assert stored(run.dir)[0]["state"] == "finished"

    with pytest.raises(RuntimeError, match="boom"):
        with mpbackend.init(project="ctx", id="boom") as run:
            run.log({"a": 1})
            raise RuntimeError("boom")
    assert run.state == "failed"
    info, rows = stored(run.dir)
    assert (info["state"], info["exit_code"]) == ("failed", 1) and len(rows) == 1

    with pytest.raises(KeyboardInterrupt):
        with mpbackend.init(project="ctx", id="ctrl-c") as run:
            run.log({"a": 1})
            raise KeyboardInterrupt
    assert run.state == "interrupted"
    assert stored(run.dir)[0]["state"] == "interrupted"

    run = mpbackend.init(project="ctx", id="exit1")
    run.finish(exit_code=1)
    assert run.state == "failed"
    info = stored(run.dir)[0]
    assert (info["state"], info["exit_code"]) == ("failed", 1)


def test_disabled_mode_accepts_everything_and_writes_nothing(rundir, monkeypatch):
    before = children()
    assert current_setup() is None
    run = mpbackend.init(project="off", id="dis", mode="disabled", config={"lr": 0.1})
    assert isinstance(run, mpbackend.DisabledRun) and mpbackend.run is run
    run.log({"a": 1})
    run.log({"a": 2}, step=5, commit=True)
    run.log({"nested": {"x": np.float32(1)}})
    mpbackend.log({"b": 1})
    run.config.batch = 8
    run.config.update({"seed": 1})
    mpbackend.config.update({"more": 2})
    assert run.config.as_dict() == {"lr": 0.1, "batch": 8, "seed": 1, "more": 2}
    run.summary["best"] = 1.0
    mpbackend.summary.update({"other": 2})
    assert run.summary["best"] == 1.0 and dict(run.summary) == {"best": 1.0, "other": 2}
    del run.summary["other"]
    assert run.define_metric("loss", summary="min").summary == ("min",)
    mpbackend.define_metric("acc", summary="max", goal="maximize")
    with pytest.raises(ValueError):  # still checked at the call
        run.define_metric("loss", summary="median")
    run.flush()
    assert run.step == 0
    mpbackend.finish()
    assert run.state == "finished" and mpbackend.run is None
    run.finish()

    monkeypatch.setenv("MPBACKEND_MODE", "disabled")
    with mpbackend.init(project="off", id="env") as env_run:
        assert isinstance(env_run, mpbackend.DisabledRun)
        env_run.log({"a": 1})

    assert not rundir.exists(), list(rundir.rglob("*"))
    assert children() == before
    assert current_setup() is None


def test_module_level_functions_wandb_style(rundir):
    with pytest.raises(mpbackend.UsageError):
        wandb.log({"a": 1})
    wandb.finish()  # no run: nothing to do
    wandb.require("service")
    run = wandb.init(project="module", id="mod", config={"lr": 0.1})
    assert wandb.run is run and wandb.config is run.config and wandb.summary is run.summary
    wandb.define_metric("loss", summary="min")
    wandb.config.update({"batch": 16})
    wandb.config.epochs = 2
    wandb.log({"loss": 2.0})
    wandb.log({"acc": 0.5}, commit=False)
    wandb.log({"loss": 1.0})
    wandb.log({"loss": 3.0}, step=5)
    wandb.summary["final"] = "done"
    assert wandb.summary["loss"] == {"min": 1.0}
    assert wandb.config.lr == 0.1
    wandb.finish()
    assert wandb.run is None and run.state == "finished"
    info, rows = stored(run.dir)
    assert user_rows(rows) == [(0, {"loss": 2.0}), (1, {"acc": 0.5, "loss": 1.0}),
                               (5, {"loss": 3.0})]
    assert info["config"] == {"lr": 0.1, "batch": 16, "epochs": 2}
    assert info["summary"]["final"] == "done" and info["summary"]["loss"] == {"min": 1.0}
    with pytest.raises(mpbackend.UsageError):
        wandb.log({"a": 1})


# -- 5. resume -----------------------------------------------------------------------------


def _five_rows(**init_kwargs) -> mpbackend.Run:
    run = mpbackend.init(project="res", id="r1", config={"lr": 0.1}, **init_kwargs)
    run.define_metric("loss", summary="min")
    for i in range(5):
        run.log({"i": i, "loss": 10.0 - i})
    run.summary["best"] = "hand-set"
    run.finish()
    return run


@pytest.mark.parametrize("resume", ["allow", True])
def test_resume_allow_continues_the_run(rundir, resume):
    first = _five_rows()
    assert first.step == 5
    run = mpbackend.init(project="res", id="r1", resume=resume, config={"batch": 8})
    assert run.resumed is True
    assert run.step == 5
    assert run.summary["i"] == 4 and run.summary["best"] == "hand-set"
    assert run.summary["loss"] == {"min": 6.0}  # the definition and its aggregate are kept
    assert run.config.as_dict() == {"lr": 0.1, "batch": 8}
    assert stored(run.dir)[0]["state"] == "running"
    run.log({"i": 5})
    run.log({"i": 6, "loss": 7.5})
    assert run.summary["loss"] == {"min": 6.0} and run.summary["best"] == "hand-set"
    run.log({"i": 7, "loss": 0.5})
    assert run.summary["loss"] == {"min": 0.5}
    run.finish()
    info, rows = stored(run.dir)
    assert [r["_step"] for r in rows] == list(range(8))
    assert [r["i"] for r in rows] == list(range(8))
    assert info["state"] == "finished" and info["step"] == 8
    assert info["config"] == {"lr": 0.1, "batch": 8}
    assert info["summary"]["i"] == 7 and info["summary"]["best"] == "hand-set"
    assert info["summary"]["loss"] == {"min": 0.5}
    runtimes = [r["_runtime"] for r in rows]
    assert runtimes == sorted(runtimes)  # runtime goes on from where it stopped


def test_resume_rules_raise_clear_errors(rundir):
    with pytest.raises(FileNotFoundError, match=r"(?s)must.*'missing'"):
        mpbackend.init(project="res", id="missing", resume="must")
    assert mpbackend.run is None
    assert not os.path.exists(os.path.join(str(rundir), "res", "missing", "run.db"))

    first = _five_rows()
    with pytest.raises(FileExistsError, match=r"(?s)never.*'r1'"):
        mpbackend.init(project="res", id="r1", resume="never")
    with pytest.raises(FileExistsError, match=r"(?s)'r1'.*already exists.*resume"):
        mpbackend.init(project="res", id="r1")
    with pytest.raises(FileExistsError):
        mpbackend.init(project="res", id="r1", resume=False)
    with pytest.raises(ValueError, match="resume"):
        mpbackend.init(project="res", id="r1", resume="sometimes")
    assert mpbackend.run is None
    # The refused inits left the stored run as it was.
    info, rows = stored(first.dir)
    assert info["state"] == "finished" and len(rows) == 5 and info["config"] == {"lr": 0.1}

    fresh = mpbackend.init(project="res", id="new", resume="never")
    assert fresh.step == 0 and fresh.resumed is False
    fresh.finish()
    must = mpbackend.init(project="res", id="r1", resume="must")
    assert must.step == 5
    must.finish()


# -- 6. value round trips -------------------------------------------------------------------


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def test_value_types_round_trip(rundir):
    run = mpbackend.init(project="values", id="types",
                         settings=mpbackend.Settings(max_array_size=100))
    sent = {
        "int": 7, "neg": -3, "float": 0.25, "nan": float("nan"), "pinf": float("inf"),
        "ninf": float("-inf"), "true": True, "false": False, "str": "héllo ✓ 日本語 🚀",
        "empty": "", "none": None, "list": [1, [2, [3, "x"]], []], "dicts": [{"a": 1},
                                                                          {"b": [2, None]}],
        "f32": np.float32(0.5), "i64": np.int64(-(2**40)), "np_bool": np.bool_(True),
        "arr": np.arange(100), "arr2d": np.ones((2, 3), dtype=np.float32),
        "big": 2**70, "neg_big": -(2**65), "int64_max": 2**63 - 1,
        "a/b": 1, "c.d": 2, "x/y.z": "k",
    }
    expected = {
        "int": 7, "neg": -3, "float": 0.25, "nan": float("nan"), "pinf": float("inf"),
        "ninf": float("-inf"), "true": True, "false": False, "str": "héllo ✓ 日本語 🚀",
        "empty": "", "none": None, "list": [1, [2, [3, "x"]], []],
        "dicts": [{"a": 1}, {"b": [2, None]}], "f32": 0.5, "i64": -(2**40), "np_bool": True,
        "arr": list(range(100)), "arr2d": [[1.0] * 3, [1.0] * 3],
        "big": 2**70, "neg_big": -(2**65), "int64_max": 2**63 - 1,
        "a/b": 1, "c.d": 2, "x/y.z": "k",
    }
    keys_before = list(sent)
    run.log(sent)
    # The same values in a second row, so every column holds more than one value.
    run.log(sent)
    assert list(sent) == keys_before and type(sent["f32"]) is np.float32  # not modified

    live = run.summary.as_dict()
    with pytest.raises(ValueError, match="max_array_size"):
        run.log({"too_big": np.zeros(101), "ok": 1})
    with pytest.raises(ValueError, match="max_array_size"):
        run.log({"too_long": list(range(101))})
    run.log({"after": 1})  # the run still works
    run.finish()

    info, rows = stored(run.dir)
    assert len(rows) == 3
    for row in rows[:2]:
        got = {k: v for k, v in row.items() if not k.startswith("_")}
        assert set(got) == set(expected)
        bad = {k: (got[k], expected[k]) for k in expected if not _same(got[k], expected[k])}
        assert not bad, bad
        assert type(got["dicts"][0]["a"]) is int and type(got["arr2d"][0][0]) is float
    assert user_rows(rows[2:]) == [(2, {"after": 1})]
    for summary in (live, info["summary"], run.summary.as_dict()):
        bad = {k: (summary.get(k), v) for k, v in expected.items()
               if not _same(summary.get(k), v)}
        assert not bad, bad
    assert "too_big" not in info["summary"] and "ok" not in info["summary"]
    # The Api reads the same values back.
    api_rows = list(mpbackend.Api(str(rundir)).run(run.path).scan_history())
    assert api_rows[0]["big"] == 2**70 and api_rows[0]["x/y.z"] == "k"
    assert math.isnan(api_rows[0]["nan"]) and api_rows[1]["ninf"] == float("-inf")


def test_rows_of_numbers_keep_their_types_among_float_rows(rundir):
    # Rows of floats only are stored without a type check (HISTORY_FLOATS); rows
    # with ints, bools and None between them, in the same chunk or part, must
    # still come back as what was logged.
    run = mpbackend.init(project="values", id="numbers")
    sent = []
    for i in range(3000):
        if i % 250 == 7:
            row = {"a": i, "b": True}
        elif i % 250 == 9:
            row = {"a": float(i), "b": None}
        elif i > 2990:  # a sparse column in the last chunk only
            row = {"a": float(i), "b": 0.5, "sparse": i}
        else:
            row = {"a": float(i), "b": i / 3}
        run.log(row)
        sent.append(row)
        if i % 900 == 0:
            run.flush()  # commits parts of an open chunk as well as whole chunks
    run.finish()
    rows = stored(run.dir)[1]
    got = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    assert got == sent
    for g, s_ in zip(got, sent):
        assert [type(v) for v in g.values()] == [type(v) for v in s_.values()], (g, s_)


def test_big_ints_mixed_with_small_ints_in_one_column(rundir):
    run = mpbackend.init(project="values", id="bigint")
    values = [1, 2**64 + 1, -5, 2**63, -(2**63) - 1, 10**30]
    for v in values:
        run.log({"n": v})
    run.finish()
    rows = stored(run.dir)[1]
    assert [r["n"] for r in rows] == values
    assert all(type(r["n"]) is int for r in rows)
    assert run.summary["n"] == 10**30


# -- 7. many runs, many threads -----------------------------------------------------------


def test_fifty_runs_open_at_once(rundir):
    runs = [mpbackend.init(project="many", id=f"m{k:02d}", config={"k": k},
                           reinit="create_new") for k in range(50)]
    assert len({r.id for r in runs}) == 50
    assert all(r.state == "running" for r in runs)
    for i in range(20):
        for k, run in enumerate(runs):
            if i % (k % 5 + 1) == 0:
                run.log({"k": k, "i": i})
    for k, run in enumerate(runs):
        run.summary["owner"] = k
    for run in runs:
        run.finish()
    for k, run in enumerate(runs):
        info, rows = stored(run.dir)
        wanted = [i for i in range(20) if i % (k % 5 + 1) == 0]
        assert [(r["_step"], r["k"], r["i"]) for r in rows] == [
            (s, k, i) for s, i in enumerate(wanted)], run.id
        assert info["config"] == {"k": k} and info["summary"]["owner"] == k
        assert info["state"] == "finished"
    listed = mpbackend.Api(str(rundir)).runs(project="many")
    assert sorted(r.id for r in listed) == [f"m{k:02d}" for k in range(50)]


def test_eight_threads_log_into_one_run(rundir):
    threads_n, per_thread = 8, 5000
    run = mpbackend.init(project="threads", id="t8")
    barrier = threading.Barrier(threads_n)
    errors = []

    def work(t: int) -> None:
        try:
            barrier.wait(timeout=10)
            for i in range(per_thread):
                run.log({"thread": t, "i": i})
        except BaseException as exc:  # reported by the main thread
            errors.append(repr(exc))

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=30)
    assert not any(w.is_alive() for w in workers) and not errors, errors
    run.finish()
    info, rows = stored(run.dir)
    assert len(rows) == threads_n * per_thread
    assert [r["_step"] for r in rows] == list(range(threads_n * per_thread))
    pairs = [(r["thread"], r["i"]) for r in rows]
    assert len(set(pairs)) == len(pairs)
    assert set(pairs) == {(t, i) for t in range(threads_n) for i in range(per_thread)}
    for t in range(threads_n):
        seen = [r["i"] for r in rows if r["thread"] == t]
        assert seen == list(range(per_thread)), f"thread {t} out of order"
    assert info["step"] == threads_n * per_thread


# -- 8. the wandb-style example ---------------------------------------------------------


def test_wandb_style_example_runs_unchanged(tmp_path):
    script = os.path.join(ROOT, "examples", "wandb_style.py")
    base = tmp_path / "mpruns"
    env = {**os.environ, "PYTHONPATH": ROOT, "MPBACKEND_DIR": str(base)}
    env.pop("MPBACKEND_MODE", None)
    args = ["--project", "example-test", "--epochs", "2", "--steps-per-epoch", "10",
            "--val-every", "5", "--lr", "0.1", "--seed", "3"]
    proc = subprocess.run([sys.executable, script, *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=45)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    runs = mpbackend.Api(str(base)).runs(project="example-test")
    assert len(runs) == 1
    run = runs[0]
    assert run.state == "finished"
    assert run.config == {"project": "example-test", "lr": 0.1, "epochs": 2,
                          "steps_per_epoch": 10, "val_every": 5, "seed": 3}
    assert run.tags == ["example"] and run.job_type == "train"
    rows = run.history(pandas=False)
    train = [r for r in rows if "train/loss" in r]
    val = [r for r in rows if "val/loss" in r]
    assert len(train) == 20 and len(val) == 4 and len(rows) == 24
    assert all("train/lr" in r and r["train/lr"] == 0.1 for r in train)
    assert all("epoch" in r and "val/acc" in r for r in val)  # step_sync filled the epoch
    assert set(run.summary["train/loss"]) == {"min", "last"}
    assert set(run.summary["val/acc"]) == {"best"}
    assert "final_weight" in run.summary
