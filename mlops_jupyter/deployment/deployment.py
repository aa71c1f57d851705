"""Model deployment: versions behind real HTTP endpoints, with A/B traffic and rollback.

The deployment API is target-agnostic: a :class:`~mlops_jupyter.deployment.targets.base.DeploymentTarget`
does the work, chosen by name (``local``, ``ray``, ``kserve``: see ``targets/``) or given as an
object. ``local`` (the default) is the serving gateway (``python -m mlops_jupyter.gateway``): one long-lived
process per storage home, started on demand by the first deploy, detached so it outlives the
kernel, restoring every deployment from the embedded store when it starts again. The gateway
itself passes its in-process target, so an alert's rollback changes its routes directly.

Endpoints look like ``http://127.0.0.1:PORT/tenants/{tenant}/{environment}/models/{model_id}``
and take MLflow's scoring JSON at ``POST {endpoint}/invocations`` with
``Authorization: Bearer <token>`` (:meth:`ModelDeployment.get_token`).

Example:
    >>> deployment = create_model_deployment(tenant_id="tenant_123")
    >>> r = deployment.deploy_model("ticket_classifier", "1.0.0", environment="production")
    >>> r["status"], r["traffic"]
    ('deployed', {'1.0.0': 100})
    >>> deployment.client("ticket_classifier", "production").predict(df.head(2))
    array([1, 0])
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from mlops_jupyter.config import env
from mlops_jupyter.config.names import validate_environment
from mlops_jupyter.config.settings import Settings
from mlops_jupyter.config.times import iso_from_seconds
from mlops_jupyter.deployment.targets import TARGETS, DeploymentTarget, RecordTargets
from mlops_jupyter.deployment.validation import validate_config
from mlops_jupyter.errors import DeploymentError, NotFoundError, ValidationError

log = logging.getLogger(__name__)

EXAMPLE_ROWS = 5


class ModelDeployment:
    """Deploys a tenant's model versions, splits traffic between them and rolls back.

    Args:
        settings: the resolved settings (tenant, tracking URI, storage home).
        target: where deployments run: a name from
            :data:`~mlops_jupyter.deployment.targets.TARGETS` (``"local"``, the serving
            gateway; ``"ray"``, Ray Serve; ``"kserve"``, KServe manifests), default
            ``$MLOPS_DEPLOY_TARGET`` or ``"local"``; or an object implementing
            :class:`~mlops_jupyter.deployment.targets.base.DeploymentTarget` (the gateway
            passes its in-process one).
        target_options: options of a named target (``ray``: ``address``, ``http_port``;
            ``kserve``: ``kubeconfig``, ``in_cluster``, ``namespace``...).

    A tenant's deployment object sees and changes only that tenant's deployments: model
    ids are resolved through the tenant's versioning, and every record and route carries
    the tenant. ``target`` is where *new* deployments go; it lists and reads the tenant's
    deployments of every target, and a change to an existing one (traffic, rollback,
    undeploy, from an alert's action as from a notebook) goes to the target its record was
    made with (:class:`~mlops_jupyter.deployment.targets.routing.RecordTargets`).

    Example:
        >>> deployment = create_model_deployment(tenant_id="tenant_123")
        >>> deployment.deploy_model("ticket_classifier", "1.0.0")["status"]
        'deployed'
    """

    def __init__(
        self,
        settings: Settings,
        target: str | DeploymentTarget | None = None,
        versioning: Any = None,
        target_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.tenancy = settings.tenancy
        chosen = target is not None
        if target is None:
            target = os.environ.get(env.MLOPS_DEPLOY_TARGET) or "local"
        if isinstance(target, str):
            if target not in TARGETS:
                raise ValidationError(f"Unknown deployment target {target!r}.", value=target, allowed=list(TARGETS))
            target = TARGETS[target](settings.home, target_options)
        elif not isinstance(target, DeploymentTarget):
            raise ValidationError(
                f"Invalid deployment target {target!r}.",
                value=target,
                allowed=[*TARGETS, "an object implementing DeploymentTarget"],
            )
        self.target: Any = target
        self._targets = RecordTargets(settings.home, target, TARGETS, chosen=chosen)
        self._versioning = versioning

    @property
    def tenant(self) -> str:
        return self.tenancy.tenant

    @property
    def versioning(self) -> Any:
        if self._versioning is None:
            from mlops_jupyter.registry.versioning import ModelVersioning

            self._versioning = ModelVersioning(self.settings)
        return self._versioning

    # -- helpers -------------------------------------------------------------------------
    def _spec(self, model_id: str, version: str, target: Any) -> tuple[str, dict[str, Any]]:
        """(semver, what ``target`` needs to load it) for a version, semver or alias."""
        v = self.versioning.get_version(model_id, version)
        semver = v["version"]
        path = self.versioning.model_dir(model_id, semver)
        spec: dict[str, Any] = {"path": str(path), "sha256": v["sha256"], "registry_version": v["registry_version"]}
        if getattr(target, "needs_artifact_uri", False):  # a cluster reads the artifact where MLflow keeps it
            mv = self.versioning.client.get_model_version(self.tenancy.model_name(model_id), str(v["registry_version"]))
            spec["artifact_uri"] = mv.source
        if v.get("has_reference"):
            try:
                ref = self.versioning.load_reference_data(model_id, semver)
            except Exception as exc:  # the gateway falls back to the MLflow example / zeros
                log.warning("mlops_jupyter: could not read the reference data of %s %s: %s", model_id, semver, exc)
                ref = None
            if ref is not None and len(ref):
                import json

                head = ref.head(EXAMPLE_ROWS)
                split = json.loads(head.to_json(orient="split", index=False, date_format="iso"))
                spec["example"] = {
                    "columns": [str(c) for c in split["columns"]],
                    "data": split["data"],
                    "dtypes": {str(c): str(t) for c, t in head.dtypes.items()},
                }
        return semver, spec

    def _record(self, model_id: str, environment: str) -> dict[str, Any]:
        rec = self._targets.get(self.tenant, environment, model_id)
        if rec is None:
            mine = [f"{r['environment']}/{r['model_id']}" for r in self._targets.list(self.tenant)]
            raise NotFoundError(
                f"Model {model_id!r} is not deployed in environment {environment!r} for tenant {self.tenant!r}.",
                value=f"{environment}/{model_id}",
                allowed=mine or "(no deployments yet: use deploy_model)",
            )
        return rec

    def _describe(self, rec: Mapping[str, Any]) -> dict[str, Any]:
        from mlops_jupyter.deployment.traffic import rollback_target, top_version

        target = self._targets.for_record(rec)
        return {
            "deployment_id": rec["deployment_id"],
            "model_id": rec["model_id"],
            "environment": rec["environment"],
            "status": rec["status"],
            "reason": rec.get("reason"),
            "endpoint": target.endpoint(self.tenant, rec["environment"], rec["model_id"]),
            "version": top_version(rec["traffic"]),
            "traffic": dict(rec["traffic"]),
            "versions": list(rec["traffic"]),
            "config": rec.get("config") or {},
            "target": target.name,
            "config_effect": getattr(target, "config_effect", None),
            "target_status": {k: v for k, v in (rec.get("extra") or {}).items() if k != "target"},
            "revision": rec.get("revision"),
            "previous_traffic": (rec.get("history") or [])[-5:],
            # what rollback() without to_version= would serve (the whole history decides it)
            "rollback_to": rollback_target(rec["traffic"], rec.get("history") or []),
            "created_at": iso_from_seconds(rec.get("created_at")),
            "updated_at": iso_from_seconds(rec.get("updated_at")),
        }

    def _change(self, op: dict[str, Any], target: Any) -> dict[str, Any]:
        """Apply ``op`` on ``target`` (the one of the record it changes: ``self._targets``)."""
        from mlops_jupyter.deployment import tokens as auth

        auth.tenant_token(self.settings.home, self.tenant)  # the gateway must know the tenant's token
        op = {**op, "tenant": self.tenant}
        out = target.apply(op)
        rec = out.get("record") if out.get("ok") else None
        if rec is not None and rec.get("status") == "deployed":  # the registry's production alias follows
            from mlops_jupyter.deployment.traffic import top_version

            try:
                self.versioning.follow_deployment(op["model_id"], op["environment"], top_version(rec["traffic"]))
            except Exception as exc:  # the change is made and serves; only the alias lags
                log.warning("mlops_jupyter: could not move the registry alias of %s: %s", op["model_id"], exc)
        return out

    # -- public API ----------------------------------------------------------------------
    def deploy_model(
        self,
        model_id: str,
        version: str,
        environment: str = "production",
        config: Mapping[str, Any] | None = None,
        traffic_percentage: int = 100,
    ) -> dict[str, Any]:
        """Deploy ``version`` of ``model_id`` into ``environment`` with a share of its traffic.

        Traffic rule: the version gets ``traffic_percentage`` %; the versions already in
        the environment share the rest in proportion to their current shares (integers by
        largest remainder, always adding up to 100; a version left at 0 % is removed).
        With no other version, it gets 100 % whatever the percentage (so deploying
        1.0.0 at 50 and then 1.1.0 at 50 gives 50/50, as in the A/B example of the
        guide). ``traffic_percentage=100`` replaces the versions there.

        The status is ``deployed`` only after the gateway has verified the artifact's
        sha256, loaded the version, made a real test prediction (on the version's
        reference data, else the MLflow input example, else zeros for an all-numeric
        model) and answered a health check; otherwise ``failed`` with the ``reason``,
        and whatever served before keeps serving unchanged.

        Args:
            model_id: the tenant's model id.
            version: a version (``"1.0.0"``), an alias (``"production"``) or ``"latest"``.
            environment: a slug such as ``production`` or ``staging``.
            config: ``{"replicas": int 1..64, "resources": {"cpu": "2", "memory": "4Gi"}}``;
                what it means depends on the target (``config_effect`` in the result says
                it): ``local`` stores and reports it (one process, no replicas), ``ray``
                enforces it (Serve replicas and actor resources), ``kserve`` passes it to
                Kubernetes (min/maxReplicas, requests and limits); None keeps the stored config.
            traffic_percentage: integer 1..100.

        Returns:
            ``{"deployment_id", "status", "environment", "endpoint"}`` (the guide's dict)
            plus ``model_id``, ``version``, ``traffic`` (version -> %), ``token_hint``,
            ``config``, ``revision``, ``reason`` (None unless failed), ``target`` (its name),
            ``config_effect`` and ``target_status`` (what the target reports: Ray's
            applications, KServe's manifest path and conditions). ``status`` is ``deployed``,
            ``failed``, or for ``kserve`` without a cluster ``rendered``.

        Raises:
            InvalidNameError: bad environment or model id.
            ValidationError: bad percentage or config (unknown keys list the known ones); or
                ``target`` was named and the deployment runs on another target (without a
                named target, a deploy into an existing deployment goes where it runs).
            ModelNotFoundError, VersionNotFoundError: no such model or version for the tenant.
            GatewayError: the gateway could not be started.

        Example:
            >>> deployment.deploy_model("ticket_classifier", "1.0.0", "production")
            {'deployment_id': 'dep_1f0c...', 'status': 'deployed', 'environment': 'production',
             'endpoint': 'http://127.0.0.1:41873/tenants/tenant_123/production/models/ticket_classifier',
             'version': '1.0.0', 'traffic': {'1.0.0': 100}, 'token_hint': 'Xy3k...', ...}
            >>> deployment.deploy_model("ticket_classifier", "1.1.0", "production", traffic_percentage=50)["traffic"]
            {'1.0.0': 50, '1.1.0': 50}
        """
        from mlops_jupyter.deployment import tokens as auth
        from mlops_jupyter.deployment.traffic import check_percentage

        env = validate_environment(environment)
        self.tenancy.model_name(model_id)
        pct = check_percentage(traffic_percentage)
        cfg = validate_config(config) if config is not None else None
        target = self._targets.for_deploy(self._targets.get(self.tenant, env, model_id))
        semver, spec = self._spec(model_id, version, target)
        out = self._change(
            {
                "op": "deploy",
                "environment": env,
                "model_id": model_id,
                "version": semver,
                "traffic_percentage": pct,
                "specs": {semver: spec},
                "config": cfg,
            },
            target,
        )
        rec = out.get("record")
        status, reason = out.get("status") or "deployed", None
        if not out.get("ok"):
            status, reason = "failed", out.get("message")
        elif status == "deployed":
            try:
                health = target.verify()
                if health.get("status") != "ok":
                    status, reason = "failed", f"the gateway's health check answered {health}"
            except Exception as exc:
                status, reason = "failed", f"the gateway's health check failed: {exc}"
        if status == "failed":
            log.warning("mlops_jupyter: deploying %s %s to %s failed: %s", model_id, semver, env, reason)
        token = auth.tenant_token(self.settings.home, self.tenant)
        return {
            "deployment_id": rec["deployment_id"] if rec else None,
            "status": status,
            "environment": env,
            "endpoint": target.endpoint(self.tenant, env, model_id),
            "model_id": model_id,
            "version": semver,
            "traffic": dict(rec["traffic"]) if rec else {},
            "token_hint": auth.token_hint(token),
            "config": (rec.get("config") if rec else cfg) or {},
            "revision": rec.get("revision") if rec else None,
            "reason": reason,
            "target": target.name,
            "config_effect": getattr(target, "config_effect", None),
            "target_status": {k: v for k, v in ((rec or {}).get("extra") or {}).items() if k != "target"},
        }

    def set_traffic(self, model_id: str, environment: str, traffic: Mapping[str, int]) -> dict[str, Any]:
        """Set the traffic split of a deployment in one atomic change.

        Args:
            model_id: the tenant's model id.
            environment: where it is deployed.
            traffic: version -> integer percentage, adding up to exactly 100; versions at 0
                are removed; versions not yet deployed there are loaded and verified first.

        Returns:
            The deployment, as :meth:`get_deployment` returns it.

        Raises:
            ValidationError: percentages that do not add up to 100, or bad values.
            NotFoundError: the model is not deployed in ``environment``.
            DeploymentError: a version failed to load (nothing changed).

        Example:
            >>> deployment.set_traffic("ticket_classifier", "production", {"1.0.0": 90, "1.1.0": 10})["traffic"]
            {'1.0.0': 90, '1.1.0': 10}
        """
        from mlops_jupyter.deployment.traffic import check_table

        env = validate_environment(environment)
        table = check_table(traffic)
        rec = self._record(model_id, env)
        target = self._targets.for_record(rec)
        resolved, specs = {}, {}
        for v, p in table.items():
            semver = self.versioning.get_version(model_id, v)["version"]
            resolved[semver] = resolved.get(semver, 0) + p
            if semver not in rec["versions"]:
                specs[semver] = self._spec(model_id, semver, target)[1]
        return self._finish(
            self._change(
                {"op": "traffic", "environment": env, "model_id": model_id, "traffic": resolved, "specs": specs},
                target,
            ),
            "set_traffic",
        )

    def rollback(self, model_id: str, environment: str = "production", to_version: str | None = None) -> dict[str, Any]:
        """Send 100 % of a deployment's traffic to one version, atomically.

        Args:
            model_id: the tenant's model id.
            environment: where it is deployed.
            to_version: the target version (or alias); default: the previously live version
                (the top version of the last traffic table before the current one that
                differs from it; after an A/B deploy that is the version that served alone
                before).

        Returns:
            The deployment, as :meth:`get_deployment` returns it.

        Raises:
            NotFoundError: the model is not deployed in ``environment``.
            DeploymentError: there is no earlier version, or the target failed to load.

        Example:
            >>> deployment.rollback("ticket_classifier", "production")["traffic"]
            {'1.0.0': 100}
        """
        from mlops_jupyter.deployment.traffic import rollback_target

        env = validate_environment(environment)
        rec = self._record(model_id, env)
        if to_version is None:
            target = rollback_target(rec["traffic"], rec.get("history") or [])
            if target is None:
                raise DeploymentError(
                    f"Model {model_id!r} in {env!r} has no earlier version to roll back to "
                    f"(traffic {rec['traffic']}); pass to_version=.",
                    value=None,
                    allowed=[v["version"] for v in self.versioning.list_versions(model_id)],
                )
        else:
            target = self.versioning.get_version(model_id, to_version)["version"]
        where = self._targets.for_record(rec)
        specs = {} if target in rec["versions"] else {target: self._spec(model_id, target, where)[1]}
        return self._finish(
            self._change(
                {"op": "rollback", "environment": env, "model_id": model_id, "version": target, "specs": specs},
                where,
            ),
            "rollback",
        )

    def undeploy(self, model_id: str, environment: str = "production", version: str | None = None) -> dict[str, Any]:
        """Remove a deployment, or one version of it (the others scale up to 100 %).

        Returns:
            The remaining deployment, or ``{"deployment_id", "model_id", "environment",
            "status": "undeployed"}`` when nothing is left.

        Raises:
            NotFoundError: the model (or that version) is not deployed in ``environment``.

        Example:
            >>> deployment.undeploy("ticket_classifier", "staging")["status"]
            'undeployed'
        """
        env = validate_environment(environment)
        rec = self._record(model_id, env)
        semver = None
        if version is not None:
            semver = self.versioning.get_version(model_id, version)["version"]
            if semver not in rec["traffic"]:
                raise NotFoundError(
                    f"Version {semver!r} of {model_id!r} is not deployed in {env!r}.",
                    value=semver,
                    allowed=list(rec["traffic"]),
                )
        out = self._change(
            {"op": "undeploy", "environment": env, "model_id": model_id, "version": semver},
            self._targets.for_record(rec),
        )
        if out.get("ok") and out.get("record") is None:
            return {
                "deployment_id": rec["deployment_id"],
                "model_id": model_id,
                "environment": env,
                "status": "undeployed",
            }
        return self._finish(out, "undeploy")

    def _finish(self, out: Mapping[str, Any], what: str) -> dict[str, Any]:
        if not out.get("ok"):
            raise DeploymentError(f"{what} failed; nothing changed: {out.get('message')}", value=out.get("error_code"))
        return self._describe(out["record"])

    def list_deployments(self, environment: str | None = None) -> list[dict[str, Any]]:
        """The tenant's deployments (optionally of one environment).

        Example:
            >>> [(d["model_id"], d["traffic"]) for d in deployment.list_deployments("production")]
            [('ticket_classifier', {'1.0.0': 50, '1.1.0': 50})]
        """
        env = validate_environment(environment) if environment is not None else None
        return [self._describe(r) for r in self._targets.list(self.tenant, env)]

    def get_deployment(self, model_id: str, environment: str = "production") -> dict[str, Any]:
        """One deployment: status, endpoint, traffic, config, recent traffic history.

        Raises:
            NotFoundError: the model is not deployed in ``environment`` (lists what is).

        Example:
            >>> deployment.get_deployment("ticket_classifier", "production")["status"]
            'deployed'
        """
        self.tenancy.model_name(model_id)
        return self._describe(self._record(model_id, validate_environment(environment)))

    def get_token(self) -> str:
        """The tenant's bearer token for the gateway (for curl and other HTTP clients).

        Example:
            >>> token = deployment.get_token()
            >>> # curl -H "Authorization: Bearer $TOKEN" -d @body.json $ENDPOINT/invocations
        """
        from mlops_jupyter.deployment import tokens as auth

        return auth.tenant_token(self.settings.home, self.tenant)

    def client(self, model_id: str, environment: str = "production", timeout: float = 30.0) -> Any:
        """An HTTP client of one deployment carrying the tenant's token.

        Starts the gateway if it is not running (it restores every deployment). Give each
        thread its own client for parallel requests.

        Example:
            >>> deployment.client("ticket_classifier").predict(df.head(3))
            array([1, 0, 1])
        """
        from mlops_jupyter.deployment.client import DeploymentClient

        rec = self._record(model_id, validate_environment(environment))
        target = self._targets.for_record(rec)
        target.ensure_running()  # the gateway outlives kernels, not reboots: start it if needed
        return DeploymentClient(
            target.endpoint(self.tenant, rec["environment"], model_id), self.get_token(), timeout=timeout
        )

    def endpoint(self, model_id: str, environment: str = "production") -> str:
        """The URL of a deployment (``POST {endpoint}/invocations`` predicts), on the target that
        serves it (this object's target for one not deployed yet)."""
        env = validate_environment(environment)
        return self._targets.for_record(self._targets.get(self.tenant, env, model_id)).endpoint(
            self.tenant, env, model_id
        )

    def gateway_status(self) -> dict[str, Any]:
        """Whether the serving side runs, and where (``running``, ``url``, ``pid``...)."""
        return self.target.status()

    def serving_status(self, model_id: str, environment: str = "production") -> dict[str, Any]:
        """The status (``running``, ``target``, ``url``...) of the target that serves one
        deployment, whichever target that is; asking never starts it.

        Example:
            >>> deployment.serving_status("ticket_classifier")["running"]
            True
        """
        env = validate_environment(environment)
        return self._targets.for_record(self._targets.get(self.tenant, env, model_id)).status()

    def stop_gateway(self) -> dict[str, Any]:
        """Stop the local gateway; deployments stay stored and come back on the next start.

        Example:
            >>> deployment.stop_gateway()["stopped"]
            True
        """
        return self.target.stop()

    def follow_rollback(self, model_id: str, version: str) -> list[dict[str, Any]]:
        """Roll every live deployment of ``model_id`` back to ``version``.

        Called by :meth:`ModelVersioning.rollback_model`, so moving the model's live
        alias moves its deployments too. Starts nothing when nothing is deployed.
        """
        out = []
        for rec in self._targets.list(self.tenant):
            if rec["model_id"] == model_id and rec["traffic"]:
                out.append(self.rollback(model_id, rec["environment"], to_version=version))
        return out

    def __repr__(self) -> str:
        return f"<ModelDeployment tenant={self.tenant!r} target={self.target.name!r} home={str(self.settings.home)!r}>"
