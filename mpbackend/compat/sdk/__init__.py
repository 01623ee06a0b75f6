"""``wandb.sdk``: the part of wandb's internal package layout integrations import."""

from __future__ import annotations

from . import lib

__all__ = ["lib"]
