"""What the targets that run outside the gateway share: plan a change here, keep the record.

The local gateway plans and stores each change itself (``POST /admin/apply``). The ``ray``
and ``kserve`` targets do the same work in the notebook's process: the pure plan
(:func:`~mlops_jupyter.deployment.plan.plan`) decides the new record, the target carries it
out (:meth:`StoreBackedTarget.realize`), and only then is the record written to the home's
state DB, marked with the target's name in ``extra["target"]``. A record made by one target
is refused by another (undeploy it there first), so two engines never serve one deployment.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops_jupyter.deployment.plan import Plan, PlanError, new_deployment_id, operation_key, plan, record_target
from mlops_jupyter.deployment.targets.base import TargetRecords
from mlops_jupyter.errors import NotFoundError, ValidationError


class TargetFailure(Exception):
    """A change the engine refused or could not carry out (``code`` as in the gateway's answers)."""

    def __init__(self, message: str, code: str = "LOAD_FAILED") -> None:
        super().__init__(message)
        self.code = code


class StoreBackedTarget(TargetRecords):
    """Base of the targets that plan in process and keep their records in the home's state DB.

    Subclasses set :attr:`name` and :attr:`config_effect` and implement :meth:`realize`,
    :meth:`remove`, :meth:`endpoint`, :meth:`ensure_running`, :meth:`verify`,
    :meth:`status` and :meth:`stop`; reading records is :class:`TargetRecords`'.
    """

    name = ""
    config_effect = ""

    def __init__(self, home: Path, options: Mapping[str, Any] | None = None) -> None:
        self.home = Path(home)
        self.options = dict(options or {})
        self._store: Any = None

    def apply(self, op: Mapping[str, Any]) -> dict[str, Any]:
        """Plan ``op``, carry it out, then store the record (the gateway's answer shape)."""
        try:
            key = operation_key(op)
            current = self.store.get_deployment(*key)
            if current is not None and record_target(current) != self.name:
                raise PlanError(
                    f"{key.model_id!r} in {key.environment!r} is deployed on the {record_target(current)!r} "
                    f"target; undeploy it there before changing it on {self.name!r}.",
                    reason="invalid",
                )
            change = plan(op, current, deployment_id=new_deployment_id())
        except PlanError as exc:  # refused as the gateway's answer is read (client.apply_answer)
            if exc.reason == "not_found":
                raise NotFoundError(exc.detail, value=exc.value, allowed=exc.allowed) from None
            raise ValidationError(exc.detail, value=exc.value, allowed=exc.allowed) from None
        if change.removes:
            self.store.delete_deployment(*key)
            self.remove(change)
            return {"ok": True, "record": None}
        record = change.new_record(now=time.time())
        try:
            extra = self.realize(change, record)
        except TargetFailure as exc:
            failed = change.failed_record(str(exc))
            if failed is not None:
                failed["extra"] = {"target": self.name}
                self.store.put_deployment(failed)
            return {"ok": False, "error_code": exc.code, "message": str(exc), "record": failed or current}
        record["extra"] = {"target": self.name, **({"target_options": self.options} if self.options else {}), **extra}
        if extra.get("status"):  # e.g. kserve's "rendered": the record says what the target did
            record["status"] = extra["status"]
        self.store.put_deployment(record)
        return {"ok": True, "record": record, "status": extra.get("status")}

    @classmethod
    def record_options(cls, rec: Mapping[str, Any]) -> dict[str, Any]:
        """The ``target_options`` to reach ``rec``'s deployment again from any process (those
        it was made with, kept in its ``extra``), for
        :class:`~mlops_jupyter.deployment.targets.routing.RecordTargets`."""
        return dict((rec.get("extra") or {}).get("target_options") or {})

    # -- what each target does --------------------------------------------------------------
    def realize(self, change: Plan, record: Mapping[str, Any]) -> dict[str, Any]:
        """Make the engine serve ``record`` (the record after ``change``); returns what to keep
        in the record's ``extra`` (``status`` there, if any, becomes the deploy result's).
        Raises :class:`TargetFailure` (the engine failed) or a ValidationError (the engine
        cannot do what the plan asks); nothing changes then."""
        raise NotImplementedError

    def remove(self, change: Plan) -> None:
        """Stop serving the deployment ``change`` removes (its record is already deleted)."""
        raise NotImplementedError
