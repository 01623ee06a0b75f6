"""Summary: a run's summary as the user process sees it; the service keeps the real one.

    run.summary["best"] = v --SUMMARY record--> rec_q --> Internal.update_summary
    run.summary["loss"]     --GetSummary request--> the service's summary, as of
                              everything sent before it (rows from children included)
    after finish():           the final summary, from finish()'s reply, in memory
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from ..shared import messages as m
from .values import convert_item, nan_to_none

if TYPE_CHECKING:
    from .run import Run


class Summary(MutableMapping):
    """A run's summary, kept by the service: last values, or what define_metric asks.

    Reading asks the service, so it sees everything logged before it; setting a
    key sends it, and a key the user set stays set. After the run ends, the final
    summary is read from memory.
    """

    def __init__(self, run: Run | None, final: Mapping[str, Any] | None = None) -> None:
        self._run = run
        self._final: dict[str, Any] | None = dict(final) if final is not None else None

    def _current(self) -> dict[str, Any]:
        run = self._run
        if run is None or run.state != "running":
            return dict(self._final or {})
        return run._get_summary()["summary"]

    def _send(self, data: Mapping[str, Any], deleted: list[str]) -> None:
        run = self._run
        if run is None or run.state != "running":
            final = self._final if self._final is not None else {}
            final.update(data)
            for key in deleted:
                final.pop(key, None)
            self._final = final
            return
        clean = {}
        for key, value in data.items():
            if not isinstance(key, str) or not key:
                raise TypeError(f"summary keys must be non-empty str, not {key!r}")
            key = str.__str__(key)
            clean[key] = nan_to_none(convert_item("summary", key, value, run._max_array, []))
        run._send_record((m.SUMMARY, run.id, clean, deleted), clean, "summary")

    def update(self, data: Any = (), **kwargs: Any) -> None:  # type: ignore[override]
        """Set keys from a mapping or key/value pairs, and keyword arguments."""
        self._send(dict(data or (), **kwargs), [])

    def __getitem__(self, key: str) -> Any:
        return _wrap(self, key, self._current()[key])

    def __setitem__(self, key: str, value: Any) -> None:
        self._send({key: value}, [])

    def __delitem__(self, key: str) -> None:
        if key not in self._current():
            raise KeyError(key)
        self._send({}, [key])

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return _wrap(self, key, self._current()[key])
        except KeyError:
            raise AttributeError(f"summary has no key {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        # ``summary.best = v`` as wandb allows; the object's own fields start with "_".
        if key.startswith("_"):
            object.__setattr__(self, key, value)
        else:
            self._send({key: value}, [])

    def __delattr__(self, key: str) -> None:
        if key.startswith("_"):
            object.__delattr__(self, key)
            return
        try:
            del self[key]
        except KeyError:
            raise AttributeError(f"summary has no key {key!r}") from None

    def __contains__(self, key: object) -> bool:
        return key in self._current()

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())

    def get(self, key: str, default: Any = None) -> Any:
        return self._current().get(key, default)

    def keys(self) -> Any:
        return self._current().keys()

    def items(self) -> Any:
        return self._current().items()

    def values(self) -> Any:
        return self._current().values()

    def as_dict(self) -> dict[str, Any]:
        return self._current()

    def __repr__(self) -> str:
        return f"Summary({self._current()!r})"


class SummarySubDict(dict):
    """A nested value of the summary (``run.summary["train"]``): a dict, and setting or
    deleting a key in it (at any depth) stores the new top-level value, as wandb's
    ``summary["train"]["best"] = v`` does."""

    def __init__(self, summary: Summary, top: str, root: SummarySubDict | None,
                 items: Mapping[str, Any]) -> None:
        root = self if root is None else root
        super().__init__({k: SummarySubDict(summary, top, root, v) if isinstance(v, dict)
                          else v for k, v in items.items()})
        self._summary = summary
        self._top = top
        self._root = root

    def _store(self) -> None:
        self._summary._send({self._top: _plain(self._root)}, [])

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._store()

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._store()

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self._store()

    def __reduce__(self) -> tuple:  # pickled (or copied) as the plain dict it shows
        return dict, (_plain(self),)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _wrap(summary: Summary, key: str, value: Any) -> Any:
    return SummarySubDict(summary, key, None, value) if isinstance(value, dict) else value
