"""References: the data a model's predictions are compared with, and which one applies.

In this order, for the version in scope (``version=``, or the version that answered the
window's latest prediction):

1. the data given to ``set_reference`` for that version, stored under the storage home
   (``monitoring/<tenant>/<model>/reference-<version>.parquet``), so the gateway's alert
   pass uses it too;
2. the data given to ``set_reference`` for the model (``reference.parquet``);
3. the ``reference_data`` stored with the version at versioning
   (``create_version(..., reference_data=df)``);
4. else the first :data:`REFERENCE_ROWS` (1 000) predictions logged for the model
   (:func:`first_predictions`; then only later predictions are compared with them).

``reference_source`` in a drift result says which one was used: ``"set_reference"``,
``"version"`` or ``"first_predictions"``.

Reading is cached: a stored file is read again only when its size or mtime changes; a
version's reference data is kept once found, and its absence (or an unreachable registry)
is remembered for :data:`NEGATIVE_CACHE_S` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from mlops_jupyter.config.names import VERSION_RE, validate_version
from mlops_jupyter.config.settings import references_dir
from mlops_jupyter.errors import MLOpsError, ValidationError
from mlops_jupyter.monitoring.ingest import UNVERSIONED
from mlops_jupyter.monitoring.predlog import ALL_FEATURES

log = logging.getLogger(__name__)

REFERENCE_ROWS = 1000
"""With no reference data, the first this many logged predictions form the reference."""
NEGATIVE_CACHE_S = 30.0
"""Seconds a version without reference data (or an unreachable registry) is not asked again."""
SET_REFERENCE, VERSION, FIRST_PREDICTIONS = "set_reference", "version", "first_predictions"
"""The values of ``reference_source``."""


class Reference(NamedTuple):
    """The reference that applies to a model (version)."""

    frame: Any
    """A DataFrame of input features under their plain names."""
    source: str
    """``set_reference`` or ``version``."""
    version: str | None
    """The version it belongs to (None: set for every version of the model)."""


class _CachedFile(NamedTuple):
    stat: tuple[int, int]  # (size, mtime_ns)
    frame: Any


class _CachedVersion(NamedTuple):
    retry_at: float  # time.monotonic() after which a miss is asked again
    frame: Any


class References:
    """One tenant's stored references, and the versions' reference data.

    Args:
        home: the storage home.
        tenant: the tenant.
        versioning: returns the versioning API (built only when a version's reference data
            is first needed).
    """

    def __init__(self, home: Path, tenant: str, versioning: Callable[[], Any]) -> None:
        self.home = Path(home)
        self.tenant = tenant
        self._versioning = versioning
        self._files: dict[str, _CachedFile] = {}
        self._versions: dict[tuple[str, str], _CachedVersion] = {}

    def path(self, model_id: str, version: str | None) -> Path:
        """Where ``set_reference`` stores the reference of a model (of one version)."""
        name = "reference.parquet" if version is None else f"reference-{version}.parquet"
        return references_dir(self.home, self.tenant, model_id) / name

    def set(self, model_id: str, data: Any, version: str | None = None) -> dict[str, Any]:
        """Store ``data`` as the reference of a model (of one version); ``model_id`` is valid.

        See :meth:`~mlops_jupyter.monitoring.facade.ModelMonitoring.set_reference`.
        """
        import pandas as pd

        if isinstance(data, Mapping) and not isinstance(data, pd.DataFrame):
            try:
                data = pd.DataFrame(dict(data))
            except (TypeError, ValueError) as exc:
                raise ValidationError(
                    f"Reference data could not be read as columns: {exc}",
                    value=type(data).__name__,
                    allowed="a non-empty pandas DataFrame",
                ) from exc
        if not isinstance(data, pd.DataFrame) or data.empty or data.shape[1] == 0:
            raise ValidationError(
                "Reference data must be a non-empty pandas DataFrame of input features.",
                value=type(data).__name__ if not isinstance(data, pd.DataFrame) else data.shape,
                allowed="a DataFrame with at least one row and one feature column",
            )
        if version is not None:
            validate_version(version)
        frame = data.copy()
        frame.columns = [str(c) for c in frame.columns]
        frame = frame.reset_index(drop=True)
        path = self.path(model_id, version)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(path)
        return {
            "model_id": model_id,
            "version": version,
            "rows": len(frame),
            "columns": list(frame.columns),
            "reference_source": SET_REFERENCE,
        }

    def find(self, model_id: str, version: str | None) -> Reference | None:
        """The reference of ``version`` (steps 1 to 3 of the module docstring), or None.

        Args:
            model_id: the model.
            version: the version in scope (None, or ``unversioned``: only the model's own).
        """
        versioned = bool(version) and version != UNVERSIONED
        candidates = [version] if versioned and VERSION_RE.fullmatch(version) else []
        for v in [*candidates, None]:
            df = self._read_file(self.path(model_id, v))
            if df is not None:
                return Reference(df, SET_REFERENCE, v)
        if versioned:
            assert version is not None
            df = self._version_reference(model_id, version)
            if df is not None and len(df):
                return Reference(df, VERSION, version)
        return None

    def _read_file(self, path: Path) -> Any:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        key = (st.st_size, st.st_mtime_ns)
        hit = self._files.get(str(path))
        if hit is not None and hit.stat == key:
            return hit.frame
        import pandas as pd

        df = pd.read_parquet(path)
        self._files[str(path)] = _CachedFile(key, df)
        return df

    def _version_reference(self, model_id: str, version: str) -> Any:
        key = (model_id, version)
        hit = self._versions.get(key)
        now = time.monotonic()
        if hit is not None and (hit.frame is not None or now < hit.retry_at):
            return hit.frame
        df = None
        try:
            versioning = self._versioning()
            v = versioning.get_version(model_id, version)
            if v.get("has_reference"):
                df = versioning.load_reference_data(model_id, v["version"])
        except MLOpsError:
            df = None  # not a registered model or version: no reference of this kind
        except Exception as exc:  # the registry is unreachable: try again later
            log.warning("mlops_jupyter: could not read the reference data of %s %s: %s", model_id, version, exc)
            df = None
        self._versions[key] = _CachedVersion(now + NEGATIVE_CACHE_S, df)
        return df


def first_predictions(predlog: Any, tenant: str, model_id: str, rows: int, version: str | None) -> Any:
    """The first ``rows`` logged predictions of a model (of one version): ``timestamp`` and
    the ``feature.*`` columns, as a DataFrame (step 4 of the module docstring)."""
    return predlog.read_table(tenant, model_id, first_n=rows, version=version, columns=[ALL_FEATURES]).to_pandas()
