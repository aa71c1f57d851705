"""Bounded waits on a tracking server: a server that is down or unreachable is a typed error
within seconds, not MLflow's ~4 minutes of retries.

MLflow's REST client retries a request 7 times with exponential backoff and waits up to
120 s for each answer (``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``MLFLOW_HTTP_REQUEST_TIMEOUT``),
so ``start_experiment`` against a server that is down hung for minutes before a urllib3
traceback. Every call a user waits on runs inside :func:`bounded`: each public method of
the store's ``MlflowClient`` (:class:`BoundedClient`: listing experiments and runs, reading
a run or a metric's history, the registry's reads and writes, what the panels and magics
show) and the tracker's and registry's methods that go through MLflow's fluent API or its
artifact repositories (opening a run, registering a version, loading a model: see
:func:`bounded_by_server`). :func:`bounded`

- first (unless the server answered within :data:`RECHECK_S`) asks the server's
  ``/health`` (MLflow's own route, open even under the auth app)
  with MLflow's REST helper, a connect and answer timeout of ``MLOPS_SERVER_CONNECT_TIMEOUT``
  and ``MLOPS_SERVER_RETRIES`` retries: a server that refuses connections, drops them or
  accepts and never answers is found in about ``(retries + 1) * connect_timeout`` seconds;
- then bounds every MLflow REST request of the block by ``MLOPS_SERVER_TIMEOUT`` and
  ``MLOPS_SERVER_RETRIES``. MLflow reads its retries and timeout only from its environment
  variables, at each request: they are set for the duration of the block (and of any block
  running at the same time in the process) and restored when the last one ends (one that
  was unset gets MLflow's default value, which MLflow then uses as before). Requests
  other threads make meanwhile (the background writer, which retries on its own) get the
  same, stricter, bounds;
- turns a connection MLflow could not make or a request not answered in time into
  :class:`~mlops_jupyter.errors.ServerUnreachableError` naming the URI, what happened and
  the settings, without the urllib3 traceback.

Nothing logged is lost by such an error: the writer's journal keeps what is not stored yet
and replays it once the server answers. The writer itself uses the plain client (its
requests carry their own bounds and it retries on its own schedule).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

from mlops_jupyter.config.settings import ServerBounds, server_bounds
from mlops_jupyter.errors import ServerUnreachableError

HEALTH = "/health"
BACKOFF_FACTOR = 1
"""Seconds of MLflow's backoff factor (an integer there): sleeps of 0, 2, 4 s between attempts."""
PROBE_BACKOFF_FACTOR = 0.5
BACKOFF_JITTER = 0.5
"""Up to this many random seconds added to each sleep, so kernels retrying together spread out."""

_MLFLOW_RETRIES = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
_MLFLOW_TIMEOUT = "MLFLOW_HTTP_REQUEST_TIMEOUT"
_MLFLOW_BACKOFF = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
_MLFLOW_JITTER = "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"

RECHECK_S = 10.0
"""A server that answered a bounded block this recently is not asked for ``/health`` again
(the probe costs a round trip, ~3 ms on a local server, per run opened); the block's own
requests are still bounded by ``MLOPS_SERVER_TIMEOUT`` and ``MLOPS_SERVER_RETRIES``."""
_answered: dict[str, float] = {}
"""Tracking URI -> when (``time.monotonic``) a bounded block last got its answers."""

_local = threading.local()
_ENV_LOCK = threading.Lock()
_depth = 0
_saved: dict[str, str | None] = {}

F = TypeVar("F", bound=Callable[..., Any])


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


class BoundedClient:
    """An ``MlflowClient`` whose public methods each run inside :func:`bounded` for its URI
    (attributes and private methods pass through unchanged; :attr:`raw` is the client)."""

    def __init__(self, client: Any, tracking_uri: str) -> None:
        self.raw = client
        self.tracking_uri = tracking_uri

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.raw, name)
        if name.startswith("_") or not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            with bounded(self.tracking_uri):
                return attr(*args, **kwargs)

        return call


def bounded_by_server(method: F) -> F:
    """Run a method of an object with a ``store`` (tracker, versioning) inside :func:`bounded`
    for its store's tracking URI."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with bounded(self.store.tracking_uri):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def bounded(tracking_uri: str) -> Iterator[ServerBounds | None]:
    """Check the server answers, then run the block with MLflow's requests bounded (see the
    module docstring). Does nothing for a store that is not a server (sqlite, a database).

    Raises:
        ServerUnreachableError: the server could not be reached, or stopped answering.
        InvalidSettingError: a ``MLOPS_SERVER_*`` variable is out of range.
    """
    if not is_server(tracking_uri):
        yield None
        return
    bounds = server_bounds()
    t0 = time.monotonic()
    with _mlflow_env(bounds):
        inside = _inside_blocks()
        nested = tracking_uri in inside  # the outer block probed, and words any failure
        if not nested and t0 - _answered.get(tracking_uri, -math.inf) > RECHECK_S:
            check_reachable(tracking_uri, bounds)
        inside.append(tracking_uri)
        try:
            yield bounds
        except ServerUnreachableError:  # from a block nested in this one: already worded
            _answered.pop(tracking_uri, None)
            raise
        except Exception as exc:
            cause = connection_failure(exc, tracking_uri)
            if cause is None:
                _answered[tracking_uri] = time.monotonic()  # an answer, even an error
                raise
            _answered.pop(tracking_uri, None)
            raise unreachable(tracking_uri, bounds, cause, time.monotonic() - t0) from None
        finally:
            inside.remove(tracking_uri)
        _answered[tracking_uri] = time.monotonic()


def _inside_blocks() -> list[str]:
    """The tracking URIs of the bounded blocks this thread is inside (outermost first)."""
    blocks = getattr(_local, "blocks", None)
    if blocks is None:
        blocks = _local.blocks = []
    return blocks


def check_reachable(tracking_uri: str, bounds: ServerBounds) -> None:
    """GET the server's ``/health`` with MLflow's REST helper (its credentials and TLS
    settings) within ``bounds.connect_timeout`` per attempt. Any HTTP answer but a server
    error counts: reaching the server is what is checked, not its routes."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    t0 = time.monotonic()
    try:
        http_request(
            get_default_host_creds(tracking_uri),
            HEALTH,
            "GET",
            max_retries=bounds.retries,
            backoff_factor=PROBE_BACKOFF_FACTOR,
            backoff_jitter=BACKOFF_JITTER,
            timeout=(bounds.connect_timeout, bounds.connect_timeout),
        )
    except Exception as exc:
        raise unreachable(tracking_uri, bounds, exc, time.monotonic() - t0, probe=True) from None


def unreachable(
    tracking_uri: str, bounds: ServerBounds, exc: BaseException, elapsed: float, probe: bool = False
) -> ServerUnreachableError:
    """The error for a server that could not be reached; ``exc`` is what MLflow or requests raised."""
    limit = bounds.connect_timeout if probe else bounds.timeout
    return ServerUnreachableError(
        f"The MLflow tracking server {tracking_uri} could not be reached: {describe_failure(exc, limit)}. "
        f"Gave up after {elapsed:.1f} s; the wait is bounded by {bounds.describe()}. "
        "Nothing logged is lost: what is not stored yet stays in the local journal until the server answers.",
        value=tracking_uri,
        allowed="a running MLflow server at that URI (start it, or fix mlflow_uri / $MLFLOW_TRACKING_URI), "
        "or larger $MLOPS_SERVER_* bounds for a slow server",
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: causes, contexts, urllib3's ``reason``, requests' first arg."""
    seen: set[int] = set()
    todo = [exc]
    while todo and len(seen) < 32:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        nested = [e.__cause__, e.__context__, getattr(e, "reason", None), *(e.args[:1] if e.args else ())]
        todo += [n for n in nested if isinstance(n, BaseException)]


def connection_failure(exc: BaseException, tracking_uri: str | None = None) -> BaseException | None:
    """The connection error or timeout behind ``exc`` (MLflow wraps requests' errors in an
    ``MlflowException``), else None: an HTTP answer, even an error, means the server was
    reached. With ``tracking_uri``, only a failure to reach that host counts (not, say, an
    artifact store elsewhere)."""
    import requests

    for e in _chain(exc):
        if isinstance(e, requests.ConnectionError | requests.Timeout):
            url = getattr(getattr(e, "request", None), "url", None)
            if tracking_uri and url and urlsplit(url).netloc != urlsplit(tracking_uri).netloc:
                return None
            return e
    return None


def raise_if_unreachable(exc: BaseException) -> None:
    """Raise ``exc`` again if a connection failure is behind it. For callers that take an
    MLflow error as "not there yet, create it": a server that is down then costs one bounded
    wait, not one per call that follows."""
    if connection_failure(exc) is not None:
        raise exc


def describe_failure(exc: BaseException, timeout: float) -> str:
    """A few words on why a request failed, from the exception chain."""
    import requests
    import urllib3.exceptions as u3

    chain = list(_chain(exc))
    checks: list[tuple[type | tuple[type, ...], str]] = [
        (ConnectionRefusedError, "connection refused (nothing listens there)"),
        ((u3.NameResolutionError, socket.gaierror), "its host name could not be resolved"),
        ((requests.ReadTimeout, u3.ReadTimeoutError), f"it took the connection but no answer came in {timeout:g} s"),
        ((requests.ConnectTimeout, u3.ConnectTimeoutError), f"no connection within {timeout:g} s"),
        ((ConnectionResetError, u3.ProtocolError), "it closed the connection without answering"),
        ((requests.exceptions.RetryError, u3.ResponseError), "it kept answering with a server error (HTTP 429/5xx)"),
        (OSError, "the connection failed"),
    ]
    for kinds, words in checks:
        if any(isinstance(e, kinds) for e in chain):
            return words
    return f"{type(exc).__name__}: {str(exc)[:200]}"


@contextlib.contextmanager
def _mlflow_env(bounds: ServerBounds) -> Iterator[None]:
    """Set MLflow's request retries and timeout from ``bounds`` while any bounded block runs
    in the process (the first one in sets them, the last one out restores what was there)."""
    global _depth
    values = {
        _MLFLOW_RETRIES: str(bounds.retries),
        _MLFLOW_TIMEOUT: str(max(1, math.ceil(bounds.timeout))),  # an integer for MLflow
        _MLFLOW_BACKOFF: str(BACKOFF_FACTOR),
        _MLFLOW_JITTER: str(BACKOFF_JITTER),
    }
    with _ENV_LOCK:
        if _depth == 0:
            _saved.clear()
            _saved.update({k: os.environ.get(k) for k in values})
            os.environ.update(values)
        _depth += 1
    try:
        yield
    finally:
        with _ENV_LOCK:
            _depth -= 1
            if _depth == 0:
                # a variable that was not set gets MLflow's default value, not unset: its
                # value is then swapped in place from now on (C's setenv), never the
                # environment array reallocated under another thread's getenv
                os.environ.update({k: old if old is not None else _mlflow_default(k) for k, old in _saved.items()})


def _mlflow_default(name: str) -> str:
    """MLflow's default for one of its request variables (what it uses when it is unset)."""
    from mlflow import environment_variables as mlflow_env

    return str(getattr(mlflow_env, name).default)
