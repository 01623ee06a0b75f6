"""MediaStore (service side): ``messages.Media`` values to files and reference dicts.

    Internal.rows --HISTORY_MEDIA row--> MediaStore.row(row)
        image  --Pillow: raw pixels to PNG/JPEG/BMP (a file's bytes as they are)--+
        audio  --wave: float samples to 16-bit PCM WAV--------------------------+
        video  --Pillow: frames to an animated GIF------------------------------+--> put()
        table  --cells resolved, then parquet (pyarrow) or wandb's JSON---------+   <run dir>/
        html, object3d, molecule, plotly --their bytes-------------------------+   media/...
        histogram --inline, no file
      --> Ref {"_type": "image-file", "path": "media/images/<sha256>.png", "sha256", "size", ...}

``put`` is the store's content-addressed writer (``store.blobs.put``, bound to
the run directory by the service), so the same bytes are one file. A reference
is a plain dict, made after the service flattened the row (so it stays one
value), stored as JSON in the history cell and the summary. The values were checked
at the call (``mpbackend.media``); what fails here (a full disk) fails that one
value's row, reported as a service error with the run.
"""

from __future__ import annotations

import io
import json
import wave
from collections.abc import Callable
from typing import Any

from ..shared.messages import Media as Sent

Put = Callable[[str, str, bytes], tuple[str, str, int]]

# kind: (folder under the run directory, the reference's _type), as wandb names them
KINDS = {"image": ("media/images", "image-file"), "table": ("media/table", "table-file"),
         "html": ("media/html", "html-file"), "audio": ("media/audio", "audio-file"),
         "video": ("media/videos", "video-file"), "object3d": ("media/object3D", "object3D-file"),
         "molecule": ("media/molecule", "molecule-file"),
         "plotly": ("media/plotly", "plotly-file")}


# A stored media value's reference: a plain dict (it crosses the reply queue in
# the summary), made after the row was flattened, so it stays one value.
Ref = dict


class MediaStore:
    """Writes one run's media (see the module docstring); ``charts`` collects the
    chart descriptions logged (key -> spec), for the run's ``extra``."""

    def __init__(self, put: Put) -> None:
        self._put = put
        self.charts: dict[str, dict[str, Any]] = {}

    # -- rows ------------------------------------------------------------

    def row(self, row: dict[str, Any]) -> dict[str, Any]:
        """A flattened row with its media written: each value a Ref (a chart's table
        under ``<key>_table``, as wandb keys it)."""
        out: dict[str, Any] = {}
        for key, value in row.items():
            if type(value) is Sent and value.kind == "chart":
                out[f"{key}_table"] = self.value(value.data)
                self.charts[key] = {**value.meta, "table_key": f"{key}_table"}
            else:
                out[key] = self.value(value)
        return out

    def value(self, value: Any) -> Any:
        """``value`` with every Media in it (in lists and dicts too) written."""
        kind = type(value)
        if kind is Sent:
            if value.kind == "chart":
                return self.value(value.data)
            return self.media(value)
        if kind is list:
            if value and all(type(v) is Sent and v.kind == "image" for v in value):
                return self.images(value)
            return [self.value(v) for v in value]
        if kind is dict:
            return {k: self.value(v) for k, v in value.items()}
        return value

    def images(self, items: list[Sent]) -> Ref:
        """A list of images in one cell, as wandb's ``images/separated``; ``items``
        holds each image's own reference (captions, boxes, masks)."""
        refs = [self.media(v) for v in items]
        ref = Ref(_type="images/separated", width=refs[0]["width"], height=refs[0]["height"],
                  format=refs[0]["format"], count=len(refs),
                  filenames=[r["path"] for r in refs], items=refs)
        captions = [r.get("caption") for r in refs]
        if any(c is not None for c in captions):
            ref["captions"] = [c if c is not None else "" for c in captions]
        return ref

    # -- one value -------------------------------------------------------

    def media(self, sent: Sent) -> Ref:
        """Write one Media; its reference."""
        kind, meta, data = sent
        if kind == "histogram":
            return Ref(_type="histogram", values=list(meta["values"]), bins=list(meta["bins"]))
        if kind not in KINDS:
            raise TypeError(f"an unknown media kind {kind!r}")
        folder, type_name = KINDS[kind]
        ref: dict[str, Any] = Ref(_type=type_name)
        if kind == "image":
            data, extras = self._image(meta, data, ref)
        elif kind == "table":
            data, ext = self._table(meta, data, ref)
            extras = {"format": ext}
        elif kind == "audio" and meta.get("raw"):
            data, extras = _wav(meta, data), {}
        elif kind == "video" and meta.get("raw"):
            data, extras = _gif(meta, data), {}
        else:
            extras = {}
        if type(data) is not bytes:
            raise TypeError(f"a malformed {kind} value: {type(data).__name__} data")
        fmt = meta.get("format", "")
        ext = {"table": "table." + str(extras.get("format", "json"))}.get(kind, fmt)
        path, sha, size = self._put(folder, _safe_ext(ext), data)
        ref.update(path=path, sha256=sha, size=size)
        for key, value in meta.items():
            if key not in ("raw", "values", "columns", "format") and key not in ref:
                ref[key] = value
        if kind != "table":
            ref["format"] = fmt
        return ref

    def _image(self, meta: dict[str, Any], data: Any, ref: Ref) -> tuple[bytes, dict]:
        masks: dict[str, Sent] = {}
        if type(data) is tuple:
            data, masks = data
        if meta.get("raw"):
            data = _png(meta, data)
        if masks:
            info = meta.get("masks", {})
            ref["masks"] = {}
            for name, mask in masks.items():
                mask_ref = self.media(mask)
                mask_ref["_type"] = "mask"
                mask_ref.update(info.get(name, {}))
                ref["masks"][name] = mask_ref
        return data, {}

    def _table(self, meta: dict[str, Any], rows: Any, ref: Ref) -> tuple[bytes, str]:
        columns = [str(c) for c in meta["columns"]]
        if type(rows) is not list or any(type(r) is not list or len(r) != len(columns)
                                         for r in rows):
            raise TypeError("a malformed table: rows of the wrong length")
        cells = [[self.value(v) for v in row] for row in rows]
        ref.update(ncols=len(columns), nrows=len(cells), columns=columns,
                   log_mode=meta.get("log_mode", "IMMUTABLE"))
        data = _parquet(columns, cells)
        if data is not None:
            return data, "parquet"
        text = json.dumps({"columns": columns, "data": cells}, allow_nan=True,
                          separators=(",", ":"))
        return text.encode("utf-8"), "json"


def _safe_ext(ext: str) -> str:
    return "".join(c for c in ext.lower() if c.isalnum() or c == ".")[:20].strip(".") or "bin"


def _png(meta: dict[str, Any], data: bytes) -> bytes:
    """Raw pixels (uint8, mode ``meta["raw"]``) encoded in ``meta["format"]``."""
    from PIL import Image as PILImage

    img = PILImage.frombytes(meta["raw"], (int(meta["width"]), int(meta["height"])), data)
    fmt = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "bmp": "BMP"}[meta.get("format", "png")]
    if fmt == "JPEG" and img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _wav(meta: dict[str, Any], data: bytes) -> bytes:
    """float32 samples in [-1, 1] as a 16-bit PCM WAV file."""
    import numpy as np  # the caller made the samples with it

    pcm = np.rint(np.clip(np.frombuffer(data, dtype=np.float32), -1, 1) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(int(meta.get("channels", 1)))
        out.setsampwidth(2)
        out.setframerate(int(meta["sample_rate"]))
        out.writeframes(pcm.tobytes())
    return buf.getvalue()


def _gif(meta: dict[str, Any], data: bytes) -> bytes:
    """uint8 frames (T, H, W, C) as an animated GIF at ``meta["fps"]``."""
    from PIL import Image as PILImage

    frames_n, height, width = int(meta["frames"]), int(meta["height"]), int(meta["width"])
    channels = int(meta["channels"])
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    size = height * width * channels
    frames = [PILImage.frombytes(mode, (width, height), data[i * size:(i + 1) * size])
              for i in range(frames_n)]
    buf = io.BytesIO()
    duration = max(1, int(round(1000 / float(meta.get("fps", 4)))))
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:],
                   duration=duration, loop=0)
    return buf.getvalue()


def _parquet(columns: list[str], cells: list[list[Any]]) -> bytes | None:
    """The table as parquet, or None without pyarrow. A column of one scalar type
    is stored typed; any other (media, lists, mixed) as JSON text, named in the
    schema's ``mpbackend.json`` metadata so the reader parses it back."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    arrays, json_columns = [], []
    for i, name in enumerate(columns):
        values = [row[i] for row in cells]
        kinds = {type(v) for v in values if v is not None}
        if kinds <= {int} or kinds <= {float, int} or kinds <= {str} or kinds <= {bool}:
            try:
                arrays.append(pa.array(values, type=pa.float64() if kinds == {float, int}
                                       else None))
                continue
            except (pa.ArrowInvalid, OverflowError, TypeError):
                pass
        json_columns.append(name)
        arrays.append(pa.array([None if v is None else json.dumps(
            v, allow_nan=True, separators=(",", ":"), default=str) for v in values],
            type=pa.string()))
    if not columns:
        table = pa.table({})
    else:
        table = pa.Table.from_arrays(arrays, names=columns)
    table = table.replace_schema_metadata({"mpbackend.json": json.dumps(json_columns)})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()
