"""Every input that once crashed a fuzz target, replayed through it.

Each file in ``tests/fuzz/crashes/TARGET/`` is one crash the fuzzer found;
its fix is what makes it pass. No atheris needed: this is the plain target,
in a process of its own per target (the index is process-wide).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz import harness

ROOT = Path(__file__).resolve().parents[2]
WITH_CRASHES = [name for name in sorted(harness.targets()) if harness.crashes_of(name)]


@pytest.mark.parametrize("name", WITH_CRASHES)
def test_crash_inputs_are_answered(name, tmp_path):
    inputs = harness.crashes_of(name)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", name, f"--work={tmp_path}", "--replay"]
        + [str(p) for p in inputs],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"
    assert proc.stdout.count("answered") == len(inputs)


def test_every_target_has_its_committed_corpus():
    for name, target in harness.targets().items():
        committed = {p.name: p.read_bytes() for p in harness.corpus_of(name).iterdir()}
        assert committed == target.seeds(), f"{name}: run python -m tests.fuzz.run --write-corpus"
