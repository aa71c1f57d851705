""":class:`PredictionLog`: the buffer (:mod:`.buffer`) plus reading and compaction.

The reading methods check their arguments, flush what this object buffers (so a process
reads its own writes), compact a folder that has too many parts, then read under the
shared read lock (:mod:`.parts`). What another process buffers appears after its next
flush (about a second, or at once after its ``flush()``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from mlops_jupyter.config.names import validate_model_id, validate_tenant
from mlops_jupyter.errors import ValidationError
from mlops_jupyter.monitoring.predlog.buffer import PredictionBuffer
from mlops_jupyter.monitoring.predlog.compaction import (
    COMPACT_MIN_FILES,
    COMPACT_SMALL_ROWS,
    COMPACT_TARGET_ROWS,
    compact_folder,
    too_many_parts,
)
from mlops_jupyter.monitoring.predlog.encoding import EMPTY_DTYPES, empty_table
from mlops_jupyter.monitoring.predlog.parts import _to_us, count_rows, read_window

log = logging.getLogger(__name__)


class PredictionLog(PredictionBuffer):
    """Batched, columnar log of predictions under a storage home.

    Args:
        home: the storage home (``Settings.home``); parts go to ``{home}/predictions``.
        flush_interval: seconds between background flushes.
        max_buffered: most requests held in memory; beyond it the oldest are dropped
            (counted in :attr:`dropped`) rather than growing without bound. Batches given
            to :meth:`append_table` are never dropped: past this many buffered rows the
            caller writes them itself.
        background: start the background writer thread (False: only explicit flushes).

    Example:
        >>> import tempfile
        >>> import pandas as pd
        >>> df = pd.DataFrame({"sepal_length": [5.1, 4.9, 6.2], "sepal_width": [3.5, 3.0, 2.9]})
        >>> log = PredictionLog(tempfile.mkdtemp(), background=False)
        >>> log.append("default", "iris", version="1.0.0", environment="production",
        ...            latency_s=0.001, success=True, features=df, output=[0, 0, 1])
        >>> log.flush()
        3
    """

    def read(self, tenant: str, model_id: str, since: Any = None, last_n: int | None = None) -> Any:
        """The logged predictions of one model, oldest first, as a pandas DataFrame.

        What this object still buffers is flushed first; what another process (the
        gateway) buffers appears within about a second.

        Args:
            tenant: the tenant slug.
            model_id: the model id.
            since: only rows at or after this time (datetime, pandas Timestamp, ISO string
                or unix seconds).
            last_n: only the last ``last_n`` rows.

        Returns:
            A DataFrame with the columns described in :mod:`.encoding` (empty, with
            the metadata columns, when nothing was logged).

        Raises:
            InvalidTenantError, InvalidNameError: bad tenant or model id.
            ValidationError: bad ``since`` or ``last_n``.

        Example:
            >>> import pandas as pd
            >>> import tempfile
            >>> log = PredictionLog(tempfile.mkdtemp(), background=False)
            >>> for version, rows in (("1.0.0", [[5.1, 3.5], [4.9, 3.0]]), ("1.1.0", [[6.2, 2.9]])):
            ...     log.append("acme", "churn", version=version, latency_s=0.001, success=True,
            ...                features=pd.DataFrame(rows, columns=["a", "b"]), output=[1] * len(rows))
            >>> log.read("acme", "churn", last_n=1000).groupby("version").size()
            version
            1.0.0    2
            1.1.0    1
            dtype: int64
        """
        import pandas as pd

        table = self.read_table(tenant, model_id, since=since, last_n=last_n, dictionary=False)
        if table.num_rows == 0:
            return pd.DataFrame({c: pd.Series(dtype=t) for c, t in EMPTY_DTYPES.items()})
        return table.to_pandas()

    def read_table(
        self,
        tenant: str,
        model_id: str,
        *,
        since: Any = None,
        until: Any = None,
        last_n: int | None = None,
        first_n: int | None = None,
        columns: Sequence[str] | None = None,
        version: str | None = None,
        dictionary: bool = True,
    ) -> Any:
        """Logged predictions of one model as a ``pyarrow.Table``, oldest first.

        Only the row groups that can hold rows of the window are read, and only the
        ``columns`` asked for.

        Args:
            tenant: the tenant slug.
            model_id: the model id.
            since: only rows at or after this time (datetime, Timestamp, ISO string, unix s).
            until: only rows at or before this time.
            last_n: only the last ``n`` rows (by timestamp) of what the other filters keep.
            first_n: only the first ``n`` rows (by timestamp); not with ``last_n``.
            columns: column names to read; :data:`ALL_FEATURES` (``"feature.*"``) stands
                for every feature column. ``timestamp`` is always read. Default: all.
            version: only rows answered by this version.
            dictionary: read text columns dictionary-encoded (pandas ``category``): much
                faster for repeated values such as versions and categorical features.

        Returns:
            A table sorted by ``timestamp`` (empty, with no feature column, when nothing
            matches).

        Raises:
            InvalidTenantError, InvalidNameError: bad tenant or model id.
            ValidationError: bad ``since``, ``until``, ``last_n`` or ``first_n``.

        Example:
            >>> import pandas as pd
            >>> import tempfile
            >>> log = PredictionLog(tempfile.mkdtemp(), background=False)
            >>> log.append("acme", "churn", version="1.0.0", latency_s=0.001, success=True,
            ...            features=pd.DataFrame({"a": [5.1, 4.9, 6.2], "b": [3.5, 3.0, 2.9]}), output=[1, 1, 0])
            >>> t = log.read_table("acme", "churn", last_n=2, columns=["latency_s", "feature.*"])
            >>> t.num_rows, t.column_names
            (2, ['timestamp', 'latency_s', 'feature.a', 'feature.b'])
        """
        validate_tenant(tenant)
        validate_model_id(model_id)
        for name, n in (("last_n", last_n), ("first_n", first_n)):
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
                raise ValidationError(f"Invalid {name} {n!r}.", value=n, allowed="an int >= 0 or None")
        if last_n is not None and first_n is not None:
            raise ValidationError("Give last_n or first_n, not both.", value=(last_n, first_n), allowed="one of them")
        lo = _to_us(since, "since")
        hi = _to_us(until, "until")
        self.flush()
        self.replay_orphans()  # rows a killed gateway worker logged ahead (see .wal)
        folder = self.root / tenant / model_id
        if not folder.is_dir():
            return empty_table()
        if too_many_parts(folder):
            try:
                self.compact(tenant, model_id)
            except Exception as exc:  # reading must not fail because merging did
                log.warning("mlops_jupyter: could not compact the prediction log of %s/%s: %s", tenant, model_id, exc)
        return read_window(
            folder,
            lo=lo,
            hi=hi,
            last_n=last_n,
            first_n=first_n,
            columns=columns,
            version=version,
            dictionary=dictionary,
        )

    def row_count(self, tenant: str, model_id: str) -> int:
        """How many rows are stored for a model (from file metadata; no data read).

        Example:
            >>> import pandas as pd
            >>> import tempfile
            >>> log = PredictionLog(tempfile.mkdtemp(), background=False)
            >>> log.append("acme", "churn", version="1.0.0", latency_s=0.001, success=True,
            ...            features=pd.DataFrame({"a": [5.1, 4.9, 6.2], "b": [3.5, 3.0, 2.9]}), output=[1, 1, 0])
            >>> log.row_count("acme", "churn")
            3
        """
        validate_tenant(tenant)
        validate_model_id(model_id)
        self.flush()
        self.replay_orphans()
        folder = self.root / tenant / model_id
        if not folder.is_dir():
            return 0
        return count_rows(folder)

    def compact(
        self,
        tenant: str,
        model_id: str,
        *,
        min_files: int = COMPACT_MIN_FILES,
        small_rows: int = COMPACT_SMALL_ROWS,
        target_rows: int = COMPACT_TARGET_ROWS,
    ) -> dict[str, int]:
        """Apply the retention policy, then merge a model's parts, tier by tier.

        Parts with fewer than ``small_rows`` rows are merged, in the order they were
        written, into files of up to ``target_rows`` rows, when there are at least
        ``min_files`` of them; larger parts likewise in tiers ten times larger each
        (:mod:`.compaction`). Rows past ``$MLOPS_PREDLOG_MAX_AGE_DAYS`` or beyond the newest
        ``$MLOPS_PREDLOG_MAX_ROWS`` of the model are dropped first. Safe with concurrent writers and readers (see
        :mod:`.compaction`); when another process is compacting the same model this
        returns at once.

        Returns:
            ``{"merged_files": sources merged, "written_files": files written, "rows": rows
            rewritten, "deleted_files": parts dropped by retention, "dropped_rows": rows it
            dropped}`` (zeros when there was nothing to do or the model was busy).

        Example:
            >>> import pandas as pd
            >>> import tempfile
            >>> log = PredictionLog(tempfile.mkdtemp(), background=False)
            >>> log.append("acme", "churn", version="1.0.0", latency_s=0.001, success=True,
            ...            features=pd.DataFrame({"a": [5.1, 4.9, 6.2], "b": [3.5, 3.0, 2.9]}), output=[1, 1, 0])
            >>> log.flush()  # one part
            3
            >>> log.append("acme", "churn", version="1.1.0", latency_s=0.001, success=True,
            ...            features={"a": 5.9, "b": 3.0}, output=1)
            >>> log.flush()  # a second part
            1
            >>> log.compact("acme", "churn", min_files=2)
            {'merged_files': 2, 'written_files': 1, 'rows': 4, 'deleted_files': 0, 'dropped_rows': 0}
        """
        validate_tenant(tenant)
        validate_model_id(model_id)
        folder = self.root / tenant / model_id
        if not folder.is_dir():
            return {"merged_files": 0, "written_files": 0, "rows": 0, "deleted_files": 0, "dropped_rows": 0}
        import time

        from mlops_jupyter.monitoring import limits

        retention = (int(time.time() * 1e6), limits.predlog_max_age_s(), limits.predlog_max_rows())
        return compact_folder(
            folder, self._seq, min_files=min_files, small_rows=small_rows, target_rows=target_rows, retention=retention
        )
