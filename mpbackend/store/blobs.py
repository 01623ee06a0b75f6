"""Content-addressed files: media in a run directory, artifact contents in a project.

    MediaStore (service) --put(root, "media/images", "png", data)--> media/images/<sha256>.png
    artifacts (service) --put_path(...)--> <project>/.artifacts/.blobs/<sha256>

A file is named by the SHA-256 of its bytes, so the same bytes are stored
once, however often they are logged, and a name never changes meaning. It is
written under a temporary name in its directory and renamed into place, so a
reader or a crash sees the whole file or none; a second writer of the same
bytes (another process) renames an identical file over it, which is harmless.
No path component may be a symbolic link (the service writes only inside the
directory the user gave, see ``store.files``).
"""

from __future__ import annotations

import hashlib
import os
import stat

from ..shared.errors import StoreError
from ..shared.paths import make_dirs


def digest(data: bytes) -> str:
    """The SHA-256 of ``data``, hex."""
    return hashlib.sha256(data).hexdigest()


def _no_links(root: str, relative: str) -> None:
    path = root
    for part in relative.split("/"):
        path = os.path.join(path, part)
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                raise StoreError(f"{path} is a symbolic link; mpbackend writes no file "
                                 "through a link")
        except FileNotFoundError:
            return


def put(root: str, folder: str, ext: str, data: bytes, sha: str | None = None
        ) -> tuple[str, str, int]:
    """Store ``data`` as ``<root>/<folder>/<sha256>.<ext>`` unless it is there already.

    Returns ``(path relative to root, sha256, size)``. ``folder`` is a relative
    path of this package's choosing (no ``..``); StoreError if a link is in the way
    or the file cannot be written.
    """
    sha = sha or digest(data)
    name = f"{sha}.{ext}" if ext else sha
    relative = f"{folder}/{name}"
    _no_links(root, relative)
    path = os.path.join(root, *relative.split("/"))
    if os.path.isfile(path) and os.path.getsize(path) == len(data):
        return relative, sha, len(data)
    directory = os.path.dirname(path)
    try:
        make_dirs(directory)
        tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc}") from exc
    return relative, sha, len(data)


def put_path(root: str, folder: str, source: str, ext: str = "") -> tuple[str, str, int]:
    """Store the file at ``source`` as ``put`` stores bytes, read and hashed in one
    pass a megabyte at a time (a checkpoint of gigabytes never sits in memory)."""
    directory = os.path.join(root, *folder.split("/"))
    _no_links(root, folder)
    try:
        make_dirs(directory)
        tmp = os.path.join(directory, f".incoming.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        sha = hashlib.sha256()
        size = 0
        with open(source, "rb") as src, open(tmp, "xb") as dst:
            while block := src.read(1 << 20):
                sha.update(block)
                dst.write(block)
                size += len(block)
        hexdigest = sha.hexdigest()
        name = f"{hexdigest}.{ext}" if ext else hexdigest
        os.replace(tmp, os.path.join(directory, name))
    except OSError as exc:
        raise StoreError(f"cannot store {source} in {directory}: {exc}") from exc
    return f"{folder}/{name}", hexdigest, size


def file_digest(path: str) -> tuple[str, int]:
    """The SHA-256 and size of the file at ``path``, read a megabyte at a time."""
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            sha.update(block)
            size += len(block)
    return sha.hexdigest(), size
