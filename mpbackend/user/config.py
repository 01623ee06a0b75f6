"""Config: a run's config in the user process, with wandb's update rules.

    run.config.lr = 0.1 / run.config["lr"] / run.config.update(d, allow_val_change=)
        --values.convert()--> checked here (ConfigError for a changed key)
        --CONFIG record--> Interface.put --> rec_q --> the service's Internal --> run.db

The values are kept here too, so reading the config never asks the service.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..shared import messages as m
from ..shared.errors import Error
from ..shared.settings import Settings
from .values import as_mapping, convert_item, nan_to_none, same

if TYPE_CHECKING:
    from .run import Run


class ConfigError(Error, ValueError):
    """A config key was changed without ``allow_val_change=True``."""


class Config:
    """A run's config: ``config.lr``, ``config["lr"]``, and wandb's update rules.

    Setting a key that already holds a different value raises ConfigError unless
    ``update(..., allow_val_change=True)``. Every change is sent to the service
    and stored with the run.
    """

    def __init__(self, run: Run | None = None, data: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_run", run)
        object.__setattr__(self, "_items", dict(data or {}))

    def _set(self, data: Any, allow_val_change: bool, only_new: bool = False) -> None:
        items: dict[str, Any] = self._items
        new: dict[str, Any] = {}
        limit = self._run._max_array if self._run is not None else Settings.max_array_size
        for key, value in as_mapping(data).items():
            if not isinstance(key, str) or not key:
                raise TypeError(f"config keys must be non-empty str, not {key!r}")
            key = str.__str__(key)
            value = nan_to_none(convert_item("config", key, value, limit))
            if key in items:
                if only_new:
                    continue
                if not allow_val_change and not same(items[key], value):
                    raise ConfigError(
                        f"config key {key!r} is already {items[key]!r}; to change it to "
                        f"{value!r} pass allow_val_change=True to config.update()")
            new[key] = value
        if not new:
            return
        if self._run is not None:
            self._run._send_record((m.CONFIG, self._run.id, new), new, "config")
        items.update(new)

    def update(self, data: Any = None, allow_val_change: bool = False) -> None:
        """Add keys from a mapping, an argparse.Namespace or an object's attributes."""
        self._set(data, allow_val_change)

    def setdefaults(self, data: Any) -> None:
        """Add only the keys that are not set yet."""
        self._set(data, False, only_new=True)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._items[key]
        except KeyError:
            raise AttributeError(f"config has no key {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self._set({key: value}, False)

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._set({key: value}, False)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str, default: Any = None) -> Any:
        return self._items.get(key, default)

    def keys(self) -> Any:
        return self._items.keys()

    def items(self) -> Any:
        return self._items.items()

    def values(self) -> Any:
        return self._items.values()

    def as_dict(self) -> dict[str, Any]:
        return dict(self._items)

    def __repr__(self) -> str:
        return f"Config({self._items!r})"
