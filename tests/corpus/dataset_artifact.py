"""Version a dataset as an artifact in one run; a second run uses "name:latest",
downloads it, trains on it and logs the model it made (wandb's artifacts walkthrough)."""
import hashlib
import json
import os

import numpy as np

import mpbackend as wandb

rng = np.random.default_rng(11)
X = rng.normal(size=(120, 3))
y = (X @ np.array([1.5, -2.0, 0.5]) > 0).astype(np.int64)
os.makedirs("data", exist_ok=True)
np.save("data/x.npy", X)
np.save("data/y.npy", y)
with open("data/README.txt", "w") as f:
    f.write("toy linearly separable data\n")
digests = {n: hashlib.sha256(open(f"data/{n}", "rb").read()).hexdigest()
           for n in sorted(os.listdir("data"))}

with wandb.init(project="artifacts-demo", job_type="upload") as run:
    raw = wandb.Artifact("toy-data", type="dataset", description="120 points, 3 features",
                         metadata={"n": len(X), "features": 3})
    raw.add_dir("data")
    run.log_artifact(raw)
    upload_id = run.id

with wandb.init(project="artifacts-demo", job_type="train",
                config={"lr": 0.5, "epochs": 8}) as run:
    dataset = run.use_artifact("toy-data:latest")
    data_dir = dataset.download()
    X, y = np.load(os.path.join(data_dir, "x.npy")), np.load(os.path.join(data_dir, "y.npy"))
    w, accs = np.zeros(3), []
    for epoch in range(run.config.epochs):
        p = 1 / (1 + np.exp(-X @ w))
        w -= run.config.lr * X.T @ (p - y) / len(y)
        accs.append(float(((p > 0.5) == y).mean()))
        run.log({"epoch": epoch, "acc": accs[-1]})
    np.save("weights.npy", w)
    model = wandb.Artifact("toy-model", type="model")
    model.add_file("weights.npy")
    run.log_artifact(model)
    out = {"upload_id": upload_id, "train_id": run.id, "version": dataset.version,
           "used_name": dataset.name, "metadata": dataset.metadata, "digests": digests,
           "downloaded": sorted(os.listdir(data_dir)), "weights": w.tolist(), "accs": accs}
print("RESULT " + json.dumps(out))
