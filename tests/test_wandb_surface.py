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


# -- Settings and init()'s keywords ---------------------------------------------------


def test_settings_accept_wandb_settings_and_refuse_unknown_names(caplog):
    """wandb's settings are accepted: the ones with a meaning here set ours (silent
    -> quiet, _disable_stats -> no system sampling, root_dir -> <root>/mpruns), the
    run's own ones wait for init(), the rest are ignored with one debug line. A name
    neither has is a TypeError (a typo must not pass)."""
    caplog.set_level("DEBUG", logger="mpbackend")
    s = mpbackend.Settings(silent=True, _disable_stats=True, root_dir="/data",
                           console="off", start_method="thread", x_label="rank0",
                           project="from-settings", run_name="n1", mode="disabled")
    assert s.quiet is True and s.system_interval is None and s.dir == "/data/mpruns"
    assert s.start_method == "spawn"  # wandb's "thread" has no meaning here
    assert s.run == {"project": "from-settings", "name": "n1", "mode": "disabled"}
    assert any("console" in r.getMessage() for r in caplog.records)
    with pytest.raises(TypeError, match="silnt"):
        mpbackend.Settings(silnt=True)
    run = mpbackend.init(settings=s)  # the run's settings reach init()
    assert isinstance(run, mpbackend.DisabledRun) and run.project == "from-settings"
    assert run.name == "n1"
    run.finish()


def test_init_takes_wandb_keywords(rundir, tmp_path, capsys, monkeypatch):
    """entity is recorded; config_exclude_keys / config_include_keys filter the config
    (both at once: UsageError); sync_tensorboard, monitor_gym and fork_from warn once
    and go on; anonymous, force, magic, allow_val_change are accepted; a JSON config
    file is read; resume_from resumes the run it names."""
    monkeypatch.chdir(tmp_path)
    run = mpbackend.init(entity="team", project="kw", config={"a": 1, "b": 2, "c": 3},
                         config_exclude_keys=["b"], anonymous="allow", force=True,
                         magic=True, allow_val_change=True, sync_tensorboard=True,
                         monitor_gym=True, tensorboard=True, job_type="train")
    assert run.entity == "team" and run.path == f"team/kw/{run.id}"
    assert dict(run.config) == {"a": 1, "c": 3}
    err = capsys.readouterr().err
    assert "sync_tensorboard is not supported" in err and "monitor_gym" in err
    run.log({"x": 1})
    run.finish()
    assert mpbackend.Api(str(rundir)).run(f"team/kw/{run.id}").entity == "team"
    with pytest.raises(mpbackend.UsageError, match="both"):
        mpbackend.init(config={"a": 1}, config_exclude_keys=["a"], config_include_keys=["a"])
    (tmp_path / "cfg.json").write_text(json.dumps({"lr": 0.5, "depth": 3, "skip": 1}))
    again = mpbackend.init(project="kw", config=str(tmp_path / "cfg.json"),
                           config_include_keys=["lr", "depth"],
                           resume_from=f"{run.id}?_step=0")
    assert again.id == run.id and again.resumed and dict(again.config)["lr"] == 0.5
    assert "skip" not in again.config
    again.finish()
    forked = mpbackend.init(project="kw", fork_from=f"{run.id}?_step=0")
    assert forked.id != run.id and "fork_from is not supported" in capsys.readouterr().err
    forked.finish()
    with pytest.raises(ValueError, match="resume_from"):
        mpbackend.init(project="kw", resume_from="no-step")


def test_wandb_config_paths_and_save_code(tmp_path):
    """WANDB_CONFIG_PATHS files fill the config first, init(config=) wins over them;
    save_code=True copies the script into the run's files."""
    (tmp_path / "defaults.json").write_text(json.dumps({"lr": 0.01, "epochs": 5}))
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import json, os
        import mpbackend as wandb
        run = wandb.init(project="cp", config={"lr": 0.1}, save_code=True)
        print("RESULT " + json.dumps({"config": dict(run.config), "dir": run.dir}))
        wandb.finish()
    """))
    env = {**_CLEAN, "PYTHONPATH": ROOT, "WANDB_CONFIG_PATHS": str(tmp_path / "defaults.json"),
           "MPBACKEND_DIR": str(tmp_path / "mpruns")}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = result(proc)
    assert out["config"] == {"lr": 0.1, "epochs": 5}
    stored = mpbackend.Api(str(tmp_path / "mpruns")).run("cp/" + os.path.basename(out["dir"]))
    assert stored.config == {"lr": 0.1, "epochs": 5}
    assert [f.name for f in stored.files()] == ["code/train.py"]
    assert stored.file("code/train.py").download(str(tmp_path / "got")).read() == \
        script.read_text()


# -- the run's files, alerts and attributes --------------------------------------------


def test_save_restore_log_code_alert_and_preempting(rundir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "a.pt").write_text("v1")
    (tmp_path / "ckpt" / "b.pt").write_text("b")
    (tmp_path / "notes.txt").write_text("now")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "model.py").write_text("# model")
    (tmp_path / "src" / "data.csv").write_text("1,2")
    run = mpbackend.init(project="files")
    saved = mpbackend.save("ckpt/*.pt")  # relative to ckpt/, as wandb keeps them
    assert sorted(os.path.basename(p) for p in saved) == ["a.pt", "b.pt"]
    run.save("notes.txt", policy="now")
    run.save("ckpt/a.pt", base_path=".", policy="end")
    (tmp_path / "ckpt" / "a.pt").write_text("v2")  # "live" and "end": copied again at the end
    (tmp_path / "notes.txt").write_text("later")  # "now": not
    code = run.log_code("src")  # as wandb: an artifact of type code
    assert code.wait().type == "code" and [f.name for f in code.files()] == ["model.py"]
    assert code.name.startswith(f"source-{run.project}-") and code.version == "v0"
    with pytest.raises(ValueError, match="policy"):
        run.save("notes.txt", policy="sometimes")
    with pytest.raises(ValueError, match="leaves"):
        run.restore("../run.db")
    mpbackend.alert(title="loss is NaN", text="at step 3", level="WARN")
    assert "alert (WARN) loss is NaN: at step 3" in capsys.readouterr().err
    with pytest.raises(ValueError, match="level"):
        run.alert("t", "x", level="LOUD")
    run.mark_preempting()
    run.finish()
    stored = mpbackend.Api(str(rundir)).run(run.path)
    names = {f.name: f for f in stored.files()}
    assert set(names) == {"a.pt", "b.pt", "notes.txt", "ckpt/a.pt", "code/model.py"}
    assert open(names["a.pt"].path).read() == "v2" and open(names["ckpt/a.pt"].path).read() == "v2"
    assert open(names["notes.txt"].path).read() == "now"
    alerts = stored.info()["extra"]["alerts"]
    assert [(a["title"], a["text"], a["level"]) for a in alerts] == [
        ("loss is NaN", "at step 3", "WARN")]
    assert stored.info()["extra"]["preempting"] is True
    restored = mpbackend.restore("notes.txt", run_path=run.path, root=str(tmp_path / "out"))
    assert restored.read() == "now"
    restored.close()
    with pytest.raises(ValueError, match="not among the files"):
        mpbackend.restore("missing.txt", run_path=run.path)


def test_run_url_entity_path_and_the_module_level_objects(rundir):
    run = mpbackend.init(project="attrs", entity="me")
    assert run.url == run.get_url() and run.url.startswith("file:///")
    assert run.url.endswith(f"/attrs/{run.id}") and run.get_project_url().endswith("/attrs")
    assert (run.entity, run.project, run.path) == ("me", "attrs", f"me/attrs/{run.id}")
    assert mpbackend.run is run and mpbackend.summary is run.summary
    assert mpbackend.config is run.config and run.resumed is False
    assert abs(run.start_time - __import__("time").time()) < 60
    run.finish()


def test_generated_names_and_the_default_project_from_git(tmp_path):
    """No name: adjective-noun-N, N one more than the project's runs. No project: the
    git repository's name (found from the working directory), with the script's
    directory below the root added; outside a repository, uncategorized."""
    repo = tmp_path / "myrepo"
    (repo / ".git").mkdir(parents=True)
    (repo / "sub" / "deeper").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    body = textwrap.dedent("""
        import json
        import mpbackend as wandb
        names = []
        for _ in range(2):
            run = wandb.init()
            names.append(run.name)
            run.finish()
        print("RESULT " + json.dumps({"project": run.project, "names": names}))
    """)
    env = {**_CLEAN, "PYTHONPATH": ROOT, "MPBACKEND_DIR": str(tmp_path / "mpruns")}
    got = {}
    for where, cwd in (("root", repo), ("deep", repo / "sub" / "deeper"),
                       ("none", outside)):
        script = cwd / "train.py"
        script.write_text(body)
        proc = subprocess.run([sys.executable, str(script)], cwd=repo if where != "none"
                              else outside, env=env, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        got[where] = result(proc)
    assert got["root"]["project"] == "myrepo"
    assert got["deep"]["project"] == "myrepo-sub_deeper"
    assert got["none"]["project"] == "uncategorized"
    import re
    for out in got.values():
        assert all(re.fullmatch(r"[a-z]+-[a-z]+-\d+", n) for n in out["names"]), out
        assert [int(n.rsplit("-", 1)[1]) for n in out["names"]] == [1, 2]


# -- the read API in wandb's shapes ----------------------------------------------------


def test_api_paths_overrides_update_and_errors(rundir):
    run = mpbackend.init(entity="team", project="shapes", config={"lr": 0.1}, name="first")
    for i in range(3):
        run.log({"loss": 1.0 / (i + 1), "acc": i / 10})
    run.finish()
    api = mpbackend.Api({"project": "shapes"})  # wandb.Api(overrides) positionally
    assert api.dir == str(rundir) and api.settings["project"] == "shapes"
    assert [r.id for r in api.runs("team/shapes")] == [run.id]
    assert [r.id for r in api.runs("shapes")] == [run.id]
    assert api.runs("other-entity/none") == []
    for path in (f"team/shapes/{run.id}", f"team/shapes/runs/{run.id}", f"shapes/{run.id}",
                 f"team/shapes:{run.id}", f"shapes:{run.id}", run.id, f"/team/shapes/{run.id}/"):
        assert api.run(path).id == run.id, path
    with pytest.raises(mpbackend.NoSuchRun, match="nope"):
        api.run("shapes/nope")
    with pytest.raises(KeyError):
        api.run("shapes/nope")
    with pytest.raises(ValueError, match="invalid run path"):
        api.run("a/b/c/d")
    assert mpbackend.Api(timeout=5, overrides={"entity": "team"}).dir == str(rundir)
    got = api.run(run.path)
    assert got.lastHistoryStep == 2 and got.metadata["state"] == "finished"
    assert got.metadata["host"] and got.url.startswith("file://")
    rows = got.history(keys=["loss"], x_axis="acc", pandas=False)
    frame = got.history(keys=["loss"], x_axis="acc")
    assert [list(r) for r in rows] == [["acc", "loss"]] * 3  # x_axis and keys, as wandb
    assert list(frame.columns) == ["acc", "loss"]
    assert [r["acc"] for r in rows] == frame["acc"].tolist()
    # update(): edits are stored; a live run refuses them.
    got.summary["best"] = 0.9
    got.config["note"] = "tuned"
    got.name, got.tags, got.notes = "renamed", ["x", "y"], "edited"
    got.update()
    again = mpbackend.Api(str(rundir)).run(run.path)
    assert (again.name, again.tags, again.notes) == ("renamed", ["x", "y"], "edited")
    assert again.summary["best"] == 0.9 and again.config == {"lr": 0.1, "note": "tuned"}
    assert again.summary["loss"] == pytest.approx(1 / 3)
    again.summary.update({"extra": 1})  # wandb's public summary.update(): stored at once
    assert mpbackend.Api(str(rundir)).run(run.path).summary["extra"] == 1
    live = mpbackend.init(project="shapes")
    live_api = mpbackend.Api(str(rundir)).run(live.path)
    live_api.summary["x"] = 1
    with pytest.raises(mpbackend.UsageError, match="in use"):
        live_api.update()
    live.finish()
    empty = mpbackend.Api(str(rundir)).run(live.path)
    assert empty.lastHistoryStep == -1


def test_history_without_pandas_says_what_to_install(rundir, tmp_path):
    run = mpbackend.init(project="nopd")
    run.log({"x": 1})
    run.finish()
    code = textwrap.dedent(f"""
        import sys
        sys.modules["pandas"] = None  # as if pandas were not installed
        import mpbackend
        api_run = mpbackend.Api({str(rundir)!r}).run({run.path!r})
        print(api_run.history(pandas=False))
        try:
            api_run.history()
        except ImportError as exc:
            print("ERROR", exc)
    """)
    proc = subprocess.run([sys.executable, "-c", code], env={**_CLEAN, "PYTHONPATH": ROOT},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "'x': 1" in proc.stdout
    assert "pip install 'mpbackend[pandas]', or pass pandas=False" in proc.stdout


def test_util_helpers_scripts_call():
    import mpbackend as wandb

    ids = {wandb.util.generate_id() for _ in range(50)}
    assert len(ids) == 50 and all(len(i) == 8 and i.isalnum() and i.islower() for i in ids)
    assert len(wandb.util.generate_id(20)) == 20
    assert wandb.util.get_module("json").__name__ == "json"
    assert wandb.util.get_module("no_such_module_here") is None
    with pytest.raises(ImportError, match="needed"):
        wandb.util.get_module("no_such_module_here", required="needed")
    assert wandb.util.make_artifact_name_safe("my model:v1/best") == "my_model_v1_best"
    assert wandb.util.to_forward_slash_path("a\\b\\c") == "a/b/c"
    assert wandb.util.json_friendly(__import__("pathlib").Path("/x")) == ("/x", True)
    with pytest.raises(TypeError, match="no stored form"):
        wandb.util.json_friendly(object())
