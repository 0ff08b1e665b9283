"""Disk watermarks (DATA-4): keep every archive disk under its high-water mark.

Past ``HighWaterMark`` percent the oldest received studies are purged until
the disk is back under ``LowWaterMark``, never a study that is protected,
received in the last ``PurgeMinAgeHours`` hours, or held by ``must_keep``
(a job of the durable queue that has still to send it, a storage commitment
of it still pending, or with ``PurgeRequiresCommitment`` no destination that
has committed all of it). When
nothing can be purged, :meth:`Watermark.check` (the archive's space check,
called before every write) raises OutOfResources, so C-STORE answers A700 and
the status snapshot says ``storage_full``.

Usage is measured per disk, not per folder: archive roots on one file system
(the default archive and per-AE archivedirs) share its space, so they are
purged together, oldest first across all of them.

The purge is two-phase (see ``pacsbox/db/purge.py``): mark the study, delete
its files, delete its rows. :meth:`Watermark.resume` finishes studies a crash
left marked; run it at start-up before the start-up check and before READY.
What a purge did is a ``report.PurgeReport``; ``pacsbox purge`` is
``command.purge_command``.

This is the only module that imports psutil.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from pacsbox import attachments, recovery
from pacsbox.archive import Archive
from pacsbox.config import Config
from pacsbox.db import commitments, lookup, queue, routes
from pacsbox.db import purge as pdb
from pacsbox.db.models import Study, utcnow
from pacsbox.errors import OutOfResources, PacsboxError
from pacsbox.watermark.report import PurgedStudy, PurgeReport, human

log = logging.getLogger("pacsbox.watermark")

Usage = Callable[[Path], tuple[int, int, int]]  # (total, used, free) bytes
CACHE_SECONDS = 2.0
GROUPS_SECONDS = 30.0
#: Free space kept for the database and logs: past this a store is refused even
#: while a purge is on its way (capped at 2% of small disks).
RESERVE_BYTES = 64 * 1024 * 1024
HEARTBEAT = "watermark"
FULL_NOTHING_PURGEABLE = "archive full: nothing can be purged"


def disk_usage(path: Path) -> tuple[int, int, int]:
    """(total, used, free) of the file system holding ``path`` (psutil)."""
    u = psutil.disk_usage(str(path))
    return u.total, u.used, u.free


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (a new archive folder has no usage yet)."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def percent_used(used: int, free: int) -> float:
    # As df and psutil: blocks reserved for root do not count as free or used.
    return 100.0 * used / (used + free) if used + free > 0 else 0.0


@dataclass(frozen=True)
class DiskUsage:
    key: str  # the group: the file system (device) the roots live on
    roots: tuple[str, ...]  # storage_root strings on this disk, as the index stores them
    path: Path  # where usage was measured
    total: int
    used: int
    free: int

    @property
    def percent(self) -> float:
        return percent_used(self.used, self.free)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "percent": round(self.percent, 1),
            "free_bytes": self.free,
            "total_bytes": self.total,
        }


class Watermark:
    """The disk monitor, the space check of the write path, and the purge.

    ``usage`` is injectable for tests: ``usage(path) -> (total, used, free)``.
    ``must_keep(study)`` returns why a study must stay or None: by default, a
    job of the durable queue (a forward, failed ones included until retried
    or cancelled) that has still to send it, a commitment of it pending, or
    under PurgeRequiresCommitment no destination that committed all of it.
    ``journal(event, detail)`` receives one entry per purged study (the web
    audit log) when given.
    """

    def __init__(
        self,
        cfg: Config,
        archive: Archive,
        heartbeats: Any = None,
        journal: Callable[[str, str], None] | None = None,
        *,
        usage: Usage = disk_usage,
        reserve_bytes: int = RESERVE_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.archive = archive
        self.heartbeats = heartbeats
        self.journal = journal
        self.usage = usage
        self.reserve_bytes = reserve_bytes
        self.must_keep: Callable[[Study], str | None] = self._guarded
        self._pending: tuple[float, dict[str, queue.JobView], dict[str, str]] | None = None
        self._committing: tuple[float, dict[str, str]] | None = None
        self.high = float(cfg.HighWaterMark)
        self.low = float(cfg.LowWaterMark)
        self._clock = clock
        self._lock = threading.Lock()  # the caches and the state below
        self._purge_lock = threading.Lock()  # one purge at a time in this process
        self._wake = threading.Event()
        self._cache: dict[str, tuple[float, DiskUsage, bool]] = {}  # key -> (t, usage, purgeable)
        self._root_key: dict[str, tuple[float, str]] = {}
        self._roots_cache: tuple[float, frozenset[str]] | None = None
        self.storage_full = False
        self.full_reason = ""
        self.last_report: PurgeReport | None = None
        self.progress: dict[str, Any] | None = None  # a running purge, for the snapshot's jobs
        self._stop_event: threading.Event | None = None
        self._thread: threading.Thread | None = None

    # -- measuring -------------------------------------------------------------

    def _key(self, root: str) -> str:
        """The file system a root lives on (device number), cached like the usage."""
        now = self._clock()
        hit = self._root_key.get(root)
        if hit and now - hit[0] < 60:
            return hit[1]
        p = _existing(Path(root))
        try:
            key = f"dev:{os.stat(p).st_dev}"
        except OSError:
            key = f"path:{p}"
        self._root_key[root] = (now, key)
        return key

    def _groups(self, extra: list[str] | None = None) -> dict[str, list[str]]:
        """{disk key: storage_root strings on that disk}: every root the index or config knows.

        The list of roots is cached for GROUPS_SECONDS (it scans the study table).
        """
        now = self._clock()
        with self._lock:
            cached = self._roots_cache
        if cached is None or now - cached[0] > GROUPS_SECONDS:
            known = {str(r) for r in lookup.archive_roots(self.cfg.archive_dir)}
            known.update(pdb.storage_roots())
            cached = (now, frozenset(known))
            with self._lock:
                self._roots_cache = cached
        roots = set(cached[1])
        roots.update(extra or [])
        groups: dict[str, list[str]] = {}
        for root in sorted(roots):
            groups.setdefault(self._key(root), []).append(root)
        return groups

    def _measure(self, key: str, roots: list[str]) -> DiskUsage:
        path = _existing(Path(roots[0]))
        total, used, free = self.usage(path)
        return DiskUsage(key, tuple(roots), path, int(total), int(used), int(free))

    def disks(self) -> list[DiskUsage]:
        """Fresh usage of every archive disk."""
        return [self._measure(k, roots) for k, roots in self._groups().items()]

    def _reserve(self, disk: DiskUsage) -> int:
        return min(self.reserve_bytes, disk.total // 50)

    def bytes_to_free(self, disk: DiskUsage) -> int:
        """How much must go for the disk to fall under the low-water mark."""
        target_used = self.low / 100.0 * (disk.used + disk.free)
        return max(0, int(disk.used - target_used) + 1)

    # -- who may go ------------------------------------------------------------

    def cutoff(self) -> dt.datetime:
        return utcnow() - dt.timedelta(hours=int(self.cfg.PurgeMinAgeHours))

    def keep_reason(self, study: Study, cutoff: dt.datetime | None) -> str | None:
        """Why ``study`` must stay, or None; no age rule when ``cutoff`` is None."""
        if study.protected:
            return "protected"
        if study.purge_state:
            return f"already {study.purge_state}"
        if cutoff is not None and study.received >= cutoff:
            return f"received within the last {self.cfg.PurgeMinAgeHours} h"
        try:
            reason = self.must_keep(study)
        except Exception as exc:  # noqa: BLE001 - an unsure route keeps the study
            reason = f"routing check failed ({exc})"
        return reason or None

    def _still_to_send(self, study: Study) -> str | None:
        """A queue job that has still to send the study keeps it, and so does a route
        that matched it and has not queued its jobs yet (read once per purge pass)."""
        now = self._clock()
        if self._pending is None or now - self._pending[0] > CACHE_SECONDS:
            self._pending = (now, queue.pending_studies(), routes.waiting_studies())
        uid = study.study_instance_uid
        job = self._pending[1].get(uid)
        if job is not None:
            return (
                f"queue job {job.id} ({job.kind} to {job.destination}, {job.state}) "
                "has still to send it"
            )
        route = self._pending[2].get(uid)
        if route is not None:
            return f"route {route} has still to send it (waiting for the study to be stable)"
        return None

    def purge_now(self, study_uid: str, why: str) -> str:
        """Purge one study whatever the disk's level (a purge-after route delivered it):
        "purged"; "kept" while another rule keeps it (a route or job still sending);
        "never" when it is protected or gone."""
        study = pdb.study_by_uid(study_uid)
        if study is None or study.protected:
            return "never"
        self._pending = None  # the job that delivered it has just ended
        reason = self.keep_reason(study, None)
        if reason:
            log.info("study %s stays after its route: %s", study_uid, reason)
            return "kept"
        report = PurgeReport()
        with self._purge_lock:
            self._purge_one(study, why, report)
        self._invalidate()
        return "purged" if report.purged else "kept"

    def _guarded(self, study: Study) -> str | None:
        """The purge guard of issue 17 item 5: a job still to send it, a commitment of
        it pending, or (PurgeRequiresCommitment) no destination that committed it all."""
        return self._still_to_send(study) or self._commitment_rule(study)

    def _commitment_rule(self, study: Study) -> str | None:
        now = self._clock()
        if self._committing is None or now - self._committing[0] > CACHE_SECONDS:
            self._committing = (now, commitments.pending_studies())
        destination = self._committing[1].get(study.study_instance_uid)
        if destination is not None:
            return f"commitment pending from {destination}"
        if self.cfg.PurgeRequiresCommitment and not commitments.committed_by(
            study.study_instance_uid
        ):
            return "not committed anywhere (PurgeRequiresCommitment)"
        return None

    def go_reason(self, study: Study) -> str:
        why = (
            f"oldest received, older than {self.cfg.PurgeMinAgeHours} h, not protected, "
            "nothing pending for it"
        )
        if self.cfg.PurgeRequiresCommitment:
            why += ", committed by " + ", ".join(commitments.committed_by(study.study_instance_uid))
        return why

    def _iter_candidates(self, roots: list[str]) -> Iterator[tuple[Study, str]]:
        cutoff = self.cutoff()
        for study in pdb.iter_candidates(roots, cutoff):
            if self.keep_reason(study, cutoff) is None:
                yield study, self.go_reason(study)

    def _roots_of(self, root: Path | str) -> list[str]:
        """The storage_root strings that name ``root`` (the index may hold it unresolved)."""
        want = Path(root).resolve()
        roots = {r for r in pdb.storage_roots() if Path(r).resolve() == want}
        roots.add(str(root))
        return sorted(roots)

    def candidates(self, root: Path | str) -> list[tuple[Study, str]]:
        """Studies of ``root`` that may be purged, oldest received first, with why each may go."""
        return list(self._iter_candidates(self._roots_of(root)))

    def kept(self, root: Path | str) -> list[tuple[Study, str]]:
        """Studies of ``root`` that must stay, oldest received first, with why."""
        cutoff = self.cutoff()
        out = []
        for study in pdb.iter_studies(self._roots_of(root)):
            reason = self.keep_reason(study, cutoff)
            if reason:
                out.append((study, reason))
        return out

    def plan_disk(self, disk: DiskUsage) -> list[tuple[Study, str]]:
        if disk.percent < self.high:
            return []
        need = self.bytes_to_free(disk)
        why = (
            f"{disk.path} at {disk.percent:.1f}% above high-water {self.high:g}%, "
            f"freeing {human(need)} to reach {self.low:g}%"
        )
        chosen: list[tuple[Study, str]] = []
        freed = 0
        for study, reason in self._iter_candidates(list(disk.roots)):
            if freed >= need:
                break
            chosen.append((study, f"{why}; {reason}"))
            freed += study.size_bytes
        return chosen

    def plan(self) -> list[tuple[Study, str]]:
        """What a purge would remove now, disk by disk, and why; changes nothing.

        Sizes are estimated with Study.size_bytes; the purge measures again
        afterwards and goes on when the estimate fell short.
        """
        out: list[tuple[Study, str]] = []
        for disk in self.disks():
            out.extend(self.plan_disk(disk))
        return out

    # -- the write path's check ------------------------------------------------

    def check(self, root: Path) -> None:
        """Archive.space_check: fast (cached ~2 s); wakes the purge above high-water.

        Raises OutOfResources (A700) when the disk is above the high-water mark
        and nothing can be purged, or when its free space is under the reserve.
        """
        root_s = str(root)
        key = self._key(root_s)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
        if hit is None or now - hit[0] > CACHE_SECONDS:
            roots = self._groups([root_s]).get(key, [root_s])
            disk = self._measure(key, roots)
            purgeable = True
            if disk.percent >= self.high:
                purgeable = next(self._iter_candidates(list(disk.roots)), None) is not None
            with self._lock:
                self._cache[key] = hit = (now, disk, purgeable)
        _, disk, purgeable = hit
        if disk.percent < self.high and disk.free >= self._reserve(disk):
            self._set_full(False, "")
            return
        self._wake.set()  # the monitor thread purges; this store goes on if it can
        if not purgeable:
            self._set_full(True, f"{FULL_NOTHING_PURGEABLE} ({disk.path} at {disk.percent:.1f}%)")
            raise OutOfResources(FULL_NOTHING_PURGEABLE)
        if disk.free < self._reserve(disk):
            self._set_full(True, f"archive full: {disk.path} has {human(disk.free)} free")
            raise OutOfResources(f"archive full: {human(disk.free)} free on {disk.path}")
        self._set_full(False, "")

    def _set_full(self, full: bool, reason: str) -> None:
        with self._lock:
            if full and not self.storage_full:
                log.error("%s: C-STORE answers A700 until space is freed", reason)
            elif not full and self.storage_full:
                log.info("archive accepts images again")
            self.storage_full = full
            self.full_reason = reason

    def _invalidate(self) -> None:
        with self._lock:
            self._cache.clear()
            self._roots_cache = None

    # -- the purge -------------------------------------------------------------

    def purge(self, stop: threading.Event | None = None) -> PurgeReport:
        """Bring every disk above high-water back under low-water, oldest studies first.

        Finishes interrupted purges first. Errors on one study are logged and
        reported; that study stays marked and is finished by the next purge or
        the next start.
        """
        with self._purge_lock:
            report = PurgeReport()
            self._resume(report)
            while not (stop and stop.is_set()):
                items = self.plan()
                if not items:
                    break
                self.progress = {
                    "kind": "purge",
                    "label": "purging oldest studies",
                    "done": 0,
                    "total": len(items),
                    "state": "running",
                }
                done_before = len(report.purged)
                for n, (study, why) in enumerate(items, 1):
                    if stop and stop.is_set():
                        break
                    self._purge_one(study, why, report)
                    self.progress["done"] = n
                    self._beat()
                if len(report.purged) == done_before:
                    break  # nothing went this round (all failed or vanished)
            self.progress = None
            self._invalidate()
            disks = self.disks()
            report.still_full = any(
                d.percent >= self.high and next(self._iter_candidates(list(d.roots)), None) is None
                for d in disks
            )
            report.finished = dt.datetime.now()
            if report.purged or report.resumed or report.errors:
                log.info("purge done: %s", report.summary())
            if report.still_full:
                self._set_full(True, FULL_NOTHING_PURGEABLE)
            elif all(d.percent < self.high for d in disks):
                self._set_full(False, "")
            self.last_report = report
            return report

    def _purge_one(self, study: Study, why: str, report: PurgeReport) -> None:
        if not pdb.mark_purging(study.id):
            return  # protected, marked or deleted since the plan was made
        deleted = self._files_then_rows(study, report, "purge of study {} stopped")
        if deleted is not None:
            self._finished(study, why, deleted, report)

    def _files_then_rows(
        self, study: Study, report: PurgeReport, failure: str
    ) -> pdb.DeletedRows | None:
        """Phases 2 and 3 of a marked study; None (and a report line) when they stop."""
        try:
            ids = self._delete_files(study)
            return self._delete_rows(study, ids)
        except (OSError, PacsboxError) as exc:
            msg = f"{failure.format(study.study_instance_uid)}: {exc}"
            log.error(msg)
            report.errors.append(msg)
            return None

    def _delete_files(self, study: Study) -> list[int]:
        """Phase 2: delete the files of the study's indexed instances (gone already is fine).

        Refuses to touch a study that is not marked. Returns the instance ids
        whose files are gone, for phase 3.
        """
        if not pdb.is_marked(study.id):
            raise PacsboxError(f"study {study.study_instance_uid} is not marked for purge")
        folder = Path(study.storage_root) / study.folder
        rows = pdb.study_files(study.id)
        for n, (_, name) in enumerate(rows, 1):
            if "/" in name or name in ("", ".", ".."):
                raise OSError(errno.EINVAL, f"bad file name {name!r} in the index")
            try:
                os.unlink(folder / name)
            except FileNotFoundError:
                pass
            if n % 500 == 0:
                self._beat()
        if rows and self.archive.sync:
            try:
                fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                pass
            else:
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        return [i for i, _ in rows]

    def _delete_rows(self, study: Study, ids: list[int]) -> pdb.DeletedRows:
        """Phase 3: delete the rows whose files phase 2 removed; tidy the folder."""
        deleted = pdb.delete_instance_rows(study.id, ids)
        if deleted.study_deleted:
            self.archive.forget_location(study.study_instance_uid)
            attachments.forget_study(self.archive.cfg, study.study_instance_uid)
            try:  # only when empty: an unindexed file is never ours to delete
                (Path(study.storage_root) / study.folder).rmdir()
            except OSError:
                pass
        else:
            pdb.unmark(study.id)  # instances arrived while it was purged: they stay
            log.warning(
                "study %s received new instances while it was purged; they are kept",
                study.study_instance_uid,
            )
        return deleted

    def _finished(
        self, study: Study, why: str, deleted: pdb.DeletedRows, report: PurgeReport
    ) -> None:
        item = PurgedStudy(
            study_uid=study.study_instance_uid,
            received=study.received,
            size_bytes=deleted.size_bytes,
            instances=deleted.instances,
            why=why,
            root=study.storage_root,
        )
        report.purged.append(item)
        line = item.line()
        log.info(line)
        if self.journal is not None:
            try:
                self.journal("purge", line)
            except Exception as exc:  # noqa: BLE001 - the audit log never stops a purge
                log.warning("journal entry for purge failed: %s", exc)

    def resume(self) -> PurgeReport:
        """Finish every study a crash left marked "purging" (run at start-up, before READY)."""
        with self._purge_lock:
            report = PurgeReport()
            self._resume(report)
            report.finished = dt.datetime.now()
            if report.resumed or report.errors:
                log.warning("interrupted purge finished at start-up: %s", report.summary())
                self.last_report = report
            return report

    def _resume(self, report: PurgeReport) -> None:
        for study in pdb.purging_studies():
            deleted = self._files_then_rows(study, report, "cannot finish the purge of study {}")
            if deleted is None:
                continue
            report.resumed += 1
            self._finished(study, "finishing a purge interrupted by a crash", deleted, report)

    # -- the monitor thread ----------------------------------------------------

    def _beat(self) -> None:
        if self.heartbeats is not None:
            self.heartbeats.beat(HEARTBEAT)

    def heartbeat_max_age(self) -> float:
        return max(120.0, 2.0 * float(self.cfg.WatermarkInterval))

    def run(self, stop_event: threading.Event) -> None:
        """Check every WatermarkInterval seconds (or when a store found the disk high); purge."""
        if self.heartbeats is not None:
            self.heartbeats.register(HEARTBEAT, self.heartbeat_max_age())
        interval = float(self.cfg.WatermarkInterval)
        try:
            while not stop_event.is_set():
                self._beat()
                try:
                    self._expire_holding()
                    self._invalidate()
                    if any(d.percent >= self.high for d in self.disks()):
                        self.purge(stop_event)
                    else:
                        self._set_full(False, "")
                except Exception as exc:  # noqa: BLE001 - the monitor must keep running
                    log.error("watermark check failed: %s", exc)
                self._beat()
                deadline = self._clock() + interval
                while not stop_event.is_set():
                    left = deadline - self._clock()
                    if left <= 0 or self._wake.wait(min(left, 1.0)):
                        break
                    self._beat()
                self._wake.clear()
        finally:
            if self.heartbeats is not None:
                self.heartbeats.unregister(HEARTBEAT)

    def _expire_holding(self) -> None:
        """Replaced and edited originals older than HoldingDays go on every round, so a
        box that runs for months without a restart does not keep them forever."""
        removed = recovery.purge_holding(self.cfg)
        if removed:
            log.info(
                "holding area: %d day folders older than %d days deleted",
                removed,
                self.cfg.HoldingDays,
            )

    def start(self, stop_event: threading.Event | None = None) -> threading.Thread:
        """Run the monitor in a daemon thread until ``stop_event`` is set or :meth:`stop`."""
        self._stop_event = stop_event or threading.Event()
        self._thread = threading.Thread(
            target=self.run, args=(self._stop_event,), name="pacsbox-watermark", daemon=True
        )
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 5.0) -> None:
        """End the monitor thread (a purge in progress stops after its current study)."""
        if self._stop_event is not None:
            self._stop_event.set()
            self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # -- state for the status snapshot ----------------------------------------

    def state(self) -> dict[str, Any]:
        """``storage_full``, why, the last purge and a running purge's progress (for status.json)."""
        with self._lock:
            return {
                "storage_full": self.storage_full,
                "storage_full_reason": self.full_reason or None,
                "last_purge": self.last_report.as_dict() if self.last_report else None,
                "purge_job": dict(self.progress) if self.progress else None,
            }
