"""A training script written for wandb, running on mpbackend by changing one import.

    python examples/wandb_style.py --epochs 3 --steps-per-epoch 100 --val-every 50

It uses what wandb scripts commonly use: config from argparse, ``define_metric``
for the summary and a custom x axis, ``commit=False`` to build a row from parts,
validation metrics every N steps, ``wandb.summary`` for a final value, and the
run as a context manager. The "model" is a noisy quadratic so the script needs
nothing but the standard library.
"""

import argparse
import math
import random

import mpbackend as wandb  # the only line that differs from a wandb script


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--project", default="wandb-style-example")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-epoch", type=int, default=200)
    parser.add_argument("--val-every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    random.seed(args.seed)
    with wandb.init(project=args.project, config=args, tags=["example"],
                    job_type="train") as run:
        wandb.define_metric("train/loss", summary="min,last")
        wandb.define_metric("val/*", step_metric="epoch")
        wandb.define_metric("val/acc", summary="best", goal="maximize")

        weight = 5.0
        global_step = 0
        for epoch in range(wandb.config.epochs):
            for _ in range(wandb.config.steps_per_epoch):
                grad = 2 * weight + random.gauss(0, 0.5)
                weight -= wandb.config.lr * grad
                loss = weight ** 2
                # A row built from parts: the learning rate first, then the loss commits it.
                wandb.log({"train/lr": wandb.config.lr}, commit=False)
                wandb.log({"train/loss": loss, "train/grad_norm": abs(grad), "epoch": epoch})
                global_step += 1
                if global_step % wandb.config.val_every == 0:
                    val_loss = loss + abs(random.gauss(0, 0.05))
                    wandb.log({"val/loss": val_loss, "val/acc": math.exp(-val_loss)})
        wandb.summary["final_weight"] = weight
        run.flush()
        print(f"run {run.path}: {global_step} steps, summary {dict(run.summary)}")


if __name__ == "__main__":
    main()
