"""Artifacts on disk: versions, manifests, aliases and lineage, per project.

    <dir>/<project>/.artifacts/
        .blobs/<sha256>                      every file's contents, once (store.blobs)
        <name>/.lock                         flock: one writer of versions at a time
        <name>/v<N>/manifest.json            one version: type, metadata, digest, files
        <name>/v<N>/used_by.json             the runs that used it (lineage)
        <name>/aliases.json                  {"latest": N, "best": M, ...}

``write_version`` (the service, for ``log_artifact``) takes the collection's
lock, stores each file's contents by digest, and writes ``v<N>`` with N one
more than the highest there: two processes (two services) logging one name at
once get two versions, and a version, once its manifest is renamed into place,
is never written again. A version whose files are those of the latest one
(the same digest) is not made twice: the aliases move to it, as in wandb.
Readers (``resolve``, ``versions``) take no lock: a manifest is whole or absent.

Nothing read is trusted: manifests are JSON checked field by field, names are
safe path components, and a blob path must be the digest it claims, under
``.blobs``.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from ..shared.errors import NoSuchArtifact
from ..shared.jsonfiles import locked, read_json, write_json
from ..shared.paths import make_dirs, safe_name
from ..store import blobs

ROOT = ".artifacts"
BLOBS = ".blobs"
_VERSION = re.compile(r"^v(\d{1,9})$")
_SHA = re.compile(r"^[0-9a-f]{64}$")


def root(project_dir: str) -> str:
    return os.path.join(project_dir, ROOT)


def check_name(name: Any) -> str:
    """An artifact name as a path component (ValueError otherwise)."""
    if not safe_name(name) or name.startswith("."):
        raise ValueError(f"artifact name {name!r} is not valid: use 1-128 letters, digits, "
                         "'_', '-' or '.', starting with a letter or digit")
    return name


def parse(spec: str, default_project: str) -> tuple[str, str, str]:
    """``name``, ``name:alias``, ``name:v3``, ``project/name:alias`` or
    ``entity/project/name:alias`` as (project, name, alias or version); "latest" if none."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"an artifact is named 'name', 'name:alias' or 'project/name:v1', "
                         f"not {spec!r}")
    path, _, alias = spec.partition(":")
    parts = [p for p in path.split("/") if p]
    if not parts or len(parts) > 3:
        raise ValueError(f"an artifact path is [entity/][project/]name[:alias], not {spec!r}")
    project = parts[-2] if len(parts) >= 2 else default_project
    return project, check_name(parts[-1]), alias or "latest"


def _read_json(path: str) -> Any:
    return read_json(path, NoSuchArtifact)


def _numbers(collection: str) -> list[int]:
    try:
        names = os.listdir(collection)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        match = _VERSION.match(name)
        if match and os.path.isfile(os.path.join(collection, name, "manifest.json")):
            found.append(int(match.group(1)))
    return sorted(found)


def digest_of(entries: dict[str, dict[str, Any]]) -> str:
    """A version's digest: of its paths and their contents (or references)."""
    parts = [[path, e.get("sha256"), e.get("ref")] for path, e in sorted(entries.items())]
    return blobs.digest(json.dumps(parts, separators=(",", ":")).encode())


def write_version(project_dir: str, spec: dict[str, Any], run_id: str, project: str
                  ) -> dict[str, Any]:
    """Store a logged artifact (``Artifact._spec()``) as the next version; its manifest.

    Each entry is ``{"source": path}`` (a file to store: the staged copy of a
    mutable add, or the user's file for an immutable one), ``{"ref": uri}`` with
    an optional ``sha256``/``size``, or ``{"sha256", "size", "blob"}`` already
    stored (a media value added with ``Artifact.add``).
    """
    name = check_name(spec["name"])
    base = root(project_dir)
    entries: dict[str, dict[str, Any]] = {}
    for path, entry in spec["entries"].items():
        if "source" in entry:
            _, sha, size = blobs.put_path(base, BLOBS, entry["source"])
            entries[path] = {"sha256": sha, "size": size}
        elif "ref" in entry:
            entries[path] = {k: entry[k] for k in ("ref", "sha256", "size") if k in entry}
        else:
            entries[path] = {"sha256": entry["sha256"], "size": entry["size"]}
    digest = digest_of(entries)
    collection = os.path.join(base, name)
    with locked(collection):
        aliases = _aliases(collection)
        numbers = _numbers(collection)
        latest = _manifest(collection, numbers[-1]) if numbers else None
        if latest is not None and latest["digest"] == digest and latest["type"] == spec["type"]:
            manifest = latest  # the same contents: no new version, as in wandb
        else:
            number = numbers[-1] + 1 if numbers else 0
            manifest = {
                "format": 1, "name": name, "type": spec["type"], "version": number,
                "description": spec.get("description"), "metadata": spec.get("metadata") or {},
                "digest": digest, "created_at": time.time(), "project": project,
                "logged_by": run_id, "entries": entries,
                "size": sum(int(e.get("size") or 0) for e in entries.values())}
            target = os.path.join(collection, f"v{number}")
            make_dirs(target)
            write_json(os.path.join(target, "manifest.json"), manifest)
        for alias in ["latest", *spec.get("aliases", [])]:
            aliases[alias] = manifest["version"]
        write_json(os.path.join(collection, "aliases.json"), aliases)
    if spec.get("staging"):
        _remove_tree(spec["staging"], base)
    return dict(manifest, aliases=sorted(a for a, v in aliases.items()
                                         if v == manifest["version"]))


_STAGING_NAME = re.compile(r"^mpbackend-artifact-[0-9a-f]{32}$")


def _remove_tree(path: str, base: str) -> None:
    """Remove an artifact's staging directory (``Artifact._stage_dir``): only a
    directory of that name, so a malformed record removes nothing else."""
    import shutil

    if isinstance(path, str) and _STAGING_NAME.match(os.path.basename(path)):
        shutil.rmtree(path, ignore_errors=True)


def add_aliases(project_dir: str, name: str, version: int, aliases: list[str]) -> None:
    """Point ``aliases`` at ``version`` (``link_artifact``, a later alias)."""
    collection = os.path.join(root(project_dir), check_name(name))
    with locked(collection):
        stored = _aliases(collection)
        for alias in aliases:
            stored[str(alias)] = version
        write_json(os.path.join(collection, "aliases.json"), stored)


def add_usage(project_dir: str, name: str, version: int, run: dict[str, Any]) -> None:
    """Record that ``run`` (``{"id", "project"}``) used ``name:v<version>``."""
    collection = os.path.join(root(project_dir), check_name(name))
    path = os.path.join(collection, f"v{int(version)}", "used_by.json")
    with locked(collection):
        used = _read_json(path)
        used = used if isinstance(used, list) else []
        if run not in used:
            used.append(run)
            write_json(path, used)


def used_by(project_dir: str, name: str, version: int) -> list[dict[str, Any]]:
    used = _read_json(os.path.join(root(project_dir), check_name(name), f"v{int(version)}",
                                   "used_by.json"))
    return [u for u in used if isinstance(u, dict)] if isinstance(used, list) else []


def _aliases(collection: str) -> dict[str, int]:
    stored = _read_json(os.path.join(collection, "aliases.json"))
    if not isinstance(stored, dict):
        return {}
    return {str(k): v for k, v in stored.items() if type(v) is int and v >= 0}


def _manifest(collection: str, number: int) -> dict[str, Any]:
    doc = _read_json(os.path.join(collection, f"v{number}", "manifest.json"))
    if (not isinstance(doc, dict) or doc.get("version") != number
            or not isinstance(doc.get("entries"), dict) or not isinstance(doc.get("type"), str)
            or not isinstance(doc.get("digest"), str)):
        raise NoSuchArtifact(f"{collection}/v{number}/manifest.json is not a manifest")
    for path, entry in doc["entries"].items():
        if (not isinstance(path, str) or not isinstance(entry, dict)
                or any(p in ("", ".", "..") for p in path.split("/")) or path.startswith("/")):
            raise NoSuchArtifact(f"{collection}/v{number}: a bad entry {path!r}")
        if "ref" not in entry and not _SHA.match(str(entry.get("sha256"))):
            raise NoSuchArtifact(f"{collection}/v{number}: entry {path!r} has no digest")
    return doc


def blob_path(project_dir: str, sha: str) -> str:
    """Where the contents with digest ``sha`` are stored."""
    if not _SHA.match(sha):
        raise ValueError(f"not a SHA-256 digest: {sha!r}")
    return os.path.join(root(project_dir), BLOBS, sha)


def resolve(project_dir: str, name: str, alias: str) -> dict[str, Any]:
    """The manifest of ``name:alias`` (``latest``, ``v3``, any alias), with its aliases."""
    collection = os.path.join(root(project_dir), check_name(name))
    numbers = _numbers(collection)
    if not numbers:
        raise NoSuchArtifact(f"no artifact {name!r} in {project_dir}")
    aliases = _aliases(collection)
    match = _VERSION.match(alias)
    if match:
        number = int(match.group(1))
    elif alias in aliases:
        number = aliases[alias]
    else:
        raise NoSuchArtifact(f"artifact {name!r} has no version or alias {alias!r} "
                             f"(versions v0..v{numbers[-1]}, aliases {sorted(aliases)})")
    if number not in numbers:
        raise NoSuchArtifact(f"artifact {name!r} has no version v{number}")
    manifest = _manifest(collection, number)
    manifest["aliases"] = sorted(a for a, v in aliases.items() if v == number)
    return manifest


def versions(project_dir: str, name: str) -> list[dict[str, Any]]:
    """Every version of ``name``, oldest first."""
    collection = os.path.join(root(project_dir), check_name(name))
    return [resolve(project_dir, name, f"v{n}") for n in _numbers(collection)]


def collections(project_dir: str) -> list[str]:
    """The artifact names of a project."""
    try:
        names = sorted(os.listdir(root(project_dir)))
    except FileNotFoundError:
        return []
    return [n for n in names if safe_name(n) and not n.startswith(".")
            and _numbers(os.path.join(root(project_dir), n))]
