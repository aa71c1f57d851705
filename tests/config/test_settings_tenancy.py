"""Settings resolution, tenant slugs, and a full isolation suite of two tenants on one store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlops_jupyter import create_experiment_tracker, create_mlops_pipeline, create_model_versioning
from mlops_jupyter.config import env
from mlops_jupyter.config.names import TENANT_TAG, Tenancy, validate_tenant
from mlops_jupyter.config.settings import resolve_settings
from mlops_jupyter.errors import (
    InvalidNameError,
    InvalidSettingError,
    InvalidTenantError,
    ModelNotFoundError,
    TenantAccessError,
)


# -- settings resolution -------------------------------------------------------------------
@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in (env.MLOPS_TENANT, env.MLFLOW_TRACKING_URI, env.MLOPS_HOME):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_are_embedded_under_dot_mlops(clean_env):
    s = resolve_settings()
    assert s.tenant == "default"
    assert s.home == clean_env / ".mlops"
    assert s.tracking_uri == f"sqlite:///{clean_env / '.mlops' / 'mlflow.db'}"
    assert s.sqlite_path == clean_env / ".mlops" / "mlflow.db"
    assert s.artifact_root == clean_env / ".mlops" / "artifacts"
    assert s.experiment_name is None
    # the factories resolve the same way, and resolving does not touch the disk
    t = create_experiment_tracker()
    assert t.settings == s
    assert not (clean_env / ".mlops").exists()


def test_the_home_layout_is_computed_in_settings_only(clean_env, home_store):
    from mlops_jupyter.config import settings as layout
    from mlops_jupyter.storage.state import open_embedded_store

    s = resolve_settings(tenant_id="acme", storage_path=home_store)
    h = home_store
    assert s.sqlite_path == layout.tracking_db_path(h) == h / "mlflow.db"
    assert s.artifact_root == layout.artifact_root(h) == h / "artifacts"
    assert s.state_db_path == layout.state_db_path(h) == h / "mlops.db"
    assert layout.journal_dir(h) == h / "journal"
    assert layout.tenant_artifact_root(h, "acme") == h / "artifacts" / "acme"
    assert layout.model_cache_dir(h, "acme", "acme.clf", 3) == h / "model-cache" / "acme" / "acme.clf" / "3"
    with pytest.raises(InvalidTenantError):
        layout.tenant_artifact_root(h, "../x")
    assert not hasattr(s, "journal_dir")  # was never read: the store asks layout.journal_dir
    # the parts put things where the layout says
    t = create_experiment_tracker(tenant_id="acme", storage_path=h)
    with t.start_experiment("e") as run:
        t.log_metrics({"m": 1.0})
    assert run.artifact_uri.startswith(layout.tenant_artifact_root(h, "acme").as_uri() + "/")
    assert list(layout.journal_dir(h).glob("*.lock"))  # this process's journal, while its store is open
    open_embedded_store(h).close()
    assert layout.state_db_path(h).is_file()


@pytest.fixture
def home_store(tmp_path, template_db):
    from mlops_jupyter.storage import store as store_mod

    h = tmp_path / "layout"
    h.mkdir()
    shutil.copy(template_db, h / "mlflow.db")
    yield h
    for key, st in list(store_mod._STORES.items()):
        if key[1] == str(h):
            st.close()
            del store_mod._STORES[key]


def test_environment_overrides_defaults(clean_env, monkeypatch):
    monkeypatch.setenv(env.MLOPS_TENANT, "env_tenant")
    monkeypatch.setenv(env.MLOPS_HOME, str(clean_env / "envhome"))
    s = resolve_settings()
    assert (s.tenant, s.home) == ("env_tenant", clean_env / "envhome")
    assert s.tracking_uri == f"sqlite:///{clean_env / 'envhome' / 'mlflow.db'}"
    monkeypatch.setenv(env.MLFLOW_TRACKING_URI, "sqlite:///rel/track.db")
    s = resolve_settings()
    # a relative sqlite path is made absolute so every part agrees on the file
    assert s.tracking_uri == f"sqlite:///{clean_env / 'rel' / 'track.db'}"
    assert s.home == clean_env / "envhome"
    monkeypatch.setenv(env.MLFLOW_TRACKING_URI, "http://127.0.0.1:5000")
    assert resolve_settings().tracking_uri == "http://127.0.0.1:5000"
    assert not resolve_settings().is_sqlite and resolve_settings().sqlite_path is None


def test_arguments_override_environment(clean_env, monkeypatch):
    monkeypatch.setenv(env.MLOPS_TENANT, "env_tenant")
    monkeypatch.setenv(env.MLOPS_HOME, str(clean_env / "envhome"))
    monkeypatch.setenv(env.MLFLOW_TRACKING_URI, "http://127.0.0.1:5000")
    s = resolve_settings(
        tenant_id="arg_tenant",
        mlflow_uri="sqlite:////tmp/x/arg.db",
        experiment_name="exp",
        storage_path=clean_env / "arghome",
    )
    assert s.tenant == "arg_tenant"
    assert s.tracking_uri == "sqlite:////tmp/x/arg.db"
    assert s.home == clean_env / "arghome"
    assert s.experiment_name == "exp"
    p = create_mlops_pipeline("pipe", tenant_id="arg_tenant", storage_path=str(clean_env / "arghome"))
    assert p.settings.tenant == "arg_tenant" and p.settings.home == clean_env / "arghome"
    # the env tracking URI still applies where no argument overrides it
    assert p.settings.tracking_uri == "http://127.0.0.1:5000"
    assert p.settings.experiment_name == "pipe"


def test_env_tenant_is_validated_too(clean_env, monkeypatch):
    monkeypatch.setenv(env.MLOPS_TENANT, "../etc")
    with pytest.raises(InvalidTenantError, match=r"\.\./etc"):
        resolve_settings()


@pytest.mark.parametrize(
    "uri",
    [
        "ftp://host/x",
        "file:///tmp/mlruns",
        "mlruns",
        "s3://bucket/path",
        "sqlite://relative.db",
        "databricks",
        "gopher://x",
    ],
)
def test_bad_tracking_uris_are_refused(clean_env, uri):
    with pytest.raises(InvalidSettingError) as ei:
        resolve_settings(mlflow_uri=uri)
    assert repr(uri) in str(ei.value)
    assert ei.value.value == uri
    assert "http://" in str(ei.value) or "sqlite:///" in str(ei.value)  # says what is allowed


def test_bad_tracking_uri_in_environment_is_refused(clean_env, monkeypatch):
    monkeypatch.setenv(env.MLFLOW_TRACKING_URI, "file:///tmp/mlruns")
    with pytest.raises(InvalidSettingError, match="file:///tmp/mlruns"):
        create_experiment_tracker()


def test_good_tracking_uris(clean_env):
    for uri in (
        "http://h:5000",
        "https://h",
        "postgresql://u@h/db",
        "postgresql+psycopg2://u@h/db",
        "mysql+pymysql://u@h/db",
        "sqlite:////abs/x.db",
    ):
        assert resolve_settings(mlflow_uri=uri).tracking_uri == uri


def test_bad_experiment_name_in_settings(clean_env):
    for bad in ("", "a/b", " lead", "tab\there", "x" * 201):
        with pytest.raises(InvalidNameError):
            resolve_settings(experiment_name=bad)


# -- tenant slugs --------------------------------------------------------------------------
BAD_TENANTS = [
    "../x",
    "a/b",
    "",
    "t" * 300,
    "a.b",
    " a",
    "a ",
    "a\\b",
    "-lead",
    "_lead",
    "é",
    "a\nb",
    "a%b",
    "a*",
    "x" * 65,
]


@pytest.mark.parametrize("tenant", BAD_TENANTS, ids=lambda t: repr(t)[:20])
def test_bad_tenant_ids_are_refused(clean_env, tenant):
    for attempt in (
        lambda: validate_tenant(tenant),
        lambda: Tenancy(tenant),
        lambda: resolve_settings(tenant_id=tenant),
        lambda: create_experiment_tracker(tenant_id=tenant),
        lambda: create_model_versioning(tenant_id=tenant),
        lambda: create_mlops_pipeline("p", tenant_id=tenant),
    ):
        with pytest.raises(InvalidTenantError) as ei:
            attempt()
        msg = str(ei.value)
        assert ei.value.value == tenant
        shown = tenant if len(tenant) <= 60 else tenant[:57]
        assert repr(shown)[1:-1] in msg
        assert "Allowed:" in msg


@pytest.mark.parametrize(
    "tenant", [None, 0, 123, 1.5, True, b"abc", ["a"], {"t": 1}, object()], ids=lambda t: type(t).__name__
)
def test_non_string_tenants_are_refused(clean_env, tenant):
    with pytest.raises(InvalidTenantError) as ei:
        validate_tenant(tenant)
    assert repr(tenant) in str(ei.value)
    assert type(tenant).__name__ in str(ei.value)
    if tenant is not None:  # None through a factory means "the default tenant"
        with pytest.raises(InvalidTenantError):
            create_experiment_tracker(tenant_id=tenant)


def test_good_tenant_ids(clean_env):
    for t in ("tenant_123", "a", "A-b_c", "0", "x" * 64):
        assert validate_tenant(t) == t
        assert resolve_settings(tenant_id=t).tenant == t
    assert resolve_settings(tenant_id=None).tenant == "default"


def test_tenancy_names():
    t = Tenancy("acme")
    assert t.experiment_name("exp") == "acme/exp"
    assert t.model_name("clf") == "acme.clf"
    assert t.tags({"k": 1}) == {"k": "1", TENANT_TAG: "acme"}
    # a caller cannot override the tenant tag
    assert t.tags({TENANT_TAG: "other"})[TENANT_TAG] == "acme"
    for bad in ("../x", "a/b", "", ".hidden", "a..b", "x" * 129, 5):
        with pytest.raises(InvalidNameError):
            t.model_name(bad)


# -- isolation: two tenants on the same store ----------------------------------------------
def _client(home: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


class World:
    """Tenants A ('alpha') and B ('bravo') with experiments, runs and models of the same names."""


@pytest.fixture(scope="module")
def world(tmp_path_factory, template_db, request):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from mlops_jupyter.storage import store as store_mod

    home = tmp_path_factory.mktemp("isolation")
    shutil.copy(template_db, home / "mlflow.db")
    X, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=300).fit(X, y)

    w = World()
    w.home = home
    w.client = _client(home)
    for who, tenant in (("A", "alpha"), ("B", "bravo")):
        p = create_mlops_pipeline("shared", tenant_id=tenant, storage_path=home)
        with p.tracker.start_experiment("shared", tags={"owner": who}) as run:
            p.tracker.log_params({"who": who})
            p.tracker.log_metrics({"acc": 0.9 if who == "A" else 0.8})
        v = p.versioning.create_version("clf", model=model, metadata={"owner": who}, reference_data=X)
        p.versioning.rollback_model("clf", "1.0.0")
        setattr(w, who, p)
        setattr(w, f"{who}_run", run.run_id)
        setattr(w, f"{who}_version", v)
    # a model only B has
    w.B.versioning.create_version("secret_model", model=model)
    yield w
    key = (w.A.settings.tracking_uri, str(home))
    st = store_mod._STORES.pop(key, None)
    if st is not None:
        st.close()


def test_a_lists_only_its_own_runs(world):
    runs = world.A.tracker.list_experiments()
    assert [r["run_id"] for r in runs] == [world.A_run]
    assert runs[0]["params"] == {"who": "A"}
    assert runs[0]["tags"][TENANT_TAG] == "alpha"
    # same for an explicit experiment name, and for any filter
    assert [r["run_id"] for r in world.A.tracker.list_experiments(experiment_name="shared")] == [world.A_run]
    assert world.A.tracker.list_experiments(filter_string="tags.`mlops.tenant` = 'bravo'") == []
    assert world.A.tracker.list_experiments(filter_string="params.who = 'B'") == []
    assert world.A.tracker.list_experiments(experiment_name="other") == []
    # B's own view is the mirror image
    assert [r["run_id"] for r in world.B.tracker.list_experiments()] == [world.B_run]


def test_a_cannot_name_bs_experiment(world):
    a = create_experiment_tracker(tenant_id="alpha", storage_path=world.home)
    for name in ("../bravo/shared", "bravo/shared", "x/../../bravo/shared"):
        with pytest.raises(InvalidNameError):
            a.list_experiments(experiment_name=name)
        with pytest.raises(InvalidNameError):
            a.start_experiment(name)
    assert a.active_run is None


def test_a_cannot_read_bs_run(world):
    with pytest.raises(TenantAccessError) as ei:
        world.A.tracker.get_run(world.B_run)
    assert world.B_run in str(ei.value)
    assert world.B.tracker.get_run(world.B_run)["params"] == {"who": "B"}


def test_a_cannot_log_into_bs_run(world):
    before = world.client.get_run(world.B_run)
    with pytest.raises(TenantAccessError):
        world.A.tracker.resume(world.B_run)
    assert world.A.tracker.active_run is None
    with pytest.raises(TenantAccessError):
        world.A.tracker.start_experiment("shared", parent_run_id=world.B_run)
    assert world.A.tracker.active_run is None
    after = world.client.get_run(world.B_run)
    assert after.info.status == before.info.status == "FINISHED"
    assert after.data.params == before.data.params and after.data.metrics == before.data.metrics
    children = world.client.search_runs(
        [e.experiment_id for e in world.client.search_experiments()],
        filter_string=f"tags.`mlflow.parentRunId` = '{world.B_run}'",
    )
    assert children == []


def test_a_cannot_version_from_bs_run(world, fitted):
    with pytest.raises(TenantAccessError):
        world.A.versioning.create_version("stolen", model=fitted, run_id=world.B_run)
    # nothing was versioned from B's run
    mvs = world.client.search_model_versions(f"run_id = '{world.B_run}'")
    assert {m.name for m in mvs} == {"bravo.clf", "bravo.secret_model"}
    # and the refused call left nothing behind: no empty registered model for A either
    assert "stolen" not in world.A.versioning.list_models()
    assert world.client.search_registered_models(filter_string="name = 'alpha.stolen'") == []


@pytest.mark.parametrize(
    "op", ["list_versions", "get_version", "load_model", "get_lineage", "model_dir", "load_reference_data"]
)
def test_a_cannot_touch_bs_models(world, op):
    with pytest.raises(ModelNotFoundError) as ei:
        getattr(world.A.versioning, op)("secret_model")
    assert "'secret_model'" in str(ei.value)
    assert "alpha" in str(ei.value)


def test_a_cannot_roll_back_bs_model(world):
    name = "bravo.secret_model"
    before = world.client.get_registered_model(name).aliases
    with pytest.raises(ModelNotFoundError):
        world.A.versioning.rollback_model("secret_model", "1.0.0")
    with pytest.raises(ModelNotFoundError):
        world.A.versioning.promote("secret_model", "1.0.0")
    assert world.client.get_registered_model(name).aliases == before
    assert "production" not in before


def test_list_models_is_per_tenant(world):
    assert world.A.versioning.list_models() == ["clf"]
    assert world.B.versioning.list_models() == ["clf", "secret_model"]
    names = {rm.name for rm in world.client.search_registered_models()}
    assert {"alpha.clf", "bravo.clf", "bravo.secret_model"} <= names


def test_same_names_do_not_collide(world):
    c = world.client
    ea = c.get_experiment_by_name("alpha/shared")
    eb = c.get_experiment_by_name("bravo/shared")
    assert ea.experiment_id != eb.experiment_id
    assert (ea.tags[TENANT_TAG], eb.tags[TENANT_TAG]) == ("alpha", "bravo")
    assert c.get_run(world.A_run).info.experiment_id == ea.experiment_id
    assert c.get_run(world.B_run).info.experiment_id == eb.experiment_id
    for who, tenant in (("A", "alpha"), ("B", "bravo")):
        vs = getattr(world, who).versioning.list_versions("clf")
        assert [v["version"] for v in vs] == ["1.0.0"]
        assert vs[0]["metadata"] == {"owner": who}
        assert vs[0]["registry_version"] == 1
        assert vs[0]["sha256"] == getattr(world, f"{who}_version")["sha256"]
        mv = c.get_model_version_by_alias(f"{tenant}.clf", "production")
        assert str(mv.version) == "1" and mv.tags[TENANT_TAG] == tenant
        lineage = getattr(world, who).versioning.get_lineage("clf")
        assert [v["run_id"] for v in lineage["versions"]] == [getattr(world, f"{who}_version")["run_id"]]
    assert world.A_version["run_id"] != world.B_version["run_id"]
    ra = world.A.versioning.load_reference_data("clf")
    assert ra is not None and len(ra) == 150


def test_a_model_version_tagged_for_a_tenant_in_the_wrong_name_is_not_visible(world, fitted):
    """A registered model whose name has B's prefix but a forged tag is not B's (nor A's)."""
    c = world.client
    c.create_registered_model("bravo.forged", tags={TENANT_TAG: "alpha"})
    assert "forged" not in world.A.versioning.list_models()
    assert "forged" not in world.B.versioning.list_models()
    with pytest.raises(ModelNotFoundError):
        world.A.versioning.list_versions("forged")
    with pytest.raises(ModelNotFoundError):
        world.B.versioning.list_versions("forged")


def test_like_wildcards_in_tenant_names_do_not_leak(tmp_path, template_db):
    """'_' is a LIKE wildcard: tenant 'a_b' must not see tenant 'axb' (or the reverse)."""
    from mlops_jupyter.storage import store as store_mod

    home = tmp_path / "store"
    home.mkdir()
    shutil.copy(template_db, home / "mlflow.db")
    try:
        t1 = create_experiment_tracker(tenant_id="a_b", storage_path=home)
        t2 = create_experiment_tracker(tenant_id="axb", storage_path=home)
        with t2.start_experiment("e"):
            t2.log_metrics({"m": 1.0})
        with t1.start_experiment("e"):
            t1.log_metrics({"m": 2.0})
        assert [r["metrics"]["m"] for r in t1.list_experiments()] == [2.0]
        assert [r["metrics"]["m"] for r in t2.list_experiments()] == [1.0]
        v1 = create_model_versioning(tenant_id="a_b", storage_path=home)
        v2 = create_model_versioning(tenant_id="axb", storage_path=home)
        v2.create_version("m", model=_Const())
        assert v1.list_models() == []
        with pytest.raises(ModelNotFoundError):
            v1.get_version("m")
    finally:
        st = store_mod._STORES.pop((t1.settings.tracking_uri, str(home)), None)
        if st is not None:
            st.close()


class _Const:
    def predict(self, X):
        return [0] * len(X)
