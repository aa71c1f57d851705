"""Names of the environment variables mlops_jupyter reads (one place for all of them)."""

MLOPS_TENANT = "MLOPS_TENANT"
"""Tenant used when no ``tenant_id`` argument is given."""

MLFLOW_TRACKING_URI = "MLFLOW_TRACKING_URI"
"""MLflow tracking URI used when no ``mlflow_uri`` argument is given (MLflow's own name)."""

MLOPS_HOME = "MLOPS_HOME"
"""Storage folder (embedded store) used when no ``storage_path`` argument is given."""

DEFAULT_HOME = ".mlops"
DEFAULT_TENANT = "default"

MLOPS_ALERT_INTERVAL = "MLOPS_ALERT_INTERVAL"
"""Seconds between the gateway's alert passes (default 5); read when the gateway starts."""
