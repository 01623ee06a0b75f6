"""Log sample images from inside a Dataset's __getitem__ while a DataLoader with two
worker processes feeds the training loop; the main process logs the loss per batch."""
import hashlib
import json

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import mpbackend as wandb


def make_image(i):
    rng = np.random.default_rng(i)
    img = rng.integers(0, 64, size=(8, 8), dtype=np.uint8)
    img[2:6, 2:6] += np.uint8(100 + i)
    return img


class NoisySquares(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        img = make_image(i)
        if i % 4 == 0:  # a few samples, logged as the workers load them
            info = torch.utils.data.get_worker_info()
            wandb.log({"samples": wandb.Image(img, caption=f"sample {i}"),
                       "worker": info.id if info is not None else -1})
        return torch.from_numpy(img).float().flatten() / 255, torch.tensor(float(i % 2))


if __name__ == "__main__":
    run = wandb.init(project="loader-media", config={"n": 16, "batch_size": 4,
                                                     "num_workers": 2})
    loader = DataLoader(NoisySquares(run.config.n), batch_size=run.config.batch_size,
                        num_workers=run.config.num_workers)
    w = torch.zeros(64)
    losses = []
    for x, y in loader:
        loss = ((x @ w - y) ** 2).mean()
        w += 0.1 * x.T @ (y - x @ w) / len(y)
        wandb.log({"loss": loss.item()})
        losses.append(loss.item())
    expected = {f"sample {i}": hashlib.sha256(make_image(i).tobytes()).hexdigest()
                for i in range(0, run.config.n, 4)}
    out = {"id": run.id, "losses": losses, "expected": expected}
    wandb.finish()
    print("RESULT " + json.dumps(out))
