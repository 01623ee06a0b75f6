"""``MpbackendCallback``: a transformers ``TrainerCallback`` that logs as wandb's does.

    Trainer --setup / on_log / on_save / on_train_end--> MpbackendCallback (main process)
        --init, config.update, define_metric, log, summary, log_artifact, watch-->
        the user side, as a script uses it

What ``WandbCallback`` logs, the same way:
- **The config:** the model's config and the TrainingArguments, and
  ``model/num_parameters``.
- **Every ``on_log``:** ``eval_*`` keys as ``eval/*``, ``test_*`` as ``test/*``,
  the rest as ``train/*``, with ``train/global_step`` as the step metric. The
  end-of-training figures (``train_runtime``, ``train_loss``, ``total_flos``, ...)
  go to the summary.
- **Checkpoints as ``model`` artifacts:** with ``WANDB_LOG_MODEL`` (or
  ``MPBACKEND_LOG_MODEL``) ``checkpoint``, each one at every save; with ``end``,
  the final model.
- **Gradients:** with ``WANDB_WATCH`` ``gradients`` / ``parameters`` / ``all``,
  ``watch()`` is called.

Use it as ``Trainer(..., args=TrainingArguments(..., report_to="none"),
callbacks=[MpbackendCallback()])``: ``report_to="none"`` keeps transformers from
adding its own loggers.
"""

from __future__ import annotations

import numbers
import os
import tempfile
from typing import Any

from transformers import TrainerCallback

from ..shared import environ

# What WandbCallback puts in the summary rather than in a row (the end of training).
SUMMARY_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second",
                "train_loss", "total_flos")


def rewrite_logs(logs: dict[str, Any]) -> dict[str, Any]:
    """``eval_loss`` -> ``eval/loss``, ``test_x`` -> ``test/x``, ``loss`` -> ``train/loss``."""
    out = {}
    for key, value in logs.items():
        for prefix in ("eval_", "test_"):
            if key.startswith(prefix):
                out[f"{prefix[:-1]}/{key[len(prefix):]}"] = value
                break
        else:
            out[f"train/{key}"] = value
    return out


class MpbackendCallback(TrainerCallback):
    """Log a transformers Trainer's run to mpbackend (main process only); ``project``
    and any other ``init()`` keyword. The run is the current one if one is open."""

    def __init__(self, project: str | None = None, **init_kwargs: Any) -> None:
        self._project = project
        self._init = init_kwargs
        self._run: Any = None
        self._log_model = (environ.value("LOG_MODEL") or "false").lower()
        if self._log_model in ("true", "1"):
            self._log_model = "end"  # wandb's older spelling
        self._watch = (environ.value("WATCH") or "false").lower()

    @property
    def run(self) -> Any:
        """The Run this callback logs to (None before training starts)."""
        return self._run

    def setup(self, args: Any, state: Any, model: Any, **kwargs: Any) -> None:
        """Open (or take) the run and store the config, as WandbCallback does."""
        if not state.is_world_process_zero or self._run is not None:
            return
        import mpbackend

        config: dict[str, Any] = {}
        model_config = getattr(model, "config", None)
        if model_config is not None and hasattr(model_config, "to_dict"):
            config.update(model_config.to_dict())
        config.update(args.to_dict())
        run = mpbackend.run
        if run is None:
            project = self._project or environ.value("PROJECT") or "huggingface"
            name = self._init.pop("name", None) or getattr(args, "run_name", None)
            run = mpbackend.init(project=project, name=name, **self._init)
        self._run = run
        run.config.update(_plain(config), allow_val_change=True)
        run.define_metric("train/global_step")
        run.define_metric("*", step_metric="train/global_step", step_sync=True)
        if self._watch in ("gradients", "parameters", "all") and model is not None:
            run.watch(model, log=self._watch, log_freq=max(100, args.logging_steps))
        run._label(code="transformers_trainer")
        if model is not None and hasattr(model, "num_parameters"):
            run.config.update({"model/num_parameters": model.num_parameters()},
                              allow_val_change=True)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       **kwargs: Any) -> None:
        self.setup(args, state, model, **kwargs)

    def on_log(self, args: Any, state: Any, control: Any, model: Any = None,
               logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        if self._run is None:
            self.setup(args, state, model)
        logs = dict(logs or {})
        for key in SUMMARY_KEYS:
            if key in logs:
                self._run.summary[key] = logs.pop(key)
        self._run.log({**rewrite_logs(logs), "train/global_step": state.global_step})

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._log_model != "checkpoint" or self._run is None or \
                not state.is_world_process_zero:
            return
        path = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if os.path.isdir(path):
            self._log_artifact(state, lambda art: art.add_dir(path))

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None,
                     processing_class: Any = None, **kwargs: Any) -> None:
        if self._log_model != "end" or self._run is None or not state.is_world_process_zero:
            return
        with tempfile.TemporaryDirectory() as folder:
            model.save_pretrained(folder)
            if processing_class is not None and hasattr(processing_class, "save_pretrained"):
                processing_class.save_pretrained(folder)
            self._log_artifact(state, lambda art: art.add_dir(folder))

    def _log_artifact(self, state: Any, add: Any) -> None:
        from ..artifacts.artifact import Artifact

        metadata = {k: v for k, v in dict(self._run.summary).items()
                    if isinstance(v, numbers.Number) and not k.startswith("_")}
        artifact = Artifact(f"model-{self._run.id}", type="model", metadata=metadata)
        add(artifact)  # files copied now (policy mutable): the folder may go afterwards
        epoch = round(state.epoch, 2) if state.epoch is not None else 0
        self._run.log_artifact(artifact, aliases=[f"epoch_{epoch}",
                                                  f"checkpoint_global_step_{state.global_step}"])


def _plain(config: dict[str, Any]) -> dict[str, Any]:
    """The config as the run keeps it: enum members and other objects as their text
    (as WandbCallback's ``to_dict()`` values end up in wandb's config)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out[key] = _plain(value)
        elif isinstance(value, (list, tuple)):
            out[key] = [v if isinstance(v, (int, float, str, bool, type(None))) else str(v)
                        for v in value]
        elif isinstance(value, (int, float, str, bool, type(None))):
            out[key] = value
        else:
            out[key] = str(value)
    return out
