"""Artifact (user side): files gathered, logged through the service, used by any run.

    Artifact(name, type) --add_file / add_dir / new_file / add_reference / add(obj)-->
        entries: {path in the artifact: {"source": file} | {"ref": uri, ...}}
        (policy="mutable": the file is copied to .staging now, so a later change of
         the user's file does not change the version; "immutable": read at logging)
    run.log_artifact(a) --ARTIFACT record--> service --registry.write_version--> v<N>
    a.wait() --ArtifactWait request--> the version the service wrote
    run.use_artifact("name:alias") --registry.resolve (this process, no service)-->
        Artifact (logged) --USE_ARTIFACT record--> service: lineage (used_by.json)
    Artifact.download(root) --copies each file from .blobs--> root/<path>
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from typing import IO, Any

from ..shared.errors import UsageError
from . import registry


class ArtifactManifestEntry:
    """One file of an artifact: its path in the artifact, digest, size, or reference."""

    def __init__(self, artifact: Artifact, path: str, entry: dict[str, Any]) -> None:
        self._artifact = artifact
        self.path = path
        self.name = path  # wandb's File.name, for Artifact.files()
        self.digest: str | None = entry.get("sha256")
        self.size: int | None = entry.get("size")
        self.ref: str | None = entry.get("ref")
        self.local_path: str | None = entry.get("source")

    def download(self, root: str | None = None, skip_cache: bool | None = None) -> str:
        """Copy this file to ``root/<path>`` (default: the artifact's download
        directory); its local path."""
        return self._artifact._download_entry(self.path, root)

    def ref_target(self) -> str:
        if self.ref is None:
            raise ValueError(f"{self.path} is not a reference")
        return self.ref

    def __repr__(self) -> str:
        return f"<ArtifactManifestEntry {self.path} {self.digest or self.ref}>"


class Artifact:
    """A versioned set of files (a dataset, a model), as ``wandb.Artifact``.

    Build it with ``add_file``, ``add_dir``, ``new_file``, ``add_reference`` and
    ``add``; ``run.log_artifact(artifact, aliases=[...])`` stores it as the next
    version of ``name`` in the run's project (``latest`` moves to it). A version
    is immutable once logged. ``run.use_artifact("name:alias")`` returns a logged
    one, whose ``download()``, ``get_entry()``, ``get_path()``, ``file()`` and
    ``get()`` read its files.
    """

    def __init__(self, name: str, type: str, description: str | None = None,
                 metadata: dict[str, Any] | None = None, incremental: bool = False,
                 use_as: str | None = None, storage_region: str | None = None,
                 digest_algorithm: str = "SHA256") -> None:
        self._name = registry.check_name(name)
        if not isinstance(type, str) or not type:
            raise ValueError("Artifact(): type is a non-empty str ('dataset', 'model', ...)")
        if metadata is not None and not isinstance(metadata, dict):
            raise TypeError("Artifact(): metadata is a dict")
        self.type = type
        self.description = description
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.incremental = incremental
        self._entries: dict[str, dict[str, Any]] = {}
        self._staging: str | None = None
        self._manifest: dict[str, Any] | None = None  # set once logged or used
        self._project_dir: str | None = None
        self._pending: Callable[[float | None], dict[str, Any]] | None = None
        self._aliases: list[str] = []
        self._download_root: str | None = None
        self.project: str | None = None

    # -- state -----------------------------------------------------------

    @property
    def name(self) -> str:
        """``name``, or ``name:v<N>`` once logged (as wandb names a logged version)."""
        return f"{self._name}:{self.version}" if self._manifest else self._name

    @property
    def source_name(self) -> str:
        return self.name

    @property
    def qualified_name(self) -> str:
        return f"{self.project}/{self.name}" if self.project else self.name

    @property
    def version(self) -> str:
        """``v<N>``; waits for the service if the artifact was just logged."""
        return f"v{self._logged()['version']}"

    @property
    def digest(self) -> str:
        if self._manifest is None and self._pending is None:
            return registry.digest_of({p: {"sha256": e.get("sha256"), "ref": e.get("ref")}
                                       for p, e in self._entries.items()})
        return str(self._logged()["digest"])

    @property
    def aliases(self) -> list[str]:
        if self._manifest is not None:
            return list(self._manifest.get("aliases", []))
        return list(self._aliases)

    @property
    def state(self) -> str:
        return "COMMITTED" if self._manifest else ("PENDING" if self._pending else "DRAFT")

    @property
    def id(self) -> str | None:
        return f"{self.project}/{self.name}" if self._manifest else None

    @property
    def size(self) -> int:
        return sum(int(e.get("size") or 0) for e in self._files().values())

    @property
    def created_at(self) -> float | None:
        return self._manifest.get("created_at") if self._manifest else None

    def wait(self, timeout: float | None = None) -> Artifact:
        """Return once the service has stored this logged artifact (its version known)."""
        self._logged(timeout)
        return self

    def is_draft(self) -> bool:
        return self._manifest is None and self._pending is None

    def _logged(self, timeout: float | None = None) -> dict[str, Any]:
        if self._manifest is None:
            if self._pending is None:
                raise UsageError(f"artifact {self._name!r} is not logged yet: its version is "
                                 "given by run.log_artifact()")
            self._manifest = self._pending(timeout)
            self._pending = None
        return self._manifest

    def _files(self) -> dict[str, dict[str, Any]]:
        return self._logged()["entries"] if not self.is_draft() else self._entries

    def _check_draft(self, what: str) -> None:
        if not self.is_draft():
            raise UsageError(f"{what}: artifact {self.name!r} is logged, and a logged "
                             "version cannot change; make a new Artifact")

    # -- building --------------------------------------------------------

    def _stage_dir(self) -> str:
        if self._staging is None:
            self._staging = os.path.join(tempfile.gettempdir(),
                                         f"mpbackend-artifact-{uuid.uuid4().hex}")
            os.makedirs(self._staging, mode=0o700)
        return self._staging

    def _entry_name(self, name: str | os.PathLike | None, default: str) -> str:
        path = os.fspath(name) if name is not None else default
        path = path.replace(os.sep, "/").strip("/")
        if not path or any(p in ("", ".", "..") for p in path.split("/")):
            raise ValueError(f"an artifact path must be relative, without '..': {path!r}")
        return path

    def add_file(self, local_path: str | os.PathLike, name: str | None = None,
                 is_tmp: bool | None = False, skip_cache: bool | None = False,
                 policy: str = "mutable", overwrite: bool = False) -> ArtifactManifestEntry:
        """Add a file (as ``name``, default its base name). ``policy="mutable"``
        copies it now; ``"immutable"`` reads it when the artifact is logged."""
        self._check_draft("add_file()")
        source = os.path.abspath(os.fspath(local_path))
        if not os.path.isfile(source):
            raise ValueError(f"add_file(): {source} is not a file")
        if policy not in ("mutable", "immutable"):
            raise ValueError("add_file(): policy is 'mutable' or 'immutable'")
        path = self._entry_name(name, os.path.basename(source))
        if path in self._entries and not overwrite:
            raise ValueError(f"add_file(): the artifact has {path!r} already "
                             "(pass overwrite=True to replace it)")
        if policy == "mutable":
            staged = os.path.join(self._stage_dir(), "files", *path.split("/"))
            os.makedirs(os.path.dirname(staged), exist_ok=True)
            shutil.copyfile(source, staged)
            source = staged
        from ..store.blobs import file_digest

        sha, size = file_digest(source)
        self._entries[path] = {"source": source, "sha256": sha, "size": size}
        return ArtifactManifestEntry(self, path, self._entries[path])

    def add_dir(self, local_path: str | os.PathLike, name: str | None = None,
                skip_cache: bool | None = False, policy: str = "mutable",
                merge: bool = False) -> None:
        """Add every file under a directory (below ``name``, if given)."""
        self._check_draft("add_dir()")
        top = os.path.abspath(os.fspath(local_path))
        if not os.path.isdir(top):
            raise ValueError(f"add_dir(): {top} is not a directory")
        for folder, dirs, files in os.walk(top):
            dirs.sort()
            for file in sorted(files):
                full = os.path.join(folder, file)
                relative = os.path.relpath(full, top).replace(os.sep, "/")
                self.add_file(full, f"{name.strip('/')}/{relative}" if name else relative,
                              policy=policy, overwrite=merge)

    @contextlib.contextmanager
    def new_file(self, name: str, mode: str = "x", encoding: str | None = None
                 ) -> Iterator[IO]:
        """Open a new file of the artifact for writing; it is added when closed."""
        self._check_draft("new_file()")
        path = self._entry_name(name, name)
        staged = os.path.join(self._stage_dir(), "new", *path.split("/"))
        os.makedirs(os.path.dirname(staged), exist_ok=True)
        with open(staged, mode if "b" in mode else mode, encoding=encoding) as f:
            yield f
        self.add_file(staged, path, policy="immutable")

    def add_reference(self, uri: str | os.PathLike, name: str | None = None,
                      checksum: bool = True, max_objects: int | None = None) -> list:
        """Add a reference: a ``file://`` path is recorded with its digest (a
        directory, each file in it); any other scheme is kept as the URI only."""
        self._check_draft("add_reference()")
        uri = os.fspath(uri)
        added = []
        if uri.startswith("file://") or "://" not in uri:
            local = uri[len("file://"):] if uri.startswith("file://") else uri
            local = os.path.abspath(local)
            files = ([local] if os.path.isfile(local) else
                     sorted(os.path.join(d, f) for d, _, fs in os.walk(local) for f in fs))
            if not files:
                raise ValueError(f"add_reference(): nothing at {local}")
            from ..store.blobs import file_digest

            for full in files[:max_objects]:
                relative = (os.path.basename(full) if full == local else
                            os.path.relpath(full, local).replace(os.sep, "/"))
                path = self._entry_name(f"{name}/{relative}" if name and full != local
                                        else (name or relative), relative)
                entry: dict[str, Any] = {"ref": "file://" + full}
                if checksum:
                    entry["sha256"], entry["size"] = file_digest(full)
                self._entries[path] = entry
                added.append(ArtifactManifestEntry(self, path, entry))
            return added
        path = self._entry_name(name, uri.rstrip("/").rsplit("/", 1)[-1] or "reference")
        self._entries[path] = {"ref": uri}
        return [ArtifactManifestEntry(self, path, self._entries[path])]

    def add(self, obj: Any, name: str, overwrite: bool = False) -> ArtifactManifestEntry:
        """Add a Table or another media value as ``<name>.<ext>`` (its media files
        under ``media/``), as wandb adds ``name.table.json``."""
        self._check_draft("add()")
        from ..media.base import Media
        from ..media.encode import MediaStore

        if not isinstance(obj, Media):
            raise TypeError(f"add() takes a Table or a media value, not {type(obj).__name__}")
        stage = os.path.join(self._stage_dir(), "media")
        written: list[tuple[str, str, int]] = []

        def put(folder: str, ext: str, data: bytes) -> tuple[str, str, int]:
            from ..store.blobs import put as put_bytes

            written.append(put_bytes(stage, folder, ext, data))
            return written[-1]

        ref = MediaStore(put).value(obj._mp_media(_cell))
        if not isinstance(ref, dict) or "path" not in ref:
            raise TypeError(f"add(): a {type(obj).__name__} has no file to add")
        main = ref["path"]
        ext = main.split("/")[-1].split(".", 1)[1]
        for relative, sha, size in written:
            path = f"{name}.{ext}" if relative == main else relative
            if path in self._entries and not overwrite and relative == main:
                raise ValueError(f"add(): the artifact has {path!r} already")
            self._entries[path] = {"source": os.path.join(stage, *relative.split("/")),
                                   "sha256": sha, "size": size}
        return ArtifactManifestEntry(self, f"{name}.{ext}", self._entries[f"{name}.{ext}"])

    def remove(self, item: str | ArtifactManifestEntry) -> None:
        """Remove a file (by path or entry) before logging."""
        self._check_draft("remove()")
        path = item.path if isinstance(item, ArtifactManifestEntry) else str(item)
        if self._entries.pop(path, None) is None:
            raise FileNotFoundError(f"the artifact has no {path!r}")

    def _spec(self, aliases: list[str]) -> dict[str, Any]:
        """What log_artifact sends to the service (plain data)."""
        entries = {p: {k: v for k, v in e.items() if k in ("source", "ref", "sha256", "size")}
                   for p, e in self._entries.items()}
        for entry in entries.values():
            if "source" in entry:
                entry.pop("sha256", None)  # the service hashes what it stores
                entry.pop("size", None)
        return {"name": self._name, "type": self.type, "description": self.description,
                "metadata": self.metadata, "aliases": aliases, "entries": entries,
                "staging": self._staging}

    # -- reading ---------------------------------------------------------

    def files(self, names: list[str] | None = None, per_page: int = 50
              ) -> list[ArtifactManifestEntry]:
        return [ArtifactManifestEntry(self, p, e) for p, e in sorted(self._files().items())
                if names is None or p in names]

    @property
    def manifest(self) -> dict[str, Any]:
        return {"entries": dict(self._files())}

    def get_entry(self, name: str) -> ArtifactManifestEntry:
        entries = self._files()
        if name not in entries:
            raise KeyError(f"artifact {self.name!r} has no file {name!r}")
        return ArtifactManifestEntry(self, name, entries[name])

    get_path = get_entry

    def _download_entry(self, path: str, root: str | None) -> str:
        entry = self._files()[path]
        root = os.path.abspath(root or self._default_root())
        target = os.path.join(root, *path.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if "ref" in entry:
            ref = entry["ref"]
            if not ref.startswith("file://"):
                raise ValueError(f"{path} is a reference to {ref}; it is not stored here")
            source = ref[len("file://"):]
        elif self.is_draft():
            source = entry["source"]
        else:
            assert self._project_dir is not None
            source = registry.blob_path(self._project_dir, entry["sha256"])
        shutil.copyfile(source, target)
        return target

    def _default_root(self) -> str:
        """``<ARTIFACT_DIR or ./artifacts>/<name>:v<N>``, as wandb downloads on Linux."""
        if self._download_root is None:
            from ..shared import environ

            base = environ.value("ARTIFACT_DIR") or os.path.join(".", "artifacts")
            self._download_root = os.path.abspath(os.path.join(base, self.name))
        return self._download_root

    def download(self, root: str | None = None, allow_missing_references: bool = False,
                 skip_cache: bool | None = None, path_prefix: str | None = None,
                 multipart: bool | None = None) -> str:
        """Copy every file (under ``path_prefix``) to ``root`` (default
        ``./artifacts/<name>:v<N>``, or under ``WANDB_ARTIFACT_DIR``); the directory."""
        root = os.path.abspath(root or self._default_root())
        for path, entry in self._files().items():
            if path_prefix and not path.startswith(path_prefix):
                continue
            if "ref" in entry and not entry["ref"].startswith("file://"):
                continue  # a remote reference: nothing stored to copy
            try:
                self._download_entry(path, root)
            except FileNotFoundError:
                if not (allow_missing_references and "ref" in entry):
                    raise
        return root

    def file(self, root: str | None = None) -> str:
        """The path of the single file of this artifact, downloaded."""
        files = self._files()
        if len(files) != 1:
            raise ValueError(f"artifact {self.name!r} has {len(files)} files, not one")
        return self._download_entry(next(iter(files)), root)

    def get(self, name: str) -> Any:
        """A Table added with ``add(table, name)``, read back (cells as read back)."""
        from ..media.data import Table
        from ..media.refs import read_table

        for path in self._files():
            if path.startswith(name + ".table."):
                root = self.download()
                frame = read_table(os.path.join(root, path), root)
                return Table(dataframe=frame, allow_mixed_types=True)
        raise KeyError(f"artifact {self.name!r} has no table {name!r}")

    def logged_by(self) -> Any:
        """The run that logged this version (an ``ApiRun``, as wandb's public Run), or
        None if it is no longer stored."""
        run_id = self._logged().get("logged_by")
        assert self._project_dir is not None
        return _api_run(os.path.join(self._project_dir, str(run_id)))

    def used_by(self) -> list[Any]:
        """The runs that used this version (``ApiRun`` each, those still stored)."""
        manifest = self._logged()
        assert self._project_dir is not None
        store_dir = os.path.dirname(self._project_dir)
        runs = [_api_run(os.path.join(store_dir, str(u.get("project")), str(u.get("id"))))
                for u in registry.used_by(self._project_dir, self._name, manifest["version"])]
        return [r for r in runs if r is not None]

    def save(self) -> None:
        """Log this artifact to the current run (as wandb's ``save`` of a draft)."""
        import sys

        # The package's current run, looked up (not imported: artifacts sit below the
        # user side, see the import contract).
        package = sys.modules.get(__name__.split(".")[0])
        run = getattr(package, "run", None)
        if run is None:
            raise UsageError("Artifact.save(): no run; call mpbackend.init() first")
        run.log_artifact(self)

    def __repr__(self) -> str:
        return f"<Artifact {self.qualified_name} ({self.type}, {self.state})>"


def _api_run(run_dir: str) -> Any:
    """The stored run in ``run_dir`` as the readers give it, or None."""
    from ..read.api import ApiRun  # lineage reads runs back: the readers' job
    from ..shared.errors import StoreError

    try:
        return ApiRun(run_dir)
    except (StoreError, OSError):
        return None


def _cell(value: Any) -> Any:
    """A table cell of an artifact's Table as stored: media as their Media, numpy
    scalars as numbers."""
    from ..media.base import Media

    if isinstance(value, Media):
        return value._mp_media(_cell)
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return value.item()
    return value


def from_manifest(manifest: dict[str, Any], project_dir: str, project: str) -> Artifact:
    """A logged version as an Artifact (read-only)."""
    art = Artifact.__new__(Artifact)
    Artifact.__init__(art, manifest["name"], manifest["type"], manifest.get("description"),
                      manifest.get("metadata") if isinstance(manifest.get("metadata"), dict)
                      else None)
    art._manifest = manifest
    art._project_dir = project_dir
    art.project = project
    return art
