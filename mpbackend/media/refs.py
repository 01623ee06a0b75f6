"""Media read back (readers, any process): history cells as typed references.

    ApiRun.history() / scan_history() / summary --as_ref(cell, run_dir)--> MediaRef
    MediaRef.path (checked inside the run directory) --> .read(), .image() (PIL),
             .table() (a DataFrame: parquet or wandb's table JSON), .items (a list's images)

Nothing read is trusted: a reference is only a dict from the run's database, so
its path must be relative, stay inside the run directory and name no link
(else ``MediaRef.path`` raises ValueError); table files are parsed as parquet or
JSON, never executed.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

from .encode import KINDS

FILE_TYPES = frozenset(t for _, t in KINDS.values()) | {"mask"}
TYPES = FILE_TYPES | {"histogram", "images/separated"}


class MediaRef(dict):
    """A logged media value as stored (wandb's reference dict), with its run directory.

    ``ref["_type"]``, ``ref["path"]`` and the metadata read as in wandb's public
    API; ``kind``, ``path``, ``read()``, ``image()``, ``table()`` and ``images`` add
    the local file.
    """

    def __init__(self, value: dict[str, Any], run_dir: str) -> None:
        super().__init__(value)
        self.run_dir = run_dir

    @property
    def kind(self) -> str:
        """wandb's ``_type``: ``image-file``, ``table-file``, ``histogram``, ..."""
        return str(self.get("_type"))

    @property
    def path(self) -> pathlib.Path:
        """The file, absolute; ValueError if the stored path leaves the run directory."""
        return _inside(self.run_dir, self.get("path"))

    @property
    def images(self) -> list[MediaRef]:
        """A list's images (``images/separated``), or ``[self]``."""
        if self.kind == "images/separated":
            return [MediaRef(item, self.run_dir) for item in self.get("items", [])
                    if isinstance(item, dict)]
        return [self]

    def read(self) -> bytes:
        """The file's bytes."""
        return self.path.read_bytes()

    def image(self) -> Any:
        """The image as a PIL image (loaded, the file closed)."""
        from PIL import Image as PILImage

        with PILImage.open(self.path) as img:
            img.load()
            return img.copy()

    def table(self) -> Any:
        """A table (or a chart's table) as a pandas DataFrame; media cells as MediaRef."""
        if self.kind != "table-file":
            raise TypeError(f"a {self.kind} is not a table")
        return read_table(self.path, self.run_dir)

    def __repr__(self) -> str:
        return f"MediaRef({dict.__repr__(self)})"


def _inside(run_dir: str, relative: Any) -> pathlib.Path:
    if not isinstance(relative, str) or not relative or relative.startswith(("/", "\\")):
        raise ValueError(f"a media reference with a bad path: {relative!r}")
    parts = relative.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"a media reference with a bad path: {relative!r}")
    path = pathlib.Path(run_dir, *parts)
    probe = pathlib.Path(run_dir)
    for part in parts:
        probe = probe / part
        if probe.is_symlink():
            raise ValueError(f"a media reference through a link: {relative!r}")
    return path


def as_ref(value: Any, run_dir: str) -> Any:
    """A stored cell as read back: a reference dict as a MediaRef, lists item by item."""
    if type(value) is dict:
        if value.get("_type") in TYPES:
            return MediaRef(value, run_dir)
        return value
    if type(value) is list and value and type(value[0]) is dict:
        return [as_ref(v, run_dir) for v in value]
    return value


def refs_in(tree: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """A summary (nested dicts) with its reference dicts as MediaRef, at any depth."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if type(value) is dict and value.get("_type") not in TYPES:
            out[key] = refs_in(value, run_dir)
        else:
            out[key] = as_ref(value, run_dir)
    return out


def read_table(path: pathlib.Path | str, run_dir: str) -> Any:
    """A stored table file as a DataFrame (cells that are references as MediaRef)."""
    import pandas as pd

    path = str(path)
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        meta = table.schema.metadata or {}
        try:
            json_columns = json.loads(meta.get(b"mpbackend.json", b"[]"))
        except ValueError:
            json_columns = []
        frame = table.to_pandas()
        for name in json_columns if isinstance(json_columns, list) else ():
            if name in frame.columns:
                frame[name] = [None if v is None else as_ref(json.loads(v), run_dir)
                               for v in frame[name]]
        return frame
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    if (not isinstance(doc, dict) or not isinstance(doc.get("columns"), list)
            or not isinstance(doc.get("data"), list)):
        raise ValueError(f"{os.path.basename(path)} is not a table file")
    rows = [[as_ref(v, run_dir) for v in row] for row in doc["data"] if isinstance(row, list)]
    return pd.DataFrame(rows, columns=[str(c) for c in doc["columns"]])
