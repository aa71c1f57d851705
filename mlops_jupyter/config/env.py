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

# Monitoring limits (read by mlops_jupyter.monitoring.limits, each with a default there).
MLOPS_DRIFT_MIN_ROWS = "MLOPS_DRIFT_MIN_ROWS"
"""Fewest current rows a drift check decides on (default 100); fewer give ``low_sample``."""
MLOPS_DRIFT_ALPHA = "MLOPS_DRIFT_ALPHA"
"""False-discovery rate of the drift decision's Benjamini-Hochberg correction (default 0.05)."""
MLOPS_PREDLOG_MAX_AGE_DAYS = "MLOPS_PREDLOG_MAX_AGE_DAYS"
"""Predictions older than this many days are dropped by compaction (default 400; 0 keeps all)."""
MLOPS_PREDLOG_MAX_ROWS = "MLOPS_PREDLOG_MAX_ROWS"
"""Most predictions kept per model; compaction drops the oldest beyond it (default 20 000 000)."""
MLOPS_ALERT_ACTION_TIMEOUT = "MLOPS_ALERT_ACTION_TIMEOUT"
"""Seconds one alert action attempt may take (default 10)."""
MLOPS_ALERT_ACTION_ATTEMPTS = "MLOPS_ALERT_ACTION_ATTEMPTS"
"""Attempts per alert action before it is recorded as failed (default 5, backoff doubling from 1 s)."""

MLOPS_DEPLOY_TARGET = "MLOPS_DEPLOY_TARGET"
"""Deployment target used when no ``target`` argument is given: ``local`` (default), ``ray``, ``kserve``."""

MLOPS_RAY_NUM_CPUS = "MLOPS_RAY_NUM_CPUS"
"""CPUs of the local Ray the ``ray`` target starts when no Ray address is given (default 2)."""

MLOPS_RAY_REPLICA_CPUS = "MLOPS_RAY_REPLICA_CPUS"
"""CPUs a Ray replica asks for when the deployment's config gives no ``resources.cpu`` (default 0.25)."""

MLOPS_RAY_INGRESS_CPUS = "MLOPS_RAY_INGRESS_CPUS"
"""CPUs of the Ray target's ingress replica (default 0.1)."""

MLOPS_RAY_MAX_ONGOING = "MLOPS_RAY_MAX_ONGOING"
"""Requests one Ray replica takes at a time (Serve's ``max_ongoing_requests``, default 64)."""

MLOPS_RAY_START_TIMEOUT = "MLOPS_RAY_START_TIMEOUT"
"""Seconds the ``ray`` target waits for Ray to start (its agents), Serve's replicas and its ingress (default 300)."""

# --- Serving gateway limits (issue 12, HTTP engine; read by config.settings.gateway_limits) ---
MLOPS_GATEWAY_HEADER_TIMEOUT = "MLOPS_GATEWAY_HEADER_TIMEOUT"
"""Seconds a client has to send a request's headers once it started it (default 10; else 408)."""
MLOPS_GATEWAY_IDLE_TIMEOUT = "MLOPS_GATEWAY_IDLE_TIMEOUT"
"""Seconds an idle keep-alive connection, or one whose answers are not read, is kept (default 30)."""
MLOPS_GATEWAY_BODY_TIMEOUT = "MLOPS_GATEWAY_BODY_TIMEOUT"
"""Seconds a client has to send a request's body once its headers are in (default 30; else 408)."""
MLOPS_GATEWAY_REQUEST_TIMEOUT = "MLOPS_GATEWAY_REQUEST_TIMEOUT"
"""Seconds a prediction may take from its request read to its answer (default 30; else 504)."""
MLOPS_GATEWAY_MAX_CONNECTIONS = "MLOPS_GATEWAY_MAX_CONNECTIONS"
"""Connections served at once; one more gets 503 + Retry-After (default 4096, at most the fd limit - 64)."""
MLOPS_GATEWAY_MAX_HEADER_BYTES = "MLOPS_GATEWAY_MAX_HEADER_BYTES"
"""Bytes of a request's line and headers, however they arrive (default 32 KiB; else 431)."""
MLOPS_GATEWAY_MAX_HEADERS = "MLOPS_GATEWAY_MAX_HEADERS"
"""Header lines of a request (default 100; else 431)."""
MLOPS_GATEWAY_MAX_BODY_BYTES = "MLOPS_GATEWAY_MAX_BODY_BYTES"
"""Bytes of one request body (default 8 MiB; else 413)."""
MLOPS_GATEWAY_MAX_INFLIGHT_BODY_BYTES = "MLOPS_GATEWAY_MAX_INFLIGHT_BODY_BYTES"
"""Bytes of request bodies held at once across all connections (default 256 MiB; else 503)."""
MLOPS_GATEWAY_WRITE_BUFFER_BYTES = "MLOPS_GATEWAY_WRITE_BUFFER_BYTES"
"""Unsent answer bytes of a connection above which it is not read (default 256 KiB)."""
MLOPS_GATEWAY_SEND_TIMEOUT = "MLOPS_GATEWAY_SEND_TIMEOUT"
"""Seconds a connection's unread answers may go undrained before it is closed (default 10; at most the idle timeout)."""
MLOPS_GATEWAY_MAX_OUTBOUND_BYTES = "MLOPS_GATEWAY_MAX_OUTBOUND_BYTES"
"""Unread answer bytes a worker holds at once (default 256 MiB; past it the connections holding most are closed)."""
MLOPS_GATEWAY_INFERENCE_THREADS = "MLOPS_GATEWAY_INFERENCE_THREADS"
"""Threads that run predictions off the event loop (default 8)."""
MLOPS_GATEWAY_MODEL_CONCURRENCY = "MLOPS_GATEWAY_MODEL_CONCURRENCY"
"""Predictions of one model version running at once (default 4; one of them the micro-batch)."""
MLOPS_GATEWAY_INLINE_MAX_ROWS = "MLOPS_GATEWAY_INLINE_MAX_ROWS"
"""Rows up to which a trusted, fast model's micro-batch predicts on the event loop (default 64; 0: never)."""
MLOPS_GATEWAY_INLINE_BUDGET = "MLOPS_GATEWAY_INLINE_BUDGET"
"""Seconds an inline micro-batch may hold the event loop (default 0.002); see gateway.inline."""
MLOPS_GATEWAY_INLINE_RETRY = "MLOPS_GATEWAY_INLINE_RETRY"
"""Seconds before a version sent back to the pool tries the event loop again (default 30,
doubling at each demotion; 0: never); see gateway.inline."""
MLOPS_GATEWAY_ACCEPT_ERROR_INTERVAL = "MLOPS_GATEWAY_ACCEPT_ERROR_INTERVAL"
"""Seconds between log lines about refused accepts (EMFILE...), each with the count (default 10)."""
MLOPS_GATEWAY_BALANCE_INTERVAL = "MLOPS_GATEWAY_BALANCE_INTERVAL"
"""Seconds between two checks of how evenly the workers hold the busy connections (default 0.5;
0: never); see gateway.balance."""

# Gateway workers and the prediction log's spool (read by mlops_jupyter.gateway.cluster).
MLOPS_GATEWAY_WORKERS = "MLOPS_GATEWAY_WORKERS"
"""Serving worker processes sharing the gateway's port (default: one per core)."""
MLOPS_PREDLOG_SPOOL = "MLOPS_PREDLOG_SPOOL"
"""Requests a gateway worker keeps in memory while its prediction log cannot be written (default 200 000)."""
MLOPS_PREDLOG_DURABLE = "MLOPS_PREDLOG_DURABLE"
"""1 (default): ``track_prediction(s)`` survive kill -9 (write-ahead log); 0: buffered only, faster."""

# Writes to a tracking server (read by mlops_jupyter.config.settings.server_write_concurrency).
MLOPS_SERVER_WRITE_CONCURRENCY = "MLOPS_SERVER_WRITE_CONCURRENCY"
"""``log_batch`` requests the background writer keeps in flight to a tracking server (default 2)."""

# Waits on a tracking server (read by mlops_jupyter.config.settings.server_bounds).
MLOPS_SERVER_CONNECT_TIMEOUT = "MLOPS_SERVER_CONNECT_TIMEOUT"
"""Seconds a tracking server has to accept a connection and answer its health check (default 3)."""
MLOPS_SERVER_TIMEOUT = "MLOPS_SERVER_TIMEOUT"
"""Seconds a tracking server has to answer one request a user waits on, e.g. opening a run (default 30)."""
MLOPS_SERVER_RETRIES = "MLOPS_SERVER_RETRIES"
"""Retries of a request a user waits on when the server cannot be reached or fails (default 2)."""
