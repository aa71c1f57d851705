"""Model versioning: MLflow Model Registry underneath, semantic versions on top.

Each version is an MLflow registered model version of ``{tenant}.{model_id}`` whose tags
carry the semantic version, the artifact's sha256, the parent version, the metadata and
the data sources. Aliases: ``v1_0_0`` for every version (so ``models:/t.m@v1_0_0`` works in
any MLflow client), and ``production`` for the live one, moved by :meth:`rollback_model`
and by every deployment change in the ``production`` environment (:meth:`follow_deployment`).

Whatever must follow a rollback subscribes with :meth:`ModelVersioning.on_rollback` (the
pipeline wires that up in ``api.py``); this package knows nothing of its subscribers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from mlops_jupyter.config.names import TENANT_TAG
from mlops_jupyter.config.settings import Settings, model_cache_dir
from mlops_jupyter.config.times import iso_from_ms, now_ms
from mlops_jupyter.errors import (
    IntegrityError,
    InvalidVersionError,
    ModelNotFoundError,
    NotFoundError,
    ValidationError,
    VersionNotFoundError,
)
from mlops_jupyter.registry import lineage
from mlops_jupyter.registry.artifacts import (
    MODEL_DIR,
    load_model_dir,
    load_model_file,
    local_model_dir,
    read_parquet_artifact,
    save_model,
    sha256_dir,
    sha256_file,
)
from mlops_jupyter.registry.semver import BUMPS, bump_version, is_semver, parse_semver
from mlops_jupyter.storage.server_reach import bounded_by_server, raise_if_unreachable
from mlops_jupyter.storage.store import TrackingStore
from mlops_jupyter.tracking import server_auth
from mlops_jupyter.tracking.tracker import REGISTRY_EXPERIMENT, ExperimentTracker

LIVE_ALIAS = "production"
REFERENCE_FILE = "reference/reference.parquet"
T_SEMVER, T_SHA, T_PARENT, T_META, T_SOURCES, T_CREATED, T_MODEL_ID = (
    "mlops.semver",
    "mlops.sha256",
    "mlops.parent",
    "mlops.metadata",
    "mlops.data_sources",
    "mlops.created_at",
    "mlops.model_id",
)
T_REFERENCE = "mlops.reference"
T_PREVIOUS_LIVE = "mlops.previous_live"


def alias_of(semver: str) -> str:
    return "v" + semver.replace(".", "_")


VERSION_ALIAS_RE = re.compile(r"v\d+_\d+_\d+")


def user_aliases(aliases: Mapping[str, Any] | None) -> dict[str, str]:
    """Aliases other than the per-version ``vX_Y_Z`` ones: ``{alias: registry version}``."""
    return {a: str(v) for a, v in (aliases or {}).items() if not VERSION_ALIAS_RE.fullmatch(a)}


RollbackSubscriber = Callable[[str, str], list[dict[str, Any]]]
"""Called as ``callback(model_id, version)`` after a rollback moved the live alias; returns
what it moved (dicts listed under ``deployments`` in the rollback's result)."""


class _VersionRun(NamedTuple):
    """The run a new version's artifacts go into."""

    artifact_uri: str
    run_id: str


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
        self._rollback_subscribers: list[RollbackSubscriber] = []

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
        if isinstance(version, str) and not is_semver(version):
            rm = self._registered(model_id)
            if version in (rm.aliases or {}):
                num = str(rm.aliases[version])
                for m in mvs:
                    if str(m.version) == num:
                        return m
        raise VersionNotFoundError(
            f"Model {model_id!r} has no version {version!r}.",
            value=version,
            allowed=[m.tags[T_SEMVER] for m in mvs]
            + ["latest"]
            + sorted(user_aliases(self._registered(model_id).aliases)),
        )

    def _version_dict(self, m: Any, aliases: Mapping[str, Any] | None = None) -> dict[str, Any]:
        tags = m.tags
        meta = json.loads(tags[T_META]) if T_META in tags else {}
        live = sorted(a for a, v in user_aliases(aliases).items() if v == str(m.version))
        return {
            "version": tags[T_SEMVER],
            "model_id": tags.get(T_MODEL_ID, self.tenancy.plain_model_id(m.name)),
            "created_at": tags.get(T_CREATED) or iso_from_ms(m.creation_timestamp),
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
            if "mlops.report_run_id" in tags
            else None,
        }

    # -- public API --------------------------------------------------------------------
    @bounded_by_server  # a server that is down: ServerUnreachableError in seconds, not minutes
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
            source_sha = sha256_file(p)
            try:
                model = load_model_file(p)
            except Exception as exc:
                raise ValidationError(
                    f"Could not load model file {p!r}: {type(exc).__name__}: {exc}",
                    value=p,
                    allowed="a file written by pickle.dump or joblib.dump",
                ) from exc
        if not callable(getattr(model, "predict", None)):
            raise ValidationError(
                f"The model ({type(model).__name__}) has no predict() method.",
                value=type(model).__name__,
                allowed="a fitted estimator with predict()",
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
                    value=type(reference_data).__name__,
                    allowed="pandas.DataFrame",
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
        with server_auth.refused_as_tenant_error(f"registered model {name!r}"):
            self._ensure_registered(name, model_id)
        existing = self._versions(model_id)
        known = [m.tags[T_SEMVER] for m in existing]
        latest = known[-1] if known else None
        if version is not None:
            if version in known:
                raise InvalidVersionError(
                    f"Model {model_id!r} already has version {version!r}.",
                    value=version,
                    allowed=f"a new version (the next {bump} is {bump_version(latest, bump)})",
                )
            semver = version
        else:
            semver = bump_version(latest, bump)

        artifact_uri, run_id = self._version_run(model_id, semver, run_id)
        with tempfile.TemporaryDirectory(prefix="mlops-version-") as tmp:
            mdir = Path(tmp) / MODEL_DIR
            save_model(model, mdir)
            (mdir / "mlops_metadata.json").write_text(meta_json)
            digest = sha256_dir(mdir)
            self.store.log_artifact(artifact_uri, str(mdir))
            if reference_data is not None:
                rdir = Path(tmp) / "reference"
                rdir.mkdir()
                reference_data.to_parquet(rdir / "reference.parquet")
                self.store.log_artifact(artifact_uri, str(rdir))
        created = iso_from_ms(now_ms())
        tags = {
            TENANT_TAG: self.tenancy.tenant,
            T_MODEL_ID: model_id,
            T_SEMVER: semver,
            T_SHA: digest,
            T_PARENT: latest or "",
            T_META: meta_json,
            T_SOURCES: json.dumps(list(sources)),
            T_CREATED: created,
        }
        if source_sha:
            tags["mlops.source_sha256"] = source_sha
        if os.environ.get("MLOPS_REPORT_RUN_ID"):  # made while `mlops-jupyter report` runs the notebook
            tags.update(
                {
                    "mlops.report_run_id": os.environ["MLOPS_REPORT_RUN_ID"],
                    "mlops.report": os.environ.get("MLOPS_REPORT_PATH", ""),
                }
            )
        if reference_data is not None:
            tags[T_REFERENCE] = f"{artifact_uri}/{REFERENCE_FILE}"
        mv = client.create_model_version(
            name,
            source=f"{artifact_uri}/{MODEL_DIR}",
            run_id=run_id,
            tags=tags,
            description=f"{model_id} {semver}",
        )
        client.set_registered_model_alias(name, alias_of(semver), mv.version)
        return {
            "version": semver,
            "model_id": model_id,
            "created_at": created,
            "metadata": json.loads(meta_json),
            "run_id": run_id,
            "registry_version": int(mv.version),
            "sha256": digest,
            "parent": latest,
            "data_sources": list(sources),
            "model_uri": f"models:/{name}/{mv.version}",
        }

    def _ensure_registered(self, name: str, model_id: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            rm = self.client.get_registered_model(name)
        except MlflowException as exc:
            raise_if_unreachable(exc)  # not "no such model": the server did not answer
            try:
                self.client.create_registered_model(
                    name,
                    tags={TENANT_TAG: self.tenancy.tenant, T_MODEL_ID: model_id},
                    description=f"{model_id} (tenant {self.tenancy.tenant})",
                )
            except MlflowException:
                pass  # created concurrently
            rm = self.client.get_registered_model(name)
        if not self.tenancy.owns_model(rm):
            raise ModelNotFoundError(f"Registered model {name!r} is not tagged for tenant {self.tenancy.tenant!r}.")
        server_auth.share(self.store.tracking_uri, "registered_model", name)  # to the tenant's members

    def _version_run(self, model_id: str, semver: str, run_id: str | None) -> _VersionRun:
        """The run whose artifacts hold the version: explicit, the tracker's last, or a new
        bookkeeping run in the tenant's ``model-registry`` experiment (which
        ``list_experiments`` leaves out unless asked for by name)."""
        if run_id is not None:
            run = self.store.get_run(self.tenancy, run_id)
            return _VersionRun(f"{run.info.artifact_uri}/versions/{model_id}/{semver}", run_id)
        last = self.tracker.last_run if self.tracker is not None else None
        if last is not None:
            return _VersionRun(f"{last.artifact_uri}/versions/{model_id}/{semver}", last.run_id)
        t = ExperimentTracker(dataclasses.replace(self.settings, experiment_name=None))
        r = t.start_experiment(
            REGISTRY_EXPERIMENT,
            tags={"mlops.model_id": model_id, "mlops.semver": semver},
            run_name=f"{model_id}-{semver}",
        )
        t.end_experiment()
        return _VersionRun(r.artifact_uri, r.run_id)

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
        parent -> child, where the registry's aliases point (``live``), and where each
        version serves: ``deployments`` (one per environment: target, status, traffic
        table) and, per version, ``deployed`` (environment, target, traffic %, status),
        read from the deployment state of every target."""
        rm = self._registered(model_id)
        versions = [self._version_dict(m, rm.aliases) for m in self._versions(model_id)]
        by_num = {str(v["registry_version"]): v["version"] for v in versions}
        records = lineage.records_of(self.settings.home, self.tenancy.tenant, model_id)
        where = lineage.placements(records)
        for v in versions:
            v["deployed"] = [p.as_dict() for p in where.get(v["version"], [])]
        return {
            "model_id": model_id,
            "versions": versions,
            "edges": [(v["parent"], v["version"]) for v in versions if v["parent"]],
            "live": {a: by_num.get(n) for a, n in user_aliases(rm.aliases).items()},
            "deployments": lineage.summaries(records),
        }

    def follow_deployment(self, model_id: str, environment: str, serving: str | None) -> dict[str, Any] | None:
        """Keep the registry's alias of an environment on what serves there.

        The deployment part calls this after every change it made, with the version that
        now takes the largest share of ``environment`` (None when nothing is left). For the
        ``production`` environment the ``production`` alias moves there, so
        ``models:/{tenant}.{model}@production`` names the served version in any MLflow
        client; other environments have no alias. Returns :meth:`promote`'s result, or
        None when nothing moved.
        """
        if environment != LIVE_ALIAS or serving is None:
            return None
        rm = self._registered(model_id)
        target = self._resolve(model_id, serving)
        if str((rm.aliases or {}).get(LIVE_ALIAS)) == str(target.version):
            return None
        return self.promote(model_id, serving, LIVE_ALIAS)

    def promote(self, model_id: str, version: str, alias: str = LIVE_ALIAS) -> dict[str, Any]:
        """Point ``alias`` (default ``production``) at ``version``; ``previous`` is the version
        it pointed at before (when it is already there, e.g. moved by the deployment that
        serves it, the one before that)."""
        from mlops_jupyter.config.names import validate_model_id

        validate_model_id(alias) if alias else None
        m = self._resolve(model_id, version)
        rm = self._registered(model_id)
        prev_num = (rm.aliases or {}).get(alias)
        prev = next((x.tags[T_SEMVER] for x in self._versions(model_id) if str(x.version) == str(prev_num)), None)
        if prev == m.tags[T_SEMVER]:
            prev = (rm.tags or {}).get(f"{T_PREVIOUS_LIVE}.{alias}") or None
        else:
            self.client.set_registered_model_alias(rm.name, alias, m.version)
            if prev:
                self.client.set_registered_model_tag(rm.name, f"{T_PREVIOUS_LIVE}.{alias}", prev)
        return {"model_id": model_id, "alias": alias, "version": m.tags[T_SEMVER], "previous": prev}

    def on_rollback(self, callback: RollbackSubscriber) -> None:
        """Call ``callback(model_id, version)`` after every :meth:`rollback_model` of this
        object has moved the live alias. It returns a list of dicts (what it moved), which
        the rollback's result lists under ``deployments``. ``MLOpsPipeline`` subscribes what
        serves the model here, so a rollback moves it too.

        Example:
            >>> versioning.on_rollback(lambda model_id, version: [{"moved": model_id}])
        """
        if not callable(callback):
            raise ValidationError(
                f"on_rollback() needs a callable, got {type(callback).__name__}.",
                value=callback,
                allowed="a function (model_id, version) -> list of dicts",
            )
        self._rollback_subscribers.append(callback)

    def rollback_model(self, model_id: str, target_version: str) -> dict[str, Any]:
        """Move the model's ``production`` alias to ``target_version``, then call the
        :meth:`on_rollback` subscribers; with any, what they moved is listed under
        ``deployments`` (in a pipeline: where the model is served, now 100 % on
        ``target_version``).

        Raises:
            VersionNotFoundError: unknown version (the message lists the known ones).
            MLOpsError: what a subscriber raised (the alias has moved).
        """
        result = self.promote(model_id, target_version, LIVE_ALIAS)
        result["rolled_back"] = True
        if self._rollback_subscribers:
            result["deployments"] = [
                moved for callback in self._rollback_subscribers for moved in callback(model_id, result["version"])
            ]
        return result

    @bounded_by_server
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
        return load_model_dir(local)

    @bounded_by_server
    def model_dir(self, model_id: str, version_or_alias: str = "latest") -> Path:
        """Local folder of a version's MLflow model (downloaded if the store is remote)."""
        return self._local_model_dir(self._resolve(model_id, version_or_alias))

    def _local_model_dir(self, m: Any) -> Path:
        cache = model_cache_dir(self.settings.home, self.tenancy.tenant, m.name, m.version)
        return local_model_dir(m.source, cache, self.store.tracking_uri)

    @bounded_by_server
    def load_reference_data(self, model_id: str, version_or_alias: str = "latest") -> Any:
        """The reference DataFrame stored with a version, or None."""
        m = self._resolve(model_id, version_or_alias)
        uri = m.tags.get(T_REFERENCE)
        if not uri:
            return None
        return read_parquet_artifact(uri, self.store.tracking_uri)
