"""A tiny accelerate loop with MpbackendTracker (tests/test_transformers.py)."""
import json

import torch
from accelerate import Accelerator

import mpbackend
from mpbackend.integrations.accelerate import MpbackendTracker

tracker = MpbackendTracker("acc")
accelerator = Accelerator(log_with=[tracker], cpu=True)
accelerator.init_trackers("acc", config={"lr": 0.05, "epochs": 3})
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.05)
x = torch.randn(32, 4)
y = x.sum(1, keepdim=True)
model, opt = accelerator.prepare(model, opt)
losses = []
for step in range(6):
    loss = torch.nn.functional.mse_loss(model(x), y)
    accelerator.backward(loss)
    opt.step()
    opt.zero_grad()
    accelerator.log({"loss": loss.item()}, step=step)
    losses.append(loss.item())
accelerator.end_training()
stored = mpbackend.Api().run(f"acc/{tracker.tracker.id}")
print("RESULT " + json.dumps({
    "state": stored.state, "config": stored.config, "losses": losses,
    "rows": [[row["_step"], row["loss"]] for row in stored.history(pandas=False)]}))
