"""A model version's artifact: how it is written (an MLflow model folder), loaded, and hashed.

The folder is an MLflow model (``MLmodel`` and the flavor's files): scikit-learn estimators
get MLflow's sklearn flavor, anything else with ``predict()`` a pyfunc wrapper. Its
integrity hash (:func:`sha256_dir`) covers every file's relative name and content, in
sorted order, so any change, addition or removal is seen; the gateway checks the same hash
before it serves a version.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

MODEL_DIR = "model"
"""The model folder inside a version's artifacts."""
MLFLOW_META_FILE = "registered_model_meta"  # mlflow.store.artifact.models_artifact_repo
_PINNED = ("mlflow", "scikit-learn", "cloudpickle", "numpy", "pandas", "scipy")


def sha256_dir(path: Path) -> str:
    """sha256 over every file of a folder (relative names and contents, in sorted order).

    MLflow's own ``registered_model_meta`` at the top is left out: MLflow writes it into the
    model folder itself whenever a client loads ``models:/NAME/VERSION`` from a local store.
    """
    h = hashlib.sha256()
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p != root / MLFLOW_META_FILE)
    for p in files:
        rel = p.relative_to(root).as_posix().encode()
        h.update(len(rel).to_bytes(4, "big") + rel)
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def sha256_file(path: str | Path) -> str:
    """sha256 of one file's bytes (the model file a user versioned)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pip_requirements() -> list[str]:
    """Explicit requirements, so MLflow skips its 3 to 7 s requirement inference."""
    from importlib.metadata import version

    reqs = []
    for dist in _PINNED:
        try:
            reqs.append(f"{dist}=={version(dist)}")
        except Exception:
            pass
    return reqs


def load_model_file(path: str) -> Any:
    """Load a pickled or joblib model file given by the user (their own file)."""
    import joblib

    return joblib.load(path)


def save_model(model: Any, path: Path) -> None:
    """Write ``model`` as an MLflow model folder at ``path`` (which must not exist)."""
    reqs = pip_requirements()
    try:
        from sklearn.base import BaseEstimator
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        BaseEstimator = ()  # type: ignore[assignment,misc]
    if isinstance(model, BaseEstimator):
        import mlflow.sklearn

        # MLflow warns that pickle formats run code on load; the artifact's sha256 is
        # verified before every load instead (ModelVersioning.load_model), so the warning
        # is noise here.
        sk_log = logging.getLogger("mlflow.sklearn")
        level = sk_log.level
        sk_log.setLevel(logging.ERROR)
        try:
            mlflow.sklearn.save_model(model, str(path), serialization_format="cloudpickle", pip_requirements=reqs)
        finally:
            sk_log.setLevel(level)
    else:
        import mlflow.pyfunc

        class _PredictWrapper(mlflow.pyfunc.PythonModel):
            """pyfunc wrapper for models with predict() that are not scikit-learn estimators."""

            def __init__(self, inner: Any) -> None:
                self.inner = inner

            def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
                return self.inner.predict(model_input)

        mlflow.pyfunc.save_model(str(path), python_model=_PredictWrapper(model), pip_requirements=reqs)


def load_model_dir(path: Path) -> Any:
    """Load an MLflow model folder: the sklearn flavor if it has one, else pyfunc."""
    import mlflow.pyfunc
    from mlflow.models import Model

    flavors = Model.load(str(Path(path) / "MLmodel")).flavors
    if "sklearn" in flavors:
        import mlflow.sklearn

        return mlflow.sklearn.load_model(str(path))
    return mlflow.pyfunc.load_model(str(path))


def local_model_dir(source: str, cache: Path, tracking_uri: str) -> Path:
    """The local folder of a registered version's model: its own folder on a local store,
    else a fresh download into ``cache`` (emptied first)."""
    if source.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(source).path))
    from mlflow.artifacts import download_artifacts

    if cache.exists():
        shutil.rmtree(cache)
    cache.mkdir(parents=True)
    return Path(download_artifacts(artifact_uri=source, dst_path=str(cache), tracking_uri=tracking_uri))


def read_parquet_artifact(uri: str, tracking_uri: str) -> Any:
    """A DataFrame stored as a parquet artifact (a version's reference data)."""
    import pandas as pd
    from mlflow.artifacts import download_artifacts

    with tempfile.TemporaryDirectory() as tmp:
        return pd.read_parquet(download_artifacts(artifact_uri=uri, dst_path=tmp, tracking_uri=tracking_uri))
