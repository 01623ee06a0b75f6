"""Save a checkpoint in one run, restore it into a later run with wandb.restore()."""
import hashlib
import json

import numpy as np

import mpbackend as wandb

rng = np.random.default_rng(3)
first = wandb.init(project="restore-demo", job_type="train")
weights = rng.normal(size=(4, 4))
np.save("weights.npy", weights)
wandb.save("weights.npy", policy="now")
wandb.log({"weight_norm": float(np.linalg.norm(weights))})
with open("weights.npy", "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
first_path = first.path
first.finish()

second = wandb.init(project="restore-demo", job_type="eval")
restored = wandb.restore("weights.npy", run_path=first_path)
loaded = np.load(restored.name)
wandb.log({"weight_norm": float(np.linalg.norm(loaded))})
with open(restored.name, "rb") as f:
    restored_digest = hashlib.sha256(f.read()).hexdigest()
out = {"first_id": first.id, "second_id": second.id, "second_dir": second.dir,
       "restored": restored.name, "sha256": digest, "restored_sha256": restored_digest,
       "equal": bool(np.array_equal(loaded, weights))}
wandb.finish()
print("RESULT " + json.dumps(out))
