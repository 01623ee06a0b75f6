"""Log a batch of sample images per epoch as a list of wandb.Image with captions, as
wandb's image-classification examples do; the last batch repeats the first."""
import hashlib
import json

import numpy as np

import mpbackend as wandb

run = wandb.init(project="image-batches", config={"epochs": 3, "batch": 4, "side": 12})
rng = np.random.default_rng(8)
side = run.config.side
shape = (run.config.batch, side, side, 3)
fixed = rng.integers(0, 256, size=shape, dtype=np.uint8)  # the same samples, first and last
logged = []
for epoch in range(run.config.epochs):
    last = epoch == run.config.epochs - 1
    batch = fixed if epoch == 0 or last else rng.integers(0, 256, size=shape, dtype=np.uint8)
    scores = rng.uniform(size=run.config.batch).round(3).tolist()
    captions = [f"epoch {epoch} sample {i} score {s}" for i, s in enumerate(scores)]
    wandb.log({"epoch": epoch,
               "examples": [wandb.Image(x, caption=c) for x, c in zip(batch, captions)]})
    logged.append({"captions": captions,
                   "digests": [hashlib.sha256(x.tobytes()).hexdigest() for x in batch]})

gray = [wandb.Image(x.mean(axis=2).astype(np.uint8)) for x in fixed[:2]]
wandb.log({"grayscale": gray})

out = {"id": run.id, "logged": logged,
       "gray_digests": [hashlib.sha256(x.mean(axis=2).astype(np.uint8).tobytes()).hexdigest()
                        for x in fixed[:2]]}
wandb.finish()
print("RESULT " + json.dumps(out))
