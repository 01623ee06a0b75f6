"""Audio, Video, Html, Object3D, Molecule, Plotly (user side): media stored as their files.

    Audio(array, sample_rate) --float32 samples--> Media("audio")   the service writes WAV
    Audio(path) / Video(path) / Molecule(path) / Object3D(path) --the file's bytes--> Media
    Video(array T,C,H,W)      --uint8 frames-----> Media("video")   the service writes GIF
    Html(text) / Object3D(points) / Plotly(figure) --their text (HTML, JSON)--> Media
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from ..shared.messages import Media as Sent
from .base import Media, as_numpy, caption_of, is_array, need, read_source
from .image import to_uint8

AUDIO_TYPES = ("wav", "mp3", "ogg", "flac", "m4a", "aac")
VIDEO_TYPES = ("gif", "mp4", "webm", "ogg")
OBJECT3D_TYPES = ("obj", "gltf", "glb", "babylon", "stl", "pts.json")
MOLECULE_TYPES = ("pdb", "pqr", "mmcif", "mcif", "cif", "sdf", "sd", "gro", "mol2", "mmtf")


def _meta(caption: Any, **fields: Any) -> dict[str, Any]:
    meta = {k: v for k, v in fields.items() if v is not None}
    text = caption_of(caption)
    if text is not None:
        meta["caption"] = text
    return meta


class Audio(Media):
    """Sound, as ``wandb.Audio``: a numpy array of samples (needs ``sample_rate``;
    1-D mono or (samples, channels), floats in [-1, 1]) stored as WAV, or an
    audio file stored as it is."""

    def __init__(self, data_or_path: Any, sample_rate: int | None = None,
                 caption: str | None = None) -> None:
        what = "Audio()"
        if isinstance(data_or_path, (str, os.PathLike)):
            data, ext = read_source(data_or_path, what)
            if ext not in AUDIO_TYPES:
                raise ValueError(f"{what}: {ext!r} is not an audio file type "
                                 f"({', '.join(AUDIO_TYPES)})")
            self._sent = Sent("audio", _meta(caption, format=ext, sample_rate=sample_rate),
                              data)
            return
        if sample_rate is None:
            raise ValueError(f"{what}: audio from an array needs sample_rate")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
            raise ValueError(f"{what}: sample_rate must be a positive int")
        np = need("numpy", "media", what)
        arr = as_numpy(data_or_path if is_array(data_or_path) else list(data_or_path))
        arr = arr.astype(np.float32)
        if arr.ndim not in (1, 2) or not arr.size:
            raise ValueError(f"{what}: samples are 1-D or (samples, channels), not "
                             f"shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{what}: the samples hold NaN or infinity")
        channels = 1 if arr.ndim == 1 else int(arr.shape[1])
        self._sent = Sent("audio", _meta(caption, format="wav", sample_rate=sample_rate,
                                         channels=channels, raw="f4",
                                         duration=arr.shape[0] / sample_rate),
                          np.ascontiguousarray(np.clip(arr, -1, 1)).tobytes())


class Video(Media):
    """A video, as ``wandb.Video``: a file (gif, mp4, webm, ogg) stored as it is, or
    frames (a uint8 array T,C,H,W or T,H,W,C, or a batch N,T,C,H,W tiled in a
    row) encoded as an animated GIF at ``fps`` (4 by default, as wandb)."""

    def __init__(self, data_or_path: Any, caption: str | None = None, fps: int | None = None,
                 format: str | None = None) -> None:
        what = "Video()"
        if isinstance(data_or_path, (str, os.PathLike)) or hasattr(data_or_path, "read"):
            data, ext = read_source(data_or_path, what)
            ext = (format or ext).lower()
            if ext not in VIDEO_TYPES:
                raise ValueError(f"{what}: {ext!r} is not a video type ({', '.join(VIDEO_TYPES)})")
            self._sent = Sent("video", _meta(caption, format=ext, fps=fps), data)
            return
        fmt = (format or "gif").lower()
        if fmt != "gif":
            raise ValueError(f"{what}: frames are encoded as gif here; for {fmt}, encode the "
                             "file yourself (ffmpeg) and log Video(path)")
        need("PIL.Image", "media", "Video() of frames")
        np = need("numpy", "media", what)
        arr = as_numpy(data_or_path)
        if arr.ndim == 5:  # a batch: tile the videos side by side
            arr = np.concatenate(list(arr), axis=-1)
        if arr.ndim != 4:
            raise ValueError(f"{what}: frames are (time, channel, height, width), not "
                             f"shape {arr.shape}")
        if arr.shape[1] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
            arr = np.moveaxis(arr, 1, -1)
        if arr.shape[-1] not in (1, 3, 4):
            raise ValueError(f"{what}: frames have 1, 3 or 4 channels, not shape {arr.shape}")
        arr = np.ascontiguousarray(to_uint8(arr, what))
        fps = 4 if fps is None else fps
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or fps <= 0:
            raise ValueError(f"{what}: fps must be a positive number")
        self._sent = Sent("video", _meta(caption, format="gif", fps=fps, frames=int(arr.shape[0]),
                                         height=int(arr.shape[1]), width=int(arr.shape[2]),
                                         channels=int(arr.shape[3]), raw="u1"),
                          arr.tobytes())


class Html(Media):
    """HTML, as ``wandb.Html``: text, an open file or a path to an .html file.

    Stored as given (``inject`` is accepted: wandb injects its stylesheet, and
    there is none here)."""

    def __init__(self, data: Any, inject: bool = True, data_is_not_path: bool = False) -> None:
        what = "Html()"
        if isinstance(data, os.PathLike) or (
                isinstance(data, str) and not data_is_not_path and data.endswith(".html")
                and "\n" not in data and os.path.isfile(data)):
            text, _ = read_source(data, what)
        elif isinstance(data, str):
            text = data.encode("utf-8")
        elif hasattr(data, "read"):
            text, _ = read_source(data, what)
        else:
            raise TypeError(f"{what} takes HTML text, a file or a path, not {type(data).__name__}")
        self._sent = Sent("html", {"format": "html"}, text)
        self.html = text.decode("utf-8", "replace")


class Object3D(Media):
    """A 3-D object, as ``wandb.Object3D``: a point cloud (numpy N x 3, 4 or 6:
    x, y, z[, category | r, g, b]), wandb's scene dict (``{"type": "lidar/beta",
    "points": ..., "boxes": ...}``), or a file (obj, gltf, glb, babylon, stl, pts.json)."""

    def __init__(self, data_or_path: Any, caption: str | None = None, **kwargs: Any) -> None:
        what = "Object3D()"
        if isinstance(data_or_path, (str, os.PathLike)) or hasattr(data_or_path, "read"):
            data, ext = read_source(data_or_path, what)
            ext = str(kwargs.get("file_type") or ext).lower()
            if ext not in OBJECT3D_TYPES:
                raise ValueError(f"{what}: {ext!r} is not a 3-D file type "
                                 f"({', '.join(OBJECT3D_TYPES)})")
            self._sent = Sent("object3d", _meta(caption, format=ext), data)
            return
        if isinstance(data_or_path, Mapping):
            scene = dict(data_or_path)
            if "points" not in scene:
                raise ValueError(f"{what}: a scene dict needs 'points'")
            body = {k: (as_numpy(v).tolist() if is_array(v) else v) for k, v in scene.items()}
        elif is_array(data_or_path):
            arr = as_numpy(data_or_path)
            if arr.ndim != 2 or arr.shape[1] not in (3, 4, 6):
                raise ValueError(f"{what}: a point cloud is N x 3, 4 or 6, not shape {arr.shape}")
            body = arr.astype(float).tolist()
        else:
            raise TypeError(f"{what} takes a numpy array, a scene dict or a path, not "
                            f"{type(data_or_path).__name__}")
        try:
            text = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what}: the points cannot be stored as JSON: {exc}") from None
        self._sent = Sent("object3d", _meta(caption, format="pts.json"), text)


class Molecule(Media):
    """A molecule, as ``wandb.Molecule``: a structure file (pdb, pqr, mmcif, mcif,
    cif, sdf, sd, gro, mol2, mmtf) stored as it is. ``from_smiles`` and
    ``from_rdkit`` need RDKit."""

    def __init__(self, data_or_path: Any, caption: str | None = None, **kwargs: Any) -> None:
        what = "Molecule()"
        data, ext = read_source(data_or_path, what)
        ext = str(kwargs.get("file_type") or ext).lower()
        if ext not in MOLECULE_TYPES:
            raise ValueError(f"{what}: {ext!r} is not a molecule file type "
                             f"({', '.join(MOLECULE_TYPES)})")
        self._sent = Sent("molecule", _meta(caption, format=ext), data)

    @classmethod
    def from_smiles(cls, data: str, caption: str | None = None, sanitize: bool = True,
                    convert_to_3d_and_optimize: bool = True, mmff_optimize_molecule_max_iterations:
                    int = 200) -> Molecule:
        """A molecule from a SMILES string (with RDKit: an SDF of its structure)."""
        chem = need("rdkit.Chem", "molecule", "Molecule.from_smiles()")
        mol = chem.MolFromSmiles(data, sanitize=sanitize)
        if mol is None:
            raise ValueError(f"Molecule.from_smiles(): RDKit cannot read {data!r}")
        return cls.from_rdkit(mol, caption=caption)

    @classmethod
    def from_rdkit(cls, data_or_path: Any, caption: str | None = None, **kwargs: Any
                   ) -> Molecule:
        """A molecule from an RDKit ``Mol`` (stored as SDF)."""
        import io

        chem = need("rdkit.Chem", "molecule", "Molecule.from_rdkit()")
        buf = io.StringIO()
        writer = chem.SDWriter(buf)
        writer.write(data_or_path)
        writer.close()
        file = io.BytesIO(buf.getvalue().encode())
        file.name = "molecule.sdf"
        return cls(file, caption=caption)


class Plotly(Media):
    """A plotly figure, as ``wandb.Plotly``: stored as its JSON (``.plotly.json``);
    a plotly figure logged directly becomes one."""

    def __init__(self, val: Any) -> None:
        what = "Plotly()"
        if (type(val).__module__ or "").startswith("matplotlib"):
            raise TypeError(f"{what} of a matplotlib figure: log the figure itself (it is "
                            "stored as an Image) or wandb.Image(fig)")
        to_json = getattr(val, "to_json", None)
        if isinstance(val, Mapping):
            text = json.dumps(dict(val), separators=(",", ":"), default=str)
        elif callable(to_json):
            text = to_json()
        else:
            raise TypeError(f"{what} takes a plotly figure, not {type(val).__name__}")
        self._sent = Sent("plotly", {"format": "plotly.json"}, text.encode("utf-8"))


def is_plotly(value: Any) -> bool:
    """A plotly figure (logged directly, it becomes a Plotly)."""
    return (type(value).__module__ or "").startswith("plotly.") and hasattr(value, "to_json")
