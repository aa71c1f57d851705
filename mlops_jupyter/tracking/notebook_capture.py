"""What a notebook cell did, found by parsing it (no IPython import, no guessing).

- :func:`literal_params`: top-level assignments of literals (``max_depth = 10``).
- :func:`sklearn_fits`: scikit-learn estimators fitted in the cell (``clf.fit(X, y)`` or
  ``clf = Model().fit(X, y)``), with their params and MLflow-style training metrics.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Mapping
from typing import Any

LITERAL_TYPES = (int, float, str, bool)


def parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except SyntaxError:
        return None


def literal_params(tree: ast.Module | None) -> dict[str, Any]:
    """Top-level ``name = <literal>`` (and ``name: T = <literal>``) assignments; last wins."""
    out: dict[str, Any] = {}
    if tree is None:
        return out
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if not isinstance(target, ast.Name) or target.id.startswith("_"):
            continue
        try:
            v = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(v, LITERAL_TYPES) or (
            isinstance(v, (list, tuple)) and all(isinstance(i, LITERAL_TYPES) for i in v)
        ):
            out[target.id] = v
    return out


def _fit_calls(tree: ast.Module) -> list[tuple[str | None, ast.Call, str | None]]:
    """(receiver name, call, assigned-to name) for every ``.fit(...)`` in the cell."""
    assigned: dict[int, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            assigned[id(node.value)] = node.targets[0].id
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "fit":
            recv = node.func.value.id if isinstance(node.func.value, ast.Name) else None
            calls.append((recv, node, assigned.get(id(node))))
    return calls


def _arg(call: ast.Call, index: int, name: str, ns: Mapping[str, Any]) -> Any:
    node = call.args[index] if len(call.args) > index else next((k.value for k in call.keywords if k.arg == name), None)
    if isinstance(node, ast.Name):
        return ns.get(node.id)
    return None


def sklearn_fits(tree: ast.Module | None, ns: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Fitted scikit-learn estimators of the cell: name, estimator, params, training metrics.

    Only runs when scikit-learn is already imported (a cell that fits a model imported it).
    Training metrics follow MLflow's sklearn autolog names (``training_accuracy_score``...)
    and are computed when the cell passed ``X`` and ``y`` as plain variable names.
    """
    if tree is None or "sklearn" not in sys.modules:
        return []
    from sklearn.base import BaseEstimator

    out, seen = [], set()
    for recv, call, target in _fit_calls(tree):
        name = recv if recv in ns else target
        est = ns.get(name) if name else None
        if not isinstance(est, BaseEstimator) or id(est) in seen:
            continue
        seen.add(id(est))
        X, y = _arg(call, 0, "X", ns), _arg(call, 1, "y", ns)
        out.append(
            {
                "name": name,
                "estimator": est,
                "params": _flat_params(est),
                "metrics": training_metrics(est, X, y) if X is not None and y is not None else {},
            }
        )
    return out


def _flat_params(est: Any) -> dict[str, str]:
    params = {}
    for k, v in est.get_params(deep=False).items():
        s = repr(v) if not isinstance(v, str) else v
        params[k] = s[:500]
    return params


def training_metrics(est: Any, X: Any, y: Any) -> dict[str, float]:
    """MLflow-autolog-style training metrics of a fitted estimator on its training data."""
    from sklearn import metrics as m
    from sklearn.base import is_classifier, is_regressor

    try:
        pred = est.predict(X)
    except Exception:
        return {}
    out: dict[str, float] = {}
    try:
        if is_classifier(est):
            out["training_accuracy_score"] = float(m.accuracy_score(y, pred))
            for key, fn in (
                ("training_precision_score", m.precision_score),
                ("training_recall_score", m.recall_score),
                ("training_f1_score", m.f1_score),
            ):
                out[key] = float(fn(y, pred, average="weighted", zero_division=0))
        elif is_regressor(est):
            out["training_mean_squared_error"] = float(m.mean_squared_error(y, pred))
            out["training_mean_absolute_error"] = float(m.mean_absolute_error(y, pred))
            out["training_r2_score"] = float(m.r2_score(y, pred))
        out["training_score"] = float(est.score(X, y))
    except Exception:
        pass
    return {k: v for k, v in out.items() if v == v and abs(v) != float("inf")}


class DeferredRun:
    """A cell's run that exists only once something is logged into it.

    Cell autolog sets one as the ambient run (:func:`~mlops_jupyter.tracking.tracker.set_ambient_run`)
    while a cell executes: an explicit ``tracker.log_*`` call in the cell opens the run then
    (:meth:`materialize`), and a cell that logs nothing leaves no run behind. ``open_run``
    is called at most once; trackers on another store or tenant get ``None``.
    """

    def __init__(self, tracker: Any, open_run: Any) -> None:
        self.tracker = tracker
        self._open_run = open_run
        self.run: Any = None

    def matches(self, tracker: Any) -> bool:
        return tracker.store is self.tracker.store and tracker.tenancy.tenant == self.tracker.tenancy.tenant

    def materialize(self, tracker: Any = None) -> Any:
        if tracker is not None and not self.matches(tracker):
            return None
        if self.run is None:
            from mlops_jupyter.tracking.tracker import set_ambient_run

            self.run = self._open_run()
            set_ambient_run(self.run)
        return self.run
