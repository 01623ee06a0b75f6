"""A DataLoader with two worker processes; the main loop logs every batch."""
import json

import torch
from torch.utils.data import DataLoader, Dataset

import mpbackend as wandb


class Squares(Dataset):
    def __len__(self):
        return 48

    def __getitem__(self, i):
        return torch.tensor([float(i)]), torch.tensor([float(i * i)])


if __name__ == "__main__":
    torch.manual_seed(0)
    run = wandb.init(project="loader-demo", config={"batch_size": 8, "epochs": 2,
                                                    "num_workers": 2})
    loader = DataLoader(Squares(), batch_size=wandb.config.batch_size, shuffle=False,
                        num_workers=wandb.config.num_workers)
    rows = []
    for epoch in range(wandb.config.epochs):
        for x, y in loader:
            row = {"epoch": epoch, "batch_mean": x.mean().item(), "target_sum": y.sum().item()}
            wandb.log(row)
            rows.append(row)
    out = {"id": run.id, "rows": rows}
    wandb.finish()
    print("RESULT " + json.dumps(out))
