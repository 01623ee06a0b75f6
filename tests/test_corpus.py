"""The corpus: wandb training and analysis scripts as their users write them, with only
``import wandb`` changed to ``import mpbackend as wandb`` (tests/corpus/*.py).

Each script runs in its own subprocess, in its own directory, with the environment its
case gives; it prints ``RESULT {json}`` last, with what it knows (ids, the values it
logged). Each case's check then reads the stored runs back (``RunReader`` on the run's
directory, ``ApiRun`` for wandb's attributes) and compares them value by value with what
the script logged: history steps and rows, summary, config, name, tags, notes, state and
exit code. The behaviour expected is wandb's, as its documentation describes it.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import RESULT, Script, stored

import mpbackend
from mpbackend.shared.paths import DB_NAME

CORPUS = Path(__file__).parent / "corpus"
TIMEOUT = 60  # seconds for one run of one script


@dataclass
class Ctx:
    """What the check of a case gets: where the script ran, and what it printed."""

    where: Path  # the script's working directory
    mp: Path  # its MPBACKEND_DIR
    source: str  # the script's text
    results: list[dict] = field(default_factory=list)  # one RESULT per run
    stdout: list[list[str]] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    @property
    def result(self) -> dict:
        return self.results[-1]


# -- reading the stored runs back ------------------------------------------------------

def run_dirs(ctx: Ctx) -> list[Path]:
    """Every stored run under the script's MPBACKEND_DIR."""
    if not ctx.mp.exists():
        return []
    return sorted(Path(d) for d, _, files in os.walk(ctx.mp) if DB_NAME in files)


def find_run(ctx: Ctx, run_id: str) -> Path:
    """The directory of the stored run ``run_id`` (exactly one, wherever the layout puts it)."""
    hits = [d for d in run_dirs(ctx) if d.name == run_id]
    assert len(hits) == 1, f"run {run_id!r} stored {len(hits)} times: {run_dirs(ctx)}"
    return hits[0]


def load(ctx: Ctx, run_id: str) -> tuple[dict, list[dict]]:
    """(info, history rows) of the stored run ``run_id``."""
    return stored(find_run(ctx, run_id))


def api_run(ctx: Ctx, run_id: str) -> mpbackend.ApiRun:
    return mpbackend.ApiRun(str(find_run(ctx, run_id)))


def public(values: dict) -> dict:
    """A row or summary without wandb's own keys (``_step``, ``_runtime``, ...)."""
    return {k: v for k, v in values.items() if not k.startswith("_")}


def assert_rows(rows: list[dict], expected: list[dict],
                steps: list[int] | None = None) -> None:
    """The stored history is exactly ``expected``, at ``steps`` (default 0..n-1)."""
    assert [public(r) for r in rows] == expected
    assert [r["_step"] for r in rows] == (list(range(len(expected))) if steps is None
                                          else steps)


def last_values(rows: list[dict]) -> dict:
    """The summary wandb keeps by default: each key's last logged value."""
    out: dict = {}
    for row in rows:
        out.update(row)
    return out


def assert_finished(info: dict) -> None:
    assert info["state"] == "finished", info["state"]
    assert info["exit_code"] in (0, None), info["exit_code"]


def inside(path: str | Path, parent: Path) -> bool:
    path = os.path.realpath(path)
    return os.path.commonpath([path, os.path.realpath(parent)]) == os.path.realpath(parent)


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def holds(run_dir: Path, *texts: str) -> bool:
    """True if one file kept with the run holds every text (the store's format aside)."""
    for path in run_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if all(t.encode() in data for t in texts):
                return True
    return False


# -- the checks, one per script ---------------------------------------------------------

def check_torch_mlp_argparse(ctx: Ctx) -> None:
    r = ctx.result
    info, rows = load(ctx, r["id"])
    assert info["project"] == "mlp-demo"
    assert info["config"] == r["config"]
    assert len(r["rows"]) == 3 * 4 + 3
    assert_rows(rows, r["rows"])
    assert public(info["summary"]) == {**last_values(r["rows"]), "best_acc": r["best_acc"],
                                       "best": r["best_acc"]}
    assert_finished(info)


def check_numpy_estimator_fit(ctx: Ctx) -> None:
    r = ctx.result
    info, rows = load(ctx, r["id"])
    assert info["config"] == {"lr": 0.5, "alpha": 1e-3} and info["job_type"] == "train"
    assert_rows(rows, r["rows"])
    assert public(info["summary"]) == {**last_values(r["rows"]),
                                       "test_accuracy": r["test_accuracy"], "n_features": 5}
    assert_finished(info)


def check_context_manager(ctx: Ctx) -> None:
    r = ctx.result
    info, rows = load(ctx, r["ok_id"])
    assert_rows(rows, r["rows"])
    assert info["config"] == {"n": 5} and info["job_type"] == "eval"
    assert public(info["summary"]) == {**last_values(r["rows"]), "total": r["total"]}
    assert_finished(info)
    info, rows = load(ctx, r["bad_id"])
    assert (info["state"], info["exit_code"]) == ("failed", 1)
    assert_rows(rows, [{"x": 0}])
    assert r["after_ok"] and r["after_bad"], "wandb.run is None once a run is finished"


def check_run_attributes(ctx: Ctx) -> None:
    r = ctx.result
    assert (r["name"], r["tags"], r["notes"]) == ("renamed", ["baseline", "tuned"],
                                                  "lr halved after epoch 1")
    info, rows = load(ctx, r["id"])
    assert (info["name"], info["tags"], info["notes"]) == (r["name"], r["tags"], r["notes"])
    assert info["config"] == {"lr": 0.1}
    assert_rows(rows, [{"loss": v} for v in r["losses"]])
    assert_finished(info)


def check_define_metric(ctx: Ctx) -> None:
    r = ctx.result
    info, rows = load(ctx, r["id"])
    assert_rows(rows, r["rows"])
    val_rows = [public(row) for row in rows if "val/loss" in row]
    assert [row["epoch"] for row in val_rows] == [0, 1, 2, 3]
    expected = {**last_values(r["rows"]), "acc": {"max": r["max_acc"]}}
    assert public(info["summary"]) == expected
    assert_finished(info)


def check_step_and_commit(ctx: Ctx) -> None:
    r = ctx.result
    info, rows = load(ctx, r["a_id"])
    assert_rows(rows, [{"train_loss": t, "val_loss": v} for t, v in zip(r["train"], r["val"])],
                steps=[0, 5, 10])
    assert public(info["summary"]) == {"train_loss": r["train"][-1], "val_loss": r["val"][-1]}
    assert_finished(info)
    info, rows = load(ctx, r["b_id"])
    assert_rows(rows, [{"lr": lr, "loss": loss} for lr, loss in zip(r["lrs"], r["losses"])]
                + [{"final_eval": r["final_eval"]}])
    assert public(info["summary"]) == {"lr": r["lrs"][-1], "loss": r["losses"][-1],
                                       "final_eval": r["final_eval"]}
    assert_finished(info)


def check_nested_log(ctx: Ctx) -> None:
    r = ctx.result
    info, rows = load(ctx, r["id"])
    assert info["config"] == r["config"]
    expected = [{"train.loss": loss, "train.acc": acc, "val.loss": v, "epoch": e}
                for e, ((loss, acc), v) in enumerate(zip(r["train"], r["val"]))]
    assert_rows(rows, expected)
    loss, acc = r["train"][-1]
    nested = {"train": {"loss": loss, "acc": acc}, "val": {"loss": r["val"][-1]}, "epoch": 2}
    assert public(info["summary"]) == nested
    assert api_run(ctx, r["id"]).summary["train"]["loss"] == loss
    assert r["live"] == {"train_loss": loss, "val_loss": r["val"][-1]}
    assert_finished(info)


def check_resume_env(ctx: Ctx) -> None:
    first, second = ctx.results
    assert first["id"] == second["id"] == "resume01"
    assert (first["resumed"], first["start"]) == (False, 0)
    assert (second["resumed"], second["start"]) == (True, 3)
    assert [d.name for d in run_dirs(ctx)] == ["resume01"]
    info, rows = load(ctx, "resume01")
    assert_rows(rows, [{"epoch": e, "loss": 1.0 / (e + 1)} for e in range(6)])
    assert first["logged"] + second["logged"] == [[e, 1.0 / (e + 1)] for e in range(6)]
    assert public(info["summary"]) == {"epoch": 5, "loss": 1 / 6, "best_loss": 1 / 6}
    assert info["config"] == {"epochs": 6, "lr": 0.01}
    assert_finished(info)


def check_disabled_mode(ctx: Ctx) -> None:
    r = ctx.result
    assert (r["lr"], r["batch_size"]) == (0.05, 8)
    assert isinstance(r["id"], str) and r["id"]
    assert run_dirs(ctx) == [] and not ctx.mp.exists()
    made = sorted(p.name for p in ctx.where.iterdir())
    assert made == ["disabled_mode.py", "disabled_mode.py.err", "disabled_mode.py.out"], made


def check_env_project_name_tags(ctx: Ctx) -> None:
    r = ctx.result
    assert (r["project"], r["name"], r["tags"]) == ("env-proj", "nightly-eval",
                                                    ["nightly", "cpu"])
    info, rows = load(ctx, r["id"])
    assert (info["project"], info["name"], info["tags"]) == ("env-proj", "nightly-eval",
                                                             ["nightly", "cpu"])
    assert_rows(rows, [{"score": s, "shard": i} for i, s in enumerate(r["scores"])])
    assert public(info["summary"]) == {"score": r["scores"][-1], "shard": 3,
                                       "mean_score": r["mean_score"]}
    assert_finished(info)


def check_init_keywords(ctx: Ctx) -> None:
    r = ctx.result
    assert (r["entity"], r["project"]) == ("team", "p")
    assert len(ctx.stdout[-1]) == 1, ctx.stdout[-1]  # silent: the RESULT line only
    assert "mpbackend" not in ctx.stderr[-1] and "wandb" not in ctx.stderr[-1], ctx.stderr[-1]
    info, rows = load(ctx, r["id"])
    assert info["project"] == "p" and info["config"] == {"lr": 3e-4, "epochs": 3}
    assert_rows(rows, [{"epoch": e, "loss": v} for e, v in enumerate(r["losses"])])
    assert_finished(info)
    assert api_run(ctx, r["id"]).entity == "team"
    assert holds(find_run(ctx, r["id"]), ctx.source), "save_code=True: the script is kept"


def check_save_file(ctx: Ctx) -> None:
    r = ctx.result
    info, rows = load(ctx, r["id"])
    assert_rows(rows, [{"loss": v} for v in r["losses"]])
    assert_finished(info)
    kept = Path(r["dir"]) / "model.pt"
    assert kept.is_file() and inside(kept, find_run(ctx, r["id"])), kept
    assert sha256(kept) == r["sha256"]
    assert isinstance(r["saved"], list) and len(r["saved"]) == 1, r["saved"]
    assert os.path.basename(r["saved"][0]) == "model.pt"


def check_restore_file(ctx: Ctx) -> None:
    r = ctx.result
    assert r["equal"] and r["restored_sha256"] == r["sha256"]
    assert inside(r["restored"], find_run(ctx, r["second_id"])), r["restored"]
    assert os.path.basename(r["restored"]) == "weights.npy"
    first, first_rows = load(ctx, r["first_id"])
    second, second_rows = load(ctx, r["second_id"])
    assert public(first_rows[0]) == public(second_rows[0]) and len(second_rows) == 1
    assert (first["job_type"], second["job_type"]) == ("train", "eval")
    assert_finished(first)
    assert_finished(second)


def check_alert(ctx: Ctx) -> None:
    r = ctx.result
    assert len(r["alerts"]) == 1
    info, rows = load(ctx, r["id"])
    assert_rows(rows, [{"epoch": e, "acc": a} for e, a in enumerate(r["accs"])])
    assert_finished(info)
    alert = r["alerts"][0]
    assert holds(find_run(ctx, r["id"]), alert["title"], alert["text"]), \
        "the alert is kept with the run"


def check_api_read(ctx: Ctx) -> None:
    r = ctx.result
    logged = r["logged"]
    assert r["listed"] == sorted(logged)
    assert r["filtered"] == [i for i, v in logged.items() if v["lr"] == 0.1]
    first = logged[r["first"]]
    assert r["id"] == r["first"] and r["state"] == "finished"
    assert r["df_steps"] == [0, 1, 2, 3]
    assert r["df_loss"] == r["rows_loss"] == first["losses"]
    assert (r["summary_final"], r["config_lr"]) == (first["losses"][-1], first["lr"])
    for run_id, values in logged.items():
        info, rows = load(ctx, run_id)
        assert info["project"] == "p"
        assert info["config"] == {"lr": values["lr"], "epochs": 4}
        assert_rows(rows, [{"loss": v} for v in values["losses"]])
        assert public(info["summary"]) == {"loss": values["losses"][-1],
                                           "final_loss": values["losses"][-1]}
        assert_finished(info)


def check_api_update(ctx: Ctx) -> None:
    r = ctx.result
    assert (r["summary_x"], r["summary_val_acc"]) == (1, 0.85)
    assert r["config"] == {"lr": 0.1, "reviewed": True}
    assert (r["tags"], r["name"]) == (["draft", "reviewed"], "after")
    info, rows = load(ctx, r["id"])
    assert public(info["summary"]) == {"loss": 1 / 3, "val_acc": 0.85, "x": 1}
    assert info["config"] == {"lr": 0.1, "reviewed": True}
    assert (info["tags"], info["name"]) == (["draft", "reviewed"], "after")
    assert_rows(rows, [{"loss": 1.0 / (i + 1)} for i in range(3)])
    assert_finished(info)


def check_notebook_style(ctx: Ctx) -> None:
    r = ctx.result
    assert r["first_id"] != r["second_id"] and r["run_after"]
    info, rows = load(ctx, r["first_id"])
    assert_rows(rows, [{"loss": v} for v in r["first_losses"]])
    assert info["config"] == {"lr": 0.1}
    assert_finished(info)  # reinit=True finished it
    info, rows = load(ctx, r["second_id"])
    assert_rows(rows, [{"loss": v} for v in r["second_losses"]])
    assert info["config"] == {"lr": 0.05}
    assert public(info["summary"]) == {"loss": r["second_losses"][-1], "note": "smaller lr"}
    assert_finished(info)


def check_sys_exit(ctx: Ctx) -> None:
    r = ctx.result
    info, rows = load(ctx, r["id"])
    assert (info["state"], info["exit_code"]) == ("failed", 3)
    assert_rows(rows, [{"loss": v, "log_loss": math.log(v)} for v in r["losses"]])
    assert r["losses"] == [2.0, 4.0, 8.0, 16.0]


def check_exception_exit(ctx: Ctx) -> None:
    r = ctx.result
    assert "RuntimeError: CUDA out of memory (simulated)" in ctx.stderr[-1]
    info, rows = load(ctx, r["id"])
    assert (info["state"], info["exit_code"]) == ("failed", 1)
    assert_rows(rows, [{"batch": b, "value": v} for b, v in enumerate(r["values"])])
    assert len(r["values"]) == 3


def check_manual_sweep(ctx: Ctx) -> None:
    r = ctx.result
    assert len(run_dirs(ctx)) == 3
    for one in r["runs"]:
        info, rows = load(ctx, one["id"])
        assert info["config"] == {"lr": one["lr"], "steps": 6}
        assert (info["name"], info["group"]) == (f"lr-{one['lr']}", "lr-sweep")
        assert_rows(rows, [{"mse": v} for v in one["losses"]])
        assert public(info["summary"]) == {"mse": one["losses"][-1],
                                           "final_mse": one["losses"][-1]}
        assert_finished(info)


def check_config_access(ctx: Ctx) -> None:
    r = ctx.result
    assert (r["lr"], r["batch_size"], r["steps"]) == (0.01, 16, 8)
    assert r["config"] == r["expected"]
    info, rows = load(ctx, r["id"])
    assert info["config"] == r["expected"]
    assert_rows(rows, [{"lr": 0.01 * 0.5 ** (s // 4), "step_in_run": s + 1} for s in range(8)])
    assert_finished(info)


def check_run_identity(ctx: Ctx) -> None:
    r = ctx.result
    info, rows = load(ctx, r["id"])
    assert (info["id"], info["project"]) == (r["id"], r["project"]) == (r["id"], "identity-demo")
    run_dir = find_run(ctx, r["id"])
    assert inside(r["dir"], run_dir), (r["dir"], run_dir)
    assert sha256(Path(r["dir"]) / "weights.npy") == r["sha256"]
    assert "weights.npy" in r["files"], f"not among the run's files: {r['files']}"
    assert_rows(rows, [{"weights_sum": 66.0}])
    assert any(line.endswith(r["message"]) for line in ctx.stderr[-1].splitlines()), \
        ctx.stderr[-1]
    assert_finished(info)


def check_dataloader_workers(ctx: Ctx) -> None:
    r = ctx.result
    info, rows = load(ctx, r["id"])
    assert len(r["rows"]) == 2 * 6
    assert_rows(rows, r["rows"])
    assert info["config"] == {"batch_size": 8, "epochs": 2, "num_workers": 2}
    assert_finished(info)


def check_default_names(ctx: Ctx) -> None:
    r = ctx.result
    assert r["project"] == "vision-lab", "the project is the git repository's name"
    assert re.fullmatch(r"[a-z]+-[a-z]+-\d+", r["name"]), r["name"]
    info, rows = load(ctx, r["id"])
    assert (info["project"], info["name"]) == ("vision-lab", r["name"])
    assert api_run(ctx, r["id"]).name == r["name"]
    assert_rows(rows, [{"loss": v} for v in r["losses"]])
    assert_finished(info)


def git_repo(where: Path) -> None:
    subprocess.run(["git", "init", "-q", str(where)], check=True, timeout=30)


# -- media, charts and artifacts: reading them back ------------------------------------

def history_refs(ctx: Ctx, run_id: str) -> list[dict]:
    """The run's history as ``ApiRun.history(pandas=False)`` reads it (media as MediaRef)."""
    return api_run(ctx, run_id).history(pandas=False)


def assert_media_file(ref: Any, run_dir: Path, folder: str, ext: str) -> None:
    """A media reference's file: ``media/<folder>/<sha256>.<ext>`` in the run, as stored."""
    assert ref["path"] == f"media/{folder}/{ref['sha256']}.{ext}", ref["path"]
    assert inside(ref.path, run_dir) and ref.path.is_file(), ref.path
    assert sha256(ref.path) == ref["sha256"] and ref.path.stat().st_size == ref["size"]


def pixels(ref: Any) -> Any:
    import numpy as np

    return np.asarray(ref.image())


def pixel_digest(ref: Any) -> str:
    """The SHA-256 of a stored image's decoded pixels (what the script hashed)."""
    return hashlib.sha256(pixels(ref).tobytes()).hexdigest()


def media_names(run_dir: Path, folder: str) -> list[str]:
    where = run_dir / "media" / folder
    return sorted(p.name for p in where.iterdir()) if where.is_dir() else []


def downloaded(ctx: Ctx, artifact: Any, name: str) -> Path:
    """An artifact downloaded by the check, under the script's directory."""
    return Path(artifact.download(root=str(ctx.where / "check-downloads" / name)))


def table_rows(ref: Any) -> list[list[Any]]:
    return ref.table().values.tolist()


def check_prediction_table(ctx: Ctx) -> None:
    r = ctx.result
    info, _ = load(ctx, r["id"])
    run_dir = find_run(ctx, r["id"])
    assert info["config"] == r["config"] and info["job_type"] == "eval"
    rows = history_refs(ctx, r["id"])
    assert_rows(rows[:-1], [{"epoch": e, "loss": v} for e, v in enumerate(r["losses"])])
    last = public(rows[-1])
    assert list(last) == ["predictions"] and rows[-1]["_step"] == len(r["losses"])
    ref = last["predictions"]
    assert ref.kind == "table-file", ref
    assert (ref["nrows"], ref["ncols"], ref["columns"]) == (10, 4, ["id", "image", "pred",
                                                                    "label"])
    assert_media_file(ref, run_dir, "table", "table.parquet")
    frame = ref.table()
    assert list(frame.columns) == ["id", "image", "pred", "label"]
    assert frame["id"].tolist() == list(range(10))
    assert frame["pred"].tolist() == r["preds"] and frame["label"].tolist() == r["labels"]
    for image, digest, label in zip(frame["image"], r["digests"], r["labels"]):
        assert image.kind == "image-file", image
        assert (image["width"], image["height"], image["format"]) == (8, 8, "png")
        assert image["caption"] == label
        assert_media_file(image, run_dir, "images", "png")
        assert pixel_digest(image) == digest
    assert len(media_names(run_dir, "images")) == len(set(r["digests"]))
    assert public(info["summary"]) == {"epoch": len(r["losses"]) - 1, "loss": r["losses"][-1],
                                       "predictions": dict(ref),
                                       "test_accuracy": r["accuracy"]}
    assert_finished(info)


def wandb_pr_rows(y_true: Any, probas: Any) -> list[tuple]:
    """The rows wandb.plot.pr_curve stores without labels: (class, precision, recall),
    the class as its int, precision interpolated at 21 recall points, rounded to 3."""
    import numpy as np
    from sklearn.metrics import precision_recall_curve

    out = []
    grid = np.linspace(0, 1, 21)[::-1]
    for cls in np.unique(y_true):
        precision, recall, _ = precision_recall_curve(y_true, probas[:, cls], pos_label=cls)
        precision = np.maximum.accumulate(precision)[::-1]
        at = np.searchsorted(recall[::-1], grid, side="left")
        out += [(int(cls), float(p), float(g))
                for p, g in zip(precision[at].round(3), grid.round(3))]
    return out


def wandb_roc_rows(y_true: Any, probas: Any) -> list[tuple]:
    """The rows wandb.plot.roc_curve stores: sklearn's roc_curve per class (its default
    drop_intermediate=True), (class as int, fpr, tpr) rounded to 3."""
    import numpy as np
    from sklearn.metrics import roc_curve

    out = []
    for cls in np.unique(y_true):
        fpr, tpr, _ = roc_curve(y_true, probas[:, cls], pos_label=cls)
        out += [(int(cls), float(f), float(t)) for f, t in zip(fpr.round(3), tpr.round(3))]
    return out


def check_sklearn_plots(ctx: Ctx) -> None:
    import numpy as np
    from sklearn.metrics import confusion_matrix

    r = ctx.result
    info, _ = load(ctx, r["id"])
    run_dir = find_run(ctx, r["id"])
    assert info["config"] == {"model": "LogisticRegression", "C": 0.05, "max_iter": 200}
    rows = history_refs(ctx, r["id"])
    assert [sorted(public(row)) for row in rows] == [["conf_mat_table"], ["pr_table"],
                                                    ["roc_table"], ["accuracy"]]
    assert [row["_step"] for row in rows] == [0, 1, 2, 3]
    assert rows[3]["accuracy"] == r["accuracy"]
    charts = info["extra"]["charts"]
    assert sorted(charts) == ["conf_mat", "pr", "roc"]
    for key, kind in (("conf_mat", "confusion_matrix"), ("pr", "pr_curve"),
                      ("roc", "roc_curve")):
        assert (charts[key]["type"], charts[key]["table_key"]) == (kind, f"{key}_table")
    assert charts["conf_mat"]["title"] == "Confusion Matrix Curve"
    assert charts["pr"]["title"] == "Precision-Recall Curve"
    assert charts["roc"]["title"] == "ROC Curve"
    tables = {key: public(row)[key] for row in rows[:3] for key in public(row)}
    for key, ref in tables.items():
        assert ref.kind == "table-file", (key, ref)
        assert_media_file(ref, run_dir, "table", "table.parquet")
        assert public(info["summary"])[key] == dict(ref)
        assert set(charts[key[:-len("_table")]]["fields"].values()) <= set(ref["columns"])
    # the confusion matrix: every (actual, predicted) pair, counted as sklearn counts
    conf = tables["conf_mat_table"]
    assert conf["columns"] == ["Actual", "Predicted", "nPredictions"] and conf["nrows"] == 9
    counts = confusion_matrix(r["y_test"], r["y_pred"], labels=[0, 1, 2])
    names = r["labels"]
    assert table_rows(conf) == [[names[i], names[j], counts[i, j]]
                                for i in range(3) for j in range(3)]
    assert sum(row[2] for row in table_rows(conf)) == len(r["y_test"])
    assert public(info["summary"])["n_test"] == len(r["y_test"])
    assert_finished(info)
    # precision-recall and ROC tables hold what wandb's would: the class column keeps
    # y_true's class values (ints, as no labels were given), the points are wandb's
    y_true, probas = np.array(r["y_test"]), np.array(r["probas"])
    pr = tables["pr_table"]
    assert pr["columns"] == ["class", "precision", "recall"] and pr["nrows"] == 63
    got = [tuple(row) for row in table_rows(pr)]
    assert sorted(got) == sorted(wandb_pr_rows(y_true, probas)), got[:3]
    roc = tables["roc_table"]
    assert roc["columns"] == ["class", "fpr", "tpr"]
    expected = wandb_roc_rows(y_true, probas)
    assert [tuple(row) for row in table_rows(roc)] == expected, (roc["nrows"], len(expected))


def check_dataset_artifact(ctx: Ctx) -> None:
    import numpy as np

    r = ctx.result
    upload, _ = load(ctx, r["upload_id"])
    train, rows = load(ctx, r["train_id"])
    assert (upload["job_type"], train["job_type"]) == ("upload", "train")
    assert train["config"] == {"lr": 0.5, "epochs": 8}
    assert_rows(rows, [{"epoch": e, "acc": a} for e, a in enumerate(r["accs"])])
    assert_finished(upload)
    assert_finished(train)
    assert (r["version"], r["used_name"]) == ("v0", "toy-data:v0")
    assert r["metadata"] == {"n": 120, "features": 3}
    assert r["downloaded"] == sorted(r["digests"]) == ["README.txt", "x.npy", "y.npy"]
    logged = api_run(ctx, r["upload_id"]).logged_artifacts()
    assert [a.name for a in logged] == ["toy-data:v0"]
    assert api_run(ctx, r["upload_id"]).used_artifacts() == []
    used = api_run(ctx, r["train_id"]).used_artifacts()
    assert [(a.name, a.version, a.type) for a in used] == [("toy-data:v0", "v0", "dataset")]
    dataset = used[0]
    assert dataset.metadata == r["metadata"]
    assert dataset.description == "120 points, 3 features"
    root = downloaded(ctx, dataset, "dataset")
    assert {p.name: sha256(p) for p in root.iterdir()} == r["digests"]
    models = api_run(ctx, r["train_id"]).logged_artifacts()
    assert [(a.name, a.type) for a in models] == [("toy-model:v0", "model")]
    weights = np.load(downloaded(ctx, models[0], "model") / "weights.npy")
    assert weights.tolist() == r["weights"]
    # lineage as wandb's Artifact gives it: logged_by() is the Run that logged the
    # version, used_by() the Runs that used it
    assert dataset.logged_by().id == r["upload_id"]
    assert [run.id for run in dataset.used_by()] == [r["train_id"]]
    assert models[0].logged_by().id == r["train_id"]


def check_model_checkpoints(ctx: Ctx) -> None:
    import torch

    r = ctx.result
    info, rows = load(ctx, r["id"])
    assert info["config"] == {"epochs": 8, "lr": 0.4}
    assert_rows(rows, r["rows"])
    best, improved = float("inf"), []
    for row in r["rows"]:  # the epochs where val/loss reached a new low: one version each
        if row["val/loss"] < best:
            best = row["val/loss"]
            improved.append(row["epoch"])
    assert [s["epoch"] for s in r["saved"]] == improved and 1 < len(improved) < 8
    assert public(info["summary"]) == {**last_values(r["rows"]), "best_val_loss": best}
    assert_finished(info)
    n = len(r["saved"])
    names = [a.name for a in api_run(ctx, r["id"]).logged_artifacts()]
    assert names == [f"linear-model:v{i}" for i in range(n)]
    expected = [[f"v{i}", sorted([f"epoch-{s['epoch']}"] + (["best", "latest"]
                                                          if i == n - 1 else []))]
                for i, s in enumerate(r["saved"])]
    versions = sorted(r["versions"], key=lambda v: int(v[0][1:]))
    assert versions == expected  # "best" moved to the last version logged with it
    assert r["best_version"] == f"v{n - 1}"
    assert r["best_metadata"] == {"epoch": r["saved"][-1]["epoch"],
                                  "val_loss": r["saved"][-1]["val_loss"]}
    assert r["best_weight"] == r["saved"][-1]["weight"]
    api = mpbackend.Api(str(ctx.mp))
    for i, saved in enumerate(r["saved"]):
        version = api.artifact(f"ckpt-demo/linear-model:v{i}", type="model")
        assert version.metadata == {"epoch": saved["epoch"], "val_loss": saved["val_loss"]}
        state = torch.load(downloaded(ctx, version, f"v{i}") / "model.pt")
        assert state["weight"].item() == saved["weight"]


def check_watch_model(ctx: Ctx) -> None:
    r = ctx.result
    info, _ = load(ctx, r["id"])
    assert info["config"] == {"lr": 0.05, "epochs": 2, "batch_size": 16, "log_freq": 3}
    rows = history_refs(ctx, r["id"])
    assert [row["_step"] for row in rows] == list(range(12))
    names = r["names"]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    # every 3rd forward (validation passes count) and every 3rd backward, joined to the
    # row the loop logs next, as wandb's hooks do (commit=False)
    assert (len(r["forwards"]), len(r["backwards"])) == (12, 10)
    forward_step = list(range(12))  # one forward per row: 5 batches, then a validation
    backward_step = [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]  # the training rows only
    param_steps = {forward_step[i]: r["forwards"][i] for i in range(12) if (i + 1) % 3 == 0}
    grad_steps = {backward_step[i]: r["backwards"][i] for i in range(10) if (i + 1) % 3 == 0}
    assert sorted(param_steps) == [2, 5, 8, 11] and sorted(grad_steps) == [2, 6, 9]
    for row, logged in zip(rows, r["rows"]):
        step = row["_step"]
        hist_keys = {k for k in row if k.startswith(("parameters/", "gradients/"))}
        expected_keys = ({f"parameters/{n}" for n in names} if step in param_steps else set())
        expected_keys |= {f"gradients/{n}" for n in names} if step in grad_steps else set()
        assert hist_keys == expected_keys, (step, sorted(hist_keys))
        assert {k: v for k, v in public(row).items() if k not in hist_keys} == logged
        for key in hist_keys:
            kind, name = key.split("/", 1)
            low, high, numel = (param_steps if kind == "parameters" else grad_steps)[step][name]
            hist = row[key]
            assert hist.kind == "histogram" and sorted(hist) == ["_type", "bins", "values"]
            assert sum(hist["values"]) == numel, (key, step)
            if low == high:  # a constant tensor: one bin, as wandb makes it
                assert (hist["values"], hist["bins"]) == ([numel], [low, high]), (key, step)
            else:
                assert (len(hist["values"]), len(hist["bins"])) == (64, 65), (key, step)
                assert (hist["bins"][0], hist["bins"][-1]) == (low, high), (key, step)
                assert hist["bins"] == sorted(hist["bins"])
    summary = public(info["summary"])
    assert summary["train/loss"] == r["rows"][-2]["train/loss"]
    assert summary["parameters/0.weight"] == dict(rows[11]["parameters/0.weight"])
    assert summary["gradients/0.bias"] == dict(rows[9]["gradients/0.bias"])
    assert_finished(info)


def check_matplotlib_figures(ctx: Ctx) -> None:
    import numpy as np
    from PIL import Image as PILImage

    r = ctx.result
    info, _ = load(ctx, r["id"])
    run_dir = find_run(ctx, r["id"])
    rows = history_refs(ctx, r["id"])
    assert [sorted(public(row)) for row in rows] == [["loss", "weights_heatmap"]] * 3 + [
        ["loss_curve"], ["inputs_outputs"]]
    assert [row["loss"] for row in rows[:3]] == r["losses"]
    heatmaps = [row["weights_heatmap"] for row in rows[:3]]
    for ref in heatmaps:  # pyplot logged directly, its figure holding an image: an Image
        assert ref.kind == "image-file" and ref["format"] == "png"
        assert (ref["width"], ref["height"]) == (150, 100) == pixels(ref).shape[1::-1]
        assert_media_file(ref, run_dir, "images", "png")
    assert len({ref["sha256"] for ref in heatmaps}) == 3  # the weights changed each epoch
    for key, name, caption in (("loss_curve", "curve", "training loss"),
                               ("inputs_outputs", "grid", None)):
        ref = public(rows[3 if name == "curve" else 4])[key]
        assert ref.kind == "image-file" and ref.get("caption") == caption
        assert [ref["width"], ref["height"]] == r["sizes"][name]
        assert_media_file(ref, run_dir, "images", "png")
        with PILImage.open(ctx.where / f"{key}.png") as saved:  # fig.savefig() by the script
            assert (pixels(ref) == np.asarray(saved)).all(), key
    assert public(info["summary"])["loss_curve"] == dict(rows[3]["loss_curve"])
    assert_finished(info)


def check_weight_histograms(ctx: Ctx) -> None:
    import numpy as np

    r = ctx.result
    info, _ = load(ctx, r["id"])
    assert info["config"] == r["config"] == {"lr": 0.05, "epochs": 4, "bins": 20}
    rows = history_refs(ctx, r["id"])
    assert [row["_step"] for row in rows] == [0, 1, 2, 3]

    def hist(counts: Any, edges: Any) -> dict:
        return {"_type": "histogram", "values": list(counts), "bins": list(edges)}

    for epoch, (row, logged) in enumerate(zip(rows, r["logged"])):
        assert sorted(public(row)) == ["epoch", "gradients", "mse", "weights",
                                       "weights_fixed_range"]
        assert (row["epoch"], row["mse"]) == (epoch, logged["mse"])
        counts, edges = np.histogram(logged["w"], bins=20)
        assert row["weights"] == hist(counts.tolist(), edges.tolist())
        assert row["weights"].kind == "histogram"
        assert row["weights_fixed_range"] == hist(logged["counts"], logged["edges"])
        counts, edges = np.histogram(logged["grad"])
        assert row["gradients"] == hist(counts.tolist(), edges.tolist())
    counts, edges = np.histogram(r["logged"][-1]["w"], bins=64)
    summary = public(info["summary"])
    assert summary["final_weights"] == hist(counts.tolist(), edges.tolist())
    assert summary["weights"] == dict(rows[-1]["weights"])
    assert summary["mse"] == r["logged"][-1]["mse"]
    assert_finished(info)


def check_custom_charts(ctx: Ctx) -> None:
    r = ctx.result
    info, _ = load(ctx, r["id"])
    run_dir = find_run(ctx, r["id"])
    rows = history_refs(ctx, r["id"])
    keys = ["sine", "scatter", "label_counts", "score_hist", "curves"]
    assert [list(public(row)) for row in rows] == [[f"{k}_table"] for k in keys]
    charts = info["extra"]["charts"]
    assert {k: (c["type"], c["title"], c["table_key"]) for k, c in charts.items()} == {
        "sine": ("line", "sin(x)", "sine_table"),
        "scatter": ("scatter", "two features", "scatter_table"),
        "label_counts": ("bar", "labels", "label_counts_table"),
        "score_hist": ("histogram", "scores", "score_hist_table"),
        "curves": ("line_series", "two curves", "curves_table")}
    tables = {k: rows[i][f"{k}_table"] for i, k in enumerate(keys)}
    for key, ref in tables.items():
        assert ref.kind == "table-file"
        assert_media_file(ref, run_dir, "table", "table.parquet")
        assert set(charts[key]["fields"].values()) <= set(ref["columns"]), key
        assert public(info["summary"])[f"{key}_table"] == dict(ref)
    assert charts["sine"]["fields"] == {"x": "x", "y": "y"}
    assert charts["score_hist"]["fields"] == {"value": "scores"}
    assert charts["label_counts"]["fields"] == {"label": "label", "value": "value"}
    assert table_rows(tables["sine"]) == r["line"]
    assert table_rows(tables["scatter"]) == r["scatter"]
    assert table_rows(tables["label_counts"]) == r["bar"]
    assert table_rows(tables["score_hist"]) == r["scores"]
    assert_finished(info)
    # line_series: wandb's table is (step, lineKey, lineVal), one row per point
    curves = tables["curves"]
    frame = curves.table()
    points = sorted(zip(frame["step"], frame["lineKey"], frame["lineVal"]))
    expected = [[x, key, y] for key, ys in zip(["square", "double"], r["ys"])
                for x, y in zip(r["xs"], ys)]
    assert points == sorted(tuple(p) for p in expected)
    assert curves["columns"] == ["step", "lineKey", "lineVal"], curves["columns"]
    assert table_rows(curves) == expected


def check_segmentation_masks(ctx: Ctx) -> None:
    from mpbackend.media.refs import MediaRef

    r = ctx.result
    info, _ = load(ctx, r["id"])
    run_dir = find_run(ctx, r["id"])
    rows = history_refs(ctx, r["id"])
    assert [row["_step"] for row in rows] == [0, 1, 2]
    labels = r["class_labels"]
    for i, (row, logged) in enumerate(zip(rows, r["logged"])):
        assert sorted(public(row)) == ["road_iou", "segmentation"]
        assert row["road_iou"] == logged["iou"]
        ref = row["segmentation"]
        assert ref.kind == "image-file" and ref["caption"] == f"frame {i}"
        assert (ref["width"], ref["height"]) == (16, 16)
        assert_media_file(ref, run_dir, "images", "png")
        assert pixels(ref).tolist() == logged["image"]
        assert sorted(ref["masks"]) == ["ground_truth", "predictions"]
        for name, data in (("predictions", logged["prediction"]),
                           ("ground_truth", logged["truth"])):
            mask = MediaRef(ref["masks"][name], str(run_dir))
            assert mask.kind == "mask"
            assert inside(mask.path, run_dir) and sha256(mask.path) == mask["sha256"]
            assert pixels(mask).tolist() == data, name
            assert mask["class_labels"] == labels
        boxes = ref["boxes"]["predictions"]
        assert boxes["box_data"] == [logged["box"]]
        assert boxes["class_labels"] == labels
    assert public(info["summary"])["segmentation"] == dict(rows[-1]["segmentation"])
    assert_finished(info)


def check_image_batches(ctx: Ctx) -> None:
    r = ctx.result
    info, _ = load(ctx, r["id"])
    run_dir = find_run(ctx, r["id"])
    rows = history_refs(ctx, r["id"])
    assert [sorted(public(row)) for row in rows] == [["epoch", "examples"]] * 3 + [
        ["grayscale"]]
    for epoch, (row, logged) in enumerate(zip(rows, r["logged"])):
        ref = row["examples"]
        assert row["epoch"] == epoch
        assert ref.kind == "images/separated"
        assert (ref["count"], ref["width"], ref["height"], ref["format"]) == (4, 12, 12, "png")
        assert ref["captions"] == logged["captions"]
        items = ref.images
        assert [item["path"] for item in items] == ref["filenames"]
        for item, caption, digest in zip(items, logged["captions"], logged["digests"]):
            assert item.kind == "image-file" and item["caption"] == caption
            assert_media_file(item, run_dir, "images", "png")
            assert pixel_digest(item) == digest
    assert rows[0]["examples"]["filenames"] == rows[2]["examples"]["filenames"]  # one file
    gray = rows[3]["grayscale"]
    assert gray.kind == "images/separated" and gray["count"] == 2 and "captions" not in gray
    assert [pixel_digest(item) for item in gray.images] == r["gray_digests"]
    assert len(media_names(run_dir, "images")) == 4 + 4 + 2  # the same bytes once
    assert public(info["summary"])["examples"] == dict(rows[2]["examples"])
    assert_finished(info)


def check_audio_video_html(ctx: Ctx) -> None:
    import wave

    import numpy as np
    from PIL import Image as PILImage

    r = ctx.result
    info, _ = load(ctx, r["id"])
    run_dir = find_run(ctx, r["id"])
    assert info["config"] == {"sample_rate": 8000, "frames": 6, "fps": 4}
    rows = history_refs(ctx, r["id"])
    assert [sorted(public(row)) for row in rows] == [["freq", "tone"]] * 2 + [
        ["animation"], ["report"]]
    for row, freq in zip(rows[:2], ["220.0", "440.0"]):
        assert row["freq"] == float(freq)
        tone = row["tone"]
        assert tone.kind == "audio-file" and tone["caption"] == f"{float(freq):.0f} Hz"
        assert_media_file(tone, run_dir, "audio", "wav")
        with wave.open(str(tone.path)) as wav:
            assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate(),
                    wav.getnframes()) == (1, 2, 8000, r["n_samples"])
            pcm = np.frombuffer(wav.readframes(50), dtype="<i2") / 32767
        assert np.abs(pcm - np.array(r["samples"][freq])).max() < 2 / 32767
    video = rows[2]["animation"]
    assert video.kind == "video-file" and video["caption"] == "moving square"
    assert_media_file(video, run_dir, "videos", "gif")
    frames = np.array(r["frames"], dtype=np.uint8).transpose(0, 2, 3, 1)
    with PILImage.open(video.path) as gif:
        assert (gif.format, gif.n_frames, gif.size) == ("GIF", 6, (24, 16))
        for i in range(6):
            gif.seek(i)
            assert gif.info["duration"] == 250  # fps=4
            assert (np.asarray(gif.convert("RGB")) == frames[i]).all(), i
    report = rows[3]["report"]
    assert report.kind == "html-file"
    assert_media_file(report, run_dir, "html", "html")
    assert r["html"] in report.read().decode()
    summary = public(info["summary"])
    assert summary["tone"] == dict(rows[1]["tone"]) and summary["freq"] == 440.0
    assert_finished(info)


def check_dataframe_table(ctx: Ctx) -> None:
    built, read = ctx.result["built"], ctx.result["read"]
    columns = ["city", "population_m", "coastal", "year", "density_index"]
    assert built["columns"] == read["columns"] == columns
    assert [row[4] for row in built["data"]] == built["density"]
    assert [row[1] for row in built["data"]] == built["populations"]
    info, _ = load(ctx, built["id"])
    run_dir = find_run(ctx, built["id"])
    assert info["job_type"] == "build-table"
    rows = history_refs(ctx, built["id"])
    assert [list(public(row)) for row in rows] == [["cities"]]
    ref = rows[0]["cities"]
    assert ref.kind == "table-file" and (ref["nrows"], ref["ncols"]) == (6, 5)
    assert ref["columns"] == columns
    assert_media_file(ref, run_dir, "table", "table.parquet")
    frame = ref.table()
    assert list(frame.columns) == columns and frame.values.tolist() == built["data"]
    assert frame["coastal"].tolist() == [True, True, False, False, False, True]
    assert public(info["summary"]) == {"total_population_m": 27.3, "cities": dict(ref)}
    assert_finished(info)
    logged = api_run(ctx, built["id"]).logged_artifacts()
    assert [(a.name, a.type) for a in logged] == [("city-stats:v0", "dataset")]
    assert [f.path for f in logged[0].files()][0].startswith("cities.table.")
    info, rows = load(ctx, read["id"])
    assert info["job_type"] == "analysis"
    assert [a.name for a in api_run(ctx, read["id"]).used_artifacts()] == ["city-stats:v0"]
    assert read["data"] == built["data"] and read["big"] == ["Lima", "Pune"]
    assert_rows(rows, [{"n_big_cities": 2}])
    assert_finished(info)


def check_summary_media(ctx: Ctx) -> None:
    import json

    r = ctx.result
    info, _ = load(ctx, r["id"])
    run_dir = find_run(ctx, r["id"])
    rows = history_refs(ctx, r["id"])
    errors = [row["recon_error"] for row in rows[:4]]
    assert [public(row) for row in rows[:4]] == [{"epoch": e, "recon_error": v}
                                                 for e, v in enumerate(errors)]
    assert min(errors) == r["best_err"] and errors.index(min(errors)) == r["best"]["epoch"]
    assert [list(public(row)) for row in rows[4:]] == [["point_cloud"], ["labelled_cloud"]]
    summary = api_run(ctx, r["id"]).summary
    best = summary["best_image"]
    assert best.kind == "image-file" and best["caption"] == f"epoch {r['best']['epoch']}"
    assert_media_file(best, run_dir, "images", "png")
    assert pixel_digest(best) == r["best"]["digest"]
    assert summary["best_epoch"] == r["best"]["epoch"]
    assert (summary["epoch"], summary["recon_error"]) == (3, errors[-1])
    for key, points in (("point_cloud", r["cloud"]),
                        ("labelled_cloud", [p + [c] for p, c in zip(r["cloud"], r["labels"])])):
        ref = public(rows[4 if key == "point_cloud" else 5])[key]
        assert ref.kind == "object3D-file"
        assert_media_file(ref, run_dir, "object3D", "pts.json")
        assert json.loads(ref.read()) == points
        assert dict(summary[key]) == dict(ref)
    assert_finished(info)


def check_dataloader_media(ctx: Ctx) -> None:
    r = ctx.result
    info, _ = load(ctx, r["id"])
    run_dir = find_run(ctx, r["id"])
    assert info["config"] == {"n": 16, "batch_size": 4, "num_workers": 2}
    rows = history_refs(ctx, r["id"])
    assert [row["_step"] for row in rows] == list(range(8))  # 4 batches + 4 samples
    losses = [row["loss"] for row in rows if "loss" in row]
    assert losses == r["losses"]
    samples = [row for row in rows if "samples" in row]
    assert all(sorted(public(row)) == ["samples", "worker"] for row in samples)
    assert sorted(row["samples"]["caption"] for row in samples) == sorted(r["expected"])
    assert {row["worker"] for row in samples} <= {0, 1}
    for row in samples:
        ref = row["samples"]
        assert ref.kind == "image-file" and (ref["width"], ref["height"]) == (8, 8)
        assert_media_file(ref, run_dir, "images", "png")
        assert pixel_digest(ref) == r["expected"][ref["caption"]]
    assert len(media_names(run_dir, "images")) == 4
    summary = public(info["summary"])
    assert summary["loss"] == r["losses"][-1]
    assert summary["samples"]["caption"] in r["expected"]
    assert_finished(info)


def check_log_use_model(ctx: Ctx) -> None:
    import numpy as np

    r = ctx.result
    train, rows = load(ctx, r["train_id"])
    assert (train["job_type"], train["config"]) == ("train", {"alpha": 0.1})
    assert [list(public(row)) for row in rows] == [["train_mse"]]
    assert_finished(train)
    evaluate, rows = load(ctx, r["eval_id"])
    assert_rows(rows, [{"test_mse": r["test_mse"]}])
    assert public(evaluate["summary"]) == {"test_mse": r["test_mse"],
                                           "model_path_name": "ridge.npy"}
    assert_finished(evaluate)
    logged = api_run(ctx, r["train_id"]).logged_artifacts()
    assert [(a.name, a.type) for a in logged] == [("ridge-regressor:v0", "model")]
    assert sorted(logged[0].aliases) == ["candidate", "latest", "staging"]
    assert [(f.path, f.digest) for f in logged[0].files()] == [("ridge.npy", r["digest"])]
    used = api_run(ctx, r["eval_id"]).used_artifacts()
    assert [a.name for a in used] == ["ridge-regressor:v0"]
    assert r["loaded"] == r["w"]
    weights = np.load(downloaded(ctx, used[0], "model") / "ridge.npy")
    assert weights.tolist() == r["w"]
    # use_model() downloads to wandb's default root, ./artifacts/<name>:<version>
    expected = os.path.join(os.path.realpath(ctx.where), "artifacts", "ridge-regressor:v0",
                            "ridge.npy")
    assert os.path.realpath(r["model_path"]) == expected, r["model_path"]
    # Artifact.files() lists wandb's File objects, named by their path in the artifact
    assert [f.name for f in logged[0].files()] == ["ridge.npy"]


# -- the table ------------------------------------------------------------------------

@dataclass
class Case:
    script: str
    check: Callable[[Ctx], None]
    env: dict[str, str] = field(default_factory=dict)
    code: int = 0  # the exit code expected
    runs: int = 1  # times the script is run, in the same directory
    subdir: str = "job"  # the directory it runs in, under tmp_path
    setup: Callable[[Path], Any] | None = None


CASES = [
    Case("torch_mlp_argparse.py", check_torch_mlp_argparse),
    Case("numpy_estimator_fit.py", check_numpy_estimator_fit),
    Case("context_manager.py", check_context_manager),
    Case("run_attributes.py", check_run_attributes),
    Case("define_metric.py", check_define_metric),
    Case("step_and_commit.py", check_step_and_commit),
    Case("nested_log.py", check_nested_log),
    Case("resume_env.py", check_resume_env, runs=2,
         env={"WANDB_RUN_ID": "resume01", "WANDB_RESUME": "allow"}),
    Case("disabled_mode.py", check_disabled_mode, env={"WANDB_MODE": "disabled"}),
    Case("env_project_name_tags.py", check_env_project_name_tags,
         env={"WANDB_PROJECT": "env-proj", "WANDB_NAME": "nightly-eval",
              "WANDB_TAGS": "nightly,cpu"}),
    Case("init_keywords.py", check_init_keywords),
    Case("save_file.py", check_save_file),
    Case("restore_file.py", check_restore_file),
    Case("alert.py", check_alert),
    Case("api_read.py", check_api_read),
    Case("api_update.py", check_api_update),
    Case("notebook_style.py", check_notebook_style),
    Case("sys_exit.py", check_sys_exit, code=3),
    Case("exception_exit.py", check_exception_exit, code=1),
    Case("manual_sweep.py", check_manual_sweep),
    Case("config_access.py", check_config_access),
    Case("run_identity.py", check_run_identity),
    Case("dataloader_workers.py", check_dataloader_workers),
    Case("default_names.py", check_default_names, subdir="vision-lab", setup=git_repo),
    Case("prediction_table.py", check_prediction_table),
    Case("sklearn_plots.py", check_sklearn_plots),
    Case("dataset_artifact.py", check_dataset_artifact),
    Case("model_checkpoints.py", check_model_checkpoints),
    Case("watch_model.py", check_watch_model),
    Case("matplotlib_figures.py", check_matplotlib_figures),
    Case("weight_histograms.py", check_weight_histograms),
    Case("custom_charts.py", check_custom_charts),
    Case("segmentation_masks.py", check_segmentation_masks),
    Case("image_batches.py", check_image_batches),
    Case("audio_video_html.py", check_audio_video_html),
    Case("dataframe_table.py", check_dataframe_table),
    Case("summary_media.py", check_summary_media),
    Case("dataloader_media.py", check_dataloader_media),
    Case("log_use_model.py", check_log_use_model),
]


@pytest.fixture
def clean_env(monkeypatch):
    """No WANDB_* or MPBACKEND_* variable leaks in from outside: each case sets its own."""
    for name in list(os.environ):
        if name.startswith(("WANDB_", "MPBACKEND_")):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.script[:-3],
                                               marks=pytest.mark.timeout(TIMEOUT * c.runs + 30))
                                  for c in CASES])
def test_corpus_script(case: Case, tmp_path, clean_env):
    where = tmp_path / case.subdir
    where.mkdir()
    if case.setup is not None:
        case.setup(where)
    source = (CORPUS / case.script).read_text()
    ctx = Ctx(where=where, mp=where / "mpruns", source=source)
    for _ in range(case.runs):
        script = Script(source, where, name=case.script, env=case.env)
        try:
            code = script.wait(TIMEOUT)
        finally:
            script.kill_group()
        lines = script.lines()
        assert code == case.code, (f"exit code {code}, expected {case.code}; stderr:\n"
                                   f"{script.stderr()[-3000:]}")
        assert lines and lines[-1].startswith(RESULT), (
            f"the last stdout line is not a RESULT line; stdout:\n{lines[-20:]}\n"
            f"stderr:\n{script.stderr()[-3000:]}")
        ctx.results.append(script.result())
        ctx.stdout.append(lines)
        ctx.stderr.append(script.stderr())
    case.check(ctx)


def test_every_script_is_in_the_table_and_is_a_wandb_script():
    """Every file in tests/corpus has a case, and each is a wandb script with only its
    import changed: ``import wandb`` nowhere, ``import mpbackend as wandb`` once."""
    scripts = sorted(p.name for p in CORPUS.glob("*.py"))
    assert scripts == sorted(c.script for c in CASES)
    assert len(scripts) >= 39
    for name in scripts:
        text = (CORPUS / name).read_text()
        assert text.count("import mpbackend as wandb\n") == 1, name
        assert not re.search(r"^\s*(import wandb|from wandb)\b", text, re.M), name
        assert "mpbackend." not in text, f"{name} uses mpbackend beyond wandb's names"
        assert 20 <= len(text.splitlines()) <= 80, name
