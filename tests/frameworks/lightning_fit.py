"""A tiny LightningModule fitted for 2 epochs with MpbackendLogger (tests/test_lightning.py).

    python lightning_fit.py {lightning | pytorch_lightning} {auto | ddp_spawn | ddp}
"""
import json
import os
import sys
import warnings

import torch
from torch.utils.data import DataLoader, TensorDataset

import mpbackend

warnings.filterwarnings("ignore")
PKG = sys.argv[1] if len(sys.argv) > 1 else "lightning"
STRATEGY = sys.argv[2] if len(sys.argv) > 2 else "auto"
if PKG == "lightning":
    import lightning.pytorch as pl

    from mpbackend.integrations.lightning import MpbackendLogger
else:
    import pytorch_lightning as pl

    from mpbackend.integrations.pytorch_lightning import MpbackendLogger


class Tiny(pl.LightningModule):
    def __init__(self, lr=0.1, hidden=(("width", 4),)):
        super().__init__()
        self.save_hyperparameters({"lr": lr, "hidden": dict(hidden)})
        self.net = torch.nn.Linear(3, 1)
    def training_step(self, batch, i):  # noqa: D102
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss
    def validation_step(self, batch, i):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    return TensorDataset(x, x.sum(1, keepdim=True))

if __name__ == "__main__":
    logger = MpbackendLogger(project="pl", log_model=True)
    ckpt = pl.callbacks.ModelCheckpoint(monitor="val_loss", save_top_k=1)
    trainer = pl.Trainer(max_epochs=2, logger=logger, callbacks=[ckpt], log_every_n_steps=2,
                         enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", devices=2 if STRATEGY != "auto" else 1,
                         strategy=STRATEGY, default_root_dir=".")
    train = DataLoader(data(), batch_size=8, num_workers=2 if STRATEGY == "auto" else 0)
    val = DataLoader(data(), batch_size=16)
    trainer.fit(Tiny(), train, val)
    if trainer.global_rank != 0:
        sys.exit(0)  # rank 0 logs, and reports
    run_id = logger.version
    api = mpbackend.Api()
    r = api.run(f"pl/{run_id}")
    rows = r.history(pandas=False)
    print("RESULT " + json.dumps({
        "state": r.state, "config": r.config,
        "steps": [row.get("trainer/global_step") for row in rows],
        "keys": sorted({k for row in rows for k in row}),
        "artifacts": [(a.name, a.aliases) for a in r.logged_artifacts()],
        "best": os.path.basename(ckpt.best_model_path),
        "val": trainer.callback_metrics["val_loss"].item(),
        "summary_val": r.summary.get("val_loss"),
        "runs": len(api.runs("pl"))}))
