"""``MpbackendLogger`` for ``pytorch_lightning`` (``import pytorch_lightning as pl``);
``mpbackend.integrations.lightning`` has the same for ``lightning.pytorch``."""

from __future__ import annotations

import pytorch_lightning as _pl

from ._lightning import build

MpbackendLogger = build(_pl, __name__)

__all__ = ["MpbackendLogger"]
