"""A tiny run of the whole fault-injection suite, so its code cannot rot unnoticed.

``python -m chaos --ci`` (in ``.ci/run``) is the real gate; this runs one round
of every fault on a handful of runs and checks that the suite drove them all
and produced its verdict from real side-effect rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAULTS = [
    "kill -9 worker 0",
    "kill -9 task process (worker 1)",
    "kill -9 server 0",
    "SIGTERM worker 1",
]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_tiny_run_injects_every_fault_recovers_and_loses_nothing(tmp_path: Path) -> None:
    summary_file = tmp_path / "summary.json"
    args = ["--rounds", "1", "--settle", "4", "--max-in-flight", "8", "--json", str(summary_file)]
    proc = subprocess.run(
        [sys.executable, "-m", "chaos", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert summary_file.exists(), proc.stdout[-4000:] + proc.stderr[-4000:]
    summary = json.loads(summary_file.read_text())
    names = [f["name"] for f in summary["faults"]]
    assert names[1:5] == FAULTS and names[5].startswith("kill -9 PostgreSQL")
    assert summary["recovered_and_drained"], proc.stdout[-4000:]
    assert all(f["recovery"] is not None for f in summary["faults"][1:])
    assert summary["totals"]["lost"] == 0 and summary["totals"]["duplicated"] == 0, proc.stdout
    # the verdict came from real rows: every run wrote a start, its steps and an end
    assert summary["runs"] > 0 and summary["effects"] > 3 * summary["runs"]
    assert "fault" in proc.stdout and "total" in proc.stdout
