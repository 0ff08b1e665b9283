"""What every fuzz target shares: its shape, its corpus and its verdict.

A target turns one input into one verdict: it returns when pacsbox answered
the input the way its contract says (a DICOM status, an HTTP status, an
import rejection with a reason) and raises ``Defect`` (or lets an unexpected
exception escape) when it did not. The same function runs under atheris
(``tests/fuzz/run.py``) and, for every input that once crashed it, as a plain
regression test (``tests/fuzz/test_regressions.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"
CRASHES = HERE / "crashes"

# Modules that define TARGETS; each owns its own targets.
MODULES = ("tests.fuzz.targets_wire", "tests.fuzz.targets_media")

OneInput = Callable[[bytes], None]


class Defect(AssertionError):
    """pacsbox answered an input outside its contract."""


@dataclass(frozen=True)
class Target:
    name: str
    # setup(work dir) -> the one-input function; state (a server, an archive)
    # lives in the closure and in the work dir, made once per process.
    setup: Callable[[Path], OneInput]
    # seeds() -> {file name: bytes}: the committed corpus is generated from it.
    seeds: Callable[[], dict[str, bytes]]
    # executions per target in make test (each target's cost differs a lot).
    bounded_runs: int = 2000
    # libFuzzer's -max_len: the largest input it makes up.
    max_len: int = 16384


def targets() -> dict[str, Target]:
    found: dict[str, Target] = {}
    for name in MODULES:
        module = importlib.import_module(name)
        for target in module.TARGETS:
            found[target.name] = target
    return found


def corpus_of(name: str) -> Path:
    return CORPUS / name


def crashes_of(name: str) -> list[Path]:
    folder = CRASHES / name
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def write_corpus(target: Target) -> int:
    """(Re)generate a target's committed seed corpus; returns the number of files."""
    folder = corpus_of(target.name)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    seeds = target.seeds()
    for file_name, data in seeds.items():
        (folder / file_name).write_bytes(data)
    return len(seeds)
