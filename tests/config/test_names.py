"""One validator per kind of name: every surface that takes a version (or a slug) applies
the same rule and raises the same typed error."""

from __future__ import annotations

import pytest

from mlops_jupyter.config.names import validate_environment, validate_tenant, validate_version
from mlops_jupyter.errors import InvalidNameError, InvalidTenantError, InvalidVersionError

BAD_VERSIONS = ["", "v 1", "../1", "1..0", "-1.0", "x" * 65, 1, None]


@pytest.mark.parametrize("bad", BAD_VERSIONS)
def test_a_bad_version_is_refused_by_every_surface_alike(bad, home):
    from mlops_jupyter import create_model_monitoring
    from mlops_jupyter.deployment.traffic import check_table

    with pytest.raises(InvalidVersionError) as direct:
        validate_version(bad)
    assert direct.value.reason == "invalid_version" and direct.value.value == bad
    with pytest.raises(InvalidVersionError):
        check_table({bad: 100} if bad is not None else {None: 100})
    if bad is None:
        return  # None means "no version" for the monitoring calls
    mon = create_model_monitoring(tenant_id="acme")
    with pytest.raises(InvalidVersionError):
        mon.track_prediction("m", prediction_time=0.1, success=True, version=bad)
    with pytest.raises(InvalidVersionError):
        mon.check_drift("m", version=bad)


@pytest.mark.parametrize("good", ["1.0.0", "unversioned", "2024-06", "1.0.0+build.7", "v1_0_0"])
def test_good_versions_pass_everywhere(good, home):
    from mlops_jupyter import create_model_monitoring
    from mlops_jupyter.deployment.traffic import check_table

    assert validate_version(good) == good
    assert check_table({good: 100}) == {good: 100}
    create_model_monitoring(tenant_id="acme").track_prediction("m", prediction_time=0.1, success=True, version=good)


def test_tenants_and_environments_are_the_same_slug():
    for ok in ("acme", "prod-2", "a_b"):
        assert validate_tenant(ok) == ok and validate_environment(ok) == ok
    for bad in ("a/b", "", "-x", "x" * 65, "prod!"):
        with pytest.raises(InvalidTenantError):
            validate_tenant(bad)
        with pytest.raises(InvalidNameError):
            validate_environment(bad)
