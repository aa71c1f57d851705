"""Serving speed: our gateway vs ``mlflow models serve --env-manager local``, one run.

Both serve the same scikit-learn model (a LogisticRegression on iris, the MLflow model
folder our versioning stored) on 127.0.0.1, loaded by the same load generator, ``wrk``,
with the same Lua script: a POST of a 1-row ``dataframe_split`` body with
``Authorization: Bearer <token>`` (MLflow ignores the header; the gateway checks it, routes
by traffic weight and logs every prediction, as in production).

Measured: requests/s with 8 connections (``wrk -t2 -c8``), and p50/p99 latency with 1
connection (``wrk -t1 -c1 --latency``). Prints both and the ratios; the goal is at least
8x MLflow's throughput at 8 connections and a p50 under 1 ms at 1 connection.

Usage: python benchmarks/serving.py [--duration 10] [--keep]
Needs ``wrk`` (Debian package; ``make bench`` installs it).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LUA = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ping(port: int, timeout: float = 120.0, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log else ""
            raise SystemExit(f"the server exited with code {proc.returncode}:\n{tail}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/ping")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"nothing answered /ping on port {port} within {timeout:.0f} s")


def check(url: str, body: str, token: str) -> str:
    """One request through http.client, to be sure both sides answer the same thing."""
    m = re.match(r"http://([^:/]+):(\d+)(/.*)", url)
    c = http.client.HTTPConnection(m.group(1), int(m.group(2)), timeout=30)
    c.request(
        "POST",
        m.group(3),
        body=body.encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    r = c.getresponse()
    out = r.read().decode()
    if r.status != 200:
        raise SystemExit(f"{url} answered {r.status}: {out}")
    return out


def to_ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", value.strip())
    n, unit = float(m.group(1)), m.group(2)
    return n / 1000 if unit == "us" else n if unit == "ms" else n * 1000


def run_wrk(url: str, script: Path, connections: int, threads: int, duration: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    if errors or sock:
        print(out)
        raise SystemExit(f"wrk saw errors against {url}")
    return {"rps": rps, "p50_ms": to_ms(lat["50"]), "p99_ms": to_ms(lat["99"])}


def measure(name: str, url: str, script: Path, duration: int) -> dict[str, float]:
    run_wrk(url, script, 8, 2, 2)  # warm-up
    many = run_wrk(url, script, 8, 2, duration)
    one = run_wrk(url, script, 1, 1, duration)
    res = {
        "rps_8": many["rps"],
        "p50_1_ms": one["p50_ms"],
        "p99_1_ms": one["p99_ms"],
        "rps_1": one["rps"],
        "p50_8_ms": many["p50_ms"],
        "p99_8_ms": many["p99_ms"],
    }
    print(
        f"  {name:<8} 8 conns: {res['rps_8']:>8.0f} req/s (p50 {res['p50_8_ms']:.2f} ms, p99 "
        f"{res['p99_8_ms']:.2f} ms) | 1 conn: {res['rps_1']:>6.0f} req/s, p50 {res['p50_1_ms']:.3f} ms, "
        f"p99 {res['p99_1_ms']:.3f} ms",
        flush=True,
    )
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    ap.add_argument("--keep", action="store_true", help="keep the temp store")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("benchmarks/serving.py needs wrk: apt-get install -y wrk (make bench does it)", file=sys.stderr)
        return 1

    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from mlops_jupyter import create_model_deployment, create_model_versioning

    root = Path(tempfile.mkdtemp(prefix="mlops-bench-serving-"))
    home = root / "store"
    X, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    versioning = create_model_versioning(storage_path=home)
    versioning.create_version("iris", model=model, reference_data=X)
    deployment = create_model_deployment(storage_path=home)
    mlflow_proc = None
    try:
        r = deployment.deploy_model("iris", "1.0.0", environment="production")
        assert r["status"] == "deployed", r
        token = deployment.get_token()
        model_dir = versioning.model_dir("iris", "1.0.0")

        port = free_port()
        mlflow_bin = Path(sys.executable).parent / "mlflow"
        cmd = [
            str(mlflow_bin) if mlflow_bin.exists() else "mlflow",
            "models",
            "serve",
            "-m",
            str(model_dir),
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "-p",
            str(port),
        ]
        mlflow_log = open(root / "mlflow-serve.log", "wb")
        # MLflow runs `uvicorn` from PATH: put the venv's bin first, as an activated venv does
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        mlflow_proc = subprocess.Popen(
            cmd, stdout=mlflow_log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        wait_ping(port, proc=mlflow_proc, log=root / "mlflow-serve.log")

        body = json.dumps({"dataframe_split": {"columns": list(X.columns), "data": [X.iloc[0].tolist()]}})
        script = root / "post.lua"
        script.write_text(LUA.format(body=body, token=token))
        ours_url = r["endpoint"] + "/invocations"
        mlflow_url = f"http://127.0.0.1:{port}/invocations"
        a, b = check(ours_url, body, token), check(mlflow_url, body, token)
        if json.loads(a) != json.loads(b):
            raise SystemExit(f"the two servers disagree: ours {a}, mlflow {b}")

        import mlflow
        import sklearn

        print(
            f"serving benchmark: 1-row dataframe_split POST, wrk {args.duration}s per run, "
            f"{os.cpu_count()} CPUs, MLflow {mlflow.__version__}, scikit-learn {sklearn.__version__}"
        )
        ours = measure("gateway", ours_url, script, args.duration)
        theirs = measure("mlflow", mlflow_url, script, args.duration)
        ratio = ours["rps_8"] / theirs["rps_8"]
        print(f"\nthroughput at 8 connections: {ratio:.1f}x MLflow (goal >= 8x: {'met' if ratio >= 8 else 'NOT met'})")
        print(
            f"p50 at 1 connection: {ours['p50_1_ms']:.3f} ms vs MLflow {theirs['p50_1_ms']:.3f} ms "
            f"({theirs['p50_1_ms'] / ours['p50_1_ms']:.1f}x lower; goal < 1 ms: "
            f"{'met' if ours['p50_1_ms'] < 1 else 'NOT met'})"
        )
        print(f"p99 at 1 connection: {ours['p99_1_ms']:.3f} ms vs MLflow {theirs['p99_1_ms']:.3f} ms")
        print(json.dumps({"gateway": ours, "mlflow": theirs, "throughput_ratio_8": round(ratio, 2)}))
    finally:
        if mlflow_proc is not None:
            try:
                os.killpg(mlflow_proc.pid, signal.SIGTERM)
                mlflow_proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(mlflow_proc.pid, signal.SIGKILL)
        deployment.stop_gateway()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
