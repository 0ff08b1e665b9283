"""Run one fuzz target under atheris: ``python -m tests.fuzz.run TARGET``.

``--runs N`` stops after N executions (what make test does), ``--seconds S``
after S seconds (make fuzz); ``--write-corpus`` regenerates the committed
seed corpora instead. A crash leaves its input as ``crash-*`` in the work
folder and exits non-zero: copy it to ``tests/fuzz/crashes/TARGET/`` and it
becomes a regression test.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import warnings
from pathlib import Path

from tests.fuzz import harness

# Code whose branches guide the fuzzer.
INSTRUMENTED = ["pacsbox", "pydicom", "pynetdicom", "zipfile", "tests.fuzz"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz.run")
    ap.add_argument("target", nargs="?")
    ap.add_argument("--runs", type=int, default=0)
    ap.add_argument("--seconds", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--write-corpus", action="store_true")
    ap.add_argument("--replay", type=Path, nargs="*", help="run these inputs once, no atheris")
    ns = ap.parse_args(argv)
    if ns.write_corpus:
        for target in harness.targets().values():
            print(f"{target.name}: {harness.write_corpus(target)} seeds")
        return 0
    if ns.replay is not None:
        return _replay(ns.target, ns.replay, ns.work)
    import atheris  # only the runner needs it; the regression tests do not

    with atheris.instrument_imports(include=INSTRUMENTED):
        found = harness.targets()
    if ns.target not in found:
        print(f"unknown target {ns.target!r}; targets: {', '.join(sorted(found))}", file=sys.stderr)
        return 2
    target = found[ns.target]
    work = ns.work or Path(tempfile.mkdtemp(prefix=f"fuzz-{target.name}-"))
    work.mkdir(parents=True, exist_ok=True)
    # pacsbox logs one line per rejected input: to a file, not the terminal.
    logging.basicConfig(
        filename=work / "pacsbox.log", level=logging.INFO, format="%(name)s %(message)s"
    )
    # pydicom warns on every odd element a fuzzer makes up.
    warnings.simplefilter("ignore")
    one_input = target.setup(work)
    new = work / "corpus"
    new.mkdir(exist_ok=True)
    args = [
        sys.argv[0],
        str(new),
        str(harness.corpus_of(target.name)),
        f"-artifact_prefix={work}/",
        f"-max_len={target.max_len}",
        "-timeout=30",
        "-rss_limit_mb=4096",
        "-print_final_stats=1",
        "-seed=1",
    ]
    if ns.runs:
        args.append(f"-runs={ns.runs}")
    if ns.seconds:
        args.append(f"-max_total_time={ns.seconds}")
    atheris.Setup(args, one_input)
    atheris.Fuzz()
    return 0


def _replay(name: str, inputs: list[Path], work: Path | None) -> int:
    """Each input once through the plain target: a Defect or an exception fails it."""
    work = work or Path(tempfile.mkdtemp(prefix=f"replay-{name}-"))
    logging.basicConfig(filename=work / "pacsbox.log", level=logging.INFO)
    warnings.simplefilter("ignore")
    one_input = harness.targets()[name].setup(work)
    for path in inputs:
        one_input(path.read_bytes())
        print(f"{name}/{path.name}: answered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
