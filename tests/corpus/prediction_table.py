"""Train a softmax classifier on tiny synthetic bar images (numpy only); log a table of
test predictions with one wandb.Image per row, as wandb's "log predictions" examples do."""
import hashlib
import json

import numpy as np

import mpbackend as wandb

CLASSES = ["horizontal", "vertical", "diagonal"]


def make_images(n, rng):
    labels = rng.integers(0, 3, size=n)
    images = rng.uniform(0, 0.3, size=(n, 8, 8))
    for img, label in zip(images, labels):
        k = rng.integers(1, 7)
        if label == 0:
            img[k, :] = 1.0
        elif label == 1:
            img[:, k] = 1.0
        else:
            np.fill_diagonal(img, 1.0)
    return images, labels


config = {"lr": 0.5, "epochs": 5, "n_samples": 10}
run = wandb.init(project="bars-preds", job_type="eval", config=config)
rng = np.random.default_rng(0)
X, y = make_images(300, rng)
W = np.zeros((64, 3))
losses = []
for epoch in range(wandb.config.epochs):
    logits = X.reshape(len(X), -1) @ W
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    loss = float(-np.log(probs[np.arange(len(y)), y]).mean())
    W -= wandb.config.lr * X.reshape(len(X), -1).T @ (probs - np.eye(3)[y]) / len(y)
    wandb.log({"epoch": epoch, "loss": loss})
    losses.append(loss)

test_x, test_y = make_images(config["n_samples"], rng)
preds = (test_x.reshape(len(test_x), -1) @ W).argmax(1)
table = wandb.Table(columns=["id", "image", "pred", "label"])
digests = []
for i, (img, pred, label) in enumerate(zip(test_x, preds, test_y)):
    pixels = (img * 255).astype(np.uint8)
    digests.append(hashlib.sha256(pixels.tobytes()).hexdigest())
    table.add_data(i, wandb.Image(pixels, caption=CLASSES[label]), CLASSES[pred],
                   CLASSES[label])
wandb.log({"predictions": table})
wandb.summary["test_accuracy"] = float((preds == test_y).mean())

out = {"id": run.id, "losses": losses, "preds": [CLASSES[p] for p in preds],
       "labels": [CLASSES[t] for t in test_y], "digests": digests,
       "accuracy": float((preds == test_y).mean()), "config": dict(wandb.config)}
run.finish()
print("RESULT " + json.dumps(out))
