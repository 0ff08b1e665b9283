"""Rounds of power cuts: how many, what each lost, and the summary `make soak` prints and keeps.

``make test`` runs a handful of rounds; ``make soak`` sets PACSBOX_SOAK_ROUNDS
(volatile FS) and PACSBOX_QEMU_SOAK_ROUNDS (qemu) and the summaries are also
written to bench/results/soak-fs.json and soak-qemu.json.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


class _Printer:
    """Prints the soaks' summaries at the end of the session, whatever pytest captured."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def pytest_terminal_summary(self, terminalreporter) -> None:
        for text in self.texts:
            terminalreporter.write_line(text)


_PRINTER = _Printer()

_CHECK = re.compile(
    r"start-up check: (\d+) folders, (\d+) files: (\d+) indexed, (\d+) temp files removed, "
    r"(\d+) renames completed, (\d+) torn files removed, (\d+) rows of interrupted stores removed"
)


def rounds(env: str, default: int) -> tuple[int, bool]:
    """(rounds to run, whether this is a soak run that keeps its summary)."""
    value = os.environ.get(env, "").strip()
    if not value:
        return default, False
    return max(1, int(value)), True


def startup_check(log: str) -> dict[str, int]:
    """The figures of the last start-up check line in a daemon's log."""
    found = _CHECK.findall(log)
    if not found:
        return {}
    keys = ("folders", "files", "indexed", "parts_removed", "renames_completed", "torn_removed",
            "interrupted_rows")  # fmt: skip
    return dict(zip(keys, map(int, found[-1]), strict=True))


@dataclass
class Round:
    number: int
    drop_point: str
    acknowledged: int
    lost: list[str]
    torn_removed: int
    ready_seconds: float
    details: dict = field(default_factory=dict)


@dataclass
class Soak:
    name: str  # "fs" or "qemu"
    rounds: list[Round] = field(default_factory=list)

    def add(self, r: Round) -> None:
        self.rounds.append(r)

    def figures(self) -> dict:
        ready = [r.ready_seconds for r in self.rounds]
        points: dict[str, int] = {}
        for r in self.rounds:
            kind = r.drop_point.split(" ", 1)[0]
            points[kind] = points.get(kind, 0) + 1
        return {
            "rounds": len(self.rounds),
            "images_acknowledged": sum(r.acknowledged for r in self.rounds),
            "images_lost": sum(len(r.lost) for r in self.rounds),
            "torn_files_removed": sum(r.torn_removed for r in self.rounds),
            "ready_after_cut_seconds": {
                "median": round(statistics.median(ready), 2) if ready else None,
                "max": round(max(ready), 2) if ready else None,
            },
            "drop_points": points,
        }

    def text(self) -> str:
        f = self.figures()
        lines = [
            f"power cuts ({self.name}): {f['rounds']} rounds, {f['images_acknowledged']} images "
            f"acknowledged, {f['images_lost']} lost, {f['torn_files_removed']} torn files removed "
            f"by the start-up check, READY after the cut in {f['ready_after_cut_seconds']['median']} s "
            f"(median; max {f['ready_after_cut_seconds']['max']} s)",
            "  drop points: " + ", ".join(f"{k} x{v}" for k, v in sorted(f["drop_points"].items())),
        ]
        for r in self.rounds:
            check = r.details.get("startup_check") or {}
            mended = ", ".join(f"{k} {v}" for k, v in check.items() if v and k != "files")
            drop = r.details.get("drop") or {}
            if "pages_unsynced" in drop:  # written, not synced, gone at the cut
                mended += f"; unsynced pages dropped: {drop['pages_unsynced']}"
            lines.append(
                f"  round {r.number:3d}: {r.drop_point:<34} {r.details.get('torn', ''):<6} "
                f"acked {r.acknowledged:4d} lost {len(r.lost)} torn {r.torn_removed} "
                f"ready {r.ready_seconds:.1f}s; start-up check: {mended or 'nothing to mend'}"
            )
        return "\n".join(lines)

    def report(self, config, keep: bool) -> None:
        """Print at the end of the session (``config``: pytest's); keep in
        bench/results for a soak run."""
        if not config.pluginmanager.is_registered(_PRINTER):
            config.pluginmanager.register(_PRINTER, "powercut-summary")
        _PRINTER.texts.append(self.text())
        if keep:
            RESULTS.mkdir(parents=True, exist_ok=True)
            out = {
                "soak": self.name,
                "date": dt.datetime.now().isoformat(timespec="seconds"),
                **self.figures(),
                "per_round": [asdict(r) for r in self.rounds],
            }
            (RESULTS / f"soak-{self.name}.json").write_text(json.dumps(out, indent=1) + "\n")
