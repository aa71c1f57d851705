"""Predictions tracked from a notebook survive kill -9: journaled, replayed by the next process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pandas as pd

from mlops_jupyter.config.settings import resolve_settings
from mlops_jupyter.monitoring import ModelMonitoring

CHILD = textwrap.dedent(
    """
    import sys
    import pandas as pd
    from mlops_jupyter.config.settings import resolve_settings
    from mlops_jupyter.monitoring import ModelMonitoring

    mon = ModelMonitoring(resolve_settings(tenant_id="dur", storage_path=sys.argv[1]), sync_gateway=False)
    mon.track_predictions("m", pd.DataFrame({"prediction_time": [0.02] * 300, "success": True,
                                             "x": [1000.0 + i for i in range(300)]}))
    for i in range(500):  # buffered: only the write-ahead log has them when the kill comes
        mon.track_prediction("m", 0.01, True, input_features={"x": float(i)})
    print("done", flush=True)
    sys.stdin.readline()  # killed here, long before the once-a-second flush of the last rows
    """
)


def test_tracked_predictions_survive_kill_9(tmp_path):
    home = tmp_path / "store"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(home)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "done", proc.stderr.read()[-3000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    mon = ModelMonitoring(resolve_settings(tenant_id="dur", storage_path=home), sync_gateway=False)
    df = mon.predlog.read("dur", "m")
    xs = sorted(df["feature.x"].astype(float)) if "feature.x" in df.columns else []
    assert xs == [float(i) for i in range(500)] + [1000.0 + i for i in range(300)]  # each once
    assert isinstance(df, pd.DataFrame)
