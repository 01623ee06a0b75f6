"""Keep the best reconstruction as an image in the run summary, and log point clouds
(wandb.Object3D from numpy xyz and xyzc arrays) as an autoencoder-style run might."""
import hashlib
import json

import numpy as np

import mpbackend as wandb

rng = np.random.default_rng(13)
target = np.zeros((10, 10), dtype=np.uint8)
target[2:8, 2:8] = 200
run = wandb.init(project="summary-media", config={"epochs": 4, "noise": [60, 20, 35, 5]})
best_err, best = float("inf"), None
for epoch in range(run.config.epochs):
    noise = rng.normal(scale=run.config.noise[epoch], size=target.shape)
    recon = np.clip(target + noise, 0, 255).astype(np.uint8)
    err = float(np.abs(recon.astype(int) - target).mean())
    wandb.log({"epoch": epoch, "recon_error": err})
    if err < best_err:
        best_err = err
        best = {"epoch": epoch, "digest": hashlib.sha256(recon.tobytes()).hexdigest()}
        wandb.summary["best_image"] = wandb.Image(recon, caption=f"epoch {epoch}")
        wandb.summary["best_epoch"] = epoch

cloud = rng.normal(size=(50, 3)).round(4)
labels = (cloud[:, 2] > 0).astype(float)
wandb.log({"point_cloud": wandb.Object3D(cloud)})
wandb.log({"labelled_cloud": wandb.Object3D(np.column_stack([cloud, labels]))})

out = {"id": run.id, "best": best, "best_err": best_err, "cloud": cloud.tolist(),
       "labels": labels.tolist()}
wandb.finish()
print("RESULT " + json.dumps(out))
