"""watch(model): histograms of a torch model's parameters and gradients, from hooks.

    model.forward --forward hook, every log_freq-th call--> "parameters/<name>" histograms
    param.grad    --tensor hook, every log_freq-th backward--> "gradients/<name>" histograms
        --run.log({...: Histogram}, commit=False)--> merged into the run's next row

As wandb's watch: 64 bins between the tensor's finite min and max (NaN and
infinities left out; a constant tensor is one bin), logged with ``commit=False``
so they join the step the training loop logs next. The histogram is computed
with ``torch.histc`` where the tensor lives (on the GPU for a CUDA model), and
only the 64 counts cross to the CPU. Between logging steps a hook costs a
counter increment (bench/watch.py measures the cost per step).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..media.data import Histogram

if TYPE_CHECKING:
    from ..user.run import Run

BINS = 64
LOG_KINDS = ("gradients", "parameters", "all", None)


def histogram(tensor: Any) -> Histogram | None:
    """A 64-bin Histogram of a tensor's finite values (None if it has none)."""
    import torch

    flat = tensor.detach().reshape(-1)
    if not flat.is_floating_point() or flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()
    finite = torch.isfinite(flat)
    if not bool(finite.all()):
        flat = flat[finite]
    if flat.numel() == 0:
        return None
    tmin, tmax = flat.min().item(), flat.max().item()
    if tmin == tmax:
        return Histogram(np_histogram=([flat.numel()], [tmin, tmax]))
    counts = torch.histc(flat, bins=BINS, min=tmin, max=tmax)
    edges = torch.linspace(tmin, tmax, steps=BINS + 1)
    return Histogram(np_histogram=(counts.cpu().tolist(), edges.tolist()))


class _Every:
    """True on every ``n``-th call (the n-th, 2n-th, ...), as wandb counts."""

    __slots__ = ("count", "n")

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0

    def __call__(self) -> bool:
        self.count += 1
        if self.count < self.n:
            return False
        self.count = 0
        return True


class Watcher:
    """The hooks ``watch()`` put on one model; ``remove()`` takes them off."""

    def __init__(self, run: Run, model: Any, log: str | None, log_freq: int,
                 prefix: str) -> None:
        self.run = run
        self.model = model
        self.handles: list[Any] = []
        if log in ("parameters", "all"):
            every = _Every(log_freq)

            def parameters_hook(module: Any, inputs: Any, output: Any) -> None:
                if every():
                    self._log({f"parameters/{prefix}{name}": p
                               for name, p in module.named_parameters()})

            self.handles.append(model.register_forward_hook(parameters_hook))
        if log in ("gradients", "all"):
            for name, param in model.named_parameters():
                if param.requires_grad:
                    self.handles.append(param.register_hook(
                        self._gradient_hook(f"gradients/{prefix}{name}", _Every(log_freq))))

    def _gradient_hook(self, key: str, every: _Every) -> Any:
        def hook(grad: Any) -> None:
            if every():
                self._log({key: grad})
        return hook

    def _log(self, tensors: dict[str, Any]) -> None:
        if self.run.state != "running":
            return
        row = {}
        for key, tensor in tensors.items():
            hist = histogram(tensor)
            if hist is not None:
                row[key] = hist
        if row:
            self.run.log(row, commit=False)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


def watch(run: Run, models: Any, criterion: Any = None, log: str | None = "gradients",
          log_freq: int = 1000, idx: int | None = None, log_graph: bool = False
          ) -> list[Watcher]:
    """Put hooks on ``models`` (a torch Module or a sequence of them); see the module."""
    if log not in LOG_KINDS:
        raise ValueError(f"watch(): log is 'gradients', 'parameters', 'all' or None, "
                         f"not {log!r}")
    if isinstance(log_freq, bool) or not isinstance(log_freq, int) or log_freq < 1:
        raise ValueError(f"watch(): log_freq must be a positive int, not {log_freq!r}")
    items: Sequence[Any] = models if isinstance(models, (list, tuple)) else [models]
    for model in items:
        if not hasattr(model, "named_parameters") or not hasattr(model, "register_forward_hook"):
            raise TypeError(f"watch() takes torch.nn.Module(s), not {type(model).__name__}")
    watchers = []
    for i, model in enumerate(items):
        prefix = "" if len(items) == 1 and idx is None else f"graph_{i if idx is None else idx}"
        watchers.append(Watcher(run, model, log, log_freq, prefix))
    return watchers
