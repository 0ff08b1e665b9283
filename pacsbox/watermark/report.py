"""What a watermark purge did: one line per purged study, a summary, a JSON twin.

The line goes to the log and the audit journal, the summary to the log and
``pacsbox purge``, the JSON to the status snapshot's ``last_purge``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def local_time(received: dt.datetime) -> str:
    """Study.received is naive UTC; operators read local time."""
    return received.replace(tzinfo=dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class PurgedStudy:
    study_uid: str
    received: dt.datetime
    size_bytes: int
    instances: int
    why: str
    root: str

    def line(self) -> str:
        """The one log/journal line per purged study: UID, received, size, why."""
        return (
            f"purged study {self.study_uid} received {local_time(self.received)} "
            f"{human(self.size_bytes)} ({self.instances} instances) from {self.root}: {self.why}"
        )


@dataclass
class PurgeReport:
    started: dt.datetime = field(default_factory=dt.datetime.now)
    finished: dt.datetime | None = None
    purged: list[PurgedStudy] = field(default_factory=list)
    resumed: int = 0
    errors: list[str] = field(default_factory=list)
    still_full: bool = False

    @property
    def freed_bytes(self) -> int:
        return sum(p.size_bytes for p in self.purged)

    def summary(self) -> str:
        parts = [f"purged {len(self.purged)} studies ({human(self.freed_bytes)})"]
        if self.resumed:
            parts.append(f"{self.resumed} finished from an interrupted purge")
        if self.errors:
            parts.append(f"{len(self.errors)} errors")
        if self.still_full:
            parts.append("still above the high-water mark: nothing more can be purged")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "time": (self.finished or self.started).isoformat(timespec="seconds"),
            "studies": len(self.purged),
            "freed_bytes": self.freed_bytes,
            "resumed": self.resumed,
            "errors": list(self.errors[-5:]),
            "still_full": self.still_full,
            "summary": self.summary(),
        }
