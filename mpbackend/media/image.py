"""Image (user side): pixels, a PIL image, a file or a matplotlib figure, made sendable.

    Image(x) --_pixels()--> uint8 HWC bytes + mode     (numpy array, torch tensor, PIL)
             --_figure()--> PNG bytes                   (a matplotlib figure: rendered now)
             --read_source()--> the file's bytes        (a path)
      --> messages.Media("image", {width, height, mode, format, caption, masks, boxes, ...})

The service (``store.MediaStore``) encodes raw pixels as PNG and stores each
file once by its digest; masks go as images of their own.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..shared.messages import Media as Sent
from .base import Media, as_numpy, caption_of, is_array, need, read_source

FILE_TYPES = ("png", "jpg", "jpeg", "bmp")
READABLE = ("png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff")
MODES = {1: "L", 3: "RGB", 4: "RGBA"}
MAX_DIMENSION = 65500  # Pillow's limit
_PILLOW: list[bool] = []  # [True] once Pillow was found importable (checked once)


def is_figure(value: Any) -> bool:
    """A matplotlib Figure (or the pyplot module, whose current figure is meant)."""
    module = type(value).__module__ or ""
    if module.startswith("matplotlib"):
        return hasattr(value, "savefig")
    return getattr(value, "__name__", None) == "matplotlib.pyplot"


def render_figure(figure: Any, fmt: str = "png") -> bytes:
    """A matplotlib figure (or ``pyplot``: its current figure) as file bytes, now."""
    if getattr(figure, "__name__", None) == "matplotlib.pyplot":
        figure = figure.gcf()
    buf = io.BytesIO()
    figure.savefig(buf, format=fmt)
    return buf.getvalue()


def to_uint8(arr: Any, what: str) -> Any:
    """Pixels as uint8: integers are taken as 0..255 (clipped); floats in [0, 1]
    are scaled by 255, other floats clipped to 0..255."""
    np = need("numpy", "media", what)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        if arr.size and not np.isfinite(arr).all():
            raise ValueError(f"{what}: the pixels hold NaN or infinity")
        if arr.size and arr.min() >= 0 and arr.max() <= 1:
            arr = arr * 255.0
        return np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        return np.clip(arr, 0, 255).astype(np.uint8)
    raise TypeError(f"{what}: pixels of dtype {arr.dtype} cannot be an image")


def pixels(data: Any, channels_first: bool, what: str) -> Any:
    """An array as uint8 HWC (or HW): CHW is moved to HWC, trivial axes dropped."""
    np = need("numpy", "media", what)
    arr = as_numpy(data)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3:
        first, last = arr.shape[0], arr.shape[-1]
        if (channels_first and first in MODES) or (first in MODES and last not in MODES):
            arr = np.moveaxis(arr, 0, -1)
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in MODES):
        raise ValueError(f"{what}: an image is HW, HWC or CHW with 1, 3 or 4 channels, "
                         f"not shape {tuple(arr.shape)}")
    if not arr.shape[0] or not arr.shape[1]:
        raise ValueError(f"{what}: an image of shape {tuple(arr.shape)} has no pixels")
    if max(arr.shape[:2]) > MAX_DIMENSION:
        raise ValueError(f"{what}: an image side is at most {MAX_DIMENSION} pixels")
    return np.ascontiguousarray(to_uint8(arr, what))


class Image(Media):
    """An image, as ``wandb.Image``: stored as a PNG (or ``file_type``) under ``media/images/``.

    ``data_or_path``: a numpy array (HW, HWC or CHW; uint8, or floats in [0, 1]),
    a torch tensor (CHW), a PIL image, a matplotlib figure, a path to an image
    file, or another Image. ``mode`` is a PIL mode ("L", "RGB", "RGBA");
    ``caption``, ``grouping``, ``classes``, ``boxes`` (wandb's
    ``{"predictions": {"box_data": [...], "class_labels": {...}}}``) and ``masks``
    (``{"name": {"mask_data": HW array, "class_labels": {...}}}``) are kept.
    """

    def __init__(self, data_or_path: Any, mode: str | None = None, caption: str | None = None,
                 grouping: int | None = None, classes: Any = None,
                 boxes: Mapping[str, Any] | None = None, masks: Mapping[str, Any] | None = None,
                 file_type: str | None = None, normalize: bool = True) -> None:
        what = "Image()"
        if not _PILLOW:  # the service encodes with it: without it, say so here
            need("PIL.Image", "media", what)
            _PILLOW.append(True)
        meta: dict[str, Any] = {}
        fmt = (file_type or "png").lower()
        if fmt not in FILE_TYPES:
            raise ValueError(f"{what}: file_type must be one of {list(FILE_TYPES)}, not {fmt!r}")
        shape = getattr(data_or_path, "shape", None)
        if (mode is None and fmt == "png" and masks is None and shape is not None
                and len(shape) == 3 and shape[2] in (3, 4) and 0 < shape[0] <= MAX_DIMENSION
                and 0 < shape[1] <= MAX_DIMENSION
                and type(data_or_path).__name__ == "ndarray"
                and getattr(data_or_path.dtype, "char", None) == "B"):  # uint8
            # The common case, an HWC uint8 numpy array, without the general path's
            # checks: its pixels are copied as they are (the copy is the snapshot).
            meta.update(raw="RGB" if shape[2] == 3 else "RGBA", format="png",
                        width=int(shape[1]), height=int(shape[0]))
            self._finish(data_or_path.tobytes(), meta, caption, grouping, classes, boxes, {})
            return
        if isinstance(data_or_path, Image):
            sent = data_or_path._sent
            meta, data = dict(sent.meta), sent.data
        elif isinstance(data_or_path, (str, os.PathLike)):
            data, ext = read_source(data_or_path, what)
            ext = "jpg" if ext == "jpeg" else ext
            pil = need("PIL.Image", "media", "Image() of a file")
            try:
                with pil.open(io.BytesIO(data)) as opened:
                    width, height = opened.size
                    fmt = (opened.format or ext).lower()
            except Exception as exc:
                raise ValueError(f"{what}: {os.fspath(data_or_path)!r} is not an image "
                                 f"Pillow can read: {exc}") from None
            fmt = {"jpeg": "jpg", "tiff": "tif"}.get(fmt, fmt)
            meta.update(format=fmt, width=width, height=height)
        elif is_figure(data_or_path):
            need("matplotlib", "plot", "Image() of a figure")
            data = render_figure(data_or_path, "png" if fmt == "jpg" else fmt)
            pil = need("PIL.Image", "media", "Image() of a figure")
            with pil.open(io.BytesIO(data)) as opened:
                width, height = opened.size
            meta.update(format="png" if fmt == "jpg" else fmt, width=width, height=height)
        elif type(data_or_path).__module__.startswith("PIL."):
            img = data_or_path
            if mode is not None and img.mode != mode:
                img = img.convert(mode)
            if img.mode not in ("L", "RGB", "RGBA", "1", "P", "LA", "I", "F", "I;16"):
                img = img.convert("RGBA")
            if img.mode in ("1", "P", "LA", "I", "F", "I;16"):
                img = img.convert("RGBA" if "A" in img.mode or img.mode == "P" else "L")
            data = img.tobytes()
            meta.update(raw=img.mode, format=fmt, width=img.size[0], height=img.size[1])
        elif is_array(data_or_path):
            arr = pixels(data_or_path, hasattr(data_or_path, "detach"), what)
            guessed = "L" if arr.ndim == 2 else MODES[arr.shape[-1]]
            use = mode or guessed
            if use != guessed and not (guessed == "RGBA" and use == "RGB"):
                raise ValueError(f"{what}: mode {use!r} does not fit pixels of shape "
                                 f"{tuple(arr.shape)} (they are {guessed!r})")
            if use == "RGB" and guessed == "RGBA":
                arr = arr[..., :3].copy()
            if fmt in ("jpg", "jpeg") and use == "RGBA":  # JPEG has no alpha channel
                arr, use = arr[..., :3].copy(), "RGB"
            data = arr.tobytes()
            meta.update(raw=use, format="jpg" if fmt == "jpeg" else fmt,
                        width=int(arr.shape[1]), height=int(arr.shape[0]))
        else:
            raise TypeError(f"{what} takes a numpy array, a torch tensor, a PIL image, a "
                            f"matplotlib figure or a path, not {type(data_or_path).__name__}")
        parts: dict[str, Sent] = {}
        if masks is not None:
            if not isinstance(masks, Mapping):
                raise TypeError(f"{what}: masks is a dict of mask name to "
                                "{'mask_data': array, 'class_labels': {...}}")
            meta["masks"] = {}
            for name, mask in masks.items():
                meta["masks"][str(name)], parts[str(name)] = _mask(mask, meta, what)
        self._finish(data, meta, caption, grouping, classes, boxes, parts)

    def _finish(self, data: Any, meta: dict[str, Any], caption: Any, grouping: Any,
                classes: Any, boxes: Any, parts: dict[str, Sent]) -> None:
        """The metadata every source shares, and the Media sent."""
        caption = caption_of(caption)
        if caption is not None:
            meta["caption"] = caption
        if grouping is not None:
            meta["grouping"] = int(grouping)
        if classes is not None:
            meta["classes"] = _plain(classes, "Image()", "classes")
        if boxes is not None:
            meta["boxes"] = _boxes(boxes, "Image()")
        self._sent = Sent("image", meta, data if not parts else (data, parts))
        self._caption = caption

    @property
    def caption(self) -> str | None:
        return self._caption

    def _repr_png_(self) -> bytes | None:
        """The image in Jupyter (encoded here, when shown; a logged one is encoded
        by the service)."""
        meta, data = self._sent.meta, self._sent.data
        if type(data) is tuple:
            data = data[0]
        if not meta.get("raw"):
            return data if data[:8] == b"\x89PNG\r\n\x1a\n" else None
        from PIL import Image as PILImage

        buf = io.BytesIO()
        PILImage.frombytes(meta["raw"], (meta["width"], meta["height"]), data).save(
            buf, format="PNG")
        return buf.getvalue()

    @property
    def width(self) -> int:
        return int(self._sent.meta["width"])

    @property
    def height(self) -> int:
        return int(self._sent.meta["height"])


def _plain(value: Any, what: str, name: str) -> Any:
    """Metadata as plain JSON data (numbers, text, lists, dicts with text keys)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v, what, name) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, what, name) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item") and getattr(value, "shape", ()) == ():
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{what}: {name} holds a {type(value).__name__}, which is not plain data")


def _boxes(boxes: Mapping[str, Any], what: str) -> dict[str, Any]:
    if not isinstance(boxes, Mapping):
        raise TypeError(f"{what}: boxes is a dict of group name to "
                        "{'box_data': [...], 'class_labels': {...}}")
    out = {}
    for name, group in boxes.items():
        if not isinstance(group, Mapping) or not isinstance(group.get("box_data"), Sequence):
            raise ValueError(f"{what}: boxes[{name!r}] needs a 'box_data' list")
        for box in group["box_data"]:
            if not isinstance(box, Mapping) or "position" not in box:
                raise ValueError(f"{what}: each box of boxes[{name!r}] needs a 'position'")
        out[str(name)] = _plain(group, what, "boxes")
    return out


def _mask(mask: Any, meta: dict[str, Any], what: str) -> tuple[dict[str, Any], Sent]:
    """A mask's metadata and its pixels (sent as an L image of class ids)."""
    if not isinstance(mask, Mapping) or ("mask_data" not in mask and "path" not in mask):
        raise ValueError(f"{what}: a mask needs 'mask_data' (an HW array of class ids)")
    info: dict[str, Any] = {}
    if "class_labels" in mask:
        info["class_labels"] = {str(k): str(v) for k, v in dict(mask["class_labels"]).items()}
    if "mask_data" in mask:
        np = need("numpy", "media", "an image mask")
        arr = as_numpy(mask["mask_data"])
        if arr.ndim != 2:
            raise ValueError(f"{what}: mask_data is an HW array, not shape {tuple(arr.shape)}")
        if (arr.shape[1], arr.shape[0]) != (meta["width"], meta["height"]):
            raise ValueError(f"{what}: a mask of shape {tuple(arr.shape)} does not fit the "
                             f"{meta['width']}x{meta['height']} image")
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(f"{what}: mask class ids must be 0..255")
        arr = np.ascontiguousarray(arr.astype(np.uint8))
        return info, Sent("image", {"raw": "L", "format": "png", "width": int(arr.shape[1]),
                                    "height": int(arr.shape[0])}, arr.tobytes())
    data, _ = read_source(mask["path"], "a mask")
    return info, Sent("image", {"format": "png", "width": meta["width"],
                                "height": meta["height"]}, data)
