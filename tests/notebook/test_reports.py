"""Executed notebooks as reports: real notebooks run by the real CLI on a real store.

Each test writes a notebook, runs ``mlops-jupyter report`` in a subprocess against the
test's store (``home``), and reads what it logged back through a plain ``MlflowClient``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat

from mlops_jupyter.notebook.reports.html import BANNER_ID, strip_remote
from mlops_jupyter.notebook.reports.params import INJECTED_TAG, inject_parameters, parse_value

CLI = [sys.executable, "-m", "mlops_jupyter.cli", "report"]
TENANT = "acme"


def write_nb(path: Path, cells: list[str | tuple[str, list[str]]]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for c in cells:
        source, tags = c if isinstance(c, tuple) else (c, [])
        cell = nbformat.v4.new_code_cell(source)
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("# A report"))
    nbformat.write(nb, path)
    return path


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=240)


def client_for(home: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "-C", str(root), *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


# -- units -----------------------------------------------------------------------------
def test_parameters_go_after_the_parameters_cell_and_replace_an_earlier_injection():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import x"),
        nbformat.v4.new_code_cell("a = 1"),
        nbformat.v4.new_code_cell("a"),
    ]
    nb.cells[1].metadata["tags"] = ["parameters"]
    assert inject_parameters(nb, {"a": 2, "name": "x y"}) == 2
    assert nb.cells[2].source == "# Parameters\na = 2\nname = 'x y'\n" and nb.cells[2].metadata["tags"] == [
        INJECTED_TAG
    ]
    assert inject_parameters(nb, {"a": 3}) == 2 and len(nb.cells) == 4 and "a = 3" in nb.cells[2].source
    untagged = nbformat.v4.new_notebook()
    untagged.cells = [nbformat.v4.new_code_cell("b = 1")]
    assert inject_parameters(untagged, {"b": 5}) == 0  # no parameters cell: at the top, as papermill
    assert [parse_value(v) for v in ("10", "0.5", "True", "None", "[1, 2]", "hello", "'7'")] == [
        10,
        0.5,
        True,
        None,
        [1, 2],
        "hello",
        "7",
    ]


def test_remote_scripts_and_stylesheets_are_removed():
    page = (
        '<script src="https://cdn.example/require.js"></script><script>var a = 1;</script>'
        '<link rel="stylesheet" href="https://fonts.example/x.css"><script type="module">'
        'import mermaid from "https://cdn.jsdelivr.net/npm/mermaid@10/dist/mermaid.esm.min.mjs";</script>'
        '<script>requirejs.config({paths: {vega: "https://cdn.jsdelivr.net/npm/vega@6?noext"}})</script>'
    )
    assert strip_remote(page) == "<script>var a = 1;</script>"


# -- the CLI end to end ------------------------------------------------------------------
def test_report_runs_with_parameters_logs_artifacts_provenance_and_links_versions(home, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "helper.py").write_text("def scale(x):\n    return x\n")
    nb_path = write_nb(
        repo / "train.ipynb",
        [
            ("C = 1.0\nlabel = 'default'", ["parameters"]),
            (
                "import helper\nfrom sklearn.datasets import load_iris\n"
                "from sklearn.linear_model import LogisticRegression\n"
                "X, y = load_iris(return_X_y=True, as_frame=True)\n"
                "clf = LogisticRegression(C=helper.scale(C), max_iter=300).fit(X, y)\n"
                "print('C is', clf.C, 'label is', label)"
            ),
            (
                "from mlops_jupyter import create_model_versioning\n"
                f"v = create_model_versioning(tenant_id='{TENANT}').create_version('clf', model=clf)\nv['version']"
            ),
            (
                "import altair as alt\n"
                "alt.Chart(X.head(30)).mark_point().encode(x='sepal length (cm)', y='sepal width (cm)')"
            ),
        ],
    )
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "init")
    head = git(repo, "rev-parse", "HEAD").strip()
    (repo / "helper.py").write_text("def scale(x):\n    return x * 2  # uncommitted\n")
    out = tmp_path / "out"

    proc = run_cli(
        str(nb_path),
        "-p",
        "C",
        "0.25",
        "-p",
        "label",
        "tuned",
        "--out",
        str(out),
        "--tenant",
        TENANT,
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "[1/5] cell 1: ok" in proc.stderr and "[5/5] cell 5: ok" in proc.stderr and "elapsed" in proc.stderr
    assert "without encryption" not in proc.stderr  # the local kernel talks over IPC, not TCP
    assert not list(tmp_path.glob("kernel*"))  # its sockets lived in a temp folder, now gone
    result = json.loads(proc.stdout)
    assert result["status"] == "ok" and result["html"] == str(out / "train.html")

    executed = nbformat.read(out / "train.ipynb", as_version=4)
    injected = executed.cells[2]
    assert injected.metadata["tags"] == [INJECTED_TAG] and "C = 0.25\nlabel = 'tuned'" in injected.source
    assert executed.cells[3].outputs[0]["text"] == "C is 0.5 label is tuned\n"  # helper's uncommitted x * 2
    html = (out / "train.html").read_text()
    assert "data:image/svg+xml" in html and BANNER_ID not in html
    assert "cdn.jsdelivr" not in html and "require.js" not in html

    client = client_for(home)
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["mlops.kind"] == "report" and tags["mlops.tenant"] == TENANT and tags["mlops.report.status"] == "ok"
    assert tags["mlops.report.html"] == "report/train.html" and tags["mlops.report.path"] == str(out / "train.html")
    assert tags["mlops.git.commit"] == head and tags["mlops.git.dirty"] == "true"
    assert run.data.params == {"C": "0.25", "label": "tuned"}
    names = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert names == {"report/train.html", "report/train.ipynb"}
    got = Path(client.download_artifacts(run.info.run_id, "report/train.html", str(tmp_path / "dl")))
    assert got.read_text() == html
    prov = json.loads(
        Path(client.download_artifacts(run.info.run_id, "provenance/provenance.json", str(tmp_path / "dl"))).read_text()
    )
    assert [c["index"] for c in prov["cells"]] == [1, 2, 3, 4, 5] and all(c["status"] == "ok" for c in prov["cells"])
    assert prov["parameters"] == {"C": 0.25, "label": "tuned"}
    assert prov["git"]["commit"] == head and prov["git"]["local_modules"] == ["helper.py"]
    assert prov["git"]["local_modules_changed"] == ["helper.py"]
    assert "scikit-learn" in prov["packages"] and "mlflow" in prov["packages"]
    diff = Path(client.download_artifacts(run.info.run_id, "provenance/git.diff", str(tmp_path / "dl"))).read_text()
    assert "+    return x * 2  # uncommitted" in diff
    source = client.download_artifacts(run.info.run_id, "provenance/source/train.ipynb", str(tmp_path / "dl"))
    assert Path(source).read_bytes() == nb_path.read_bytes()

    from mlops_jupyter import create_model_versioning

    lineage = create_model_versioning(tenant_id=TENANT, storage_path=home).get_lineage("clf")
    (version,) = lineage["versions"]
    assert version["report"] == {"run_id": result["run_id"], "path": str(out / "train.html")}


def test_a_failing_cell_still_yields_a_report_marked_failed_and_exit_1(home, tmp_path):
    nb_path = write_nb(tmp_path / "broken.ipynb", ["x = 1", "print('before')", "1 / 0", "print('never')"])
    proc = run_cli(str(nb_path), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "FAILED at cell 3 (In [3]): ZeroDivisionError" in proc.stderr and "report: " in proc.stdout
    html = (tmp_path / "out" / "broken.html").read_text()
    assert f'id="{BANNER_ID}"' in html and "Report failed</strong> at cell 3 (In [3])" in html
    assert "ZeroDivisionError" in html
    executed = nbformat.read(tmp_path / "out" / "broken.ipynb", as_version=4)
    failed = [c for c in executed.cells if "mlops-report-failed" in c.metadata.get("tags", [])]
    assert len(failed) == 1 and failed[0].source == "1 / 0"
    assert executed.cells[-1].get("outputs") == [] and executed.cells[-1].execution_count is None

    client = client_for(home)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.`mlops.kind` = 'report'")
    assert run.info.status == "FAILED"
    assert run.data.tags["mlops.report.status"] == "failed" and run.data.tags["mlops.report.failed_cell"] == "3"
    assert run.data.tags["mlops.report.error"].startswith("ZeroDivisionError")
    assert {a.path for a in client.list_artifacts(run.info.run_id, "report")} == {
        "report/broken.html",
        "report/broken.ipynb",
    }
    prov = json.loads(
        Path(client.download_artifacts(run.info.run_id, "provenance/provenance.json", str(tmp_path / "dl"))).read_text()
    )
    assert [c["status"] for c in prov["cells"]] == ["ok", "ok", "failed"] and prov["git"] is None


def test_missing_notebook_is_a_usage_error(home, tmp_path):
    proc = run_cli(str(tmp_path / "nope.ipynb"), cwd=tmp_path)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_magic_without_a_notebook_file_says_how_to_give_one(mlops_ip):
    from IPython.core.error import UsageError

    err = mlops_ip.run_failing("%mlops report")
    assert isinstance(err.error_in_exec, UsageError) and "--notebook PATH.ipynb" in str(err.error_in_exec)


def test_magic_runs_the_saved_notebook_in_the_sessions_tenant_and_store(mlops_ip, home, tmp_path, monkeypatch):
    nb_path = write_nb(tmp_path / "here.ipynb", ["%load_ext mlops_jupyter", "%mlops report", "print(6 * 7)"])
    monkeypatch.setenv("JPY_SESSION_NAME", str(nb_path))
    mlops_ip.run_cell("%mlops init --tenant acme")
    res = mlops_ip.run_cell("%mlops report --out " + str(tmp_path / "out")).result
    assert (
        res["status"] == "ok" and res["notebook"] == str(nb_path) and res["html"] == str(tmp_path / "out" / "here.html")
    )
    executed = nbformat.read(tmp_path / "out" / "here.ipynb", as_version=4)
    assert executed.cells[2].outputs == [] and executed.cells[3].outputs[0]["text"] == "42\n"  # no recursion
    run = client_for(home).get_run(res["run_id"])
    assert run.data.tags["mlops.tenant"] == "acme"
