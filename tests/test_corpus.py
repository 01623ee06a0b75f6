"""The corpus: wandb training and analysis scripts as their users write them, with only
``import wandb`` changed to ``import mpbackend as wandb`` (tests/corpus/*.py).

Each script runs in its own subprocess, in its own directory, with the environment its
case gives; it prints ``RESULT {json}`` last, with what it knows (ids, the values it
logged). Each case's check then reads the stored runs back (``RunReader`` on the run's
directory, ``ApiRun`` for wandb's attributes) and compares them value by value with what
the script logged: history steps and rows, summary, config, name, tags, notes, state and
exit code. The behaviour expected is wandb's, as its documentation describes it.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import RESULT, Script, stored

import mpbackend
from mpbackend.shared.paths import DB_NAME

CORPUS = Path(__file__).parent / "corpus"
TIMEOUT = 60  # seconds for one run of one script


@dataclass
class Ctx:
    """What the check of a case gets: where the script ran, and what it printed."""

    where: Path  # the script's working directory
    mp: Path  # its MPBACKEND_DIR
    source: str  # the script's text
    results: list[dict] = field(default_factory=list)  # one RESULT per run
    stdout: list[list[str]] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    @property
    def result(self) -> dict:
        return self.results[-1]


# -- reading the stored runs back ------------------------------------------------------

def run_dirs(ctx: Ctx) -> list[Path]:
    """Every stored run under the script's MPBACKEND_DIR."""
    if not ctx.mp.exists():
        return []
    return sorted(Path(d) for d, _, files in os.walk(ctx.mp) if DB_NAME in files)


def find_run(ctx: Ctx, run_id: str) -> Path:
    """The directory of the stored run ``run_id`` (exactly one, wherever the layout puts it)."""
    hits = [d for d in run_dirs(ctx) if d.name == run_id]
    assert len(hits) == 1, f"run {run_id!r} stored {len(hits)} times: {run_dirs(ctx)}"
    return hits[0]


def load(ctx: Ctx, run_id: str) -> tuple[dict, list[dict]]:
    """(info, history rows) of the stored run ``run_id``."""
    return stored(find_run(ctx, run_id))


def api_run(ctx: Ctx, run_id: str) -> mpbackend.ApiRun:
    return mpbackend.ApiRun(str(find_run(ctx, run_id)))


def public(values: dict) -> dict:
    """A row or summary without wandb's own keys (``_step``, ``_runtime``, ...)."""
    return {k: v for k, v in values.items() if not k.startswith("_")}


def assert_rows(rows: list[dict], expected: list[dict],
                steps: list[int] | None = None) -> None:
    """The stored history is exactly ``expected``, at ``steps`` (default 0..n-1)."""
    assert [public(r) for r in rows] == expected
    assert [r["_step"] for r in rows] == (list(range(len(expected))) if steps is None
                                          else steps)


def last_values(rows: list[dict]) -> dict:
    """The summary wandb keeps by default: each key's last logged value."""
    out: dict = {}
    for row in rows:
        out.update(row)
    return out


def assert_finished(info: dict) -> None:
    assert info["state"] == "finished", info["state"]
    assert info["exit_code"] in (0, None), info["exit_code"]


def inside(path: str | Path, parent: Path) -> bool:
    path = os.path.realpath(path)
    return os.path.commonpath([path, os.path.realpath(parent)]) == os.path.realpath(parent)


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def holds(run_dir: Path, *texts: str) -> bool:
    """True if one file kept with the run holds every text (the store's format aside)."""
    for path in run_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if all(t.encode() in data for t in texts):
                return True
    return False


# -- the checks, one per script ---------------------------------------------------------

def check_torch_mlp_argparse(ctx: Ctx) -> None:
    r = ctx.result
    info, rows = load(ctx, r["id"])
    assert info["project"] == "mlp-demo"
    assert info["config"] == r["config"]
    assert len(r["rows"]) == 3 * 4 + 3
    assert_rows(rows, r["rows"])
    assert public(info["summary"]) == {**last_values(r["rows"]), "best_acc": r["best_acc"],
                                       "best": r["best_acc"]}
    assert_finished(info)


def check_numpy_estimator_fit(ctx: Ctx) -> None:
    r = ctx.result
    info, rows = load(ctx, r["id"])
    assert info["config"] == {"lr": 0.5, "alpha": 1e-3} and info["job_type"] == "train"
    assert_rows(rows, r["rows"])
    assert public(info["summary"]) == {**last_values(r["rows"]),
                                       "test_accuracy": r["test_accuracy"], "n_features": 5}
    assert_finished(info)


def check_context_manager(ctx: Ctx) -> None:
    r = ctx.result
    info, rows = load(ctx, r["ok_id"])
    assert_rows(rows, r["rows"])
    assert info["config"] == {"n": 5} and info["job_type"] == "eval"
    assert public(info["summary"]) == {**last_values(r["rows"]), "total": r["total"]}
    assert_finished(info)
    info, rows = load(ctx, r["bad_id"])
    assert (info["state"], info["exit_code"]) == ("failed", 1)
    assert_rows(rows, [{"x": 0}])
    assert r["after_ok"] and r["after_bad"], "wandb.run is None once a run is finished"


def check_run_attributes(ctx: Ctx) -> None:
    r = ctx.result
    assert (r["name"], r["tags"], r["notes"]) == ("renamed", ["baseline", "tuned"],
                                                  "lr halved after epoch 1")
    info, rows = load(ctx, r["id"])
    assert (info["name"], info["tags"], info["notes"]) == (r["name"], r["tags"], r["notes"])
    assert info["config"] == {"lr": 0.1}
    assert_rows(rows, [{"loss": v} for v in r["losses"]])
    assert_finished(info)


def check_define_metric(ctx: Ctx) -> None:
    r = ctx.result
    info, rows = load(ctx, r["id"])
    assert_rows(rows, r["rows"])
    val_rows = [public(row) for row in rows if "val/loss" in row]
    assert [row["epoch"] for row in val_rows] == [0, 1, 2, 3]
    expected = {**last_values(r["rows"]), "acc": {"max": r["max_acc"]}}
    assert public(info["summary"]) == expected
    assert_finished(info)


def check_step_and_commit(ctx: Ctx) -> None:
    r = ctx.result
    info, rows = load(ctx, r["a_id"])
    assert_rows(rows, [{"train_loss": t, "val_loss": v} for t, v in zip(r["train"], r["val"])],
                steps=[0, 5, 10])
    assert public(info["summary"]) == {"train_loss": r["train"][-1], "val_loss": r["val"][-1]}
    assert_finished(info)
    info, rows = load(ctx, r["b_id"])
    assert_rows(rows, [{"lr": lr, "loss": loss} for lr, loss in zip(r["lrs"], r["losses"])]
                + [{"final_eval": r["final_eval"]}])
    assert public(info["summary"]) == {"lr": r["lrs"][-1], "loss": r["losses"][-1],
                                       "final_eval": r["final_eval"]}
    assert_finished(info)


def check_nested_log(ctx: Ctx) -> None:
    r = ctx.result
    info, rows = load(ctx, r["id"])
    assert info["config"] == r["config"]
    expected = [{"train.loss": loss, "train.acc": acc, "val.loss": v, "epoch": e}
                for e, ((loss, acc), v) in enumerate(zip(r["train"], r["val"]))]
    assert_rows(rows, expected)
    loss, acc = r["train"][-1]
    nested = {"train": {"loss": loss, "acc": acc}, "val": {"loss": r["val"][-1]}, "epoch": 2}
    assert public(info["summary"]) == nested
    assert api_run(ctx, r["id"]).summary["train"]["loss"] == loss
    assert r["live"] == {"train_loss": loss, "val_loss": r["val"][-1]}
    assert_finished(info)


def check_resume_env(ctx: Ctx) -> None:
    first, second = ctx.results
    assert first["id"] == second["id"] == "resume01"
    assert (first["resumed"], first["start"]) == (False, 0)
    assert (second["resumed"], second["start"]) == (True, 3)
    assert [d.name for d in run_dirs(ctx)] == ["resume01"]
    info, rows = load(ctx, "resume01")
    assert_rows(rows, [{"epoch": e, "loss": 1.0 / (e + 1)} for e in range(6)])
    assert first["logged"] + second["logged"] == [[e, 1.0 / (e + 1)] for e in range(6)]
    assert public(info["summary"]) == {"epoch": 5, "loss": 1 / 6, "best_loss": 1 / 6}
    assert info["config"] == {"epochs": 6, "lr": 0.01}
    assert_finished(info)


def check_disabled_mode(ctx: Ctx) -> None:
    r = ctx.result
    assert (r["lr"], r["batch_size"]) == (0.05, 8)
    assert isinstance(r["id"], str) and r["id"]
    assert run_dirs(ctx) == [] and not ctx.mp.exists()
    made = sorted(p.name for p in ctx.where.iterdir())
    assert made == ["disabled_mode.py", "disabled_mode.py.err", "disabled_mode.py.out"], made


def check_env_project_name_tags(ctx: Ctx) -> None:
    r = ctx.result
    assert (r["project"], r["name"], r["tags"]) == ("env-proj", "nightly-eval",
                                                    ["nightly", "cpu"])
    info, rows = load(ctx, r["id"])
    assert (info["project"], info["name"], info["tags"]) == ("env-proj", "nightly-eval",
                                                             ["nightly", "cpu"])
    assert_rows(rows, [{"score": s, "shard": i} for i, s in enumerate(r["scores"])])
    assert public(info["summary"]) == {"score": r["scores"][-1], "shard": 3,
                                       "mean_score": r["mean_score"]}
    assert_finished(info)


def check_init_keywords(ctx: Ctx) -> None:
    r = ctx.result
    assert (r["entity"], r["project"]) == ("team", "p")
    assert len(ctx.stdout[-1]) == 1, ctx.stdout[-1]  # silent: the RESULT line only
    assert "mpbackend" not in ctx.stderr[-1] and "wandb" not in ctx.stderr[-1], ctx.stderr[-1]
    info, rows = load(ctx, r["id"])
    assert info["project"] == "p" and info["config"] == {"lr": 3e-4, "epochs": 3}
    assert_rows(rows, [{"epoch": e, "loss": v} for e, v in enumerate(r["losses"])])
    assert_finished(info)
    assert api_run(ctx, r["id"]).entity == "team"
    assert holds(find_run(ctx, r["id"]), ctx.source), "save_code=True: the script is kept"


def check_save_file(ctx: Ctx) -> None:
    r = ctx.result
    info, rows = load(ctx, r["id"])
    assert_rows(rows, [{"loss": v} for v in r["losses"]])
    assert_finished(info)
    kept = Path(r["dir"]) / "model.pt"
    assert kept.is_file() and inside(kept, find_run(ctx, r["id"])), kept
    assert sha256(kept) == r["sha256"]
    assert isinstance(r["saved"], list) and len(r["saved"]) == 1, r["saved"]
    assert os.path.basename(r["saved"][0]) == "model.pt"


def check_restore_file(ctx: Ctx) -> None:
    r = ctx.result
    assert r["equal"] and r["restored_sha256"] == r["sha256"]
    assert inside(r["restored"], find_run(ctx, r["second_id"])), r["restored"]
    assert os.path.basename(r["restored"]) == "weights.npy"
    first, first_rows = load(ctx, r["first_id"])
    second, second_rows = load(ctx, r["second_id"])
    assert public(first_rows[0]) == public(second_rows[0]) and len(second_rows) == 1
    assert (first["job_type"], second["job_type"]) == ("train", "eval")
    assert_finished(first)
    assert_finished(second)


def check_alert(ctx: Ctx) -> None:
    r = ctx.result
    assert len(r["alerts"]) == 1
    info, rows = load(ctx, r["id"])
    assert_rows(rows, [{"epoch": e, "acc": a} for e, a in enumerate(r["accs"])])
    assert_finished(info)
    alert = r["alerts"][0]
    assert holds(find_run(ctx, r["id"]), alert["title"], alert["text"]), \
        "the alert is kept with the run"


def check_api_read(ctx: Ctx) -> None:
    r = ctx.result
    logged = r["logged"]
    assert r["listed"] == sorted(logged)
    assert r["filtered"] == [i for i, v in logged.items() if v["lr"] == 0.1]
    first = logged[r["first"]]
    assert r["id"] == r["first"] and r["state"] == "finished"
    assert r["df_steps"] == [0, 1, 2, 3]
    assert r["df_loss"] == r["rows_loss"] == first["losses"]
    assert (r["summary_final"], r["config_lr"]) == (first["losses"][-1], first["lr"])
    for run_id, values in logged.items():
        info, rows = load(ctx, run_id)
        assert info["project"] == "p"
        assert info["config"] == {"lr": values["lr"], "epochs": 4}
        assert_rows(rows, [{"loss": v} for v in values["losses"]])
        assert public(info["summary"]) == {"loss": values["losses"][-1],
                                           "final_loss": values["losses"][-1]}
        assert_finished(info)


def check_api_update(ctx: Ctx) -> None:
    r = ctx.result
    assert (r["summary_x"], r["summary_val_acc"]) == (1, 0.85)
    assert r["config"] == {"lr": 0.1, "reviewed": True}
    assert (r["tags"], r["name"]) == (["draft", "reviewed"], "after")
    info, rows = load(ctx, r["id"])
    assert public(info["summary"]) == {"loss": 1 / 3, "val_acc": 0.85, "x": 1}
    assert info["config"] == {"lr": 0.1, "reviewed": True}
    assert (info["tags"], info["name"]) == (["draft", "reviewed"], "after")
    assert_rows(rows, [{"loss": 1.0 / (i + 1)} for i in range(3)])
    assert_finished(info)


def check_notebook_style(ctx: Ctx) -> None:
    r = ctx.result
    assert r["first_id"] != r["second_id"] and r["run_after"]
    info, rows = load(ctx, r["first_id"])
    assert_rows(rows, [{"loss": v} for v in r["first_losses"]])
    assert info["config"] == {"lr": 0.1}
    assert_finished(info)  # reinit=True finished it
    info, rows = load(ctx, r["second_id"])
    assert_rows(rows, [{"loss": v} for v in r["second_losses"]])
    assert info["config"] == {"lr": 0.05}
    assert public(info["summary"]) == {"loss": r["second_losses"][-1], "note": "smaller lr"}
    assert_finished(info)


def check_sys_exit(ctx: Ctx) -> None:
    r = ctx.result
    info, rows = load(ctx, r["id"])
    assert (info["state"], info["exit_code"]) == ("failed", 3)
    assert_rows(rows, [{"loss": v, "log_loss": math.log(v)} for v in r["losses"]])
    assert r["losses"] == [2.0, 4.0, 8.0, 16.0]


def check_exception_exit(ctx: Ctx) -> None:
    r = ctx.result
    assert "RuntimeError: CUDA out of memory (simulated)" in ctx.stderr[-1]
    info, rows = load(ctx, r["id"])
    assert (info["state"], info["exit_code"]) == ("failed", 1)
    assert_rows(rows, [{"batch": b, "value": v} for b, v in enumerate(r["values"])])
    assert len(r["values"]) == 3


def check_manual_sweep(ctx: Ctx) -> None:
    r = ctx.result
    assert len(run_dirs(ctx)) == 3
    for one in r["runs"]:
        info, rows = load(ctx, one["id"])
        assert info["config"] == {"lr": one["lr"], "steps": 6}
        assert (info["name"], info["group"]) == (f"lr-{one['lr']}", "lr-sweep")
        assert_rows(rows, [{"mse": v} for v in one["losses"]])
        assert public(info["summary"]) == {"mse": one["losses"][-1],
                                           "final_mse": one["losses"][-1]}
        assert_finished(info)


def check_config_access(ctx: Ctx) -> None:
    r = ctx.result
    assert (r["lr"], r["batch_size"], r["steps"]) == (0.01, 16, 8)
    assert r["config"] == r["expected"]
    info, rows = load(ctx, r["id"])
    assert info["config"] == r["expected"]
    assert_rows(rows, [{"lr": 0.01 * 0.5 ** (s // 4), "step_in_run": s + 1} for s in range(8)])
    assert_finished(info)


def check_run_identity(ctx: Ctx) -> None:
    r = ctx.result
    info, rows = load(ctx, r["id"])
    assert (info["id"], info["project"]) == (r["id"], r["project"]) == (r["id"], "identity-demo")
    run_dir = find_run(ctx, r["id"])
    assert inside(r["dir"], run_dir), (r["dir"], run_dir)
    assert sha256(Path(r["dir"]) / "weights.npy") == r["sha256"]
    assert "weights.npy" in r["files"], f"not among the run's files: {r['files']}"
    assert_rows(rows, [{"weights_sum": 66.0}])
    assert any(line.endswith(r["message"]) for line in ctx.stderr[-1].splitlines()), \
        ctx.stderr[-1]
    assert_finished(info)


def check_dataloader_workers(ctx: Ctx) -> None:
    r = ctx.result
    info, rows = load(ctx, r["id"])
    assert len(r["rows"]) == 2 * 6
    assert_rows(rows, r["rows"])
    assert info["config"] == {"batch_size": 8, "epochs": 2, "num_workers": 2}
    assert_finished(info)


def check_default_names(ctx: Ctx) -> None:
    r = ctx.result
    assert r["project"] == "vision-lab", "the project is the git repository's name"
    assert re.fullmatch(r"[a-z]+-[a-z]+-\d+", r["name"]), r["name"]
    info, rows = load(ctx, r["id"])
    assert (info["project"], info["name"]) == ("vision-lab", r["name"])
    assert api_run(ctx, r["id"]).name == r["name"]
    assert_rows(rows, [{"loss": v} for v in r["losses"]])
    assert_finished(info)


def git_repo(where: Path) -> None:
    subprocess.run(["git", "init", "-q", str(where)], check=True, timeout=30)


# -- the table ------------------------------------------------------------------------

@dataclass
class Case:
    script: str
    check: Callable[[Ctx], None]
    env: dict[str, str] = field(default_factory=dict)
    code: int = 0  # the exit code expected
    runs: int = 1  # times the script is run, in the same directory
    subdir: str = "job"  # the directory it runs in, under tmp_path
    setup: Callable[[Path], Any] | None = None


CASES = [
    Case("torch_mlp_argparse.py", check_torch_mlp_argparse),
    Case("numpy_estimator_fit.py", check_numpy_estimator_fit),
    Case("context_manager.py", check_context_manager),
    Case("run_attributes.py", check_run_attributes),
    Case("define_metric.py", check_define_metric),
    Case("step_and_commit.py", check_step_and_commit),
    Case("nested_log.py", check_nested_log),
    Case("resume_env.py", check_resume_env, runs=2,
         env={"WANDB_RUN_ID": "resume01", "WANDB_RESUME": "allow"}),
    Case("disabled_mode.py", check_disabled_mode, env={"WANDB_MODE": "disabled"}),
    Case("env_project_name_tags.py", check_env_project_name_tags,
         env={"WANDB_PROJECT": "env-proj", "WANDB_NAME": "nightly-eval",
              "WANDB_TAGS": "nightly,cpu"}),
    Case("init_keywords.py", check_init_keywords),
    Case("save_file.py", check_save_file),
    Case("restore_file.py", check_restore_file),
    Case("alert.py", check_alert),
    Case("api_read.py", check_api_read),
    Case("api_update.py", check_api_update),
    Case("notebook_style.py", check_notebook_style),
    Case("sys_exit.py", check_sys_exit, code=3),
    Case("exception_exit.py", check_exception_exit, code=1),
    Case("manual_sweep.py", check_manual_sweep),
    Case("config_access.py", check_config_access),
    Case("run_identity.py", check_run_identity),
    Case("dataloader_workers.py", check_dataloader_workers),
    Case("default_names.py", check_default_names, subdir="vision-lab", setup=git_repo),
]


@pytest.fixture
def clean_env(monkeypatch):
    """No WANDB_* or MPBACKEND_* variable leaks in from outside: each case sets its own."""
    for name in list(os.environ):
        if name.startswith(("WANDB_", "MPBACKEND_")):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.script[:-3],
                                               marks=pytest.mark.timeout(TIMEOUT * c.runs + 30))
                                  for c in CASES])
def test_corpus_script(case: Case, tmp_path, clean_env):
    where = tmp_path / case.subdir
    where.mkdir()
    if case.setup is not None:
        case.setup(where)
    source = (CORPUS / case.script).read_text()
    ctx = Ctx(where=where, mp=where / "mpruns", source=source)
    for _ in range(case.runs):
        script = Script(source, where, name=case.script, env=case.env)
        try:
            code = script.wait(TIMEOUT)
        finally:
            script.kill_group()
        lines = script.lines()
        assert code == case.code, (f"exit code {code}, expected {case.code}; stderr:\n"
                                   f"{script.stderr()[-3000:]}")
        assert lines and lines[-1].startswith(RESULT), (
            f"the last stdout line is not a RESULT line; stdout:\n{lines[-20:]}\n"
            f"stderr:\n{script.stderr()[-3000:]}")
        ctx.results.append(script.result())
        ctx.stdout.append(lines)
        ctx.stderr.append(script.stderr())
    case.check(ctx)


def test_every_script_is_in_the_table_and_is_a_wandb_script():
    """Every file in tests/corpus has a case, and each is a wandb script with only its
    import changed: ``import wandb`` nowhere, ``import mpbackend as wandb`` once."""
    scripts = sorted(p.name for p in CORPUS.glob("*.py"))
    assert scripts == sorted(c.script for c in CASES)
    assert len(scripts) >= 22
    for name in scripts:
        text = (CORPUS / name).read_text()
        assert text.count("import mpbackend as wandb\n") == 1, name
        assert not re.search(r"^\s*(import wandb|from wandb)\b", text, re.M), name
        assert "mpbackend." not in text, f"{name} uses mpbackend beyond wandb's names"
        assert 20 <= len(text.splitlines()) <= 80, name
