"""A tiny BERT (built from a config: no download) trained 2 epochs with MpbackendCallback
(tests/test_transformers.py)."""
import json

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

import mpbackend
from mpbackend.integrations.transformers import MpbackendCallback


class Data(torch.utils.data.Dataset):
    def __init__(self, n):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, 50, (n, 8), generator=g)
        self.y = (self.x[:, 0] > 25).long()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "labels": self.y[i]}


config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=16, max_position_embeddings=16, num_labels=2)
args = TrainingArguments(output_dir="out", per_device_train_batch_size=8, num_train_epochs=2,
                         logging_steps=2, eval_strategy="epoch", save_strategy="epoch",
                         report_to="none", use_cpu=True, disable_tqdm=True)
callback = MpbackendCallback(project="hf")
trainer = Trainer(model=BertForSequenceClassification(config), args=args,
                  train_dataset=Data(32), eval_dataset=Data(16), callbacks=[callback])
out = trainer.train()
metrics = trainer.evaluate()
run = callback.run
run.finish()
stored = mpbackend.Api().run(f"hf/{run.id}")
rows = stored.history(pandas=False)
print("RESULT " + json.dumps({
    "keys": sorted({k for row in rows for k in row}), "n": len(rows),
    "summary": {k: v for k, v in stored.summary.items() if not k.startswith("_")},
    "nparams": stored.config.get("model/num_parameters"),
    "lr": stored.config.get("learning_rate"), "hidden": stored.config.get("hidden_size"),
    "train_loss": out.training_loss, "eval": metrics,
    "artifacts": [a.name for a in stored.logged_artifacts()]}, default=str))
