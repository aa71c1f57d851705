"""Validation of a deployment's ``config`` (replicas and resources), shared by every target.

Example:
    >>> validate_config({"replicas": 2})
    {'replicas': 2}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mlops_jupyter.errors import ValidationError

CONFIG_KEYS = ("replicas", "resources")
RESOURCE_KEYS = ("cpu", "memory")
MAX_REPLICAS = 64
_CPU_RE = re.compile(r"(\d+(\.\d+)?|\d+m)")
_MEMORY_RE = re.compile(r"\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E)?")


def validate_config(config: Any) -> dict[str, Any]:
    """Validate a deployment ``config``; returns a normalised copy.

    Known keys: ``replicas`` (int 1..64) and ``resources`` (``{"cpu": "2", "memory":
    "4Gi"}``, Kubernetes quantity strings). Both are stored with the deployment and
    reported by :meth:`ModelDeployment.get_deployment`. The local gateway serves every
    version from its one process: it does not start replicas nor enforce resources;
    they are there for targets that do (a KServe target renders them into manifests).

    Raises:
        ValidationError: unknown keys (the message lists the known ones) or bad values.

    Example:
        >>> validate_config({"replicas": 3, "resources": {"cpu": "2", "memory": "4Gi"}})
        {'replicas': 3, 'resources': {'cpu': '2', 'memory': '4Gi'}}
    """
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise ValidationError(
            f"Invalid config {config!r}.",
            value=config,
            allowed="a dict such as {'replicas': 3, 'resources': {'cpu': '2', 'memory': '4Gi'}}",
        )
    unknown = sorted(str(k) for k in config if k not in CONFIG_KEYS)
    if unknown:
        raise ValidationError(f"Unknown config key(s) {unknown}.", value=unknown, allowed=CONFIG_KEYS)
    out: dict[str, Any] = {}
    if "replicas" in config:
        r = config["replicas"]
        if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= MAX_REPLICAS:
            raise ValidationError(f"Invalid replicas {r!r}.", value=r, allowed=f"an integer from 1 to {MAX_REPLICAS}")
        out["replicas"] = r
    if "resources" in config:
        res = config["resources"]
        if not isinstance(res, Mapping):
            raise ValidationError(
                f"Invalid resources {res!r}.", value=res, allowed="a dict like {'cpu': '2', 'memory': '4Gi'}"
            )
        bad = sorted(str(k) for k in res if k not in RESOURCE_KEYS)
        if bad:
            raise ValidationError(f"Unknown resources key(s) {bad}.", value=bad, allowed=RESOURCE_KEYS)
        norm = {}
        for k, pattern, example in (
            ("cpu", _CPU_RE, "'2', '0.5' or '500m'"),
            ("memory", _MEMORY_RE, "'4Gi', '512Mi' or '1G'"),
        ):
            if k in res:
                v = res[k]
                if not isinstance(v, str) or not pattern.fullmatch(v) or float(re.match(r"[\d.]+", v).group()) <= 0:
                    raise ValidationError(
                        f"Invalid resources.{k} {v!r}.",
                        value=v,
                        allowed=f"a positive quantity string such as {example}",
                    )
                norm[k] = v
        out["resources"] = norm
    return out
