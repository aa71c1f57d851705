"""Model versioning: MLflow Model Registry underneath, semantic versions on top.

Each version is an MLflow registered model version of ``{tenant}.{model_id}`` whose tags
carry the semantic version, the artifact's sha256, the parent version, the metadata and
the data sources. Aliases: ``v1_0_0`` for every version (so ``models:/t.m@v1_0_0`` works in
any MLflow client), and ``production`` for the live one, moved by :meth:`rollback_model`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from mlops_jupyter.config.settings import Settings
from mlops_jupyter.registry.semver import BUMPS, SEMVER_RE, bump_version, parse_semver
from mlops_jupyter.storage.store import TrackingStore, now_ms
from mlops_jupyter.config.names import TENANT_TAG
from mlops_jupyter.tracking.tracker import ExperimentTracker, iso_ms
from mlops_jupyter.errors import (
    IntegrityError,
    InvalidVersionError,
    ModelNotFoundError,
    NotFoundError,
    ValidationError,
    VersionNotFoundError,
)

LIVE_ALIAS = "production"
REGISTRY_EXPERIMENT = "model-registry"
MODEL_DIR = "model"
REFERENCE_FILE = "reference/reference.parquet"
T_SEMVER, T_SHA, T_PARENT, T_META, T_SOURCES, T_CREATED, T_MODEL_ID = (
    "mlops.semver", "mlops.sha256", "mlops.parent", "mlops.metadata", "mlops.data_sources",
    "mlops.created_at", "mlops.model_id",
)
T_REFERENCE = "mlops.reference"
T_PREVIOUS_LIVE = "mlops.previous_live"


def alias_of(semver: str) -> str:
    return "v" + semver.replace(".", "_")


VERSION_ALIAS_RE = re.compile(r"v\d+_\d+_\d+")


def user_aliases(aliases: Mapping[str, Any] | None) -> dict[str, str]:
    """Aliases other than the per-version ``vX_Y_Z`` ones: ``{alias: registry version}``."""
    return {a: str(v) for a, v in (aliases or {}).items() if not VERSION_ALIAS_RE.fullmatch(a)}


MLFLOW_META_FILE = "registered_model_meta"  # mlflow.store.artifact.models_artifact_repo


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


def _pip_requirements(model: Any) -> list[str]:
    """Explicit requirements, so MLflow skips its 3 to 7 s requirement inference."""
    from importlib.metadata import version

    reqs = []
    for dist in ("mlflow", "scikit-learn", "cloudpickle", "numpy", "pandas", "scipy"):
        try:
            reqs.append(f"{dist}=={version(dist)}")
        except Exception:
            pass
    return reqs


def _load_model_file(path: str) -> Any:
    """Load a pickled or joblib model file given by the user (their own file)."""
    import joblib

    return joblib.load(path)


class ModelVersioning:
    """Versions models for one tenant in the MLflow Model Registry.

    Example:
        >>> versioning = create_model_versioning(tenant_id="tenant_123")
        >>> v = versioning.create_version("ticket_classifier", model=clf,
        ...                               metadata={"training_data": "tickets_2024.csv"})
        >>> v["version"]
        '1.0.0'
    """

    def __init__(self, settings: Settings, tracker: ExperimentTracker | None = None) -> None:
        self.settings = settings
        self.tenancy = settings.tenancy
        self.store = TrackingStore.for_settings(settings)
        self.tracker = tracker
        self.deployment: Any = None  # set by the pipeline; rollbacks move live deployments

    @property
    def client(self) -> Any:
        return self.store.client

    # -- registry helpers --------------------------------------------------------------
    def _registered(self, model_id: str) -> Any:
        from mlflow.exceptions import MlflowException

        name = self.tenancy.model_name(model_id)
        try:
            rm = self.client.get_registered_model(name)
        except MlflowException:
            rm = None
        if rm is None or not self.tenancy.owns_model(rm):
            raise ModelNotFoundError(
                f"No model {model_id!r} for tenant {self.tenancy.tenant!r}.",
                value=model_id,
                allowed=self.list_models() or "(no models yet: create one with create_version)",
            )
        return rm

    def _versions(self, model_id: str) -> list[Any]:
        rm = self._registered(model_id)
        mvs = self.client.search_model_versions(f"name='{rm.name}'", max_results=200000)
        mvs = [m for m in mvs if T_SEMVER in m.tags and m.tags.get(TENANT_TAG) == self.tenancy.tenant]
        return sorted(mvs, key=lambda m: parse_semver(m.tags[T_SEMVER]))

    def _resolve(self, model_id: str, version: str) -> Any:
        """A version by semver, alias (``production``, ``latest``) or registry number."""
        mvs = self._versions(model_id)
        if not mvs:
            raise VersionNotFoundError(f"Model {model_id!r} has no versions.", value=version)
        if version in (None, "latest"):
            return mvs[-1]
        for m in mvs:
            if m.tags[T_SEMVER] == version:
                return m
        if isinstance(version, str) and version not in ("latest",) and not SEMVER_RE.fullmatch(version):
            rm = self._registered(model_id)
            if version in (rm.aliases or {}):
                num = str(rm.aliases[version])
                for m in mvs:
                    if str(m.version) == num:
                        return m
        raise VersionNotFoundError(
            f"Model {model_id!r} has no version {version!r}.",
            value=version,
            allowed=[m.tags[T_SEMVER] for m in mvs] + ["latest"] + sorted(user_aliases(self._registered(model_id).aliases)),
        )

    def _version_dict(self, m: Any, aliases: Mapping[str, Any] | None = None) -> dict[str, Any]:
        tags = m.tags
        meta = json.loads(tags[T_META]) if T_META in tags else {}
        live = sorted(a for a, v in user_aliases(aliases).items() if v == str(m.version))
        return {
            "version": tags[T_SEMVER],
            "model_id": tags.get(T_MODEL_ID, self.tenancy.plain_model_id(m.name)),
            "created_at": tags.get(T_CREATED) or iso_ms(m.creation_timestamp),
            "metadata": meta,
            "run_id": m.run_id,
            "registry_version": int(m.version),
            "sha256": tags.get(T_SHA),
            "parent": tags.get(T_PARENT) or None,
            "data_sources": json.loads(tags.get(T_SOURCES, "[]")),
            "model_uri": f"models:/{m.name}/{m.version}",
            "has_reference": T_REFERENCE in tags,
            "aliases": live,
            "report": {"run_id": tags["mlops.report_run_id"], "path": tags.get("mlops.report") or None}
            if "mlops.report_run_id" in tags else None,
        }

    # -- public API --------------------------------------------------------------------
    def create_version(
        self,
        model_id: str,
        model_path: str | os.PathLike[str] | None = None,
        model: Any = None,
        metadata: Mapping[str, Any] | None = None,
        version: str | None = None,
        bump: str = "minor",
        reference_data: Any = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """Register a new version of ``model_id``.

        Args:
            model_id: the model's id (slug).
            model_path: a pickled or joblib model file (as in the seed), or
            model: an in-memory model with ``predict`` (scikit-learn estimators get MLflow's
                sklearn flavor).
            metadata: JSON-serialisable metadata; ``training_data`` / ``data_sources``
                entries become the version's data sources.
            version: explicit semantic version (must be new); default: bump the latest.
            bump: ``major``, ``minor`` (default) or ``patch``.
            reference_data: a DataFrame stored with the version for drift monitoring.
            run_id: the tenant's run the model came from; default: the pipeline tracker's
                last run, else a new run in the ``model-registry`` experiment.

        Returns:
            ``{"version", "model_id", "created_at", "metadata"}`` plus ``run_id``,
            ``registry_version``, ``sha256``, ``parent``, ``data_sources``, ``model_uri``.

        Raises:
            ValidationError: neither or both of model_path/model, bad metadata or data.
            InvalidVersionError: bad or existing ``version``.
            NotFoundError: ``model_path`` does not exist.
        """
        self.tenancy.model_name(model_id)  # validates model_id
        if (model_path is None) == (model is None):
            raise ValidationError(
                "create_version() needs exactly one of model_path= or model=.",
                value={"model_path": model_path, "model": type(model).__name__ if model is not None else None},
                allowed="model_path='./models/m.pkl' or model=fitted_estimator",
            )
        source_sha = None
        if model_path is not None:
            p = os.fspath(model_path)
            if not os.path.isfile(p):
                raise NotFoundError(f"Model file {p!r} does not exist.", value=p, allowed="a pickle or joblib file")
            source_sha = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            try:
                model = _load_model_file(p)
            except Exception as exc:
                raise ValidationError(
                    f"Could not load model file {p!r}: {type(exc).__name__}: {exc}",
                    value=p, allowed="a file written by pickle.dump or joblib.dump",
                ) from exc
        if not callable(getattr(model, "predict", None)):
            raise ValidationError(
                f"The model ({type(model).__name__}) has no predict() method.",
                value=type(model).__name__, allowed="a fitted estimator with predict()",
            )
        meta = dict(metadata or {})
        try:
            meta_json = json.dumps(meta, sort_keys=True, default=str)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"metadata is not JSON-serialisable: {exc}", value=meta) from exc
        sources = meta.get("data_sources") or ([meta["training_data"]] if "training_data" in meta else [])
        if isinstance(sources, str):
            sources = [sources]
        if reference_data is not None:
            import pandas as pd

            if not isinstance(reference_data, pd.DataFrame) or reference_data.empty:
                raise ValidationError(
                    "reference_data must be a non-empty pandas DataFrame.",
                    value=type(reference_data).__name__, allowed="pandas.DataFrame",
                )
        if bump not in BUMPS:
            raise ValidationError(f"Invalid bump {bump!r}.", value=bump, allowed=BUMPS)

        # Refuse a bad version or another tenant's run before anything is registered, so a
        # refused call leaves no empty registered model behind.
        if version is not None:
            parse_semver(version)
        if run_id is not None:
            self.store.get_run(self.tenancy, run_id)
        client = self.client
        name = self.tenancy.model_name(model_id)
        self._ensure_registered(name, model_id)
        existing = self._versions(model_id)
        known = [m.tags[T_SEMVER] for m in existing]
        latest = known[-1] if known else None
        if version is not None:
            parse_semver(version)
            if version in known:
                raise InvalidVersionError(
                    f"Model {model_id!r} already has version {version!r}.", value=version,
                    allowed=f"a new version (the next {bump} is {bump_version(latest, bump)})",
                )
            semver = version
        else:
            semver = bump_version(latest, bump)

        artifact_uri, run_id = self._version_run(model_id, semver, run_id)
        with tempfile.TemporaryDirectory(prefix="mlops-version-") as tmp:
            mdir = Path(tmp) / MODEL_DIR
            self._save_model(model, mdir)
            (mdir / "mlops_metadata.json").write_text(meta_json)
            digest = sha256_dir(mdir)
            self.store.log_artifact(artifact_uri, str(mdir))
            if reference_data is not None:
                rdir = Path(tmp) / "reference"
                rdir.mkdir()
                reference_data.to_parquet(rdir / "reference.parquet")
                self.store.log_artifact(artifact_uri, str(rdir))
        created = iso_ms(now_ms())
        tags = {
            TENANT_TAG: self.tenancy.tenant, T_MODEL_ID: model_id, T_SEMVER: semver, T_SHA: digest,
            T_PARENT: latest or "", T_META: meta_json, T_SOURCES: json.dumps(list(sources)),
            T_CREATED: created,
        }
        if source_sha:
            tags["mlops.source_sha256"] = source_sha
        if os.environ.get("MLOPS_REPORT_RUN_ID"):  # made while `mlops-jupyter report` runs the notebook
            tags.update({"mlops.report_run_id": os.environ["MLOPS_REPORT_RUN_ID"],
                         "mlops.report": os.environ.get("MLOPS_REPORT_PATH", "")})
        if reference_data is not None:
            tags[T_REFERENCE] = f"{artifact_uri}/{REFERENCE_FILE}"
        mv = client.create_model_version(
            name, source=f"{artifact_uri}/{MODEL_DIR}", run_id=run_id, tags=tags,
            description=f"{model_id} {semver}",
        )
        client.set_registered_model_alias(name, alias_of(semver), mv.version)
        return {
            "version": semver, "model_id": model_id, "created_at": created, "metadata": json.loads(meta_json),
            "run_id": run_id, "registry_version": int(mv.version), "sha256": digest,
            "parent": latest, "data_sources": list(sources), "model_uri": f"models:/{name}/{mv.version}",
        }

    def _ensure_registered(self, name: str, model_id: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            rm = self.client.get_registered_model(name)
        except MlflowException:
            try:
                self.client.create_registered_model(
                    name, tags={TENANT_TAG: self.tenancy.tenant, T_MODEL_ID: model_id},
                    description=f"{model_id} (tenant {self.tenancy.tenant})",
                )
            except MlflowException:
                pass  # created concurrently
            rm = self.client.get_registered_model(name)
        if not self.tenancy.owns_model(rm):
            raise ModelNotFoundError(f"Registered model {name!r} is not tagged for tenant {self.tenancy.tenant!r}.")

    def _version_run(self, model_id: str, semver: str, run_id: str | None) -> tuple[str, str]:
        """The run whose artifacts hold the version: explicit, the tracker's last, or new."""
        if run_id is not None:
            run = self.store.get_run(self.tenancy, run_id)
            return f"{run.info.artifact_uri}/versions/{model_id}/{semver}", run_id
        last = self.tracker.last_run if self.tracker is not None else None
        if last is not None:
            return f"{last.artifact_uri}/versions/{model_id}/{semver}", last.run_id
        t = ExperimentTracker(Settings(self.settings.tenant, self.settings.tracking_uri, self.settings.home))
        r = t.start_experiment(REGISTRY_EXPERIMENT, tags={"mlops.model_id": model_id, "mlops.semver": semver},
                               run_name=f"{model_id}-{semver}")
        t.end_experiment()
        return r.artifact_uri, r.run_id

    @staticmethod
    def _save_model(model: Any, path: Path) -> None:
        reqs = _pip_requirements(model)
        try:
            from sklearn.base import BaseEstimator
        except ImportError:  # pragma: no cover - scikit-learn is a dependency
            BaseEstimator = ()  # type: ignore[assignment]
        if isinstance(model, BaseEstimator):
            import logging

            import mlflow.sklearn

            # MLflow warns that pickle formats run code on load; we verify the artifact's
            # sha256 before every load instead (load_model), so the warning is noise here.
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

    def list_models(self) -> list[str]:
        """Model ids of the tenant."""
        rms = self.client.search_registered_models(
            filter_string=f"name LIKE '{self.tenancy.model_prefix}%'", max_results=1000
        )
        return sorted(self.tenancy.plain_model_id(r.name) for r in rms if self.tenancy.owns_model(r))

    def list_versions(self, model_id: str) -> list[dict[str, Any]]:
        """Every version of ``model_id``, oldest first."""
        aliases = self._registered(model_id).aliases
        return [self._version_dict(m, aliases) for m in self._versions(model_id)]

    def get_version(self, model_id: str, version: str = "latest") -> dict[str, Any]:
        """One version by semver (``1.0.0``), alias (``production``) or ``latest``."""
        aliases = self._registered(model_id).aliases
        return self._version_dict(self._resolve(model_id, version), aliases)

    def get_lineage(self, model_id: str) -> dict[str, Any]:
        """The version graph: versions (parent, run, metadata, data sources, sha256), edges
        parent -> child, and where the live alias points."""
        rm = self._registered(model_id)
        versions = [self._version_dict(m, rm.aliases) for m in self._versions(model_id)]
        by_num = {str(v["registry_version"]): v["version"] for v in versions}
        return {
            "model_id": model_id,
            "versions": versions,
            "edges": [(v["parent"], v["version"]) for v in versions if v["parent"]],
            "live": {a: by_num.get(n) for a, n in user_aliases(rm.aliases).items()},
        }

    def promote(self, model_id: str, version: str, alias: str = LIVE_ALIAS) -> dict[str, Any]:
        """Point ``alias`` (default ``production``) at ``version``."""
        from mlops_jupyter.config.names import validate_model_id

        validate_model_id(alias) if alias else None
        m = self._resolve(model_id, version)
        rm = self._registered(model_id)
        prev_num = (rm.aliases or {}).get(alias)
        prev = next((x.tags[T_SEMVER] for x in self._versions(model_id) if str(x.version) == str(prev_num)), None)
        self.client.set_registered_model_alias(rm.name, alias, m.version)
        if prev:
            self.client.set_registered_model_tag(rm.name, f"{T_PREVIOUS_LIVE}.{alias}", prev)
        return {"model_id": model_id, "alias": alias, "version": m.tags[T_SEMVER], "previous": prev}

    def rollback_model(self, model_id: str, target_version: str) -> dict[str, Any]:
        """Move the model's ``production`` alias to ``target_version``, and every live
        deployment of the model with it (100 % to ``target_version``) when this object
        belongs to a pipeline (``self.deployment``); they are listed under ``deployments``.

        Raises:
            VersionNotFoundError: unknown version (the message lists the known ones).
            DeploymentError: a deployment could not be moved (the alias has moved).
        """
        result = self.promote(model_id, target_version, LIVE_ALIAS)
        result["rolled_back"] = True
        if self.deployment is not None:
            result["deployments"] = self.deployment.follow_rollback(model_id, result["version"])
        return result

    def load_model(self, model_id: str, version_or_alias: str = "latest") -> Any:
        """Load a version's model after verifying its sha256.

        Raises:
            IntegrityError: the stored artifact's sha256 differs from the one recorded.
        """
        m = self._resolve(model_id, version_or_alias)
        local = self._local_model_dir(m)
        digest = sha256_dir(local)
        if digest != m.tags.get(T_SHA):
            raise IntegrityError(
                f"Model {model_id!r} version {m.tags[T_SEMVER]} failed its integrity check: the artifact's "
                f"sha256 is {digest}, but {m.tags.get(T_SHA)} was recorded at versioning. It was not loaded.",
                value=digest,
                allowed=m.tags.get(T_SHA),
            )
        import mlflow.pyfunc

        from mlflow.models import Model

        flavors = Model.load(str(local / "MLmodel")).flavors
        if "sklearn" in flavors:
            import mlflow.sklearn

            return mlflow.sklearn.load_model(str(local))
        return mlflow.pyfunc.load_model(str(local))

    def model_dir(self, model_id: str, version_or_alias: str = "latest") -> Path:
        """Local folder of a version's MLflow model (downloaded if the store is remote)."""
        return self._local_model_dir(self._resolve(model_id, version_or_alias))

    def _local_model_dir(self, m: Any) -> Path:
        src = m.source
        if src.startswith("file://"):
            from urllib.parse import unquote, urlparse

            return Path(unquote(urlparse(src).path))
        from mlflow.artifacts import download_artifacts

        cache = self.settings.home / "model-cache" / self.tenancy.tenant / m.name / str(m.version)
        if cache.exists():
            shutil.rmtree(cache)
        cache.mkdir(parents=True)
        return Path(download_artifacts(artifact_uri=src, dst_path=str(cache), tracking_uri=self.store.tracking_uri))

    def load_reference_data(self, model_id: str, version_or_alias: str = "latest") -> Any:
        """The reference DataFrame stored with a version, or None."""
        m = self._resolve(model_id, version_or_alias)
        uri = m.tags.get(T_REFERENCE)
        if not uri:
            return None
        import pandas as pd
        from mlflow.artifacts import download_artifacts

        with tempfile.TemporaryDirectory() as tmp:
            local = download_artifacts(artifact_uri=uri, dst_path=tmp, tracking_uri=self.store.tracking_uri)
            return pd.read_parquet(local)

