"""The deployment plan (pure): what each operation makes of a record, and why one is refused."""

from __future__ import annotations

import pytest

from mlops_jupyter.config.names import validate_environment
from mlops_jupyter.deployment import traffic
from mlops_jupyter.deployment.plan import DeploymentKey, PlanError, operation_key, plan
from mlops_jupyter.errors import MLOpsError

OP = {"tenant": "acme", "environment": "production", "model_id": "iris"}
SPEC = {v: {"path": f"/m/{v}", "sha256": v * 2} for v in ("1.0.0", "1.1.0", "1.2.0")}


def deploy(current, version, pct=100, **extra):
    p = plan(
        {
            **OP,
            "op": "deploy",
            "version": version,
            "traffic_percentage": pct,
            "specs": {version: SPEC[version]},
            **extra,
        },
        current,
        deployment_id="dep_new",
    )
    return p, p.new_record(now=100.0 + (current["revision"] if current else 0))


def test_a_first_deploy_makes_revision_1_with_a_new_id_and_no_history():
    p, rec = deploy(None, "1.0.0", 30)
    assert p.key == DeploymentKey("acme", "production", "iris") and p.op == "deploy"
    assert p.load == {"1.0.0": SPEC["1.0.0"]} and not p.removes
    assert rec == {
        "tenant": "acme",
        "environment": "production",
        "model_id": "iris",
        "deployment_id": "dep_new",
        "status": "deployed",
        "reason": None,
        "revision": 1,
        "created_at": 100.0,
        "updated_at": 100.0,
        "traffic": {"1.0.0": 100},
        "versions": {"1.0.0": SPEC["1.0.0"]},
        "config": {},
        "history": [],
        "extra": {},
    }


def test_later_changes_keep_the_id_and_creation_bump_the_revision_and_push_the_history():
    _, r1 = deploy(None, "1.0.0", config={"replicas": 2})
    p2, r2 = deploy(r1, "1.1.0", 10)
    assert p2.load == {"1.0.0": SPEC["1.0.0"], "1.1.0": SPEC["1.1.0"]}  # the stored spec, and the new one
    assert (r2["deployment_id"], r2["revision"], r2["created_at"], r2["updated_at"]) == ("dep_new", 2, 100.0, 101.0)
    assert r2["traffic"] == {"1.0.0": 90, "1.1.0": 10} and r2["history"] == [{"1.0.0": 100}]
    assert r2["config"] == {"replicas": 2}  # kept when the operation gives none
    r3 = plan(
        {**OP, "op": "traffic", "traffic": {"1.0.0": 0, "1.1.0": 100}, "config": {"replicas": 4}},
        r2,
        deployment_id="unused",
    ).new_record(now=102.0)
    assert r3["traffic"] == {"1.1.0": 100} and r3["versions"] == {"1.1.0": SPEC["1.1.0"]}
    assert r3["config"] == {"replicas": 4} and r3["history"] == [{"1.0.0": 100}, {"1.0.0": 90, "1.1.0": 10}]
    target = traffic.rollback_target(r3["traffic"], r3["history"])
    back = plan(
        {**OP, "op": "rollback", "version": target, "specs": {target: SPEC[target]}}, r3, deployment_id="unused"
    )
    assert back.traffic == {"1.0.0": 100} and back.load == {"1.0.0": SPEC["1.0.0"]}
    assert back.new_record(now=103.0)["revision"] == 4


def test_rolling_back_to_a_version_with_no_spec_is_refused_as_invalid():
    _, r1 = deploy(None, "1.0.0")
    _, r2 = deploy(r1, "1.1.0")  # 100 %: replaces 1.0.0, whose spec is no longer stored
    with pytest.raises(PlanError) as exc:
        plan({**OP, "op": "rollback", "version": "1.0.0"}, r2, deployment_id="unused")
    assert exc.value.reason == "invalid" and exc.value.detail == "No artifact given for version(s) ['1.0.0']."
    ok = plan(
        {**OP, "op": "rollback", "version": "1.0.0", "specs": {"1.0.0": SPEC["1.0.0"]}}, r2, deployment_id="unused"
    )
    assert ok.traffic == {"1.0.0": 100}


def test_undeploy_removes_one_version_or_the_whole_deployment():
    _, r1 = deploy(None, "1.0.0")
    _, r2 = deploy(r1, "1.1.0", 40)
    one = plan({**OP, "op": "undeploy", "version": "1.0.0"}, r2, deployment_id="unused")
    assert one.traffic == {"1.1.0": 100} and not one.removes
    everything = plan({**OP, "op": "undeploy", "version": None}, r2, deployment_id="unused")
    assert everything.removes and everything.traffic == {} and everything.load == {}


@pytest.mark.parametrize(
    "op,current,reason,detail",
    [
        ({"environment": "production", "model_id": "iris", "op": "deploy"}, None, "bad_request", "missing 'tenant'"),
        ({**OP}, None, "bad_request", "missing 'op'"),
        ({**OP, "op": "promote"}, None, "bad_request", "unknown op 'promote'"),
        ({**OP, "op": "undeploy"}, None, "not_found", "Model 'iris' is not deployed in 'production'."),
        (
            {**OP, "op": "traffic", "traffic": {"1.0.0": 60}},
            None,
            "invalid",
            "Traffic percentages add up to 60, not 100: {'1.0.0': 60}.",
        ),
        (
            {**OP, "op": "deploy", "version": "1.0.0", "traffic_percentage": 101},
            None,
            "invalid",
            "Invalid traffic_percentage 101: out of range.",
        ),
        (
            {**OP, "op": "deploy", "version": "1.0.0", "traffic_percentage": 100},
            None,
            "invalid",
            "No artifact given for version(s) ['1.0.0'].",
        ),
    ],
)
def test_refusals_carry_a_reason_code_and_a_detail(op, current, reason, detail):
    with pytest.raises(PlanError) as exc:
        plan(op, current, deployment_id="x")
    assert exc.value.reason == reason and exc.value.detail == detail


def test_a_refused_name_keeps_the_validators_message_value_and_allowed():
    bad = {**OP, "environment": "prod!", "op": "rollback", "version": "1.0.0"}
    with pytest.raises(MLOpsError) as original:
        validate_environment("prod!")
    with pytest.raises(PlanError) as exc:
        operation_key(bad)
    assert exc.value.reason == "invalid" and str(exc.value) == str(original.value)
    assert (exc.value.detail, exc.value.value, exc.value.allowed) == (
        original.value.detail,
        original.value.value,
        original.value.allowed,
    )


def test_a_missing_key_of_the_op_itself_is_a_key_error():
    with pytest.raises(KeyError):
        plan({**OP, "op": "deploy", "traffic_percentage": 50}, None, deployment_id="x")


def test_a_failed_load_leaves_a_failed_record_only_for_a_first_deploy():
    p, r1 = deploy(None, "1.0.0", config={"replicas": 2})
    assert p.failed_record("bad sha") == {
        "tenant": "acme",
        "environment": "production",
        "model_id": "iris",
        "deployment_id": "dep_new",
        "status": "failed",
        "reason": "bad sha",
        "revision": 0,
        "traffic": {},
        "versions": {},
        "config": {"replicas": 2},
        "history": [],
        "extra": {},
    }
    p2, _ = deploy(r1, "1.1.0", 50)
    assert p2.failed_record("bad sha") is None


def test_the_plan_does_not_change_its_inputs():
    _, r1 = deploy(None, "1.0.0")
    before = {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v) for k, v in r1.items()}
    op = {**OP, "op": "deploy", "version": "1.1.0", "traffic_percentage": 50, "specs": {"1.1.0": SPEC["1.1.0"]}}
    plan(op, r1, deployment_id="x").new_record(now=5.0)
    assert r1 == before and op["specs"] == {"1.1.0": SPEC["1.1.0"]}
