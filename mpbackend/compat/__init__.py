"""Compatibility with code written against wandb's own modules (user process only).

Where it sits in the picture: beside the user side, which it re-exports under
wandb's module names, so that an integration that imports wandb's internals
finds mpbackend's real classes there:

    wandb.sdk.lib.config_util.ConfigError  -> mpbackend.user.config.ConfigError
    wandb.sdk.lib.RunDisabled              -> mpbackend.user.run.DisabledRun
    wandb.wandb_run.Run                    -> mpbackend.user.run.Run

``import mpbackend as wandb`` reaches them as attributes (``wandb.sdk.lib...``);
``install_as_wandb()`` puts mpbackend in ``sys.modules["wandb"]`` (and these
modules under their wandb names) for code that does ``import wandb`` itself,
such as transformers' ``WandbCallback``. What it cannot do: make a check of the
installed *distribution* pass (Lightning's ``WandbLogger`` asks pip's metadata
for wandb's version), since nothing named wandb is installed; the first-party
Logger (``mpbackend.integrations.lightning``) is the answer there.
"""

from __future__ import annotations

import sys
from types import ModuleType

from . import sdk, wandb_run
from .sdk import lib
from .sdk.lib import config_util

__all__ = ["install_as_wandb", "sdk", "wandb_run"]


def install_as_wandb() -> ModuleType:
    """Make ``import wandb`` (and ``wandb.sdk.lib.config_util``, ``wandb.wandb_run``,
    ``wandb.plot``, ``wandb.util``) give mpbackend; returns the module.

    Refused (ImportError) if a real wandb is imported already: two libraries under
    one name would split a script's runs between them.
    """
    import mpbackend

    present = sys.modules.get("wandb")
    if present is not None and present is not mpbackend:
        raise ImportError("wandb itself is imported in this process already; "
                          "install_as_wandb() must come before any import of wandb")
    sys.modules["wandb"] = mpbackend
    sys.modules["wandb.sdk"] = sdk
    sys.modules["wandb.sdk.lib"] = lib
    sys.modules["wandb.sdk.lib.config_util"] = config_util
    sys.modules["wandb.wandb_run"] = wandb_run
    sys.modules["wandb.plot"] = mpbackend.plot
    sys.modules["wandb.util"] = mpbackend.util
    return mpbackend
