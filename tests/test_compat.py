"""Code written against wandb's own modules: ``wandb.sdk.lib.config_util.ConfigError``,
``wandb.sdk.lib.RunDisabled``, ``wandb.wandb_run.Run``, ``Run._label``, and
``install_as_wandb()`` for code that does ``import wandb`` itself."""

from __future__ import annotations

import pytest
from conftest import result, run_script

import mpbackend

pytestmark = pytest.mark.timeout(90)


def test_wandbs_internal_names_are_mpbackends_classes(rundir):
    assert mpbackend.sdk.lib.config_util.ConfigError is mpbackend.ConfigError
    assert mpbackend.sdk.lib.RunDisabled is mpbackend.DisabledRun
    assert mpbackend.wandb_run.Run is mpbackend.Run
    run = mpbackend.init(project="compat", config={"lr": 0.1}, anonymous="allow")
    assert isinstance(run, mpbackend.wandb_run.Run)
    run._label(code="transformers_trainer")
    assert run._labels == {"code": "transformers_trainer"}
    with pytest.raises(mpbackend.sdk.lib.config_util.ConfigError):
        run.config.update({"lr": 0.2})
    run.finish()
    off = mpbackend.init(project="compat", mode="disabled")
    assert isinstance(off, mpbackend.sdk.lib.RunDisabled)
    off.finish()


def test_install_as_wandb_serves_import_wandb(tmp_path):
    done = run_script("""
        import json, mpbackend
        mpbackend.compat.install_as_wandb()
        import wandb                                   # what an integration does itself
        from wandb.sdk.lib.config_util import ConfigError
        from wandb.wandb_run import Run
        import importlib.util
        run = wandb.init(project="via-wandb", config={"epochs": 2})
        wandb.log({"loss": 0.5})
        try:
            wandb.config.update({"epochs": 3})
            changed = True
        except ConfigError:
            changed = False
        ok = isinstance(run, Run) and importlib.util.find_spec("wandb") is not None
        wandb.finish()
        stored = mpbackend.Api().run(f"via-wandb/{run.id}")
        print("RESULT " + json.dumps({"ok": ok, "changed": changed, "mp": wandb is mpbackend,
                                      "config": stored.config,
                                      "loss": stored.summary["loss"]}))
    """, tmp_path)
    assert result(done) == {"ok": True, "changed": False, "mp": True,
                            "config": {"epochs": 2}, "loss": 0.5}


def test_install_as_wandb_refuses_a_real_wandb_already_imported(tmp_path):
    done = run_script("""
        import json, sys, types, mpbackend
        sys.modules["wandb"] = types.ModuleType("wandb")   # as if wandb were imported
        try:
            mpbackend.compat.install_as_wandb()
            refused = False
        except ImportError as exc:
            refused = "before any import of wandb" in str(exc)
        print("RESULT " + json.dumps({"refused": refused}))
    """, tmp_path)
    assert result(done) == {"refused": True}
