"""``MpbackendTracker``: an accelerate ``GeneralTracker``, for
``Accelerator(log_with=[MpbackendTracker("project")])`` (main process only).

    accelerator.init_trackers(...) --start(), store_init_configuration(config)-->
    accelerator.log(values, step)  --log()-->  the Run (init, config, log)
    accelerator.end_training()     --finish()--> the run finished
"""

from __future__ import annotations

from typing import Any

from accelerate.state import PartialState
from accelerate.tracking import GeneralTracker


class MpbackendTracker(GeneralTracker):
    """Log an accelerate training loop to an mpbackend run; ``run_name`` is the
    project, the keywords go to ``init()``. Only the main process logs."""

    name = "mpbackend"
    requires_logging_directory = False
    main_process_only = True

    def __init__(self, run_name: str, **init_kwargs: Any) -> None:
        super().__init__()
        self.run_name = run_name
        self._init = init_kwargs
        self._run: Any = None

    def start(self) -> None:
        """Open the run (on the main process); called by ``init_trackers``."""
        if self._run is None and PartialState().is_main_process:
            import mpbackend

            self._run = mpbackend.init(project=self.run_name, **self._init)

    @property
    def tracker(self) -> Any:
        """The Run (None on other processes)."""
        return self._run

    def store_init_configuration(self, values: dict[str, Any]) -> None:
        if self._run is not None:
            self._run.config.update(values, allow_val_change=True)

    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        """A row; ``step`` as ``log(step=)`` (a smaller one is dropped with a warning)."""
        if self._run is not None:
            self._run.log(values, step=step, **kwargs)

    def finish(self) -> None:
        if self._run is not None:
            self._run.finish()
