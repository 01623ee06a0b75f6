"""A scikit-learn classifier on iris, evaluated with wandb.plot's confusion matrix,
precision-recall and ROC charts (as wandb's "visualize sklearn" guide logs them)."""
import json

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

import mpbackend as wandb

iris = load_iris()
X_train, X_test, y_train, y_test = train_test_split(
    iris.data, iris.target, test_size=0.3, random_state=0, stratify=iris.target)
labels = list(iris.target_names)

run = wandb.init(project="visualize-sklearn", config={"model": "LogisticRegression",
                                                      "C": 0.05, "max_iter": 200})
clf = LogisticRegression(C=wandb.config.C, max_iter=wandb.config.max_iter)
clf.fit(X_train, y_train)
y_pred = clf.predict(X_test)
y_probas = clf.predict_proba(X_test)
accuracy = accuracy_score(y_test, y_pred)

wandb.log({"conf_mat": wandb.plot.confusion_matrix(y_true=y_test, preds=y_pred,
                                                   class_names=labels)})
wandb.log({"pr": wandb.plot.pr_curve(y_test, y_probas)})
wandb.log({"roc": wandb.plot.roc_curve(y_test, y_probas)})
wandb.log({"accuracy": accuracy})
run.summary["n_test"] = len(y_test)

out = {"id": run.id, "y_test": y_test.tolist(), "y_pred": y_pred.tolist(),
       "probas": y_probas.tolist(), "labels": labels, "accuracy": accuracy}
wandb.finish()
print("RESULT " + json.dumps(out))
