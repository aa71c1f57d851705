"""Drift verdict quality, ours and Evidently's in one run: false alarms, power, negligible shifts.

The setting of issue 16: 30 independent standard-normal features, a 1 000-row reference and
a current window of 50, 150, 500, 1 000, 10 000 or 1 000 000 rows, threshold 0.1, in three
scenarios per trial:

* ``null``: the window has the reference's distribution. Goals: checks that report drift at
  most 5 %, features flagged per check at most 0.1, at every size.
* ``shift``: 2 of the 30 features moved by 0.5 standard deviations. Goal: both flagged in at
  least 90 % of checks from 150 rows up (50 rows reported; below ``MLOPS_DRIFT_MIN_ROWS``,
  100, our check answers ``low_sample`` instead of a verdict, so the statistics' own power
  at 50 rows is shown as ``ours, min_rows=0``).
* ``tiny``: 2 features moved by 0.02 standard deviations, negligible. Goal at 1 000 000
  rows: not flagged.

Ours is :func:`mlops_jupyter.monitoring.drift.compare` with the check's decision rule (BH-
adjusted significance and bias-corrected effect, ``min_rows`` from the setting). Evidently's
``DataDriftPreset`` runs in the side environment ``.venv-peers`` (pandas < 3; ``make bench``
creates it) on the same arrays, passed as ``.npy`` files; a column counts as flagged when
its ValueDrift verdict is drift, and "dataset drift" is its share-of-columns rule (at least
half the columns drifted). Evidently is slow on big windows: it runs fewer trials (see
``--evidently-trials``), and at 1 000 000 rows one trial per scenario, within a time bound
(``--evidently-timeout``, default 600 s); what did not finish is reported as such.

Usage: python benchmarks/drift_quality.py [--trials 100] [--evidently-trials 20] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
N_FEATURES = 30
N_REF = 1_000
SIZES = (50, 150, 500, 1_000, 10_000, 1_000_000)
SHIFTED = ("f0", "f1")
SCENARIOS = {"null": 0.0, "shift": 0.5, "tiny": 0.02}
THRESHOLD = 0.1
COLUMNS = [f"f{i}" for i in range(N_FEATURES)]

EVIDENTLY_SCRIPT = r"""
import json, sys, time
import numpy as np, pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset

folder, n_trials = sys.argv[1], int(sys.argv[2])
cols = [f"f{i}" for i in range(30)]
for t in range(n_trials):
    for scen in ("null", "shift", "tiny"):
        ref = pd.DataFrame(np.load(f"{folder}/ref_{t}.npy"), columns=cols)
        cur = pd.DataFrame(np.load(f"{folder}/{scen}_{t}.npy"), columns=cols)
        t0 = time.perf_counter()
        snap = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
        seconds = time.perf_counter() - t0
        flagged = []
        for m in snap.dict()["metrics"]:
            cfg = m.get("config", {})
            if cfg.get("type", "").endswith("ValueDrift"):
                method, thr, value = cfg.get("method", ""), cfg.get("threshold"), m["value"]
                is_p = "p_value" in method or "p-value" in method
                if (value < thr) if is_p else (value >= thr):
                    flagged.append(cfg["column"])
        print(json.dumps({"trial": t, "scenario": scen, "flagged": flagged, "seconds": seconds}), flush=True)
"""


def trial_data(n: int, trial: int) -> dict[str, np.ndarray]:
    """The reference and the three current windows of one trial (seeded, so reproducible)."""
    rng = np.random.default_rng([n, trial])
    out = {"ref": rng.standard_normal((N_REF, N_FEATURES))}
    for scen, shift in SCENARIOS.items():
        cur = rng.standard_normal((n, N_FEATURES))
        cur[:, :2] += shift
        out[scen] = cur
    return out


def summarise(flags: list[tuple[str, list[str], bool]]) -> dict[str, float]:
    """Rates over checks: ``flags`` holds (scenario, flagged features, drift reported)."""

    def of(scen: str) -> list[tuple[list[str], bool]]:
        return [(f, d) for s, f, d in flags if s == scen]

    null, shift, tiny = of("null"), of("shift"), of("tiny")
    return {
        "checks": len(null),
        "false_alarm": float(np.mean([d for _, d in null])) if null else float("nan"),
        "false_features": float(np.mean([len(f) for f, _ in null])) if null else float("nan"),
        "power_both": float(np.mean([set(SHIFTED) <= set(f) for f, _ in shift])) if shift else float("nan"),
        "power_reported": float(np.mean([d for _, d in shift])) if shift else float("nan"),
        "extra_in_shift": float(np.mean([len(set(f) - set(SHIFTED)) for f, _ in shift])) if shift else float("nan"),
        "tiny_flagged": float(np.mean([bool(f) for f, _ in tiny])) if tiny else float("nan"),
    }


def run_ours(n: int, trials: int, min_rows: int) -> tuple[dict, dict, float]:
    from mlops_jupyter.monitoring.drift import compare

    flags, flags0, seconds = [], [], []
    for t in range(trials):
        data = trial_data(n, t)
        ref = pd.DataFrame(data["ref"], columns=COLUMNS)
        for scen in SCENARIOS:
            cur = pd.DataFrame(data[scen], columns=COLUMNS)
            t0 = time.perf_counter()
            r = compare(ref, cur, THRESHOLD, min_rows=min_rows)
            seconds.append(time.perf_counter() - t0)
            flags.append((scen, r["drifted_features"], r["drift_detected"]))
            if n < min_rows:
                r0 = compare(ref, cur, THRESHOLD, min_rows=0)
                flags0.append((scen, r0["drifted_features"], r0["drift_detected"]))
    return summarise(flags), (summarise(flags0) if flags0 else {}), float(np.median(seconds))


def run_evidently(peers: Path, n: int, trials: int, timeout: float) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="mlops-drift-quality-"))
    for t in range(trials):
        data = trial_data(n, t)
        for key, arr in data.items():
            np.save(folder / f"{key}_{t}.npy", arr.astype(np.float64))
    flags: list[tuple[str, list[str], bool]] = []
    seconds: list[float] = []
    note = ""
    try:
        proc = subprocess.run(
            [str(peers), "-c", EVIDENTLY_SCRIPT, str(folder), str(trials)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        lines = proc.stdout.splitlines()
        if proc.returncode != 0:
            note = (
                f"Evidently failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
            )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or b""
        lines = (out.decode() if isinstance(out, bytes) else out).splitlines()
        note = f"stopped after {timeout:.0f} s"
    for line in lines:
        rec = json.loads(line)
        flags.append((rec["scenario"], rec["flagged"], len(rec["flagged"]) >= N_FEATURES / 2))
        seconds.append(rec["seconds"])
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    out = summarise(flags) if flags else {"checks": 0}
    out["seconds"] = float(np.median(seconds)) if seconds else float("nan")
    out["note"] = note
    return out


def pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.0f} %"


def num(x: float) -> str:
    return "n/a" if x != x else f"{x:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100, help="our trials per size up to 1 000 rows")
    ap.add_argument("--evidently-trials", type=int, default=20, help="Evidently's trials per size up to 1 000 rows")
    ap.add_argument("--evidently-timeout", type=float, default=600.0, help="seconds Evidently may take per size")
    ap.add_argument("--quick", action="store_true", help="sizes up to 10 000 only")
    ap.add_argument(
        "--peers-python", default=os.environ.get("MLOPS_PEERS_PYTHON", str(ROOT / ".venv-peers/bin/python"))
    )
    args = ap.parse_args()
    from mlops_jupyter.monitoring.limits import drift_min_rows

    min_rows = drift_min_rows()
    peers = Path(args.peers_python)
    if not peers.exists():
        print(f"Evidently skipped: {peers} does not exist (`make bench` creates .venv-peers).")
        peers = None
    sizes = [s for s in SIZES if not args.quick or s <= 10_000]
    rows = []
    for n in sizes:
        trials = args.trials if n <= 1_000 else (20 if n <= 10_000 else 3)
        ev_trials = args.evidently_trials if n <= 1_000 else (3 if n <= 10_000 else 1)
        ours, ours0, ours_s = run_ours(n, trials, min_rows)
        ev = run_evidently(peers, n, ev_trials, args.evidently_timeout) if peers else {}
        rows.append((n, trials, ours, ours0, ours_s, ev))
        print(f"... {n} rows done", file=sys.stderr, flush=True)

    head = ["rows in the window"] + [f"{n:,}".replace(",", " ") for n, *_ in rows]
    table = [
        ("ours: checks (trials)", [str(o["checks"]) for _, _, o, *_ in rows]),
        ("ours: checks reporting drift, identical (goal <= 5 %)", [pct(o["false_alarm"]) for _, _, o, *_ in rows]),
        (
            "ours: features flagged per check, identical (goal <= 0.1)",
            [num(o["false_features"]) for _, _, o, *_ in rows],
        ),
        (
            "ours: both 0.5-sd shifted features flagged (goal >= 90 % from 150)",
            [pct(o["power_both"]) for _, _, o, *_ in rows],
        ),
        ("ours: other features flagged per shifted check", [num(o["extra_in_shift"]) for _, _, o, *_ in rows]),
        ("ours: 0.02-sd shift flagged (goal: not at 1 000 000)", [pct(o["tiny_flagged"]) for _, _, o, *_ in rows]),
        (
            f"ours, min_rows=0 (below {min_rows} rows): both shifted flagged / false alarm",
            [f"{pct(o0['power_both'])} / {pct(o0['false_alarm'])}" if o0 else "-" for _, _, _, o0, *_ in rows],
        ),
        ("ours: median seconds per check", [f"{s:.4f}" for *_, s, _ in rows]),
    ]
    if peers:
        table += [
            (
                "Evidently: checks (trials)",
                [str(e.get("checks", 0)) + (f" ({e['note']})" if e.get("note") else "") for *_, e in rows],
            ),
            (
                "Evidently: dataset drift reported, identical",
                [pct(e.get("false_alarm", float("nan"))) for *_, e in rows],
            ),
            (
                "Evidently: columns flagged per check, identical",
                [num(e.get("false_features", float("nan"))) for *_, e in rows],
            ),
            ("Evidently: both shifted columns flagged", [pct(e.get("power_both", float("nan"))) for *_, e in rows]),
            (
                "Evidently: dataset drift reported, shifted",
                [pct(e.get("power_reported", float("nan"))) for *_, e in rows],
            ),
            ("Evidently: 0.02-sd shift flagged", [pct(e.get("tiny_flagged", float("nan"))) for *_, e in rows]),
            ("Evidently: median seconds per check", [num(e.get("seconds", float("nan"))) for *_, e in rows]),
        ]
    print(f"\n30 normal features, {N_REF}-row reference, threshold {THRESHOLD}, min_rows {min_rows}\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, cells in table:
        print(f"| {name} | " + " | ".join(cells) + " |")
    goals = []
    for n, _, o, *_ in rows:
        goals.append(o["false_alarm"] <= 0.05 and o["false_features"] <= 0.1)
        if n >= 150:
            goals.append(o["power_both"] >= 0.9)
        if n >= 1_000_000:
            goals.append(o["tiny_flagged"] == 0.0)
    print(f"\ngoals met: {sum(goals)}/{len(goals)}")


if __name__ == "__main__":
    main()
