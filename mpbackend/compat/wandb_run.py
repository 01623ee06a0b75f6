"""``wandb.wandb_run``: ``Run``, the class of what ``init()`` returns."""

from __future__ import annotations

from ..user.run import Run

__all__ = ["Run"]
