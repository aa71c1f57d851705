"""The gateway as a deployment target of itself: changes made in process, on its own routes.

The gateway runs here in the test process (its event loop in a thread, no port bound), as
the alert scheduler's thread sees it: the deployment API on an ``InProcessTarget`` deploys,
splits and rolls back, and the gateway's routes and stored records follow, with no HTTP.
"""

from __future__ import annotations

import asyncio

import pytest
from conftest import gateway_in_process

from mlops_jupyter.errors import GatewayError, NotFoundError


@pytest.fixture
def running(home, iris):
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    from mlops_jupyter import create_model_versioning

    X, y = iris
    v = create_model_versioning(tenant_id="acme", storage_path=home)
    v.create_version("iris", model=LogisticRegression(max_iter=500).fit(X, y), reference_data=X)
    v.create_version("iris", model=DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, y), reference_data=X)
    with gateway_in_process(home) as gw:
        gw.info = {"url": "http://127.0.0.1:5555", "port": 5555, "host": "127.0.0.1"}
        yield gw


def test_the_deployment_api_on_the_in_process_target_changes_the_gateways_routes(running, home):
    from mlops_jupyter.config.settings import resolve_settings
    from mlops_jupyter.deployment.deployment import ModelDeployment
    from mlops_jupyter.gateway.target import InProcessTarget

    d = ModelDeployment(resolve_settings(tenant_id="acme", storage_path=home), target=InProcessTarget(running))
    key = ("acme", "production", "iris")
    r = d.deploy_model("iris", "1.0.0", "production")
    assert r["status"] == "deployed" and r["traffic"] == {"1.0.0": 100}
    assert r["endpoint"] == "http://127.0.0.1:5555/tenants/acme/production/models/iris"
    assert running.routes[key].traffic == {"1.0.0": 100}
    assert d.deploy_model("iris", "1.1.0", "production", traffic_percentage=50)["traffic"] == {"1.0.0": 50, "1.1.0": 50}
    assert running.routes[key].traffic == {"1.0.0": 50, "1.1.0": 50} and running.routes[key].router is not None
    back = d.rollback("iris", "production")
    assert back["traffic"] == {"1.0.0": 100} and back["target"] == "local" and back["revision"] == 3
    assert running.routes[key].traffic == {"1.0.0": 100}
    stored = running.store.get_deployment(*key)
    assert stored["traffic"] == {"1.0.0": 100} and stored["history"] == [{"1.0.0": 100}, {"1.0.0": 50, "1.1.0": 50}]
    assert d.undeploy("iris", "production")["status"] == "undeployed"
    assert key not in running.routes and running.store.get_deployment(*key) is None


def test_a_refused_change_raises_as_over_http_and_the_loop_itself_cannot_wait_for_itself(running):
    from mlops_jupyter.gateway.target import InProcessTarget

    target = InProcessTarget(running)
    with pytest.raises(NotFoundError, match="not deployed in 'nowhere'"):
        target.apply({"op": "undeploy", "tenant": "acme", "environment": "nowhere", "model_id": "iris"})

    async def from_the_loop():
        return target.apply({"op": "undeploy", "tenant": "acme", "environment": "nowhere", "model_id": "iris"})

    with pytest.raises(GatewayError, match="event loop"):
        asyncio.run_coroutine_threadsafe(from_the_loop(), running.loop).result(10)


def test_the_schedulers_monitors_roll_back_through_the_gateway_in_process(running, home):
    from mlops_jupyter.gateway.target import InProcessTarget, monitor_factory

    mon = monitor_factory(running)("acme")
    assert isinstance(mon.deployment.target, InProcessTarget) and mon.deployment.target.gw is running
    assert mon.predlog is running.predlog and mon.store is running.store and mon.sync_gateway is False
