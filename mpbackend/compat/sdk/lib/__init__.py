"""``wandb.sdk.lib``: ``RunDisabled`` (wandb's disabled run: ``mode="disabled"``)."""

from __future__ import annotations

from ....user.run import DisabledRun as RunDisabled
from . import config_util

__all__ = ["RunDisabled", "config_util"]
