"""wandb.plot's charts (user side): a Table of the points plus a chart description.

    plot.line(table, "x", "y") --> Chart --log({"k": chart})--> Media("chart", spec, table)
    service: history key "k_table" holds the table (as wandb names it), and the
             run's extra["charts"]["k"] holds {"type", "fields", "title", "table_key"}
    readers: MediaRef.table() and the report draw it from the two

Curves (``pr_curve``, ``roc_curve``, ``confusion_matrix``) are computed here, at
the call, with numpy: the table holds what is drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..shared.messages import Media as Sent
from .base import Media, as_numpy, need
from .data import Table

CHART_TYPES = ("line", "scatter", "bar", "histogram", "line_series", "confusion_matrix",
               "pr_curve", "roc_curve")


class Chart(Media):
    """A chart: its Table and what is drawn from which columns (wandb's CustomChart)."""

    def __init__(self, kind: str, table: Table, fields: dict[str, str], title: str = "",
                 **extra: Any) -> None:
        if not isinstance(table, Table):
            raise TypeError(f"plot.{kind}(): the data is a wandb Table, not "
                            f"{type(table).__name__}")
        for role, column in fields.items():
            if column not in table.columns:
                raise ValueError(f"plot.{kind}(): {role}={column!r} is not a column of the "
                                 f"table ({table.columns})")
        self.table = table
        self.spec: dict[str, Any] = {"type": kind, "fields": dict(fields), "title": str(title),
                                     **extra}

    def _mp_media(self, convert: Callable[[Any], Any] | None = None) -> Sent:
        return Sent("chart", dict(self.spec), self.table._mp_media(convert))


def line(table: Table, x: str, y: str, stroke: str | None = None, title: str = "",
         split_table: bool = False) -> Chart:
    """A line of ``y`` over ``x`` (one line per value of ``stroke``)."""
    fields = {"x": x, "y": y}
    if stroke is not None:
        fields["stroke"] = stroke
    return Chart("line", table, fields, title)


def scatter(table: Table, x: str, y: str, title: str = "", split_table: bool = False) -> Chart:
    """Points of ``y`` over ``x``."""
    return Chart("scatter", table, {"x": x, "y": y}, title)


def bar(table: Table, label: str, value: str, title: str = "",
        split_table: bool = False) -> Chart:
    """One bar per ``label`` of height ``value``."""
    return Chart("bar", table, {"label": label, "value": value}, title)


def histogram(table: Table, value: str, title: str = "", split_table: bool = False) -> Chart:
    """A histogram of the column ``value``."""
    return Chart("histogram", table, {"value": value}, title)


def line_series(xs: Iterable[Any], ys: Iterable[Iterable[Any]],
                keys: Iterable[str] | None = None, title: str = "", xname: str = "x",
                split_table: bool = False) -> Chart:
    """Several lines: ``ys[i]`` over ``xs`` (or over ``xs[i]``), named by ``keys``.

    The table is wandb's: columns ``step``, ``lineKey``, ``lineVal``; unnamed lines are
    ``line_0``, ``line_1``, ..."""
    y_lists: list[list[Any]] = [list(y) for y in ys]
    x_all = list(xs)
    xs_each: list[list[Any]]
    if x_all and not isinstance(x_all[0], (list, tuple)) and not hasattr(x_all[0], "__len__"):
        xs_each = [x_all] * len(y_lists)
    else:
        xs_each = [list(x) for x in x_all]
    n = len(y_lists)
    if len(xs_each) != n:
        raise ValueError(f"plot.line_series(): {len(xs_each)} x series for {n} y series")
    names = [str(k) for k in keys] if keys is not None else [f"line_{i}" for i in range(n)]
    if len(names) != n:
        raise ValueError(f"plot.line_series(): {len(names)} keys for {n} series")
    table = Table(columns=["step", "lineKey", "lineVal"])
    for name, x_values, y_values in zip(names, xs_each, y_lists):
        if len(x_values) != len(y_values):
            raise ValueError(f"plot.line_series(): series {name!r} has {len(x_values)} x "
                             f"and {len(y_values)} y values")
        for xv, yv in zip(x_values, y_values):
            table.add_data(xv, name, yv)
    return Chart("line_series", table, {"x": "step", "y": "lineVal", "stroke": "lineKey"},
                 title, xname=xname)


def confusion_matrix(probs: Sequence[Sequence[float]] | None = None,
                     y_true: Sequence[Any] | None = None, preds: Sequence[Any] | None = None,
                     class_names: Sequence[str] | None = None,
                     title: str = "Confusion Matrix Curve", split_table: bool = False) -> Chart:
    """Counts of (actual, predicted) class pairs; ``preds`` or ``probs`` (argmax)."""
    np = need("numpy", "media", "plot.confusion_matrix()")
    if y_true is None:
        raise ValueError("plot.confusion_matrix(): y_true is needed")
    if (probs is None) == (preds is None):
        raise ValueError("plot.confusion_matrix(): give preds or probs, one of them")
    truth = as_numpy(y_true).ravel().tolist()
    predicted = (as_numpy(probs).argmax(axis=1).tolist() if probs is not None
                 else as_numpy(preds).ravel().tolist())
    if len(truth) != len(predicted):
        raise ValueError(f"plot.confusion_matrix(): {len(truth)} y_true for "
                         f"{len(predicted)} predictions")
    if class_names is None:
        classes = sorted(set(truth) | set(predicted))
        names = [str(c) for c in classes]
        index = {c: i for i, c in enumerate(classes)}
    else:
        names = [str(c) for c in class_names]
        index = {i: i for i in range(len(names))}
        for value in (*truth, *predicted):
            if value not in index:
                raise ValueError(f"plot.confusion_matrix(): class {value!r} is not an index "
                                 f"into the {len(names)} class_names")
    counts = np.zeros((len(names), len(names)), dtype=int)
    for t, p in zip(truth, predicted):
        counts[index[t], index[p]] += 1
    table = Table(columns=["Actual", "Predicted", "nPredictions"])
    for i, actual in enumerate(names):
        for j, guess in enumerate(names):
            table.add_data(actual, guess, int(counts[i, j]))
    return Chart("confusion_matrix", table,
                 {"actual": "Actual", "predicted": "Predicted", "value": "nPredictions"}, title)


def _curves(y_true: Any, y_probas: Any, labels: Sequence[str] | None,
            classes_to_plot: Sequence[Any] | None, what: str) -> list[tuple[Any, Any, Any]]:
    """Per class to plot (as wandb: each class in y_true, an index into the columns of
    y_probas): its label (``labels[c]``, else the class itself), whether each sample
    is of it, the scores for it."""
    np = need("numpy", "media", what)
    if y_true is None or y_probas is None:
        raise ValueError(f"{what}: y_true and y_probas are needed")
    truth = as_numpy(y_true).ravel()
    probas = as_numpy(y_probas)
    if probas.ndim == 1:
        probas = np.stack([1 - probas, probas], axis=1)
    if probas.shape[0] != truth.shape[0]:
        raise ValueError(f"{what}: {truth.shape[0]} y_true for {probas.shape[0]} rows of y_probas")
    out = []
    for cls in np.unique(truth).tolist():
        if classes_to_plot is not None and cls not in classes_to_plot:
            continue
        if not isinstance(cls, int) or not 0 <= cls < probas.shape[1]:
            raise ValueError(f"{what}: class {cls!r} of y_true is not a column of y_probas "
                             f"({probas.shape[1]} columns)")
        label = str(labels[cls]) if labels is not None and cls < len(labels) else cls
        out.append((label, truth == cls, probas[:, cls]))
    return out


def _sweep(positive: Any, scores: Any) -> tuple[Any, Any]:
    """Cumulative true and false positives with the threshold at each distinct score,
    from the highest score down."""
    np = need("numpy", "media", "a curve")
    order = np.argsort(-scores, kind="mergesort")
    scores, positive = scores[order], positive[order]
    last = np.r_[np.nonzero(np.diff(scores))[0], scores.size - 1]
    return np.cumsum(positive)[last], np.cumsum(~positive)[last]


def pr_curve(y_true: Any = None, y_probas: Any = None, labels: list[str] | None = None,
             classes_to_plot: list[Any] | None = None, interp_size: int = 21,
             title: str = "Precision-Recall Curve", split_table: bool = False) -> Chart:
    """Precision over recall for each class, as wandb stores it: ``interp_size``
    recall points from 1 down to 0, each with the interpolated precision (the best
    precision at that recall or more; 1 at recall 0), rounded to 3 places."""
    np = need("numpy", "media", "plot.pr_curve()")
    table = Table(columns=["class", "precision", "recall"])
    grid = np.linspace(0, 1, interp_size)[::-1]
    for label, positive, scores in _curves(y_true, y_probas, labels, classes_to_plot,
                                           "plot.pr_curve()"):
        tp, fp = _sweep(positive, scores)
        if not tp[-1]:
            continue
        precision = np.r_[1.0, tp / np.maximum(tp + fp, 1)]
        recall = np.r_[0.0, tp / tp[-1]]
        for r in grid:
            best = precision[recall >= r - 1e-12].max()
            table.add_data(label, round(float(best), 3), round(float(r), 3))
    return Chart("pr_curve", table, {"x": "recall", "y": "precision", "stroke": "class"}, title)


def roc_curve(y_true: Any = None, y_probas: Any = None, labels: list[str] | None = None,
              classes_to_plot: list[Any] | None = None, title: str = "ROC Curve",
              split_table: bool = False) -> Chart:
    """True positive rate over false positive rate for each class, as wandb stores it:
    the curve's corners only (a point on a straight run between two others is left
    out), from (0, 0), rounded to 3 places."""
    np = need("numpy", "media", "plot.roc_curve()")
    table = Table(columns=["class", "fpr", "tpr"])
    for label, positive, scores in _curves(y_true, y_probas, labels, classes_to_plot,
                                           "plot.roc_curve()"):
        tp, fp = _sweep(positive, scores)
        if not tp[-1] or not fp[-1]:
            continue
        corners = np.r_[True, np.logical_or(np.diff(fp, 2), np.diff(tp, 2)), True]
        tp, fp = np.r_[0, tp[corners]], np.r_[0, fp[corners]]
        for f, t in zip((fp / fp[-1]).round(3).tolist(), (tp / tp[-1]).round(3).tolist()):
            table.add_data(label, f, t)
    return Chart("roc_curve", table, {"x": "fpr", "y": "tpr", "stroke": "class"}, title)
