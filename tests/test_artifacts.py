"""Artifacts: versions stored by the service, content-addressed, immutable, with
lineage; used by later runs and other processes, read back through the Api."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import ROOT, result, run_script, wait_for

import mpbackend
from mpbackend.artifacts import registry
from mpbackend.shared import jsonfiles

pytestmark = pytest.mark.timeout(90)


def _files(tmp_path, files: dict[str, bytes | str]) -> str:
    top = tmp_path / "src"
    for name, data in files.items():
        path = top / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(top)


def _blobs(run) -> list[str]:
    return sorted(os.listdir(os.path.join(os.path.dirname(run.dir), ".artifacts", ".blobs")))


def test_versions_aliases_and_download(rundir, tmp_path):
    src = _files(tmp_path, {"train.csv": "a,b\n1,2\n", "sub/labels.txt": "cat\n"})
    run = mpbackend.init(project="art")
    first = mpbackend.Artifact("data", type="dataset", description="d", metadata={"rows": 1})
    first.add_dir(src)
    assert first.name == "data" and first.state == "DRAFT"
    run.log_artifact(first, aliases=["best"])
    assert first.wait().version == "v0" and first.name == "data:v0"
    assert first.aliases == ["best", "latest"]
    with open(os.path.join(src, "train.csv"), "a") as f:
        f.write("3,4\n")
    second = mpbackend.Artifact("data", type="dataset")
    second.add_dir(src)
    run.log_artifact(second)
    assert second.wait().version == "v1"
    same = mpbackend.Artifact("data", type="dataset")
    same.add_dir(src)
    run.log_artifact(same, aliases=["again"])  # the same contents as v1: no new version
    assert same.wait().version == "v1"
    run.finish()

    reader = mpbackend.init(project="art")
    best = reader.use_artifact("data:best")
    latest = reader.use_artifact("art/data:latest")
    assert (best.version, latest.version) == ("v0", "v1")
    assert best.metadata == {"rows": 1} and best.description == "d"
    assert sorted(e.path for e in best.files()) == ["sub/labels.txt", "train.csv"]
    root = best.download(str(tmp_path / "dl"))
    assert open(os.path.join(root, "train.csv")).read() == "a,b\n1,2\n"
    assert open(os.path.join(latest.download(str(tmp_path / "dl2")), "train.csv")).read() \
        == "a,b\n1,2\n3,4\n"
    assert latest.get_entry("sub/labels.txt").download(str(tmp_path / "one")).endswith(
        "sub/labels.txt")
    with pytest.raises(mpbackend.NoSuchArtifact, match="no version or alias 'nope'"):
        reader.use_artifact("data:nope")
    reader.finish()
    # labels.txt and both train.csv contents: three blobs for five stored files
    assert len(_blobs(run)) == 3
    api = mpbackend.Api(str(rundir))
    assert [a.version for a in api.artifact_versions("dataset", "art/data")] == ["v0", "v1"]
    assert api.artifact("art/data:again").version == "v1"
    assert [a.name for a in api.run(f"art/{run.id}").logged_artifacts()] == ["data:v0",
                                                                              "data:v1"]
    assert [a.name for a in api.run(f"art/{reader.id}").used_artifacts()] == ["data:v0",
                                                                               "data:v1"]
    assert [r.id for r in api.artifact("art/data:v0").used_by()] == [reader.id]
    assert api.artifact("art/data:v0").logged_by().id == run.id


def test_a_mutable_file_is_copied_at_add_an_immutable_one_read_at_logging(rundir, tmp_path):
    src = _files(tmp_path, {"m.bin": b"one", "i.bin": b"one"})
    run = mpbackend.init(project="art")
    art = mpbackend.Artifact("pair", type="model")
    art.add_file(os.path.join(src, "m.bin"))
    art.add_file(os.path.join(src, "i.bin"), policy="immutable")
    (tmp_path / "src" / "m.bin").write_bytes(b"two")  # after add: not in the version
    run.log_artifact(art)
    art.wait()
    run.finish()
    got = mpbackend.Api(str(rundir)).artifact("art/pair:latest").download(str(tmp_path / "d"))
    assert open(os.path.join(got, "m.bin"), "rb").read() == b"one"
    with pytest.raises(mpbackend.UsageError, match="cannot change"):
        art.add_file(os.path.join(src, "m.bin"), name="x")


def test_references_new_files_tables_and_models(rundir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # get() downloads to ./artifacts/<name>:v<N>, as wandb
    src = _files(tmp_path, {"ref.txt": "by reference", "model.pt": b"\x01" * 100})
    run = mpbackend.init(project="art")
    art = mpbackend.Artifact("mixed", type="dataset")
    art.add_reference("file://" + os.path.join(src, "ref.txt"))
    art.add_reference("s3://bucket/data/part-0")
    with art.new_file("notes/readme.md") as f:
        f.write("# notes")
    table = mpbackend.Table(columns=["id", "img"])
    table.add_data(1, mpbackend.Image(np.full((2, 3), 9, dtype=np.uint8)))
    art.add(table, "samples")
    run.log_artifact(art)
    run.log_model(os.path.join(src, "model.pt"), name="net", aliases=["epoch-1"])
    run.finish()
    user = mpbackend.init(project="art")
    got = user.use_artifact("mixed:latest")
    entries = {e.path: e for e in got.files()}
    assert entries["part-0"].ref == "s3://bucket/data/part-0" and entries["part-0"].digest is None
    assert entries["ref.txt"].ref.startswith("file://") and entries["ref.txt"].digest
    root = got.download(str(tmp_path / "m"))
    assert open(os.path.join(root, "notes/readme.md")).read() == "# notes"
    assert open(os.path.join(root, "ref.txt")).read() == "by reference"
    frame = got.get("samples").get_dataframe()
    assert (tmp_path / "artifacts" / "mixed:v0" / "samples.table.parquet").is_file()
    assert [f.name for f in got.files()] == sorted(entries)
    assert frame["id"].tolist() == [1]
    assert np.asarray(frame["img"][0].image()).tolist() == [[9, 9, 9], [9, 9, 9]]
    path = user.use_model("net:epoch-1")
    assert open(path, "rb").read() == b"\x01" * 100
    user.finish()


def test_bad_artifacts_fail_at_the_call(rundir, tmp_path):
    run = mpbackend.init(project="art")
    with pytest.raises(ValueError, match="not valid"):
        mpbackend.Artifact("../escape", type="dataset")
    art = mpbackend.Artifact("empty", type="dataset")
    with pytest.raises(ValueError, match="no files"):
        run.log_artifact(art)
    with pytest.raises(ValueError, match="not a file"):
        art.add_file(str(tmp_path / "missing"))
    with pytest.raises(mpbackend.NoSuchArtifact):
        run.use_artifact("never-logged:latest")
    run.log({"x": 1})
    run.finish()
    assert mpbackend.Api(str(rundir)).run(f"art/{run.id}").history(pandas=False)[0]["x"] == 1


def test_two_processes_logging_one_name_get_distinct_versions(tmp_path):
    """Two scripts (two services) log the same name at once: versions 0..23, each
    whole, none overwritten."""
    code = textwrap.dedent("""
        import os, sys, json, time, mpbackend as wandb
        who = sys.argv[1]
        run = wandb.init(project="shared", id="writer-" + who)
        open(f"ready-{who}", "w").close()
        deadline = time.monotonic() + 30
        while not os.path.exists("go") and time.monotonic() < deadline:
            time.sleep(0.001)  # both services write at the same moment
        arts = []
        for i in range(N):
            path = f"{who}-{i}.txt"
            with open(path, "w") as f:
                f.write(f"{who} {i}")
            art = wandb.Artifact("ckpt", type="model", metadata={"who": who, "i": i})
            art.add_file(path)
            run.log_artifact(art)
            arts.append(art)
        print("RESULT " + json.dumps([a.wait().version for a in arts]))
        run.finish()
    """)
    script = tmp_path / "writer.py"
    script.write_text(code.replace("range(N)", "range(12)"))
    env = {**os.environ, "PYTHONPATH": ROOT, "MPBACKEND_DIR": str(tmp_path / "mpruns")}
    procs = [subprocess.Popen([sys.executable, str(script), who], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for who in ("a", "b")]
    assert wait_for(lambda: all((tmp_path / f"ready-{w}").exists() for w in "ab"), 60)
    (tmp_path / "go").touch()
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outs.append(result(subprocess.CompletedProcess(proc.args, 0, out, err)))
    versions = sorted(int(v[1:]) for out in outs for v in out)
    assert versions == list(range(24))
    project_dir = str(tmp_path / "mpruns" / "shared")
    seen = set()
    for manifest in registry.versions(project_dir, "ckpt"):
        who, i = manifest["metadata"]["who"], manifest["metadata"]["i"]
        seen.add((who, i))
        path = registry.blob_path(project_dir, manifest["entries"][f"{who}-{i}.txt"]["sha256"])
        assert open(path).read() == f"{who} {i}"  # each version holds what its writer added
    assert seen == {(w, i) for w in "ab" for i in range(12)}


def test_artifacts_in_a_script_and_a_second_script(tmp_path):
    """The wandb pattern: one script logs a dataset, a second uses it by alias."""
    (tmp_path / "data.json").write_text(json.dumps([1, 2, 3]))
    first = run_script("""
        import wandb_alias
    """.replace("import wandb_alias", textwrap.dedent("""
        import mpbackend as wandb
        with wandb.init(project="two", job_type="upload") as run:
            art = wandb.Artifact("numbers", type="dataset")
            art.add_file("data.json")
            run.log_artifact(art, aliases=["prod"])
        print("RESULT {}")
    """)), tmp_path, name="upload.py")
    result(first)
    second = run_script("""
        import json, os, mpbackend as wandb
        with wandb.init(project="two", job_type="train") as run:
            art = run.use_artifact("numbers:prod", type="dataset")
            path = art.download()
            data = json.load(open(os.path.join(path, "data.json")))
            run.log({"total": sum(data)})
        print("RESULT " + json.dumps({"total": sum(data), "version": art.version}))
    """, tmp_path, name="train.py")
    assert result(second) == {"total": 6, "version": "v0"}


def test_a_manifest_that_leaves_the_store_is_refused(tmp_path):
    collection = tmp_path / ".artifacts" / "evil" / "v0"
    collection.mkdir(parents=True)
    (collection / "manifest.json").write_text(json.dumps({
        "version": 0, "type": "x", "digest": "d", "name": "evil",
        "entries": {"../../etc/passwd": {"sha256": "0" * 64, "size": 1}}}))
    with pytest.raises(mpbackend.NoSuchArtifact, match="bad entry"):
        registry.resolve(str(tmp_path), "evil", "v0")
    with pytest.raises(ValueError, match="not a SHA-256"):
        registry.blob_path(str(tmp_path), "../../etc/passwd")


def test_a_version_is_numbered_under_the_collection_lock(tmp_path):
    """write_version waits for the collection's flock (held here, as another process
    would hold it) before it numbers the version: none is numbered twice."""
    import threading

    src = tmp_path / "f.txt"
    src.write_text("x")
    project_dir = str(tmp_path / "proj")
    spec = {"name": "c", "type": "t", "entries": {"f.txt": {"source": str(src)}}}
    done: list[dict] = []
    with jsonfiles.locked(os.path.join(registry.root(project_dir), "c")):
        writer = threading.Thread(target=lambda: done.append(
            registry.write_version(project_dir, spec, "run1", "proj")), daemon=True)
        writer.start()
        writer.join(0.5)
        assert writer.is_alive() and not done  # blocked on the lock
        assert registry.versions(project_dir, "c") == []
    writer.join(10)
    assert [m["version"] for m in done] == [0]


def test_a_lock_held_too_long_fails_instead_of_waiting_for_ever(tmp_path):
    """A writer (the service numbering a version) waits for a lock at most its timeout."""
    with jsonfiles.locked(str(tmp_path)):
        with pytest.raises(mpbackend.StoreError, match="stayed locked"):
            with jsonfiles.locked(str(tmp_path), timeout=0.2):
                pass
