"""Deployment targets: one module per place deployments run, behind :class:`DeploymentTarget`.

:data:`TARGETS` maps the names ``ModelDeployment(target=...)`` accepts to their classes:

- ``local`` (:class:`~.local.LocalGatewayTarget`): the serving gateway of the storage home;
- ``ray`` (:class:`~.ray_serve.RayServeTarget`): Ray Serve, one deployment per version;
- ``kserve`` (:class:`~.kserve.KServeTarget`): KServe InferenceService manifests, applied
  to a cluster when one is configured.

Each class takes ``(home, options)``; ``options`` is the ``target_options`` dict of
``create_model_deployment``. Nothing outside this package knows which target is in use:
:class:`~.routing.RecordTargets` sends a change of an existing deployment to the target its
record was made with.
"""

from mlops_jupyter.deployment.targets.base import DeploymentTarget
from mlops_jupyter.deployment.targets.kserve import KServeTarget
from mlops_jupyter.deployment.targets.local import LocalGatewayTarget
from mlops_jupyter.deployment.targets.ray_serve import RayServeTarget
from mlops_jupyter.deployment.targets.routing import RecordTargets

TARGETS = {"local": LocalGatewayTarget, "ray": RayServeTarget, "kserve": KServeTarget}

__all__ = ["TARGETS", "DeploymentTarget", "KServeTarget", "LocalGatewayTarget", "RayServeTarget", "RecordTargets"]
