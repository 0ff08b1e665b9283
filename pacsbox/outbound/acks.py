"""Instances a destination acknowledged for a running job, noted one by one in a file.

The queue records acknowledgements in batches, since a write transaction per
image would cost more than sending it. This file covers the batch in flight:
one unbuffered append per image, never synced, survives kill -9 (the kernel
holds what was written), so a resumed job resends only the image whose answer
was in flight. A power cut may cost its tail: those few go twice.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def folder(data_dir: Path) -> Path:
    return data_dir / "queue"


class AckLog:
    """The file of one job: ``note`` appends, ``read`` gives every row id noted."""

    def __init__(self, data_dir: Path, job_id: int) -> None:
        self.path = folder(data_dir) / f"{job_id}.acks"
        self._fd: int | None = None

    def read(self) -> set[int]:
        try:
            text = self.path.read_bytes().decode("ascii", "replace")
        except FileNotFoundError:
            return set()
        return {int(w) for w in text.split() if w.isdigit()}

    def note(self, row_id: int) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(self._fd, b"%d\n" % row_id)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        """The job has ended: the queue's own record is complete."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def tidy(data_dir: Path, keep: set[int]) -> int:
    """Remove the files of jobs not in ``keep`` (the jobs that may still run: not
    done, not cancelled); returns how many."""
    gone = 0
    with contextlib.suppress(FileNotFoundError):
        for path in folder(data_dir).glob("*.acks"):
            if not path.stem.isdigit() or int(path.stem) not in keep:
                path.unlink(missing_ok=True)
                gone += 1
    return gone
