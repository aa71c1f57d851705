"""Serving on the ``ray`` target vs the local gateway, same model, same load, one machine.

The same scikit-learn model as ``benchmarks/serving.py`` (a LogisticRegression on iris,
the folder our versioning stored) deployed twice from one store: on the ``local`` target
(the gateway) and on the ``ray`` target (Ray Serve on a local Ray started here, 2 CPUs, one
replica, the ingress in front). Both are loaded by ``wrk`` with the same Lua script as
serving.py (a 1-row ``dataframe_split`` POST with the tenant's bearer token).

Measured: requests/s with 8 connections and p50/p99 latency with 1 connection. Prints both
and the ratio ray / local: the cost of the distributed path (HTTP proxy -> ingress replica ->
version replica, each a process) when there is only one machine to spread over.

Usage: python benchmarks/serving_ray.py [--duration 10] [--replicas 1]
Needs ``wrk`` and the extra ``mlops-jupyter[ray]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from serving import LUA, check, measure


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    ap.add_argument("--replicas", type=int, default=1, help="replicas of the version on Ray (default 1)")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("benchmarks/serving_ray.py needs wrk: apt-get install -y wrk (make bench does it)", file=sys.stderr)
        return 1

    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from mlops_jupyter import create_model_deployment, create_model_versioning

    root = Path(tempfile.mkdtemp(prefix="mlops-bench-ray-"))
    home = root / "store"
    X, y = load_iris(return_X_y=True, as_frame=True)
    create_model_versioning(storage_path=home).create_version(
        "iris", model=LogisticRegression(max_iter=500).fit(X, y), reference_data=X
    )
    local = create_model_deployment(storage_path=home, target="local")
    ray = create_model_deployment(storage_path=home, target="ray")
    try:
        a = local.deploy_model("iris", "1.0.0", environment="production")
        b = ray.deploy_model("iris", "1.0.0", environment="ray", config={"replicas": args.replicas})
        assert a["status"] == b["status"] == "deployed", (a, b)
        token = local.get_token()
        body = json.dumps({"dataframe_split": {"columns": list(X.columns), "data": [X.iloc[0].tolist()]}})
        script = root / "post.lua"
        script.write_text(LUA.format(body=body, token=token))
        local_url, ray_url = a["endpoint"] + "/invocations", b["endpoint"] + "/invocations"
        if json.loads(check(local_url, body, token)) != json.loads(check(ray_url, body, token)):
            raise SystemExit("the two targets disagree")

        import ray as ray_mod

        print(
            f"serving on Ray Serve vs the local gateway: 1-row dataframe_split POST, wrk {args.duration}s per run, "
            f"{os.cpu_count()} CPUs, Ray {ray_mod.__version__}, {args.replicas} replica(s)"
        )
        ours = measure("local", local_url, script, args.duration)
        theirs = measure("ray", ray_url, script, args.duration)
        print(
            f"\nthroughput at 8 connections: ray {theirs['rps_8']:.0f} req/s = "
            f"{theirs['rps_8'] / ours['rps_8']:.2f}x the local gateway's {ours['rps_8']:.0f}"
        )
        print(
            f"p50 at 1 connection: ray {theirs['p50_1_ms']:.3f} ms = {theirs['p50_1_ms'] / ours['p50_1_ms']:.1f}x "
            f"the local gateway's {ours['p50_1_ms']:.3f} ms"
        )
        print(f"p99 at 1 connection: ray {theirs['p99_1_ms']:.3f} ms vs local {ours['p99_1_ms']:.3f} ms")
    finally:
        ray.stop_gateway()
        local.stop_gateway()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
