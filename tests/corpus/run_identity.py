"""wandb.run.id, .dir and .project; a checkpoint written straight into wandb.run.dir is
kept with the run's files (wandb uploads that directory), as the Api lists them; termlog."""
import hashlib
import json
import os

import numpy as np

import mpbackend as wandb

wandb.init(project="identity-demo")
run_id, run_dir, project = wandb.run.id, wandb.run.dir, wandb.run.project
run_path = wandb.run.path
wandb.termlog(f"Checkpoints go to {run_dir}")
weights = np.arange(12, dtype=np.float64).reshape(3, 4)
path = os.path.join(wandb.run.dir, "weights.npy")
np.save(path, weights)
with open(path, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
wandb.log({"weights_sum": float(weights.sum())})
wandb.finish()

files = sorted(f.name for f in wandb.Api().run(run_path).files())
print("RESULT " + json.dumps({"id": run_id, "dir": run_dir, "project": project,
                              "sha256": digest, "files": files,
                              "message": f"Checkpoints go to {run_dir}"}))
