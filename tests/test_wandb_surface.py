"""wandb's everyday surface (issue 14, first part): its environment variables, login()
and the terminal lines, each run for real in a subprocess where the environment
matters, and read back through the Api."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT, result

import mpbackend

# The variables a scheduler or sweep agent sets; none of them may leak in from outside.
_CLEAN = {k: v for k, v in os.environ.items()
          if not k.startswith(("WANDB_", "MPBACKEND_"))}

SCRIPT = """
    import json
    import mpbackend as wandb
    wandb.login()
    run = wandb.init(config={"lr": 0.1})
    for i in range(3):
        wandb.log({"loss": 1.0 / (i + 1)})
    out = {"id": run.id, "project": run.project, "name": run.name, "notes": run.notes,
           "tags": list(run.tags), "group": run.group, "job_type": run.job_type,
           "dir": run.dir, "resumed": run.resumed, "disabled": isinstance(run, wandb.DisabledRun)}
    wandb.finish()
    out["step"] = run.step
    print("RESULT " + json.dumps(out))
"""


def _run(tmp_path, env: dict[str, str], name: str = "train.py"):
    script = tmp_path / name
    script.write_text(textwrap.dedent(SCRIPT))
    full = {**_CLEAN, "PYTHONPATH": ROOT, **env}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=full,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return result(proc), proc


@pytest.mark.timeout(120)
def test_wandb_environment_variables_configure_init_and_resume(tmp_path):
    """WANDB_PROJECT, _NAME, _NOTES, _TAGS, _RUN_GROUP, _JOB_TYPE, _RUN_ID and _DIR set
    the run; run again with WANDB_RESUME=allow, the same id continues the run at its
    next step (before, WANDB_RUN_ID was ignored and a second run was made)."""
    env = {"WANDB_PROJECT": "envproj", "WANDB_NAME": "from-env", "WANDB_NOTES": "a note",
           "WANDB_TAGS": "a, b,c", "WANDB_RUN_GROUP": "g1", "WANDB_JOB_TYPE": "train",
           "WANDB_RUN_ID": "envrun1", "WANDB_DIR": str(tmp_path / "wd")}
    first, _ = _run(tmp_path, env)
    assert (first["project"], first["id"], first["name"]) == ("envproj", "envrun1", "from-env")
    assert first["notes"] == "a note" and first["tags"] == ["a", "b", "c"]
    assert (first["group"], first["job_type"]) == ("g1", "train")
    assert first["dir"] == str(tmp_path / "wd" / "mpruns" / "envproj" / "envrun1")
    second, _ = _run(tmp_path, {**env, "WANDB_RESUME": "allow"})
    assert second["resumed"] and second["id"] == "envrun1" and second["step"] == 6
    api = mpbackend.Api(str(tmp_path / "wd" / "mpruns"))
    runs = api.runs(project="envproj")
    assert [r.id for r in runs] == ["envrun1"]
    assert [row["loss"] for row in runs[0].history(pandas=False)] == [1.0, 0.5, 1 / 3] * 2

    # WANDB_RESUME=never refuses the existing id; a wrong value is a clear error.
    script = tmp_path / "train.py"
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60,
                          env={**_CLEAN, "PYTHONPATH": ROOT, **env, "WANDB_RESUME": "never"})
    assert proc.returncode != 0 and "resume='never'" in proc.stderr
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60,
                          env={**_CLEAN, "PYTHONPATH": ROOT, **env, "WANDB_RESUME": "sometimes"})
    assert proc.returncode != 0 and "WANDB_RESUME" in proc.stderr


@pytest.mark.timeout(60)
def test_wandb_mode_disabled_writes_nothing_and_mpbackend_names_win(tmp_path):
    out, _ = _run(tmp_path, {"WANDB_MODE": "disabled", "WANDB_DIR": str(tmp_path / "wd")})
    assert out["disabled"]
    assert not (tmp_path / "wd").exists() and not (tmp_path / "mpruns").exists()

    out, _ = _run(tmp_path, {"WANDB_PROJECT": "theirs", "MPBACKEND_PROJECT": "ours",
                             "WANDB_DIR": str(tmp_path / "wd"),
                             "MPBACKEND_DIR": str(tmp_path / "ourdir"),
                             "WANDB_MODE": "dryrun"})
    assert out["project"] == "ours" and not out["disabled"]
    assert out["dir"].startswith(str(tmp_path / "ourdir" / "ours"))
    assert not (tmp_path / "wd").exists()


@pytest.mark.timeout(60)
def test_wandb_silent_and_the_cli_directory(tmp_path):
    """WANDB_SILENT keeps the end summary and termlog quiet; the CLI finds runs under
    <WANDB_DIR>/mpruns."""
    env = {"WANDB_SILENT": "true", "WANDB_DIR": str(tmp_path / "wd"), "WANDB_PROJECT": "q"}
    code = """
        import mpbackend as wandb
        wandb.termlog("hello")
        run = wandb.init(id="quiet1")
        wandb.log({"x": 1.0})
        wandb.finish()
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path,
                          env={**_CLEAN, "PYTHONPATH": ROOT, **env}, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and "hello" not in proc.stderr, (proc.stdout, proc.stderr)
    ls = subprocess.run([sys.executable, "-m", "mpbackend", "ls"], cwd=tmp_path,
                        env={**_CLEAN, "PYTHONPATH": ROOT, **env}, capture_output=True,
                        text=True, timeout=60)
    assert ls.returncode == 0 and "quiet1" in ls.stdout, ls.stderr


def test_login_and_terminal_lines(capsys, monkeypatch):
    monkeypatch.delenv("WANDB_SILENT", raising=False)
    monkeypatch.delenv("MPBACKEND_SILENT", raising=False)
    assert mpbackend.login() is True
    assert mpbackend.login(key="0" * 40, relogin=True, host="https://api.wandb.ai") is True
    mpbackend.termlog("two\nlines")
    mpbackend.termwarn("careful")
    mpbackend.termerror("broken", prefix=False)
    mpbackend.termlog("once", repeat=False)
    mpbackend.termlog("once", repeat=False)
    err = capsys.readouterr().err
    assert err.splitlines() == ["mpbackend: two", "mpbackend: lines",
                                "mpbackend: WARNING careful", "ERROR broken",
                                "mpbackend: once"]
    monkeypatch.setenv("WANDB_SILENT", "1")
    mpbackend.termlog("hidden")
    assert capsys.readouterr().err == ""
    assert json.dumps(sorted(n for n in mpbackend.__all__ if n.startswith("term"))) == \
        '["termerror", "termlog", "termwarn"]'


def test_readme_lists_every_variable():
    from mpbackend.shared.environ import TABLE

    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    for suffix, _ in TABLE:
        assert f"| `MPBACKEND_{suffix}` | `WANDB_{suffix}` |" in readme, suffix


@pytest.mark.timeout(120)
@pytest.mark.parametrize("call,state,code", [("sys.exit(3)", "failed", 3),
                                             ("sys.exit()", "finished", 0),
                                             ("sys.exit('bad input')", "failed", 1)])
def test_sys_exit_ends_the_run_with_its_code(tmp_path, call, state, code):
    """``sys.exit(3)`` records exit code 3 and state ``failed``, as wandb does (before:
    ``finished`` with no code); the process exits with its code as usual."""
    script = f"""
import sys
import mpbackend as wandb
run = wandb.init(project="ex", id="exit1")
wandb.log({{"a": 1.0}})
{call}
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60,
                          env={**_CLEAN, "PYTHONPATH": ROOT, "MPBACKEND_DIR": str(tmp_path)})
    assert proc.returncode == code, proc.stderr
    info = mpbackend.Api(str(tmp_path)).run("ex/exit1").info()
    assert (info["state"], info["exit_code"]) == (state, code), proc.stderr


def test_run_attributes_set_after_init_are_stored(rundir):
    """``run.name = "x"`` (and notes, tags, group, job_type) is stored with the run, as
    wandb stores it (before, only the local object changed); a wrong type raises at
    the call and changes nothing."""
    run = mpbackend.init(project="attrs", id="a1", name="first")
    run.log({"x": 1.0})
    run.name = "renamed"
    run.notes = "set later"
    run.tags = ["t1", "t2"]
    run.group = "grp"
    run.job_type = "eval"
    with pytest.raises(TypeError):
        run.tags = "not-a-list"
    with pytest.raises(TypeError):
        run.name = 3  # type: ignore[assignment]
    with pytest.raises(ValueError, match="surrogate"):
        run.notes = "bad\ud800"
    run.flush()
    live = mpbackend.Api(str(rundir)).run("attrs/a1").info()
    assert (live["name"], live["notes"], live["tags"]) == ("renamed", "set later", ["t1", "t2"])
    run.finish(quiet=True)
    info = mpbackend.Api(str(rundir)).run("attrs/a1").info()
    assert (info["name"], info["group"], info["job_type"]) == ("renamed", "grp", "eval")
    assert info["tags"] == ["t1", "t2"] and info["state"] == "finished"
    assert run.name == "renamed" and run.tags == ("t1", "t2")


def test_a_disabled_run_keeps_its_attributes_locally():
    run = mpbackend.init(mode="disabled", name="d")
    run.name = "e"
    run.tags = ("x",)
    assert (run.name, run.tags) == ("e", ("x",))
    run.finish()
