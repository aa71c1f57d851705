"""Model monitoring: the prediction log, drift against a reference, performance, alerts.

Every prediction the gateway serves is logged (latency, success, version, environment,
input features, output) into the columnar prediction log
(:mod:`~mlops_jupyter.monitoring.predlog`); :class:`ModelMonitoring`'s ``track_prediction``
and ``track_predictions`` log predictions made elsewhere into the same log
(:mod:`~mlops_jupyter.monitoring.ingest`). Writes are buffered in memory and written about
once a second by a background thread, and at interpreter exit, so they are never lost on
exit and never wait on the disk. Before a read, a running gateway of the home is asked to
write what it has buffered (:mod:`~mlops_jupyter.monitoring.sync`).

- **Windows** (:mod:`~mlops_jupyter.monitoring.windows`): every read takes a ``window``:
  ``None`` for the last 1 000 predictions, an int ``N`` for the last ``N``, or a span such
  as ``"30m"``, ``"1h"`` or ``"2d"`` before now (the monitoring object's clock).
- **Reference** (:mod:`~mlops_jupyter.monitoring.references`): ``check_drift`` compares the
  window with the data given to ``set_reference`` for the version in scope, else for the
  model, else the ``reference_data`` stored with the version, else the first 1 000
  predictions logged for the model; ``reference_source`` says which.
- **Drift** (:mod:`~mlops_jupyter.monitoring.drift_check` over the pure statistics of
  :mod:`~mlops_jupyter.monitoring.drift`): per feature, Kolmogorov-Smirnov and PSI for
  numbers, chi-square and Jensen-Shannon for categories; a feature drifted when its test is
  significant after Benjamini-Hochberg correction and its bias-corrected effect is above the
  threshold (``decision`` in the result); fewer rows than ``$MLOPS_DRIFT_MIN_ROWS`` give
  ``status: "low_sample"``. When there is nothing to
  compare the result says why (``status``, ``reason``) rather than raising; bad arguments
  raise typed errors.
- **Performance** (:mod:`~mlops_jupyter.monitoring.performance`): average, p50, p95 and p99
  latency, success and error rates, counts, overall and per version.
- **Alerts** (:mod:`mlops_jupyter.monitoring.alerts`): rules in a safe grammar, evaluated on
  ``evaluate_alerts`` and by the gateway as traffic arrives (``check_drift`` only reads);
  actions run on their own threads with a timeout, retries and an idempotency key.

:class:`ModelMonitoring` (:mod:`~mlops_jupyter.monitoring.facade`) is the one object users
hold; it is imported on first use, so importing this package stays cheap.

Example:
    >>> from mlops_jupyter import create_model_monitoring
    >>> monitoring = create_model_monitoring(tenant_id="tenant_123")
    >>> monitoring.check_drift("ticket_classifier", threshold=0.1)["drift_detected"]
    False
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_jupyter.monitoring.facade import ModelMonitoring

__all__ = ["ModelMonitoring"]


def __getattr__(name: str) -> Any:
    if name == "ModelMonitoring":
        from mlops_jupyter.monitoring.facade import ModelMonitoring

        return ModelMonitoring
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
