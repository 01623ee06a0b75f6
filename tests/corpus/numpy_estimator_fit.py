"""A scikit-learn style estimator (fit / partial_fit / score), numpy only, logged per epoch."""
import json

import numpy as np

import mpbackend as wandb


class LogisticRegression:
    def __init__(self, lr=0.5, alpha=1e-3):
        self.lr, self.alpha = lr, alpha

    def get_params(self):
        return {"lr": self.lr, "alpha": self.alpha}

    def partial_fit(self, X, y):
        if not hasattr(self, "coef_"):
            self.coef_ = np.zeros(X.shape[1])
        p = 1 / (1 + np.exp(-X @ self.coef_))
        self.coef_ -= self.lr * (X.T @ (p - y) / len(y) + self.alpha * self.coef_)
        eps = 1e-9
        return np.float32(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))

    def score(self, X, y):
        return np.mean((X @ self.coef_ > 0) == y)


rng = np.random.default_rng(42)
X = rng.normal(size=(400, 5))
y = (X @ np.array([1.5, -2.0, 0.5, 0.0, 1.0]) > 0).astype(float)
X_train, X_test, y_train, y_test = X[:300], X[300:], y[:300], y[300:]

clf = LogisticRegression()
run = wandb.init(project="estimator-demo", config=clf.get_params(), job_type="train")
rows = []
for epoch in range(8):
    loss = clf.partial_fit(X_train, y_train)
    row = {"epoch": epoch, "loss": loss, "train_acc": clf.score(X_train, y_train),
           "test_acc": clf.score(X_test, y_test)}
    wandb.log(row)
    rows.append({k: float(v) for k, v in row.items()})
run.summary["test_accuracy"] = clf.score(X_test, y_test)
run.summary["n_features"] = X.shape[1]
run.finish()
print("RESULT " + json.dumps({"id": run.id, "rows": rows,
                              "test_accuracy": float(clf.score(X_test, y_test))}))
