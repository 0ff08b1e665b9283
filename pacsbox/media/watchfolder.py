"""Watch folder (MEDIA-2): import every file dropped into a folder, once it is complete.

A file is complete when its size, mtime and inode are unchanged across two
polls and (where Linux lets us ask cheaply) no process holds it open for
writing: a read lease (F_SETLEASE) is refused while any writer has the file
open. Writers can also use the usual convention of writing ``name.part`` or
``.name`` and renaming when done; such names are never touched.

After its import a file moves to ``done/`` (everything in it stored or
already present) or to ``failed/`` with ``<name>.reason.txt`` beside it (the
report's lines). When the archive itself cannot store (disk full, database
down) the file stays where it is and is retried a minute later.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pacsbox.media.importer import ImportReport, StoreFn, run_import
from pacsbox.media.safety import DEFAULT_LIMITS, Limits, describe_mode

log = logging.getLogger("pacsbox.media.watch")

DONE, FAILED = "done", "failed"
IGNORED_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".filepart", "~")
RETRY_SECONDS = 60.0
_F_SETLEASE = getattr(fcntl, "F_SETLEASE", 1024)  # F_LINUX_SPECIFIC_BASE + 0


def being_written(path: Path) -> bool:
    """True if some process has ``path`` open for writing (False when leases are unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.fcntl(fd, _F_SETLEASE, fcntl.F_RDLCK)
    except OSError as e:
        return e.errno in (errno.EAGAIN, errno.EBUSY)
    else:
        fcntl.fcntl(fd, _F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


def ignored(name: str) -> bool:
    return name.startswith(".") or name in (DONE, FAILED) or name.endswith(IGNORED_SUFFIXES)


class WatchFolder:
    """Polls ``folder``; ``poll_once()`` for tests, ``start()``/``stop()`` for the daemon.

    ``heartbeat`` is called on every loop turn so the daemon's watchdog sees
    the thread alive; ``on_report`` gets each file's ImportReport (for the
    status page).
    """

    def __init__(
        self,
        folder: Path | str,
        store: StoreFn,
        heartbeat: Callable[[], None] | None = None,
        *,
        interval: float = 2.0,
        limits: Limits = DEFAULT_LIMITS,
        on_report: Callable[[ImportReport], None] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.store = store
        self.heartbeat = heartbeat
        self.interval = interval
        self.limits = limits
        self.on_report = on_report
        self._seen: dict[str, tuple[int, int, int]] = {}
        self._retry_at: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for sub in (DONE, FAILED):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)

    # -- one pass ------------------------------------------------------------------

    def poll_once(self) -> list[ImportReport]:
        """Import every file that has become complete since the last poll."""
        reports = []
        present = set()
        with os.scandir(self.folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            if ignored(e.name):
                continue
            present.add(e.name)
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                continue  # folders are not imported from here (drop a ZIP instead)
            sig = (st.st_size, st.st_mtime_ns, st.st_ino)
            if self._seen.get(e.name) != sig:
                self._seen[e.name] = sig  # changed (or new) since the last poll: wait
                continue
            if time.monotonic() < self._retry_at.get(e.name, 0.0):
                continue
            path = self.folder / e.name
            why = describe_mode(st.st_mode)
            if why:
                self._finish(path, FAILED, [f"{e.name}: {why}"])
                continue
            if being_written(path):
                continue
            report = self._import(path)
            if report is not None:
                reports.append(report)
        for gone in set(self._seen) - present:
            self._seen.pop(gone, None)
            self._retry_at.pop(gone, None)
        return reports

    def _import(self, path: Path) -> ImportReport | None:
        beat = self.heartbeat
        progress = (lambda _p: beat()) if beat is not None else None  # a long ZIP stays "alive"
        report = run_import(path, self.store, limits=self.limits, progress=progress)
        if self.on_report is not None:
            self.on_report(report)
        if report.aborted and report.kind != "none":
            # The archive could not store (disk full, database): keep the file, retry later.
            self._retry_at[path.name] = time.monotonic() + RETRY_SECONDS
            log.warning(
                "watch folder %s: %s; retry in %.0f s", path.name, report.aborted, RETRY_SECONDS
            )
            return report
        clean = not report.rejected and not report.aborted
        clean = clean and bool(report.imported or report.already_present)
        self._finish(path, DONE if clean else FAILED, report.lines())
        return report

    def _finish(self, path: Path, sub: str, lines: list[str]) -> None:
        dest = self._free_name(self.folder / sub, path.name)
        try:
            os.rename(path, dest)
        except OSError as e:
            log.error("watch folder: cannot move %s to %s/: %s", path.name, sub, e.strerror)
            self._retry_at[path.name] = time.monotonic() + RETRY_SECONDS
            return
        self._seen.pop(path.name, None)
        self._retry_at.pop(path.name, None)
        if sub == FAILED:
            dest.with_name(dest.name + ".reason.txt").write_text("\n".join(lines) + "\n")
        log.info("watch folder: %s -> %s/ (%s)", path.name, sub, lines[-1] if lines else "")

    @staticmethod
    def _free_name(folder: Path, name: str) -> Path:
        dest = folder / name
        n = 1
        while dest.exists() or dest.is_symlink():
            dest = folder / f"{name}.{n}"
            n += 1
        return dest

    # -- the daemon's thread -----------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="watchfolder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        log.info("watch folder %s: watching every %.0f s", self.folder, self.interval)
        while not self._stop.is_set():
            if self.heartbeat is not None:
                self.heartbeat()
            try:
                self.poll_once()
            except Exception:  # keep watching; the next poll may succeed
                log.exception("watch folder %s: poll failed", self.folder)
            self._stop.wait(self.interval)
