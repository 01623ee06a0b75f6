"""``MpbackendLogger`` for ``lightning.pytorch`` (``from lightning.pytorch import Trainer``);
``mpbackend.integrations.pytorch_lightning`` has the same for ``pytorch_lightning``.
See ``_lightning`` for what it logs."""

from __future__ import annotations

import lightning.pytorch as _pl

from ._lightning import build

MpbackendLogger = build(_pl, __name__)

__all__ = ["MpbackendLogger"]
