"""Deployment targets: one module per place deployments run, behind :class:`DeploymentTarget`.

``local`` (:class:`LocalGatewayTarget`, the serving gateway of the storage home) is the one
built so far; :data:`TARGETS` maps the names ``ModelDeployment(target=...)`` accepts to them.
"""

from mlops_jupyter.deployment.targets.base import DeploymentTarget
from mlops_jupyter.deployment.targets.local import LocalGatewayTarget

TARGETS = {"local": LocalGatewayTarget}

__all__ = ["TARGETS", "DeploymentTarget", "LocalGatewayTarget"]
