"""Media as wandb scripts log them: real files in the run directory, read back
through the Api (``MediaRef``), content-addressed, made in DataLoader workers too."""

from __future__ import annotations

import io
import json
import os
import re
import wave

import numpy as np
import pytest
from conftest import result, run_script
from PIL import Image as PILImage

import mpbackend
from mpbackend.media.refs import MediaRef

pytestmark = pytest.mark.timeout(90)


def _api_run(run):
    return mpbackend.Api(str(run.dir).rsplit("/", 2)[0]).run(run.id)


def _media_files(run, folder="images"):
    path = os.path.join(run.dir, "media", folder)
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def test_images_from_every_source_are_stored_as_png_with_their_pixels(rundir, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    gray01 = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    chw = np.moveaxis(rgb, -1, 0).copy()
    PILImage.fromarray(rgb).save(tmp_path / "pic.png")
    fig, ax = plt.subplots(figsize=(2, 1), dpi=50)
    ax.plot([0, 1], [1, 0])
    run = mpbackend.init(project="media")
    run.log({"hwc": mpbackend.Image(rgb, caption="rgb"),
             "hw01": mpbackend.Image(gray01),
             "chw": mpbackend.Image(chw),
             "tensor": mpbackend.Image(torch.from_numpy(chw)),
             "pil": mpbackend.Image(PILImage.fromarray(rgb)),
             "path": mpbackend.Image(str(tmp_path / "pic.png")),
             "fig": mpbackend.Image(fig),
             "fig_direct": fig})
    rgb[:] = 0  # changing the array after the call changes nothing logged
    run.finish()
    row = _api_run(run).history(pandas=False)[0]
    for key in ("hwc", "chw", "tensor", "pil", "path"):
        ref = row[key]
        assert isinstance(ref, MediaRef) and ref["_type"] == "image-file", key
        assert ref["path"].startswith("media/images/") and ref["format"] == "png"
        assert (ref["width"], ref["height"]) == (5, 6)
        assert ref.path.is_file() and ref["sha256"] in ref["path"]
        got = np.asarray(ref.image().convert("RGB"))
        assert got.tolist() == np.asarray(PILImage.open(tmp_path / "pic.png")).tolist(), key
    # hwc, chw, tensor and pil are the same pixels: the same file, stored once
    assert len({row[k]["path"] for k in ("hwc", "chw", "tensor", "pil", "path")}) == 1
    assert row["hwc"]["caption"] == "rgb"
    gray = np.asarray(row["hw01"].image())
    assert gray.tolist() == np.rint(gray01 * 255).astype(np.uint8).tolist()
    for key in ("fig", "fig_direct"):
        assert row[key]["_type"] == "image-file" and row[key]["width"] == 100
        assert row[key].image().size == (100, 50)
    assert len(_media_files(run)) == 3  # the rgb pixels, the gray ones, the figure


def test_the_same_image_logged_many_times_is_one_file(rundir):
    run = mpbackend.init(project="media")
    img = mpbackend.Image(np.full((4, 4, 3), 7, dtype=np.uint8))
    for _ in range(5):
        run.log({"img": img, "again": mpbackend.Image(np.full((4, 4, 3), 7, dtype=np.uint8))})
    run.finish()
    assert len(_media_files(run)) == 1
    rows = _api_run(run).history(pandas=False)
    assert len(rows) == 5 and len({r["img"]["path"] for r in rows}) == 1


def test_a_list_of_images_nested_media_and_the_summary(rundir):
    run = mpbackend.init(project="media")
    imgs = [mpbackend.Image(np.full((3, 2), v, dtype=np.uint8), caption=f"c{v}")
            for v in (10, 20, 30)]
    run.log({"samples": imgs, "val": {"img": imgs[0]}, "loss": 1.5})
    run.summary["best_sample"] = imgs[2]
    run.finish()
    api_run = _api_run(run)
    row = api_run.history(pandas=False)[0]
    cell = row["samples"]
    assert cell["_type"] == "images/separated" and cell["count"] == 3
    assert cell["captions"] == ["c10", "c20", "c30"]
    assert [np.asarray(r.image()).max() for r in cell.images] == [10, 20, 30]
    assert cell["filenames"] == [r["path"] for r in cell.images]
    assert row["val.img"]["path"] == cell["filenames"][0]
    summary = api_run.summary
    assert summary["val"]["img"]["_type"] == "image-file"
    assert summary["best_sample"]["path"] == cell["filenames"][2]
    assert isinstance(summary["best_sample"], MediaRef)
    frame = api_run.history()
    assert isinstance(frame["samples"][0], MediaRef) and frame["loss"][0] == 1.5


def test_masks_boxes_and_classes_are_kept(rundir):
    run = mpbackend.init(project="media")
    mask = np.zeros((4, 6), dtype=np.uint8)
    mask[1:3, 2:4] = 1
    boxes = {"predictions": {"box_data": [{"position": {"minX": 0.1, "maxX": 0.5, "minY": 0.2,
                                                        "maxY": 0.6}, "class_id": 1,
                                           "scores": {"acc": 0.9}}],
                             "class_labels": {1: "cat"}}}
    run.log({"seg": mpbackend.Image(np.zeros((4, 6, 3), dtype=np.uint8),
                                    masks={"pred": {"mask_data": mask,
                                                    "class_labels": {0: "bg", 1: "cat"}}},
                                    boxes=boxes, classes=[{"id": 1, "name": "cat"}])})
    run.finish()
    ref = _api_run(run).history(pandas=False)[0]["seg"]
    pred = MediaRef(ref["masks"]["pred"], run.dir)
    assert pred["_type"] == "mask" and pred["class_labels"] == {"0": "bg", "1": "cat"}
    assert np.asarray(pred.image()).tolist() == mask.tolist()
    assert ref["boxes"]["predictions"]["box_data"][0]["position"]["maxY"] == 0.6
    assert ref["classes"] == [{"id": 1, "name": "cat"}]


def test_histograms_are_bins_and_counts(rundir):
    values = np.random.default_rng(1).normal(size=1000)
    run = mpbackend.init(project="media")
    run.log({"h": mpbackend.Histogram(values, num_bins=16),
             "np": mpbackend.Histogram(np_histogram=np.histogram([1, 2, 2, 3], bins=3))})
    run.finish()
    row = _api_run(run).history(pandas=False)[0]
    counts, edges = np.histogram(values, bins=16)
    assert row["h"]["_type"] == "histogram"
    assert row["h"]["values"] == counts.tolist() and row["h"]["bins"] == edges.tolist()
    assert row["np"]["values"] == [1, 2, 1] and len(row["np"]["bins"]) == 4
    assert not os.path.isdir(os.path.join(run.dir, "media"))  # inline, no file


def test_tables_read_back_as_dataframes_with_media_cells(rundir):
    import pandas as pd

    run = mpbackend.init(project="media")
    table = mpbackend.Table(columns=["id", "pred", "score"])
    for i in range(3):
        table.add_data(i, mpbackend.Image(np.full((2, 2), i * 50, dtype=np.uint8)), i / 4)
    table.add_column("label", ["a", "b", "c"])
    assert table.get_column("score") == [0.0, 0.25, 0.5]
    run.log({"preds": table})
    table.add_data(3, None, 1.0, "d")  # after the call: not in the logged table
    frame_in = pd.DataFrame({"x": [1, 2], "y": ["u", "v"]})
    run.log({"df": mpbackend.Table(dataframe=frame_in)})
    run.finish()
    rows = _api_run(run).history(pandas=False)
    ref = rows[0]["preds"]
    assert ref["_type"] == "table-file" and (ref["nrows"], ref["ncols"]) == (3, 4)
    assert ref["path"].endswith(".table.parquet")
    frame = ref.table()
    assert list(frame.columns) == ["id", "pred", "score", "label"]
    assert frame["id"].tolist() == [0, 1, 2] and frame["label"].tolist() == ["a", "b", "c"]
    assert [np.asarray(cell.image()).max() for cell in frame["pred"]] == [0, 50, 100]
    assert rows[1]["df"].table().to_dict("list") == {"x": [1, 2], "y": ["u", "v"]}


def _hiding(tmp_path, module: str) -> dict[str, str]:
    """The environment of a script (and of its service) in which ``module`` cannot be
    imported: a sitecustomize that puts None in its place."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(f"import sys\nsys.modules[{module!r}] = None\n")
    return {"PYTHONPATH": f"{hide}:{os.path.dirname(os.path.dirname(__file__))}"}


def test_tables_are_wandb_json_without_pyarrow(tmp_path):
    done = run_script("""
        import json, mpbackend as wandb
        run = wandb.init(project="p")
        run.log({"t": wandb.Table(columns=["a", "b"], data=[[1, "x"], [2, None]])})
        run.finish()
        ref = wandb.Api().run(run.id).history(pandas=False)[0]["t"]
        print("RESULT " + json.dumps({"ref": dict(ref), "file": json.loads(ref.read())}))
    """, tmp_path, env=_hiding(tmp_path, "pyarrow"))
    out = result(done)
    assert out["ref"]["path"].endswith(".table.json")
    assert out["file"] == {"columns": ["a", "b"], "data": [[1, "x"], [2, None]]}


def test_audio_video_html_object3d_molecule_plotly_are_their_files(rundir, tmp_path):
    pdb = tmp_path / "m.pdb"
    pdb.write_text("ATOM      1  N   ALA A   1      11.104   6.134  -6.504  1.00  0.00\nEND\n")
    samples = np.sin(np.linspace(0, 20, 800)).astype(np.float32)
    frames = np.random.default_rng(2).integers(0, 256, (5, 3, 8, 10), dtype=np.uint8)
    points = np.random.default_rng(3).normal(size=(20, 3))
    run = mpbackend.init(project="media")
    run.log({"audio": mpbackend.Audio(samples, sample_rate=8000, caption="tone"),
             "video": mpbackend.Video(frames, fps=5),
             "html": mpbackend.Html("<h1>hello</h1>"),
             "cloud": mpbackend.Object3D(points),
             "mol": mpbackend.Molecule(str(pdb)),
             "plotly": mpbackend.Plotly({"data": [{"y": [1, 2]}], "layout": {}})})
    run.finish()
    row = _api_run(run).history(pandas=False)[0]
    with wave.open(io.BytesIO(row["audio"].read())) as w:
        assert (w.getframerate(), w.getnframes(), w.getsampwidth()) == (8000, 800, 2)
    assert row["audio"]["_type"] == "audio-file" and row["audio"]["caption"] == "tone"
    gif = PILImage.open(row["video"].path)
    assert row["video"]["_type"] == "video-file" and gif.format == "GIF"
    assert gif.n_frames == 5 and gif.size == (10, 8)
    assert row["html"].read() == b"<h1>hello</h1>" and row["html"]["_type"] == "html-file"
    assert np.allclose(json.loads(row["cloud"].read()), points)
    assert row["cloud"]["_type"] == "object3D-file"
    assert row["cloud"]["path"].endswith(".pts.json")
    assert row["mol"].read() == pdb.read_bytes() and row["mol"]["path"].endswith(".pdb")
    assert json.loads(row["plotly"].read())["data"] == [{"y": [1, 2]}]
    assert row["plotly"]["_type"] == "plotly-file"


def test_charts_are_a_table_and_a_description(rundir):
    run = mpbackend.init(project="media")
    t = mpbackend.Table(columns=["x", "y"], data=[[i, i * i] for i in range(5)])
    run.log({"line": mpbackend.plot.line(t, "x", "y", title="sq"),
             "scatter": mpbackend.plot.scatter(t, "x", "y"),
             "bar": mpbackend.plot.bar(t, "x", "y"),
             "hist": mpbackend.plot.histogram(t, "y"),
             "series": mpbackend.plot.line_series([0, 1, 2], [[1, 2, 3], [3, 2, 1]],
                                                  keys=["up", "down"], xname="epoch"),
             "cm": mpbackend.plot.confusion_matrix(y_true=[0, 1, 1, 2], preds=[0, 1, 2, 2],
                                                   class_names=["a", "b", "c"])})
    run.finish()
    api_run = _api_run(run)
    charts = api_run.info()["extra"]["charts"]
    assert charts["line"] == {"type": "line", "fields": {"x": "x", "y": "y"}, "title": "sq",
                              "table_key": "line_table"}
    assert charts["series"]["xname"] == "epoch" and charts["cm"]["type"] == "confusion_matrix"
    row = api_run.history(pandas=False)[0]
    assert "line" not in row and row["line_table"].table()["y"].tolist() == [0, 1, 4, 9, 16]
    series = row["series_table"].table()
    assert list(series.columns) == ["step", "lineKey", "lineVal"]  # wandb's order
    assert series.values.tolist()[:3] == [[0, "up", 1], [1, "up", 2], [2, "up", 3]]
    cm = row["cm_table"].table()
    counts = {(a, p): n for a, p, n in cm.values.tolist()}
    assert counts[("b", "c")] == 1 and counts[("c", "c")] == 1 and counts[("a", "a")] == 1
    assert sum(counts.values()) == 4


def test_pr_and_roc_curves_match_scikit_learn(rundir):
    """The points wandb stores: ROC as sklearn's roc_curve (corners only), PR at 21
    recall points from 1 to 0 with interpolated precision, both rounded to 3."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 200)
    scores = np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1)
    probas = np.stack([1 - scores, scores], axis=1)
    run = mpbackend.init(project="media")
    run.log({"pr": mpbackend.plot.pr_curve(y, probas, labels=["neg", "pos"]),
             "roc": mpbackend.plot.roc_curve(y, probas),
             "one": mpbackend.plot.roc_curve(y, probas, classes_to_plot=[1])})
    run.finish()
    row = _api_run(run).history(pandas=False)[0]
    roc = row["roc_table"].table()
    assert sorted(set(roc["class"])) == [0, 1]  # the classes themselves, with no labels
    pos = roc[roc["class"] == 1]
    fpr, tpr, _ = roc_curve(y, scores)
    assert pos["fpr"].tolist() == fpr.round(3).tolist()
    assert pos["tpr"].tolist() == tpr.round(3).tolist()
    assert set(row["one_table"].table()["class"]) == {1}
    pr = row["pr_table"].table()
    pos = pr[pr["class"] == "pos"]
    precision, recall, _ = precision_recall_curve(y, scores)
    grid = np.linspace(0, 1, 21)[::-1]
    assert pos["recall"].tolist() == grid.round(3).tolist()
    best = [precision[recall >= r - 1e-12].max() for r in grid]
    assert pos["precision"].tolist() == np.round(best, 3).tolist()


def test_bad_media_fail_at_the_call_and_lose_nothing(rundir, tmp_path):
    run = mpbackend.init(project="media")
    run.log({"loss": 1.0})
    with pytest.raises(ValueError, match="HW, HWC or CHW"):
        mpbackend.Image(np.zeros((2, 3, 4, 5)))
    with pytest.raises(FileNotFoundError, match="no such file"):
        mpbackend.Image(str(tmp_path / "missing.png"))
    with pytest.raises(ValueError, match="NaN"):
        mpbackend.Histogram([1.0, float("nan")])
    table = mpbackend.Table(columns=["a"])
    table.add_data(1)
    with pytest.raises(TypeError, match="column 'a' holds number values, not str"):
        table.add_data("x")
    with pytest.raises(ValueError, match="sample_rate"):
        mpbackend.Audio(np.zeros(10))
    with pytest.raises(TypeError, match="config keeps plain values"):
        run.config.update({"img": mpbackend.Image(np.zeros((2, 2), dtype=np.uint8))})
    with pytest.raises(ValueError, match="not a column"):
        mpbackend.plot.line(table, "a", "b")
    run.log({"loss": 2.0})
    run.finish()
    rows = _api_run(run).history(pandas=False)
    assert [r["loss"] for r in rows] == [1.0, 2.0]


def test_media_logged_in_dataloader_workers_land_in_the_run(tmp_path):
    done = run_script("""
        import json, numpy as np, torch, mpbackend as wandb
        from torch.utils.data import DataLoader, Dataset

        class Pictures(Dataset):
            def __len__(self):
                return 4
            def __getitem__(self, i):
                wandb.log({"sample": wandb.Image(np.full((3, 3), i * 40, dtype=np.uint8)),
                           "i": i})
                return i

        if __name__ == "__main__":
            run = wandb.init(project="p")
            for _ in DataLoader(Pictures(), num_workers=2, batch_size=1):
                pass
            run.finish()
            rows = wandb.Api().run(run.id).history(pandas=False)
            print("RESULT " + json.dumps(sorted(
                [r["i"], r["_worker"], int(np.asarray(r["sample"].image()).max())]
                for r in rows)))
    """, tmp_path, timeout=120)
    rows = result(done)
    assert [(i, v) for i, _, v in rows] == [(i, i * 40) for i in range(4)]
    assert {w for _, w, _ in rows} == {0, 1}


def test_media_paths_that_leave_the_run_directory_are_refused(tmp_path):
    ref = MediaRef({"_type": "image-file", "path": "../../etc/passwd"}, str(tmp_path))
    with pytest.raises(ValueError, match="bad path"):
        ref.read()
    (tmp_path / "media").symlink_to("/etc")
    ref = MediaRef({"_type": "html-file", "path": "media/passwd"}, str(tmp_path))
    with pytest.raises(ValueError, match="link"):
        ref.read()


def test_show_lists_media_and_the_report_shows_images_and_charts(rundir, tmp_path):
    from conftest import chromium_binary, headless

    magenta = np.zeros((32, 32, 3), dtype=np.uint8)
    magenta[..., 0] = magenta[..., 2] = 255
    run = mpbackend.init(project="media")
    for step in range(6):
        run.log({"loss": 1 / (step + 1), "pics": [mpbackend.Image(magenta, caption="m")]})
    t = mpbackend.Table(columns=["x", "y"], data=[[i, i * i] for i in range(5)])
    run.log({"fig": mpbackend.Plotly({"data": [{"type": "scatter", "x": [0, 1, 2],
                                                 "y": [2, 1, 3], "name": "p"}]})})
    run.log({"curve": mpbackend.plot.line(t, "x", "y", title="squares"),
             "cm": mpbackend.plot.confusion_matrix(y_true=[0, 1], preds=[1, 1],
                                                   class_names=["no", "yes"])})
    run.finish()
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(__file__))}
    import subprocess
    import sys

    show = subprocess.run([sys.executable, "-m", "mpbackend", "show", run.id,
                           "--dir", str(rundir)], capture_output=True, text=True, env=env,
                          timeout=60)
    assert show.returncode == 0, show.stderr
    assert "Media: pics (1 images 32x32)" in " ".join(show.stdout.split())
    assert "charts: curve, cm" in show.stdout
    out = tmp_path / "report.html"
    made = subprocess.run([sys.executable, "-m", "mpbackend", "report", run.id, "--dir",
                           str(rundir), "-o", str(out)], capture_output=True, text=True,
                          env=env, timeout=60)
    assert made.returncode == 0, made.stderr
    page = out.read_text()
    assert page.count('src="data:image/png;base64,') == 4  # the last 4 of the 6 logged
    assert "squares" in page and "rows: actual, columns: predicted" in page
    shot = tmp_path / "shot.png"
    dom = headless(chromium_binary(), tmp_path, "--dump-dom", f"--screenshot={shot}",
                   "--window-size=1000,2400", out.resolve().as_uri())
    total = re.search(r'data-charts-total="(\d+)"', page).group(1)
    assert f'data-charts-drawn="{total}"' in dom  # loss, the logged line, system metrics
    data = json.loads(re.search(r'id="mp-data">(.*?)</script>', page, re.S).group(1))
    figure, logged = data["sections"][2]["charts"]
    assert figure["lines"][0]["y"] == [2, 1, 3] and "(plotly)" in figure["key"]
    assert logged["lines"][0]["y"] == [0, 1, 4, 9, 16] and logged["x"] == "x"
    pixels = np.asarray(PILImage.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    near = (np.abs(pixels - [255, 0, 255]).sum(axis=1) < 30).sum()
    assert near > 4 * 32 * 32 * 0.9  # the four images are drawn (CSP allows data: images)


def test_images_count_against_the_buffer_as_any_record(rundir):
    """A burst of images the service cannot encode as fast: with a 1 MiB buffer and
    buffer_policy="drop", log() drops and counts what does not fit; nothing is lost
    unaccounted, and the training process holds no more than the buffer."""
    noise = np.random.default_rng(5).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    run = mpbackend.init(project="media", settings=mpbackend.Settings(
        buffer_bytes=1 << 20, buffer_policy="drop", quiet=True))
    for i in range(120):
        noise[0, 0] = i % 256
        run.log({"img": mpbackend.Image(noise), "i": i})
    run.finish()
    info = _api_run(run).info()
    stored = len(_api_run(run).history(pandas=False))
    dropped = info["extra"].get("dropped_records", 0)
    assert dropped > 0 and stored + dropped == 120
    assert len(_media_files(run)) == stored


def test_without_pillow_an_image_fails_at_the_call(tmp_path):
    done = run_script("""
        import json, numpy as np, mpbackend as wandb
        run = wandb.init(project="p")
        run.log({"x": 1})
        try:
            wandb.Image(np.zeros((4, 4, 3), dtype=np.uint8))
            said = ""
        except ImportError as exc:
            said = str(exc)
        run.log({"x": 2})
        run.finish()
        rows = wandb.Api().run(run.id).history(pandas=False)
        print("RESULT " + json.dumps({"said": said, "x": [r["x"] for r in rows]}))
    """, tmp_path, env=_hiding(tmp_path, "PIL"))
    out = result(done)
    assert "pip install 'mpbackend[media]'" in out["said"] and out["x"] == [1, 2]


def test_a_batch_of_images_stops_at_batch_bytes(rundir):
    """The sender cuts a batch of large records at 1 MiB, so its pickle (a copy) stays
    small: with the service stopped, the batches kept for a replay show the sizes."""
    import signal
    import time

    from mpbackend.user.interface import BATCH_BYTES

    run = mpbackend.init(project="media")
    run.log({"x": 0})
    run.flush(timeout=20)
    service = mpbackend.setup().manager.service.pid
    noise = np.random.default_rng(6).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    images = []
    for i in range(12):
        noise[0, 0] = i
        images.append(mpbackend.Image(noise))
    os.kill(service, signal.SIGSTOP)
    try:
        for i, image in enumerate(images):  # 12 x 196 KB, logged faster than a send round
            run.log({"img": image, "i": i})
        deadline = time.monotonic() + 10  # the sender takes a batch, then blocks writing it
        while time.monotonic() < deadline and max(
                map(len, run._interface.unacked()), default=0) < BATCH_BYTES:
            time.sleep(0.01)
        sizes = [len(b) for b in run._interface.unacked()]
    finally:
        os.kill(service, signal.SIGCONT)
    # A batch holds the images up to the first past 1 MiB (6 here), not all 12 at once.
    assert BATCH_BYTES <= max(sizes) <= BATCH_BYTES + noise.nbytes + 4096
    run.finish()
    assert [r["i"] for r in _api_run(run).history(pandas=False)[1:]] == list(range(12))
