"""Which target changes a deployment: the one its record was made with, whoever asks.

A :class:`~mlops_jupyter.deployment.deployment.ModelDeployment` has one target for new
deployments (its ``target=`` argument, ``$MLOPS_DEPLOY_TARGET`` or ``local``), but the
records of a home may come from several (``extra["target"]``,
:func:`~mlops_jupyter.deployment.plan.record_target`). An alert's rollback action, the
server extension or a panel builds its deployment API with the default target and then
changes a deployment someone made on Ray: that change must go to Ray Serve, not to the local
gateway. :class:`RecordTargets` reads every record of the home and hands out, per record, the
target that made it (built from what the record keeps: the Ray cluster's address, KServe's
options), so nothing outside this package needs to know which target is in use.

Example (a home where ``iris`` was deployed with ``target="ray"``)::

    targets = RecordTargets(home, LocalGatewayTarget(home), TARGETS)
    rec = targets.get("acme", "production", "iris")   # whatever target made it
    targets.for_record(rec).name                      # 'ray': the change goes to Ray Serve
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops_jupyter.deployment.plan import record_target
from mlops_jupyter.errors import ValidationError


class RecordTargets:
    """The default target of a deployment API plus the targets of the records it reads.

    Args:
        home: the storage home (its state DB holds every target's records).
        default: the target new deployments go to; it also serves the records it made.
        targets: name -> target class (:data:`~mlops_jupyter.deployment.targets.TARGETS`).
        chosen: whether ``default`` was asked for by name or object (not taken from
            ``$MLOPS_DEPLOY_TARGET``/``local``): a deploy onto a deployment of another target
            is then refused instead of following the deployment (:meth:`for_deploy`).
    """

    def __init__(self, home: Path, default: Any, targets: Mapping[str, Any], chosen: bool = False) -> None:
        self.home = Path(home)
        self.default = default
        self.chosen = chosen
        self.classes = dict(targets)
        self._made: dict[str, Any] = {default.name: default}
        self._store: Any = None

    @property
    def store(self) -> Any:
        """The home's state store: the default target's own when it has one."""
        if self._store is None:
            self._store = getattr(self.default, "store", None)
            if self._store is None:
                from mlops_jupyter.storage.state import open_embedded_store

                self._store = open_embedded_store(self.home)
        return self._store

    def get(self, tenant: str, environment: str, model_id: str) -> dict[str, Any] | None:
        """The record of one deployment, whatever target made it, or None."""
        return self.store.get_deployment(tenant, environment, model_id)

    def list(self, tenant: str, environment: str | None = None) -> list[dict[str, Any]]:
        """Every record of the tenant (optionally of one environment), of every target."""
        return self.store.list_deployments(tenant=tenant, environment=environment)

    def for_record(self, rec: Mapping[str, Any] | None) -> Any:
        """The target that changes and serves ``rec`` (the default one for None).

        A target other than the default is built once per name, with the options the record
        keeps (:meth:`record_options` of its class: e.g. the address of the Ray cluster the
        deployment runs on, so a process that did not start that Ray reaches it)."""
        if rec is None:
            return self.default
        name = record_target(rec)
        if name not in self._made:
            cls = self.classes[name]
            options = cls.record_options(rec) if hasattr(cls, "record_options") else None
            self._made[name] = cls(self.home, options or None)
        return self._made[name]

    def for_deploy(self, rec: Mapping[str, Any] | None) -> Any:
        """The target a deploy into the deployment ``rec`` (None: a new one) goes to.

        A new deployment goes to the default target. An existing one stays where it runs:
        with a default target taken from ``$MLOPS_DEPLOY_TARGET`` (or ``local``) the deploy
        follows the deployment; with a target asked for explicitly that is another one, it is
        refused (two engines never serve one deployment; moving it is an undeploy first).

        Raises:
            ValidationError: an explicitly chosen target differs from the deployment's.
        """
        if rec is None or record_target(rec) == self.default.name or not self.chosen:
            return self.for_record(rec)
        name = record_target(rec)
        raise ValidationError(
            f"{rec['model_id']!r} in {rec['environment']!r} is deployed on the {name!r} target; deploy to it with "
            f"target={name!r} (or no target), or undeploy it there before deploying it on {self.default.name!r}.",
            value=self.default.name,
            allowed=[name],
        )
