"""run.log_model() after training, aliased; a later evaluation run fetches it with
run.use_model("name:alias") and scores it on held-out data."""
import hashlib
import json

import numpy as np

import mpbackend as wandb

rng = np.random.default_rng(17)
X = rng.normal(size=(200, 5))
true_w = np.array([0.5, -1.0, 2.0, 0.0, 1.5])
y = X @ true_w + 0.05 * rng.normal(size=200)
X_train, y_train, X_test, y_test = X[:150], y[:150], X[150:], y[150:]

with wandb.init(project="model-registry-demo", job_type="train",
                config={"alpha": 0.1}) as run:
    A = X_train.T @ X_train + run.config.alpha * np.eye(5)
    w = np.linalg.solve(A, X_train.T @ y_train)
    run.log({"train_mse": float(((X_train @ w - y_train) ** 2).mean())})
    np.save("ridge.npy", w)
    run.log_model(path="ridge.npy", name="ridge-regressor", aliases=["staging", "candidate"])
    train_id = run.id
    digest = hashlib.sha256(open("ridge.npy", "rb").read()).hexdigest()

with wandb.init(project="model-registry-demo", job_type="evaluate") as run:
    model_path = run.use_model("ridge-regressor:staging")
    w_loaded = np.load(model_path)
    test_mse = float(((X_test @ w_loaded - y_test) ** 2).mean())
    run.log({"test_mse": test_mse})
    run.summary["model_path_name"] = model_path.split("/")[-1]
    out = {"train_id": train_id, "eval_id": run.id, "digest": digest, "w": w.tolist(),
           "loaded": w_loaded.tolist(), "model_path": model_path, "test_mse": test_mse}
print("RESULT " + json.dumps(out))
