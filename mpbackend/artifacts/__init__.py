"""Artifacts: versioned files (datasets, models) that runs log and use.

Where it sits in the picture:

    user process                       service process                 any process
    ------------------------------     -----------------------------   ---------------------
    Artifact(name, type).add_file()    ARTIFACT record --> Internal    use_artifact, Api:
    run.log_artifact(a) --rec_q------>   --registry.write_version-->   registry.resolve
    a.wait() --ArtifactWait---------->   <project>/.artifacts/<name>/  (reads manifests,
    run.use_artifact("name:latest")      v<N>/manifest.json, .blobs/   takes no lock)
       --USE_ARTIFACT record--------->   used_by.json (lineage)

``artifact`` is the user's object; ``registry`` is the layout on disk, written
under a lock by the service and read by anyone. It imports ``shared``, ``store``
(content-addressed files), ``media`` (``Artifact.add(table)``) and the readers
(``logged_by()`` and ``used_by()`` give ``ApiRun``s), never the user side or the
service.
"""

from __future__ import annotations

from .artifact import Artifact, ArtifactManifestEntry

__all__ = ["Artifact", "ArtifactManifestEntry"]
