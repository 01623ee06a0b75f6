"""A run's artifacts (user side): log_artifact, use_artifact, log_model, use_model.

    run.log_artifact(a) --(ARTIFACT, run, client id, a._spec())--> service (stores v<N>)
        a._pending = wait(): ArtifactWait --> the manifest stored (a.version, a.digest)
    run.use_artifact("name:alias") --artifacts.registry.resolve (here, no service)-->
        Artifact --(USE_ARTIFACT, run, {project, name, version})--> service (lineage)

Artifacts live in the run's project directory (``<dir>/<project>/.artifacts``),
so every run of the project, in any process, finds them.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any

from ..artifacts import registry
from ..artifacts.artifact import Artifact, from_manifest
from ..shared import messages as m
from ..shared.errors import UsageError
from ..shared.paths import check_name
from .values import convert_item

if TYPE_CHECKING:
    from .run import Run


def _store_dir(run: Run) -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(run.dir)))


def _request(run: Run, message: Any, timeout: float | None) -> Any:
    manager = run._manager
    if run._in_child or manager is None:
        raise UsageError("an artifact logged in a child process has no version there; "
                         "read it back with use_artifact() or the Api")
    return manager.communicate(message, timeout)


def log_artifact(run: Run, artifact_or_path: Any, name: str | None = None,
                 type: str | None = None, aliases: list[str] | None = None,
                 tags: list[str] | None = None) -> Artifact:
    """Send an artifact (or a path, made into one) to be stored as the next version."""
    if isinstance(artifact_or_path, Artifact):
        artifact = artifact_or_path
    elif isinstance(artifact_or_path, (str, os.PathLike)):
        path = os.fspath(artifact_or_path)
        artifact = Artifact(name or f"run-{run.id}-{os.path.basename(path.rstrip('/'))}",
                            type or "unspecified")
        if os.path.isdir(path):
            artifact.add_dir(path)
        else:
            artifact.add_file(path)
    else:
        raise TypeError(f"log_artifact() takes an Artifact or a path, not "
                        f"{artifact_or_path.__class__.__name__}")
    if not artifact.is_draft():
        raise UsageError(f"artifact {artifact.name!r} is logged already; a version is "
                         "logged once")
    if isinstance(aliases, str):
        aliases = [aliases]
    aliases = [str(a) for a in aliases or []]
    for alias in aliases:
        if not alias or "/" in alias or ":" in alias:
            raise ValueError(f"an alias is a name without '/' or ':', not {alias!r}")
    if not artifact._entries:
        raise ValueError(f"artifact {artifact.name!r} has no files; add some before logging")
    client_id = uuid.uuid4().hex
    spec = artifact._spec(aliases)
    # The metadata as any value is sent: plain data (TypeError at this call if not).
    spec["metadata"] = convert_item("log_artifact()", "metadata", spec["metadata"],
                                    run._max_array)
    run._send_record((m.ARTIFACT, run.id, client_id, spec), spec, "log_artifact()")
    artifact._aliases = ["latest", *aliases]
    artifact.project = run.project
    artifact._project_dir = os.path.dirname(os.path.abspath(run.dir))

    def wait(timeout: float | None) -> dict[str, Any]:
        return _request(run, m.ArtifactWait(run.id, client_id), timeout)

    artifact._pending = wait
    run._artifacts.append(artifact)
    return artifact


def use_artifact(run: Run, artifact_or_name: Any, type: str | None = None,
                 aliases: list[str] | None = None, use_as: str | None = None) -> Artifact:
    """A logged artifact (``name``, ``name:alias``, ``name:v3``, ``project/name:alias``
    or an Artifact), recorded as used by this run."""
    if isinstance(artifact_or_name, Artifact):
        if artifact_or_name.is_draft():
            raise UsageError("use_artifact() of an artifact that was never logged: log it "
                             "with log_artifact() first")
        artifact = artifact_or_name
        artifact.wait()
        project, name = artifact.project or run.project, artifact._name
        manifest = artifact._logged()
    else:
        project, name, alias = registry.parse(str(artifact_or_name), run.project)
        check_name("project", project)
        manifest = registry.resolve(os.path.join(_store_dir(run), project), name, alias)
        artifact = from_manifest(manifest, os.path.join(_store_dir(run), project), project)
    if type is not None and manifest["type"] != type:
        raise ValueError(f"artifact {name!r} is of type {manifest['type']!r}, not {type!r}")
    used = {"project": project, "name": name, "version": manifest["version"]}
    run._send_record((m.USE_ARTIFACT, run.id, used), used, "use_artifact()")
    return artifact


def log_model(run: Run, path: Any, name: str | None = None,
              aliases: list[str] | None = None) -> Artifact:
    """A model file or directory as an artifact of type ``model``."""
    path = os.fspath(path)
    default = f"run-{run.id}-{os.path.basename(path.rstrip('/'))}"
    return log_artifact(run, path, name=name or default, type="model", aliases=aliases)


def use_model(run: Run, name: str) -> str:
    """Download a model artifact; the path of its file (or directory)."""
    artifact = use_artifact(run, name)
    if artifact.type != "model":
        raise ValueError(f"artifact {name!r} is of type {artifact.type!r}, not 'model'")
    files = artifact.files()
    root = artifact.download()
    return os.path.join(root, files[0].path) if len(files) == 1 else root


def link_artifact(run: Run, artifact: Artifact, target_path: str,
                  aliases: list[str] | None = None) -> Artifact:
    """wandb links a version into a registry collection; here the link is the
    aliases given (or ``linked``) on the version, in its own collection."""
    if not isinstance(artifact, Artifact):
        raise TypeError("link_artifact() takes an Artifact")
    if artifact.is_draft():
        log_artifact(run, artifact)
    manifest = artifact.wait()._logged()
    assert artifact._project_dir is not None
    registry.add_aliases(artifact._project_dir, artifact._name, manifest["version"],
                         [str(a) for a in aliases or ["linked"]])
    return artifact


def log_code_artifact(run: Run, saved: list[str], name: str | None) -> Artifact:
    """``run.log_code()``: the code files copied to ``<run dir>/code/`` as an artifact
    of type ``code``, named as wandb names it (``source-<project>-<script>``)."""
    import re
    import sys

    script = os.path.basename(getattr(sys.modules.get("__main__"), "__file__", "") or "code")
    default = re.sub(r"[^A-Za-z0-9_.-]", "_", f"source-{run.project}-{script}")[:128]
    artifact = Artifact(name or default, "code")
    code_dir = os.path.join(run.dir, "code")
    for path in saved:
        artifact.add_file(path, os.path.relpath(path, code_dir), policy="immutable")
    return log_artifact(run, artifact)


def settle(run: Run, timeout: float | None) -> None:
    """Before finish: wait for the run's logged artifacts, so their versions are
    known here after the run ends (a failure is warned about, once each)."""
    from .everyday import termwarn

    for artifact in run._artifacts:
        try:
            artifact.wait(timeout)
        except Exception as exc:
            termwarn(f"artifact {artifact._name!r} was not stored: {exc}")
    run._artifacts = []
