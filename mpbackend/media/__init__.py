"""Media: images, histograms, tables, charts and files, logged as wandb logs them.

Where it sits in the picture (both processes use it; it imports only ``shared``):

    user process                                   service process
    ------------------------------------------     -------------------------------------
    Image(arr) / Table(...) / plot.line(...)       StreamMux --HISTORY_MEDIA--> MediaStore
      --_mp_media()--> messages.Media (plain         --encode (PNG, WAV, GIF, parquet)-->
         data: pixels as bytes, rows, meta)             <run dir>/media/<kind>/<sha256>.<ext>
      log({"img": img}) --values.convert-->          --> a reference dict in the history cell
         (HISTORY_MEDIA, run, row, ...) --rec_q-->         {"_type": "image-file", "path", ...}

    readers (any process): history cell --refs.as_ref()--> MediaRef (path, metadata,
                           .image(), .table() as a DataFrame, .chart())

The call does only what must happen while the caller's object is as logged: it
checks the input (a clear error at the call), copies pixels out (an array is
sent as its bytes, already uint8 HWC), renders a matplotlib figure, reads a
file. Encoding (PNG, GIF, WAV, parquet) happens in the service, off the
training thread, so a 256x256 image costs the caller a copy and a pickle. The
service names each file by the SHA-256 of its bytes (``MediaStore``), so an
image logged twice is stored once. The stored references are wandb's forms
(``image-file``, ``images/separated``, ``histogram``, ``table-file``,
``html-file``, ``audio-file``, ``video-file``, ``object3D-file``,
``molecule-file``, ``plotly-file``), with the path relative to the run directory.
Nothing pickled reaches the disk, and nothing read back is executed.
"""

from __future__ import annotations

from . import plot
from .data import Histogram, Table
from .files import Audio, Html, Molecule, Object3D, Plotly, Video
from .image import Image

__all__ = ["Audio", "Histogram", "Html", "Image", "Molecule", "Object3D", "Plotly", "Table",
           "Video", "plot"]
