"""HTTP clients for the gateway: predictions (tenant token) and the control plane (admin).

Both use one keep-alive ``http.client`` connection each (reconnecting once if the server
closed it), so they add no dependency and little latency. A client object is not meant
to be shared by threads that call it at the same time: give each thread its own (calls
on one object are serialised by a lock).

Example:
    >>> client = deployment.client("iris", "production")
    >>> client.predict(X.head(3))
    array([0, 0, 0])
    >>> client.last_version
    '1.0.0'
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from mlops_jupyter.errors import (
    DeploymentError,
    GatewayError,
    MLOpsError,
    NotFoundError,
    TenantAccessError,
    ValidationError,
)


class _Http:
    """One keep-alive connection to the gateway."""

    def __init__(self, base_url: str, token: str | None, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValidationError(
                f"Invalid gateway URL {base_url!r}.", value=base_url, allowed="http://HOST:PORT[/path]"
            )
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self._auth = f"Bearer {token}" if token else None
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        h = {"Content-Type": "application/json"} if body is not None else {}
        if self._auth:
            h["Authorization"] = self._auth
        if headers:
            h.update(headers)
        with self._lock:
            for attempt in (0, 1):
                if self._conn is None:
                    self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                try:
                    self._conn.request(method, self.prefix + path, body=body, headers=h)
                    resp = self._conn.getresponse()
                    data = resp.read()
                    if resp.getheader("Connection", "").lower() == "close":
                        self.close_unlocked()
                    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
                except (
                    ConnectionError,
                    http.client.RemoteDisconnected,
                    http.client.CannotSendRequest,
                    http.client.BadStatusLine,
                    BrokenPipeError,
                ) as exc:
                    self.close_unlocked()
                    if attempt == 1:
                        raise GatewayError(
                            f"The gateway at http://{self.host}:{self.port} is unreachable: "
                            f"{type(exc).__name__}: {exc}. Is it running? "
                            "(`mlops-jupyter serve status`)"
                        ) from exc
                except OSError as exc:  # timeouts, refused connections
                    self.close_unlocked()
                    raise GatewayError(
                        f"The gateway at http://{self.host}:{self.port} is unreachable: "
                        f"{type(exc).__name__}: {exc}. Is it running? "
                        "(`mlops-jupyter serve status`)"
                    ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def close_unlocked(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self.close_unlocked()


def raise_for_status(status: int, body: bytes, what: str) -> None:
    """Turn a gateway error answer into the matching typed error."""
    if status < 400:
        return
    try:
        err = json.loads(body)
        code, msg = err.get("error_code", "ERROR"), err.get("message", "")
    except ValueError:
        code, msg = "ERROR", body[:500].decode("utf-8", "replace")
    text = f"{what} failed with HTTP {status} {code}: {msg}"
    if status in (401, 403):
        raise TenantAccessError(text, value=status)
    if status == 404:
        raise NotFoundError(text, value=status)
    if status < 500:
        raise ValidationError(text, value=status)
    raise DeploymentError(text, value=status)


def encode_operation(op: Mapping[str, Any]) -> bytes:
    """One change as the control plane receives it: JSON (arrays as lists, dates as ISO text)."""
    return json.dumps(op, default=_default).encode()


def apply_answer(status: int, data: bytes) -> dict[str, Any]:
    """The result of one change from the control plane's answer (HTTP status, JSON body).

    Returns ``{"ok": True, "record"}`` or ``{"ok": False, "error_code", "message", ...}`` (a
    version that failed to load); raises for a refused change: NotFoundError (404),
    ValidationError (other 4xx), DeploymentError (5xx). Used by :class:`AdminClient` and by
    the gateway's in-process target, so both read one answer alike.
    """
    try:
        out = json.loads(data)
    except ValueError:
        out = None
    if status >= 400 and not (isinstance(out, dict) and "ok" in out):
        raise_for_status(status, data, "Deployment change")
    if status >= 400:
        msg = out.get("message", "")
        if status == 404:
            raise NotFoundError(msg)
        if status < 500:
            raise ValidationError(msg)
        raise DeploymentError(msg)
    if not isinstance(out, dict):
        raise MLOpsError(f"Unexpected answer from the gateway: {data[:200]!r}")
    return out


def scoring_payload(data: Any) -> bytes:
    """MLflow scoring JSON for a DataFrame, a dict of columns, a list of dicts or an array."""
    if hasattr(data, "to_json") and hasattr(data, "columns"):  # DataFrame
        return b'{"dataframe_split": ' + data.to_json(orient="split", index=False, date_format="iso").encode() + b"}"
    if isinstance(data, Mapping):
        return json.dumps({"inputs": {k: _plain(v) for k, v in data.items()}}).encode()
    if isinstance(data, (list, tuple)) and data and isinstance(data[0], Mapping):
        return json.dumps({"dataframe_records": [dict(r) for r in data]}, default=_default).encode()
    return json.dumps({"inputs": _plain(data)}, default=_default).encode()


def _plain(v: Any) -> Any:
    return v.tolist() if hasattr(v, "tolist") else v


def _default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "isoformat"):
        return o.isoformat()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


class DeploymentClient:
    """Calls one deployment's endpoint with the tenant's token.

    Args:
        endpoint: ``http://127.0.0.1:PORT/tenants/T/E/models/M``.
        token: the tenant's bearer token.
        timeout: seconds per request.

    Example:
        >>> client = DeploymentClient(result["endpoint"], deployment.get_token())
        >>> client.predict(X.head(2), request_key="user-42")
        array([0, 0])
    """

    def __init__(self, endpoint: str, token: str, timeout: float = 30.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._http = _Http(self.endpoint, token, timeout)
        self.last_version: str | None = None

    def invoke(self, payload: Mapping[str, Any] | bytes, request_key: str | None = None) -> dict[str, Any]:
        """Send a raw scoring payload; returns ``{"predictions": [...], "version": "..."}``.

        Raises:
            ValidationError: the gateway refused the input (4xx), with its message.
            TenantAccessError: missing or foreign token (401/403).
            NotFoundError: no such deployment (404).
            DeploymentError: the model failed (5xx); GatewayError if unreachable.
        """
        body = payload if isinstance(payload, bytes) else json.dumps(payload, default=_default).encode()
        headers = {"X-Request-Key": request_key} if request_key is not None else None
        status, hdrs, data = self._http.request("POST", "/invocations", body, headers)
        raise_for_status(status, data, f"Prediction on {self.endpoint}")
        self.last_version = hdrs.get("x-model-version")
        out = json.loads(data)
        out["version"] = self.last_version
        return out

    def predict(self, data: Any, request_key: str | None = None) -> Any:
        """Predictions for ``data`` (DataFrame, dict of columns, list of dicts or rows).

        Args:
            data: the input rows.
            request_key: routes the request by a stable hash (same key, same version).

        Returns:
            A numpy array with one prediction per row; :attr:`last_version` names the
            version that answered.

        Example:
            >>> client.predict(pd.DataFrame({"a": [1.0], "b": [2.0]}))
            array([1])
        """
        import numpy as np

        return np.asarray(self.invoke(scoring_payload(data), request_key)["predictions"])

    def info(self) -> dict[str, Any]:
        """The deployment as the gateway serves it: versions, traffic, status."""
        status, _, data = self._http.request("GET", "")
        raise_for_status(status, data, f"GET {self.endpoint}")
        return json.loads(data)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DeploymentClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<DeploymentClient {self.endpoint}>"


class AdminClient:
    """The control plane's client (admin token): apply changes, health, shutdown."""

    def __init__(self, url: str, token: str, timeout: float = 300.0) -> None:
        self.url = url
        self._http = _Http(url, token, timeout)

    def health(self) -> dict[str, Any]:
        status, _, data = self._http.request("GET", "/health")
        raise_for_status(status, data, "Gateway health check")
        return json.loads(data)

    def apply(self, op: Mapping[str, Any]) -> dict[str, Any]:
        """Send one change; returns ``{"ok", "record"}`` or ``{"ok": False, "error_code", "message"}``."""
        status, _, data = self._http.request("POST", "/admin/apply", encode_operation(op))
        return apply_answer(status, data)

    def shutdown(self) -> None:
        status, _, data = self._http.request("POST", "/admin/shutdown", b"{}")
        raise_for_status(status, data, "Gateway shutdown")

    def close(self) -> None:
        self._http.close()
