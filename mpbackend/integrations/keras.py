"""``MpbackendMetricsLogger``: a Keras 3 callback that logs as wandb's ``WandbMetricsLogger``.

    model.fit(..., callbacks=[MpbackendMetricsLogger()])
        --on_train_begin--> the run (the current one, or init())
        --on_batch_end, every log_freq batches--> {"batch/batch_step", "batch/<metric>"}
        --on_epoch_end--> {"epoch/epoch", "epoch/<metric>", "epoch/learning_rate"}
                          (and, with save_model, the model as a ``model`` artifact)

As wandb's: ``epoch/*`` metrics have ``epoch/epoch`` as their x axis and
``batch/*`` ones ``batch/batch_step``; the run stays open after ``fit()`` (for an
``evaluate()``), and ends with ``run.finish()`` or at exit. Keras runs on any of
its backends; the tests use torch (``KERAS_BACKEND=torch``), so no TensorFlow.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import keras


def _number(value: Any) -> Any:
    """A metric as a number (a backend tensor or numpy scalar made plain)."""
    if hasattr(value, "item"):
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


class MpbackendMetricsLogger(keras.callbacks.Callback):
    """Log ``fit()``'s metrics to mpbackend.

    ``log_freq``: ``"epoch"`` (the default), ``"batch"`` or every N batches too.
    ``initial_global_step``: where ``batch/batch_step`` starts (a resumed fit).
    ``save_model``: also store the model after each epoch as a ``model`` artifact
    (``<name or run-<id>-model>``, aliases ``epoch_<N>`` and ``latest``).
    ``project`` and any other ``init()`` keyword are used if no run is open.
    """

    def __init__(self, log_freq: str | int = "epoch", initial_global_step: int = 0,
                 save_model: bool = False, model_name: str | None = None,
                 project: str | None = None, **init_kwargs: Any) -> None:
        super().__init__()
        if log_freq == "batch":
            log_freq = 1
        if log_freq != "epoch" and (isinstance(log_freq, bool) or not isinstance(log_freq, int)
                                    or log_freq < 1):
            raise ValueError("log_freq is 'epoch', 'batch' or a positive number of batches")
        self.log_freq = log_freq
        self.global_batch = initial_global_step
        self.save_model = save_model
        self.model_name = model_name
        self._project = project
        self._init = init_kwargs
        self.run: Any = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        import mpbackend

        self.run = mpbackend.run or mpbackend.init(project=self._project, **self._init)
        self.run.define_metric("epoch/epoch")
        self.run.define_metric("epoch/*", step_metric="epoch/epoch")
        if self.log_freq != "epoch":
            self.run.define_metric("batch/batch_step")
            self.run.define_metric("batch/*", step_metric="batch/batch_step")

    def _learning_rate(self) -> float | None:
        optimizer = getattr(self.model, "optimizer", None)
        rate = getattr(optimizer, "learning_rate", None)
        if rate is None:
            return None
        value = _number(rate() if callable(rate) else rate)
        return value if isinstance(value, float) else None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        row: dict[str, Any] = {"epoch/epoch": epoch}
        row.update({f"epoch/{k}": _number(v) for k, v in (logs or {}).items()})
        rate = self._learning_rate()
        if rate is not None:
            row["epoch/learning_rate"] = rate
        self.run.log(row)
        if self.save_model:
            self._log_model(epoch)

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        # Keras calls it for each training batch (its on_train_batch_end does).
        every = self.log_freq
        if not isinstance(every, int):
            return  # "epoch": no batch rows
        self.global_batch += 1
        if self.global_batch % every == 0:
            row: dict[str, Any] = {"batch/batch_step": self.global_batch}
            row.update({f"batch/{k}": _number(v) for k, v in (logs or {}).items()})
            self.run.log(row)

    def _log_model(self, epoch: int) -> None:
        from ..artifacts.artifact import Artifact

        name = self.model_name or f"run-{self.run.id}-model"
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.keras")
            self.model.save(path)
            artifact = Artifact(name, type="model", metadata={"epoch": epoch})
            artifact.add_file(path)  # copied now: the folder goes at the end of the block
            self.run.log_artifact(artifact, aliases=[f"epoch_{epoch}"])
