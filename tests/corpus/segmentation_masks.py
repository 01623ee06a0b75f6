"""Semantic segmentation style logging: each image with its predicted and ground-truth
masks and its bounding boxes (wandb.Image masks= and boxes=)."""
import json

import numpy as np

import mpbackend as wandb

class_labels = {0: "background", 1: "road", 2: "car"}
run = wandb.init(project="segmentation-demo", config={"size": 16, "n_images": 3})
size = run.config.size
rng = np.random.default_rng(1)
logged = []
for i in range(run.config.n_images):
    image = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
    truth = np.zeros((size, size), dtype=np.uint8)
    truth[size // 2:, :] = 1                      # the road: the bottom half
    x0, y0 = 2 + 3 * i, 4
    truth[y0:y0 + 4, x0:x0 + 5] = 2               # a car
    prediction = truth.copy()
    prediction[:, -2:] = 0                        # the model misses the right edge
    box = {"position": {"minX": x0, "maxX": x0 + 5, "minY": y0, "maxY": y0 + 4},
           "domain": "pixel", "class_id": 2, "box_caption": "car",
           "scores": {"confidence": 0.9 - 0.1 * i}}
    img = wandb.Image(image, caption=f"frame {i}", masks={
        "predictions": {"mask_data": prediction, "class_labels": class_labels},
        "ground_truth": {"mask_data": truth, "class_labels": class_labels},
    }, boxes={"predictions": {"box_data": [box], "class_labels": class_labels}})
    iou = float(((prediction == 1) & (truth == 1)).sum() / ((prediction == 1) | (truth == 1)).sum())
    wandb.log({"segmentation": img, "road_iou": iou})
    logged.append({"image": image.tolist(), "truth": truth.tolist(),
                   "prediction": prediction.tolist(), "box": box, "iou": iou})

out = {"id": run.id, "logged": logged, "class_labels": {str(k): v for k, v in
                                                         class_labels.items()}}
wandb.finish()
print("RESULT " + json.dumps(out))
