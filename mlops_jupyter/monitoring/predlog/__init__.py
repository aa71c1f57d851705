"""The prediction log: every prediction served (or tracked), stored columnar for monitoring.

Writers append to an in-memory buffer (no I/O on the caller's path); a background thread
turns what accumulated into one Parquet part file per (tenant, model) about every second,
and once more on :meth:`PredictionLog.close` (at interpreter exit, and on SIGTERM in the
gateway)::

    {home}/predictions/{tenant}/{model_id}/part-{flush_ms}-{pid}-{seq}.parquet

One row per predicted input row. Three ways in: :meth:`PredictionLog.append` (one request,
any feature shape: the gateway's), :meth:`PredictionLog.append_row` (one row with a dict of
features: about a microsecond, for ``track_prediction``) and
:meth:`PredictionLog.append_table` (a columnar batch, for ``track_predictions``).
:meth:`PredictionLog.read_table` reads only the requested columns, and only the row groups
of the time range (``since``/``until``) or of the last (first) ``n`` rows. Small parts are
merged by :meth:`PredictionLog.compact`.

The modules, each with its part of the format or protocol written down at its top:

* :mod:`.encoding`: the columns, the buffered record layouts, records to Arrow tables;
* :mod:`.buffer`: appending, flushing (the flush contract and its locks), the background
  thread and the flush at exit;
* :mod:`.parts`: the files on disk, their names, the locks between processes, and
  windowed reads;
* :mod:`.compaction`: when and how parts are merged;
* :mod:`.wal`: the write-ahead segments that make a gateway worker's predictions durable
  before their answer is sent, and their replay after a crash;
* :mod:`.log`: :class:`PredictionLog`, the buffer plus reading and compaction.

Example:
    >>> import tempfile
    >>> log = PredictionLog(tempfile.mkdtemp(), background=False)
    >>> log.append("acme", "churn", version="1.0.0", environment="production",
    ...            latency_s=0.0004, success=True, features={"age": 41, "plan": "pro"},
    ...            output=[1])
    >>> log.flush()
    1
    >>> log.read("acme", "churn")[["version", "feature.age", "prediction"]]
      version  feature.age  prediction
    0   1.0.0           41           1
"""

from mlops_jupyter.monitoring.predlog.buffer import DEFAULT_FLUSH_INTERVAL, DEFAULT_MAX_BUFFERED, request_record
from mlops_jupyter.monitoring.predlog.compaction import (
    COMPACT_MIN_FILES,
    COMPACT_ON_READ,
    COMPACT_SMALL_ROWS,
    COMPACT_TARGET_ROWS,
)
from mlops_jupyter.monitoring.predlog.encoding import (
    ALL_FEATURES,
    FEATURE_PREFIX,
    PREDICTION_COLUMN,
    sort_by_time,
    unify_tables,
)
from mlops_jupyter.monitoring.predlog.log import PredictionLog
from mlops_jupyter.monitoring.predlog.parts import COMPACT_LOCK, READ_LOCK, ROW_GROUP_ROWS, _to_us

__all__ = [
    "ALL_FEATURES",
    "COMPACT_LOCK",
    "COMPACT_MIN_FILES",
    "COMPACT_ON_READ",
    "COMPACT_SMALL_ROWS",
    "COMPACT_TARGET_ROWS",
    "DEFAULT_FLUSH_INTERVAL",
    "DEFAULT_MAX_BUFFERED",
    "FEATURE_PREFIX",
    "PREDICTION_COLUMN",
    "READ_LOCK",
    "ROW_GROUP_ROWS",
    "PredictionLog",
    "_to_us",
    "request_record",
    "sort_by_time",
    "unify_tables",
]
