"""A tracking server that is down, unreachable or silent: opening a run (or registering a
version) is a ``ServerUnreachableError`` within the ``MLOPS_SERVER_*`` bounds, naming the
URI and the settings, not MLflow's ~4 minutes of retries; what was logged stays journaled
and is stored once the server is back.

Real sockets on 127.0.0.1: a port nothing listens on, a socket that accepts and never
answers, an HTTP server that answers ``/health`` but never an API request, and a real
``mlflow server`` (PostgreSQL-backed) stopped and restarted on the same port.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT
from sklearn.linear_model import LogisticRegression

from mlops_jupyter import create_experiment_tracker, create_model_versioning
from mlops_jupyter.config import env
from mlops_jupyter.config import settings as layout
from mlops_jupyter.errors import ServerUnreachableError, StoreError
from team.servers import MlflowServer

BOUND_S = 30.0  # generous: the settings below give ~2-3 s; MLflow's defaults took ~4 minutes
SETTINGS = (env.MLOPS_SERVER_CONNECT_TIMEOUT, env.MLOPS_SERVER_TIMEOUT, env.MLOPS_SERVER_RETRIES)


@pytest.fixture
def small_bounds(monkeypatch: pytest.MonkeyPatch, client_home) -> None:
    monkeypatch.setenv(env.MLOPS_SERVER_CONNECT_TIMEOUT, "1")
    monkeypatch.setenv(env.MLOPS_SERVER_TIMEOUT, "2")
    monkeypatch.setenv(env.MLOPS_SERVER_RETRIES, "1")


@pytest.fixture
def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A socket that accepts connections (the kernel's backlog) and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    yield s.getsockname()[1]
    s.close()


@pytest.fixture
def healthy_but_silent() -> Iterator[int]:
    """An HTTP server that answers ``/health`` and holds every other request until the end."""
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")
            else:
                release.wait(60)

        do_POST = do_GET

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(10)


def journal_segments(home) -> list:
    """The journal segments holding data not stored yet (the open one is empty)."""
    return sorted(p for p in layout.journal_dir(home).rglob("*.journal") if p.stat().st_size)


def open_run_fails_fast(url: str) -> ServerUnreachableError:
    tracker = create_experiment_tracker(tenant_id="down", mlflow_uri=url)
    t0 = time.monotonic()
    with pytest.raises(ServerUnreachableError) as err:
        tracker.start_experiment("offline")
    assert time.monotonic() - t0 < BOUND_S
    assert_names_uri_and_settings(err.value, url)
    return err.value


def assert_names_uri_and_settings(err: ServerUnreachableError, url: str) -> None:
    msg = str(err)
    assert isinstance(err, StoreError) and err.reason == "server_unreachable" and err.value == url
    assert f"{url} could not be reached" in msg
    for var in SETTINGS:
        assert var in msg
    assert "urllib3" not in msg and "HTTPConnectionPool" not in msg
    assert err.__suppress_context__  # no chained urllib3 traceback under it
    for var in (MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT):  # MLflow's own bounds restored
        assert var.get() == var.default


def test_a_closed_port_is_a_typed_error_at_once(small_bounds, closed_port):
    err = open_run_fails_fast(f"http://127.0.0.1:{closed_port}")
    assert "connection refused" in str(err)


def test_a_server_that_accepts_and_never_answers_is_bounded_by_the_timeout(small_bounds, blackhole):
    err = open_run_fails_fast(f"http://127.0.0.1:{blackhole}")
    assert "no answer came in 1 s" in str(err)  # MLOPS_SERVER_CONNECT_TIMEOUT bounds the health check


def test_a_server_silent_on_api_requests_is_bounded_by_the_request_timeout(small_bounds, healthy_but_silent):
    url = f"http://127.0.0.1:{healthy_but_silent}"
    err = open_run_fails_fast(url)
    assert "no answer came in 2 s" in str(err)  # MLOPS_SERVER_TIMEOUT bounds MLflow's own requests
    versioning = create_model_versioning(tenant_id="down", mlflow_uri=url)
    model = LogisticRegression().fit(np.array([[0.0], [1.0]]), [0, 1])
    t0 = time.monotonic()
    with pytest.raises(ServerUnreachableError) as reg:
        versioning.create_version("churn", model=model)
    assert time.monotonic() - t0 < BOUND_S
    assert_names_uri_and_settings(reg.value, url)


@pytest.fixture
def refusing_server() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server that answers ``/health`` (each probe recorded) and refuses every API
    call with a client error, which MLflow raises at once without retrying."""
    probes: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                probes.append(self.path)
                self._answer(200, b"OK")
            else:
                self._answer(400, b'{"error_code": "INVALID_PARAMETER_VALUE", "message": "refused here"}')

        do_POST = do_GET

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", probes
    httpd.shutdown()
    httpd.server_close()
    thread.join(10)


def test_a_server_that_just_answered_is_not_probed_again(small_bounds, monkeypatch, refusing_server):
    """The /health probe costs a round trip per run opened: a server that answered a bounded
    call within RECHECK_S (an answer, even an error, counts) is not probed again."""
    from mlops_jupyter.storage import server_reach

    url, probes = refusing_server
    tracker = create_experiment_tracker(tenant_id="down", mlflow_uri=url)
    for _ in range(3):
        with pytest.raises(Exception, match="refused here"):
            tracker.start_experiment("answered")
    assert len(probes) == 1
    monkeypatch.setattr(server_reach, "RECHECK_S", 0.0)
    with pytest.raises(Exception, match="refused here"):
        tracker.start_experiment("answered")
    assert len(probes) == 2  # once for the call, not again for the client calls bounded inside it


def test_a_bounded_call_inside_another_probes_the_server_once(small_bounds, monkeypatch, refusing_server):
    """Only the outermost bounded block of a thread asks /health: the client calls inside
    it do not, even with RECHECK_S at 0."""
    from mlops_jupyter.storage import server_reach

    url, probes = refusing_server
    monkeypatch.setattr(server_reach, "RECHECK_S", 0.0)
    client = server_reach.BoundedClient(MlflowClient(url), url)
    with server_reach.bounded(url):
        for _ in range(3):
            with pytest.raises(Exception, match="refused here"):
                client.search_experiments()
    assert len(probes) == 1
    with pytest.raises(Exception, match="refused here"):
        client.search_experiments()  # on its own: probed
    assert len(probes) == 2


def test_a_bad_bound_is_a_typed_error_naming_it(client_home, closed_port, monkeypatch):
    from mlops_jupyter.errors import InvalidSettingError

    monkeypatch.setenv(env.MLOPS_SERVER_RETRIES, "-1")
    tracker = create_experiment_tracker(tenant_id="down", mlflow_uri=f"http://127.0.0.1:{closed_port}")
    with pytest.raises(InvalidSettingError, match=env.MLOPS_SERVER_RETRIES) as err:
        tracker.start_experiment("offline")
    assert err.value.value == "-1"


READS = {  # what a user waits on besides opening a run: the store's client and the fluent/artifact paths
    "list_experiments": lambda tracker, versioning: tracker.list_experiments(),
    "get_run": lambda tracker, versioning: tracker.get_run("0" * 32),
    "list_models": lambda tracker, versioning: versioning.list_models(),
    "get_lineage": lambda tracker, versioning: versioning.get_lineage("churn"),
    "load_model": lambda tracker, versioning: versioning.load_model("churn", "production"),
}


@pytest.mark.parametrize("read", READS)
def test_reads_and_the_registry_are_bounded_too(small_bounds, closed_port, read):
    """Before, only opening a run and registering were bounded: listing experiments against
    a port nothing listens on was still waiting after 60 s (MLflow's 7 retries, 120 s each)."""
    url = f"http://127.0.0.1:{closed_port}"
    tracker = create_experiment_tracker(tenant_id="down", mlflow_uri=url)
    versioning = create_model_versioning(tenant_id="down", mlflow_uri=url)
    t0 = time.monotonic()
    with pytest.raises(ServerUnreachableError) as err:
        READS[read](tracker, versioning)
    assert time.monotonic() - t0 < BOUND_S
    assert_names_uri_and_settings(err.value, url)
    assert "connection refused" in str(err.value)


def test_a_read_from_a_silent_server_is_bounded_by_the_request_timeout(small_bounds, healthy_but_silent):
    url = f"http://127.0.0.1:{healthy_but_silent}"
    tracker = create_experiment_tracker(tenant_id="down", mlflow_uri=url)
    t0 = time.monotonic()
    with pytest.raises(ServerUnreachableError) as err:
        tracker.list_experiments()
    assert time.monotonic() - t0 < BOUND_S
    assert_names_uri_and_settings(err.value, url)
    assert "no answer came in 2 s" in str(err.value)


def test_a_server_gone_down_keeps_the_journal_and_stores_it_once_back(team, tmp_path, small_bounds, client_home):
    server = MlflowServer(tmp_path / "down", team.postgres.create_database("mlflow_down", template="mlflow_template"))
    server.start().wait_ready()
    try:
        tracker = create_experiment_tracker(tenant_id="down", mlflow_uri=server.url)
        run = tracker.start_experiment("before")
        tracker.log_metrics({"loss": 0.5}, step=0)
        tracker.flush()
        server.stop()
        tracker.log_metrics({"loss": 0.25}, step=1)  # journaled: the server is down
        err = open_run_fails_fast(server.url)
        t0 = time.monotonic()
        with pytest.raises(ServerUnreachableError):  # the open run is not ended meanwhile: it stays open
            tracker.start_experiment("after")
        assert time.monotonic() - t0 < BOUND_S and tracker.active_run is run
        assert "connection refused" in str(err)
        assert journal_segments(client_home)  # nothing lost

        server.start().wait_ready()  # same port
        tracker.end_experiment()
        history = MlflowClient(server.url).get_metric_history(run.run_id, "loss")
        assert sorted((m.step, m.value) for m in history) == [(0, 0.5), (1, 0.25)]
        assert journal_segments(client_home) == []
        assert tracker.start_experiment("after").end()["status"] == "completed"
    finally:
        server.stop()


def test_the_magic_says_so_in_one_line(ip, small_bounds, closed_port, monkeypatch):
    url = f"http://127.0.0.1:{closed_port}"
    monkeypatch.setenv(env.MLFLOW_TRACKING_URI, url)
    ip.run_cell("%load_ext mlops_jupyter")
    for line in ("%mlops start demo", "%mlops runs --experiment demo"):  # opening a run, and a read
        t0 = time.monotonic()
        result = ip.run_failing(line)
        assert time.monotonic() - t0 < BOUND_S
        err = result.error_in_exec
        assert type(err).__name__ == "UsageError", line  # shown as one line, no traceback
        assert str(err).startswith("ServerUnreachableError: ") and f"{url} could not be reached" in str(err)
    ip.run_line_magic("unload_ext", "mlops_jupyter")
