"""Model monitoring. Prediction logs, drift and alerts arrive with the monitoring feature
(issue #4); until then every method raises :class:`FeatureNotAvailableError`."""

from __future__ import annotations

from typing import Any

from mlops_jupyter.core.settings import Settings
from mlops_jupyter.errors import FeatureNotAvailableError

FEATURE = "monitoring (prediction log, drift and alerts, issue #4)"


class ModelMonitoring:
    """Tracks predictions, detects drift and fires alerts (not built yet)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def track_prediction(self, model_id: str, prediction_time: float, success: bool,
                         input_features: dict[str, Any] | None = None, **kwargs: Any) -> None:
        raise FeatureNotAvailableError("track_prediction", FEATURE)

    def check_drift(self, model_id: str, threshold: float = 0.1, **kwargs: Any) -> dict[str, Any]:
        raise FeatureNotAvailableError("check_drift", FEATURE)

    def set_alert(self, model_id: str, condition: str, action: str, **kwargs: Any) -> dict[str, Any]:
        raise FeatureNotAvailableError("set_alert", FEATURE)
