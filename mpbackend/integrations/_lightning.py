"""The Lightning Logger, built once for each Lightning package (``lightning.pytorch``
or ``pytorch_lightning``): the two have their own ``Logger`` base classes, and a
Trainer accepts only loggers of its own package's.

    Trainer --log_hyperparams / log_metrics(step) / after_save_checkpoint / finalize-->
    MpbackendLogger (rank 0 only) --Run.config.update / Run.log / log_artifact / finish-->
    the user side, as a script uses it

As wandb's ``WandbLogger``: ``trainer/global_step`` is every metric's x axis
(``define_metric("*", step_metric="trainer/global_step")``), hyperparameters go
to the config, checkpoints become ``model`` artifacts (``latest``; ``best`` on the
best one) with ``log_model=True`` (at the end) or ``"all"`` (as they are saved).
Unlike it, ``finalize`` finishes the run (``failed`` unless the status is
``success``), once.

The run's id is chosen when the logger is made, so ``version`` is the same in
every process; under ``strategy="ddp_spawn"`` the logger is pickled into the
workers without its run, and rank 0 opens the run there (other ranks log
nothing, as Lightning's ``rank_zero_only`` keeps them out).
"""

from __future__ import annotations

import os
from argparse import Namespace
from collections.abc import Mapping
from typing import Any


def build(pl: Any, module: str) -> type:
    """The Logger class for the Lightning package ``pl`` (its ``pytorch`` module), named
    as an attribute of ``module`` (so that it pickles, as ``ddp_spawn`` needs)."""
    loggers = __import__(f"{pl.__name__}.loggers.logger", fromlist=["Logger"])
    utilities = __import__(f"{pl.__name__}.utilities", fromlist=["rank_zero_only"])
    logger_utils = __import__(f"{pl.__name__}.loggers.utilities",
                              fromlist=["_scan_checkpoints"])
    Logger, rank_zero_experiment = loggers.Logger, loggers.rank_zero_experiment
    rank_zero_only = utilities.rank_zero_only
    scan_checkpoints = logger_utils._scan_checkpoints

    class MpbackendLogger(Logger):  # type: ignore[misc, valid-type]
        """A Lightning Logger that logs to an mpbackend run, as ``WandbLogger`` does.

        ``project``, ``name``, ``save_dir`` / ``dir`` (where runs are stored),
        ``id`` / ``version`` (to resume one), ``log_model`` (False, True or
        ``"all"``), ``prefix``, ``checkpoint_name`` and any other ``init()`` keyword.
        """

        LOGGER_JOIN_CHAR = "-"

        def __init__(self, name: str | None = None, save_dir: str | os.PathLike | None = None,
                     version: str | None = None, offline: bool = False,
                     dir: str | os.PathLike | None = None, id: str | None = None,
                     anonymous: bool | None = None, project: str | None = None,
                     log_model: bool | str = False, experiment: Any = None, prefix: str = "",
                     checkpoint_name: str | None = None,
                     add_file_policy: str = "mutable", **kwargs: Any) -> None:
            super().__init__()
            if log_model not in (False, True, "all"):
                raise ValueError("log_model is False, True or 'all'")
            from ..util import generate_id

            self._project = project
            self._run_name = name
            where = dir or save_dir
            self._save_dir = os.fspath(where) if where is not None else None
            self._id = version or id or (experiment.id if experiment is not None
                                         else generate_id())
            self._log_model = log_model
            self._prefix = prefix
            self._checkpoint_name = checkpoint_name
            self._policy = add_file_policy
            self._init = dict(kwargs)
            self._experiment = experiment
            self._logged_model_time: dict[str, float] = {}
            self._checkpoint_callbacks: dict[int, Any] = {}
            self._finished = False

        def __getstate__(self) -> dict[str, Any]:
            state = self.__dict__.copy()
            state["_experiment"] = None  # a Run is not pickled: rank 0 opens it where it runs
            return state

        @property
        @rank_zero_experiment
        def experiment(self) -> Any:
            """The mpbackend Run (made on first use, on rank 0)."""
            if self._experiment is None:
                import mpbackend

                if mpbackend.run is not None and mpbackend.run.id == self._id:
                    self._experiment = mpbackend.run
                else:
                    kwargs: dict[str, Any] = {"resume": "allow", **self._init}
                    if self._save_dir is not None:
                        kwargs.setdefault("dir", self._save_dir)
                    self._experiment = mpbackend.init(project=self._project,
                                                      name=self._run_name, id=self._id,
                                                      **kwargs)
                self._experiment.define_metric("trainer/global_step")
                self._experiment.define_metric("*", step_metric="trainer/global_step",
                                               step_sync=True)
            return self._experiment

        @property
        def name(self) -> str | None:
            """The project (as WandbLogger's ``name``)."""
            return self._project

        @property
        def version(self) -> str:
            """The run's id."""
            return self._experiment.id if self._experiment is not None else self._id

        @property
        def save_dir(self) -> str | None:
            return self._save_dir

        @rank_zero_only
        def log_hyperparams(self, params: dict[str, Any] | Namespace) -> None:
            """Hyperparameters into the config (namespaces and nested dicts too)."""
            if isinstance(params, Namespace):
                params = vars(params)
            params = {str(k): v for k, v in dict(params or {}).items()}
            self.experiment.config.update(_plain_params(params), allow_val_change=True)

        @rank_zero_only
        def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
            """One row: the metrics (prefixed) with ``trainer/global_step`` = ``step``."""
            row = {(f"{self._prefix}{self.LOGGER_JOIN_CHAR}{k}" if self._prefix else k):
                   (v.item() if hasattr(v, "item") and getattr(v, "ndim", 1) == 0 else v)
                   for k, v in metrics.items()}
            if step is not None:
                row["trainer/global_step"] = step
            self.experiment.log(row)

        @rank_zero_only
        def log_table(self, key: str, columns: list[str] | None = None,
                      data: list[list[Any]] | None = None, dataframe: Any = None,
                      step: int | None = None) -> None:
            from ..media.data import Table

            self.log_metrics({key: Table(columns=columns, data=data, dataframe=dataframe)},
                             step)

        @rank_zero_only
        def log_text(self, key: str, columns: list[str] | None = None,
                     data: list[list[str]] | None = None, dataframe: Any = None,
                     step: int | None = None) -> None:
            self.log_table(key, columns, data, dataframe, step)

        @rank_zero_only
        def log_image(self, key: str, images: list[Any], step: int | None = None,
                      **kwargs: Any) -> None:
            """A list of images (tensors, arrays, PIL images, paths); each kwarg is a
            list of one value per image (``caption=[...]``, ``masks=[...]``)."""
            from ..media.image import Image

            self._log_media(key, images, step, Image, kwargs)

        @rank_zero_only
        def log_audio(self, key: str, audios: list[Any], step: int | None = None,
                      **kwargs: Any) -> None:
            from ..media.files import Audio

            self._log_media(key, audios, step, Audio, kwargs)

        @rank_zero_only
        def log_video(self, key: str, videos: list[Any], step: int | None = None,
                      **kwargs: Any) -> None:
            from ..media.files import Video

            self._log_media(key, videos, step, Video, kwargs)

        def _log_media(self, key: str, items: list[Any], step: int | None, kind: type,
                       kwargs: dict[str, list[Any]]) -> None:
            if not isinstance(items, list):
                raise TypeError(f"log_{kind.__name__.lower()}() takes a list, not "
                                f"{type(items).__name__}")
            for name, values in kwargs.items():
                if len(values) != len(items):
                    raise ValueError(f"{len(items)} items but {len(values)} values of {name}")
            made = [kind(item, **{k: v[i] for k, v in kwargs.items()})
                    for i, item in enumerate(items)]
            self.log_metrics({key: made}, step)

        def watch(self, model: Any, log: str | None = "gradients", log_freq: int = 100,
                  log_graph: bool = True) -> None:
            """``watch()`` on the run: gradient/parameter histograms (see torch_watch)."""
            if rank_zero_only.rank == 0:
                self.experiment.watch(model, log=log, log_freq=log_freq, log_graph=log_graph)

        def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
            if self._log_model == "all" or (self._log_model is True
                                            and checkpoint_callback.save_top_k == -1):
                self._log_checkpoints(checkpoint_callback)
            elif self._log_model is True:
                self._checkpoint_callbacks[id(checkpoint_callback)] = checkpoint_callback

        @rank_zero_only
        def finalize(self, status: str) -> None:
            """Log the checkpoints kept for the end (on success), then finish the run."""
            if self._experiment is None or self._finished:
                return
            if status == "success":
                for callback in self._checkpoint_callbacks.values():
                    self._log_checkpoints(callback)
            self._finished = True
            self._experiment.finish(exit_code=0 if status == "success" else 1)

        @rank_zero_only
        def _log_checkpoints(self, checkpoint_callback: Any) -> None:
            from ..artifacts.artifact import Artifact

            for t, path, score, _ in scan_checkpoints(checkpoint_callback,
                                                      self._logged_model_time):
                metadata = {"score": score.item() if hasattr(score, "item") else score,
                            "original_filename": os.path.basename(path),
                            type(checkpoint_callback).__name__: {
                                k: getattr(checkpoint_callback, k)
                                for k in ("monitor", "mode", "save_last", "save_top_k",
                                          "save_weights_only", "_every_n_train_steps")
                                if hasattr(checkpoint_callback, k)}}
                name = self._checkpoint_name or f"model-{self.experiment.id}"
                artifact = Artifact(name, type="model", metadata=metadata)
                artifact.add_file(path, name="model.ckpt", policy=self._policy)
                best = path == checkpoint_callback.best_model_path
                self.experiment.log_artifact(artifact, aliases=["latest", "best"] if best
                                             else ["latest"])
                self._logged_model_time[path] = t

    MpbackendLogger.__module__ = module
    MpbackendLogger.__qualname__ = "MpbackendLogger"
    return MpbackendLogger


def _plain_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameters as the config keeps them: namespaces as dicts, callables by
    name (as Lightning's loggers sanitize them), anything else left to the config's
    own check."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, Namespace):
            value = vars(value)
        if isinstance(value, Mapping):
            out[key] = _plain_params({str(k): v for k, v in value.items()})
        elif callable(value) and not isinstance(value, type):
            out[key] = getattr(value, "__name__", type(value).__name__)
        else:
            out[key] = value
    return out
