"""The ``kserve`` target: one KServe InferenceService per model and environment.

Each change renders a ``serving.kserve.io/v1beta1`` InferenceService (:func:`render`) and
writes it under the home (:func:`~mlops_jupyter.config.settings.kserve_manifest_path`):

- ``spec.predictor.model``: ``modelFormat: {name: mlflow}`` and ``protocolVersion: v2`` (the
  MLServer runtime, ``kserve-mlserver``), ``storageUri`` = the version's artifact location in
  MLflow, ``resources`` requests = limits = ``config["resources"]``;
- ``minReplicas`` = ``maxReplicas`` = ``config["replicas"]`` (default 1);
- the A/B split as KServe's canary: ``storageUri`` is the *latest* revision's version and
  ``canaryTrafficPercent`` its share; the rest goes to the last *rolled-out* revision (the
  last one that served 100 %). KServe splits between those two only, so a table it cannot
  express (three versions, or two that are not latest + rolled-out) is refused with a
  ValidationError saying so; a rollback to the rolled-out revision is
  ``canaryTrafficPercent: 0``, to any other version a new ``storageUri`` at 100 %;
- labels: tenant, model, environment, version; namespace ``mlops-<tenant>`` (or
  ``target_options["namespace"]``).

With a cluster configured (``target_options={"kubeconfig": path}`` or in a pod,
``{"in_cluster": True}`` or ``$KUBERNETES_SERVICE_HOST``) the manifest is applied with the
``kubernetes`` client (create, or replace keeping ``resourceVersion``) and the status reports
the InferenceService's conditions. Without one the status is ``rendered`` and says how to
apply it (``kubectl apply -f``). A cluster cannot read a local artifact location: applying
one is refused, naming the setting to change (an ``s3://``, ``gs://`` or ``pvc://`` artifact
root); rendering it stays possible (to inspect or validate the manifest).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops_jupyter.config.settings import kserve_manifest_path
from mlops_jupyter.deployment.plan import Plan
from mlops_jupyter.deployment.targets.planned import StoreBackedTarget, TargetFailure
from mlops_jupyter.errors import ValidationError

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
OPTIONS = ("kubeconfig", "context", "in_cluster", "namespace", "domain")
REMOTE_SCHEMES = ("s3://", "gs://", "pvc://", "https://", "http://", "hdfs://", "oci://")
ARTIFACT_SETTING = (
    "the MLflow artifact root (the tracking server's --default-artifact-root or --artifacts-destination, "
    "or the experiment's artifact_location): use an s3://, gs:// or pvc:// location"
)
NAME_MAX = 45  # KServe's advice: longer names overflow the DNS labels of its revisions


def isvc_name(model_id: str, environment: str) -> str:
    """The InferenceService name of a deployment: a DNS-1035 label.

    Example:
        >>> isvc_name("ticket_classifier", "production")
        'ticket-classifier-production'
    """
    name = re.sub(r"[^a-z0-9-]+", "-", f"{model_id}-{environment}".lower()).strip("-")
    if not name[:1].isalpha():
        name = "m-" + name
    if len(name) > NAME_MAX:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = name[: NAME_MAX - 9].rstrip("-") + "-" + digest
    return name


def namespace_of(tenant: str, options: Mapping[str, Any]) -> str:
    """``options["namespace"]`` or ``mlops-<tenant>`` (as a DNS label)."""
    return options.get("namespace") or re.sub(r"[^a-z0-9-]+", "-", f"mlops-{tenant}".lower()).strip("-")


def canary(traffic: Mapping[str, int], state: Mapping[str, Any] | None) -> tuple[str, int | None, dict[str, str]]:
    """How KServe serves ``traffic``: ``(version of storageUri, canaryTrafficPercent or None,
    new state)``; ``state`` is ``{"latest", "rolled_out"}`` of the InferenceService.

    Raises:
        ValidationError: a split KServe cannot make (see the module docstring).

    Example:
        >>> canary({"1.0.0": 100}, None)
        ('1.0.0', None, {'latest': '1.0.0', 'rolled_out': '1.0.0'})
        >>> canary({"1.0.0": 50, "1.1.0": 50}, {"latest": "1.0.0", "rolled_out": "1.0.0"})
        ('1.1.0', 50, {'latest': '1.1.0', 'rolled_out': '1.0.0'})
        >>> canary({"1.0.0": 100}, {"latest": "1.1.0", "rolled_out": "1.0.0"})
        ('1.1.0', 0, {'latest': '1.1.0', 'rolled_out': '1.0.0'})
    """
    latest = (state or {}).get("latest")
    rolled = (state or {}).get("rolled_out")
    versions = list(traffic)
    if len(versions) == 1:
        v = versions[0]
        if v == latest:
            return v, None, {"latest": v, "rolled_out": v}
        if v == rolled and latest is not None:
            return latest, 0, {"latest": latest, "rolled_out": rolled}
        return v, None, {"latest": v, "rolled_out": v}
    if len(versions) == 2:
        a, b = versions
        if {a, b} == {latest, rolled}:
            return latest, traffic[latest], {"latest": latest, "rolled_out": rolled}
        for old, new in ((a, b), (b, a)):
            if old == rolled:
                return new, traffic[new], {"latest": new, "rolled_out": old}
    raise ValidationError(
        f"KServe cannot serve the traffic split {dict(traffic)}: an InferenceService splits traffic between "
        f"its latest revision (now {latest}) and its last rolled-out revision (now {rolled}) only "
        "(canaryTrafficPercent), so at most two versions, one of them the rolled-out one.",
        value=dict(traffic),
        allowed=f"one version, or two of which one is {rolled}",
    )


def render(record: Mapping[str, Any], namespace: str, storage_uri: str, canary_percent: int | None) -> dict[str, Any]:
    """The InferenceService of one deployment record (see the module docstring)."""
    config = record.get("config") or {}
    replicas = int(config.get("replicas") or 1)
    model: dict[str, Any] = {
        "modelFormat": {"name": "mlflow"},
        "protocolVersion": "v2",
        "storageUri": storage_uri,
    }
    res = config.get("resources") or {}
    if res:
        model["resources"] = {"requests": dict(res), "limits": dict(res)}
    predictor: dict[str, Any] = {"minReplicas": replicas, "maxReplicas": replicas, "model": model}
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    served = {v: p for v, p in record["traffic"].items()}
    top = max(served, key=served.get) if served else ""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": isvc_name(record["model_id"], record["environment"]),
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "mlops-jupyter",
                "mlops-jupyter/tenant": record["tenant"],
                "mlops-jupyter/model": record["model_id"],
                "mlops-jupyter/environment": record["environment"],
                "mlops-jupyter/version": top,
            },
            "annotations": {
                "mlops-jupyter/deployment-id": record["deployment_id"],
                "mlops-jupyter/revision": str(record["revision"]),
                "mlops-jupyter/traffic": ",".join(f"{v}={p}" for v, p in served.items()),
            },
        },
        "spec": {"predictor": predictor},
    }


class KServeTarget(StoreBackedTarget):
    """The ``kserve`` target (see the module docstring).

    Args:
        home: the storage home (records and rendered manifests).
        options: ``kubeconfig`` (path) and ``context``, or ``in_cluster`` (bool);
            ``namespace`` (default ``mlops-<tenant>``); ``domain`` of the endpoints
            (default ``svc.cluster.local``).
    """

    name = "kserve"
    needs_artifact_uri = True
    config_effect = (
        "passed to Kubernetes: replicas -> minReplicas = maxReplicas, resources -> requests = limits of the predictor"
    )

    def __init__(self, home: Any, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(home, options)
        unknown = sorted(set(self.options) - set(OPTIONS))
        if unknown:
            raise ValidationError(f"Unknown target_options {unknown} for 'kserve'.", value=unknown, allowed=OPTIONS)
        self._api: Any = None

    @property
    def cluster(self) -> bool:
        """True when a cluster is configured (a kubeconfig, or running in a pod)."""
        o = self.options
        return bool(o.get("kubeconfig") or o.get("in_cluster") or os.environ.get("KUBERNETES_SERVICE_HOST"))

    def _k8s(self) -> Any:
        if self._api is None:
            from kubernetes import client, config

            if self.options.get("kubeconfig"):
                config.load_kube_config(
                    config_file=str(self.options["kubeconfig"]), context=self.options.get("context")
                )
            else:
                config.load_incluster_config()
            self._api = client.CustomObjectsApi()
        return self._api

    # -- changes -------------------------------------------------------------------------
    def realize(self, change: Plan, record: Mapping[str, Any]) -> dict[str, Any]:
        before = (change.current or {}).get("extra") or {}
        version, percent, new_state = canary(record["traffic"], before.get("revisions"))
        spec = record["versions"].get(version)
        if spec is None:  # a rollback to the rolled-out revision keeps the latest's storageUri
            uri = before["storage_uri"]
        else:
            uri = str(spec.get("artifact_uri") or Path(spec["path"]).absolute().as_uri())
        ns = namespace_of(record["tenant"], self.options)
        manifest = render(record, ns, uri, percent)
        path = kserve_manifest_path(self.home, record["tenant"], record["environment"], record["model_id"])
        _write_yaml(path, manifest)
        out: dict[str, Any] = {
            "revisions": new_state,
            "manifest": str(path),
            "namespace": ns,
            "name": manifest["metadata"]["name"],
            "storage_uri": uri,
        }
        local = not uri.startswith(REMOTE_SCHEMES)
        if not self.cluster:
            out.update(status="rendered", apply=f"kubectl apply -f {path}")
            if local:
                out["warning"] = f"storageUri {uri} is a local path a cluster cannot read; change {ARTIFACT_SETTING}."
            return out
        if local:
            raise ValidationError(
                f"The artifact of {record['model_id']} {version} is at {uri}, a local path the cluster cannot read; "
                f"change {ARTIFACT_SETTING}. The manifest was written to {path} but not applied.",
                value=uri,
                allowed="an s3://, gs:// or pvc:// storage URI",
            )
        conditions = self._apply(manifest)
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        out.update(status="deployed" if ready else "applied", conditions=conditions)
        return out

    def _apply(self, manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Create or replace the InferenceService; returns its status conditions."""
        from kubernetes.client.exceptions import ApiException

        api, ns, name = self._k8s(), manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        try:
            try:
                live = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                obj = api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, dict(manifest))
            else:
                body = {
                    **manifest,
                    "metadata": {**manifest["metadata"], "resourceVersion": live["metadata"]["resourceVersion"]},
                }
                obj = api.replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, body)
        except ApiException as exc:
            raise TargetFailure(
                f"Kubernetes refused InferenceService {ns}/{name}: {exc.status} {exc.reason}: {exc.body}",
                "APPLY_FAILED",
            ) from None
        return list((obj.get("status") or {}).get("conditions") or [])

    def remove(self, change: Plan) -> None:
        key = change.key
        path = kserve_manifest_path(self.home, key.tenant, key.environment, key.model_id)
        path.unlink(missing_ok=True)
        if self.cluster:
            from kubernetes.client.exceptions import ApiException

            try:
                self._k8s().delete_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace_of(key.tenant, self.options),
                    PLURAL,
                    isvc_name(key.model_id, key.environment),
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise TargetFailure(f"Kubernetes refused to delete the InferenceService: {exc.reason}") from None

    # -- reading -------------------------------------------------------------------------
    def endpoint(self, tenant: str, environment: str, model_id: str) -> str:
        """The InferenceService's URL (MLServer answers V2 at ``/v2/models/...`` and MLflow's
        scoring JSON at ``/invocations``)."""
        domain = self.options.get("domain") or "svc.cluster.local"
        return f"http://{isvc_name(model_id, environment)}.{namespace_of(tenant, self.options)}.{domain}"

    def ensure_running(self) -> dict[str, Any]:
        return {"cluster": self.cluster}

    def verify(self) -> dict[str, Any]:
        return {"status": "ok"}

    def status(self) -> dict[str, Any]:
        return {
            "running": self.cluster,
            "target": self.name,
            "cluster": "configured" if self.cluster else "none: manifests are rendered, not applied",
            "home": str(self.home.absolute()),
            "deployments": len(self.records()),
            "manifests": [(r.get("extra") or {}).get("manifest") for r in self.records()],
        }

    def stop(self) -> dict[str, Any]:
        return {"stopped": False, "reason": "the kserve target runs nothing here; undeploy removes an InferenceService"}


def _write_yaml(path: Path, manifest: Mapping[str, Any]) -> None:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(dict(manifest), sort_keys=False))
    os.replace(tmp, path)
