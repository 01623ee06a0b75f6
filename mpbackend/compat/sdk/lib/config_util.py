"""``wandb.sdk.lib.config_util``: ``ConfigError``, raised when a config key changes."""

from __future__ import annotations

from ....user.config import ConfigError

__all__ = ["ConfigError"]
