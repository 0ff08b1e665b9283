"""Each fuzz target, for a bounded number of executions (make fuzz runs them long).

The target runs under atheris in its own process: a crash there is an
unexpected exception or a Defect the target found, and its input is shown.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz import harness

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("atheris")


@pytest.mark.parametrize("name", sorted(harness.targets()))
def test_target_survives_its_runs(name, tmp_path):
    target = harness.targets()[name]
    runs = int(os.environ.get("PACSBOX_FUZZ_RUNS", "0")) or target.bounded_runs
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", name, f"--runs={runs}", f"--work={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert proc.returncode == 0 and not crashes, (
        f"{name}: exit {proc.returncode}, inputs {crashes} in {tmp_path}\n{proc.stderr[-4000:]}"
    )
    done = re.search(r"stat::number_of_executed_units: (\d+)", proc.stderr)
    assert done and int(done.group(1)) >= runs, proc.stderr[-2000:]
