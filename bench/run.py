"""`make bench`: run every benchmark, print its figures, write bench/results/<name>.json.

Usage: python -m bench.run [NAME ...]   (default: all). Each bench module has
``main() -> dict``; figures are medians unless a key says otherwise.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import platform
import sys
import time
import traceback
from pathlib import Path

from bench.common import clear_spent

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ALL = ["ingest", "query", "retrieve", "forward", "routing", "web", "media", "appliance", "startup"]
ALL += ["worklist", "dicomweb"]


def _print(name: str, figures: dict, indent: str = "  ") -> None:
    for k, v in figures.items():
        if isinstance(v, dict):
            print(f"{indent}{k}:")
            _print(name, v, indent + "  ")
        else:
            print(f"{indent}{k}: {v}")


def main(argv: list[str]) -> int:
    names = argv or ALL
    RESULTS.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in names:
        try:
            mod = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError:
            print(f"== {name}: no such benchmark yet, skipped")
            continue
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        try:
            figures = mod.main()
        except Exception:  # noqa: BLE001 - one bench failing must not hide the others
            traceback.print_exc()
            failed.append(name)
            continue
        figures = {
            "bench": name,
            "date": dt.datetime.now().isoformat(timespec="seconds"),
            "machine": f"{platform.machine()} {platform.node()}",
            "seconds": round(time.monotonic() - t0, 1),
            **figures,
        }
        _print(name, figures)
        (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=1) + "\n")
    clear_spent()  # last: freed inodes must not slow a later run (see retire)
    if failed:
        print("failed: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
