"""The archive: the one write path every image takes into the box.

C-STORE, media import, web upload and retrieve all call ``Archive.store``:
parse (no pixel data), write a server-named file durably, index it in one
transaction, and only then report success. If indexing fails the file is
removed (A701); if the disk is full nothing is left behind (A700). Listeners
run after the commit and can never fail a store.

The start-up check and ``rebuild`` live here too, because they are the same
write path run over files that are already on disk.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from pacsbox import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, meta, storage
from pacsbox.config import Config
from pacsbox.db import DbError, close_database, open_database
from pacsbox.db import index as idx
from pacsbox.db.models import ApplicationEntity, Instance, Patient, Series, Study
from pacsbox.errors import (
    CannotUnderstand,
    DatabaseError,
    DatasetMismatch,
    DuplicateRejected,
    OutcomeUnknown,
    OutOfResources,
    PacsboxError,
)

log = logging.getLogger("pacsbox.archive")

CHECKPOINT_QUIET_SECONDS = 30.0
CHECKPOINT_EVERY = 60.0


@dataclass(frozen=True)
class StoreResult:
    outcome: str  # "stored" | "duplicate" | "replaced" | "kept-first"
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str
    calling_ae: str = ""
    source: str = "dicom"
    modality: str = ""
    study_description: str = ""


@dataclass
class CheckReport:
    folders: int = 0
    files_seen: int = 0
    parts_removed: int = 0
    parts_restored: int = 0  # renames a crash undid, put back
    torn_removed: int = 0  # files a crash cut short before their fsync (never acknowledged)
    interrupted_rows: int = 0  # rows of stores never acknowledged, removed
    indexed: int = 0
    duplicates_removed: int = 0
    held: int = 0
    unreadable: list[str] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)  # SOP Instance UIDs

    def summary(self) -> str:
        return (
            f"{self.folders} folders, {self.files_seen} files: {self.indexed} indexed, "
            f"{self.parts_removed} temp files removed, {self.parts_restored} renames completed, "
            f"{self.torn_removed} torn files removed, "
            f"{self.interrupted_rows} rows of interrupted stores removed, "
            f"{self.duplicates_removed} duplicate files "
            f"removed, {self.held} moved to holding, {len(self.unreadable)} unreadable, "
            f"{len(self.missing_files)} index rows without a file"
        )


class Archive:
    """Holds the open index and the bookkeeping the write path needs between calls."""

    def __init__(self, cfg: Config, *, migrate: bool = True) -> None:
        self.cfg = cfg
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = open_database(cfg.database_url, run_migrations=migrate)
        self.sync = bool(cfg.SyncWrites)
        self.listeners: list[Callable[[StoreResult], None]] = []
        # Raises OutOfResources when a root is full and nothing can be purged
        # (set by the watermark monitor); None means "no check".
        self.space_check: Callable[[Path], None] | None = None
        self._lock = threading.Lock()
        self._dirty: set[tuple[str, str]] = set()
        # Folders whose marks a checkpoint is removing: a store into one waits
        # for that, so its own mark is made after the removal, not lost in it.
        self._clearing: set[tuple[str, str]] = set()
        self._cleared = threading.Condition(self._lock)
        self._inflight: dict[tuple[str, str], int] = {}
        self._last_write: dict[tuple[str, str], float] = {}
        self._locations: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._last_checkpoint = time.monotonic()
        self.committer = idx.GroupCommitter()
        # In a worker process: the daemon's index writer records for us
        # (record_link.RecordClient.record, one of record_many's records).
        self.remote_record: Callable[..., idx.Recorded] | None = None

    def close(self) -> None:
        self.committer.close()
        close_database()

    # -- where things go ------------------------------------------------------

    def archive_root_for(self, calling_ae: str | None) -> Path:
        if calling_ae:
            ae = idx.ae_get(calling_ae)
            if ae is not None and ae.archivedir:
                return Path(ae.archivedir)
        return self.cfg.archive_dir

    def _location(self, study_uid: str, calling_ae: str | None) -> tuple[str, str]:
        with self._lock:
            cached = self._locations.get(study_uid)
            if cached:
                self._locations.move_to_end(study_uid)
                return cached
        found = idx.study_location(study_uid)
        if found is None:
            found = (str(self.archive_root_for(calling_ae)), storage.study_folder(study_uid))
        else:
            self._remember(study_uid, found)
        return found

    def _remember(self, study_uid: str, loc: tuple[str, str]) -> None:
        with self._lock:
            self._locations[study_uid] = loc
            while len(self._locations) > 4096:
                self._locations.popitem(last=False)

    def forget_location(self, study_uid: str) -> None:
        with self._lock:
            self._locations.pop(study_uid, None)

    def _begin_write(self, loc: tuple[str, str]) -> None:
        with self._lock:
            while loc in self._clearing:
                self._cleared.wait()
            self._inflight[loc] = self._inflight.get(loc, 0) + 1
            known = loc in self._dirty
        if not known:
            idx.mark_dirty(*loc)
            with self._lock:
                self._dirty.add(loc)

    def _end_write(self, loc: tuple[str, str]) -> None:
        with self._lock:
            n = self._inflight.get(loc, 1) - 1
            if n <= 0:
                self._inflight.pop(loc, None)
            else:
                self._inflight[loc] = n
            self._last_write[loc] = time.monotonic()

    # -- the write path ---------------------------------------------------------

    def store(
        self,
        data: bytes,
        *,
        calling_ae: str | None = None,
        source: str = "dicom",
        transfer_syntax: str | None = None,
        expect_sop_class: str | None = None,
        expect_sop_instance: str | None = None,
    ) -> StoreResult:
        """Store one object durably and index it; returns only once both are done.

        Raises CannotUnderstand (C000), DatasetMismatch (A900), OutOfResources
        (A700), DatabaseError (A701) and DuplicateRejected.
        """
        parsed = meta.parse(data, transfer_syntax)
        attrs = parsed.attrs
        if expect_sop_class and attrs.sop_class_uid != expect_sop_class:
            raise DatasetMismatch(
                f"SOP Class UID {attrs.sop_class_uid} differs from the request's {expect_sop_class}"
            )
        if expect_sop_instance and attrs.sop_instance_uid != expect_sop_instance:
            raise DatasetMismatch("SOP Instance UID differs from the request's")
        ae = calling_ae or ""
        chunks, native = self._stored_form(data, parsed, ae)
        try:
            if self._already_stored(attrs.sop_instance_uid, chunks):
                return self._result("duplicate", attrs, ae, source)
            loc = self._location(attrs.study_instance_uid, calling_ae)
            self._begin_write(loc)
        except DbError as exc:
            raise DatabaseError(f"index unavailable: {exc}") from None
        try:
            return self._write_and_index(chunks, native, attrs, loc, ae, source)
        finally:
            self._end_write(loc)

    def _already_stored(self, sop_instance_uid: str, chunks: list[bytes]) -> bool:
        """A resend of exactly what is stored (a cheap look before any write)."""
        if idx.stored_digest(sop_instance_uid) is None:
            return False
        existing = idx.find_instance(sop_instance_uid)
        return existing is not None and _holds(existing, chunks)

    def _stored_form(
        self, data: bytes, parsed: meta.Parsed, source_ae: str = ""
    ) -> tuple[list[bytes], bool]:
        if self.cfg.StorageFormat == "Native":
            body = data[parsed.dataset_offset :] if parsed.has_meta else data
            return [body], True
        if parsed.has_meta:
            return [data], False
        header = meta.part10_header(
            parsed.attrs, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, source_ae
        )
        return [header, data], False

    def _write_and_index(
        self,
        chunks: list[bytes],
        native: bool,
        attrs: meta.InstanceAttrs,
        loc: tuple[str, str],
        ae: str,
        source: str,
    ) -> StoreResult:
        root, folder = loc
        if self.space_check is not None:
            self.space_check(Path(root))
        # The file and folder fsyncs run while the index records the file
        # (in a worker, while the daemon does).
        written = storage.write_file(
            Path(root) / folder, chunks, sync=self.sync, settle_later=self.sync
        )
        try:
            return self._index_written(written, attrs, root, folder, native, ae, source)
        finally:
            written.release()

    def _index_written(
        self,
        written: storage.WrittenFile,
        attrs: meta.InstanceAttrs,
        root: str,
        folder: str,
        native: bool,
        ae: str,
        source: str,
    ) -> StoreResult:
        try:
            rec = self._record(attrs, written, root, folder, native, ae)
        except OutcomeUnknown as exc:
            # The row may have been committed: keep the file (the start-up
            # check indexes it if not) and let the sender try again.
            log.error(
                "index update for %s from %s not confirmed: %s",
                attrs.sop_instance_uid,
                ae or source,
                exc,
            )
            raise
        except (DuplicateRejected, OutOfResources):
            storage.remove_file(written.path, sync=self.sync)
            raise
        except (DbError, OSError, DatabaseError) as exc:  # DatabaseError: from the daemon
            storage.remove_file(written.path, sync=self.sync)
            log.error(
                "index update failed for %s from %s, file removed: %s",
                attrs.sop_instance_uid,
                ae or source,
                exc,
            )
            raise DatabaseError(f"index update failed: {exc}") from None
        if rec.outcome in ("duplicate", "kept-first"):
            storage.remove_file(written.path, sync=self.sync)
        elif rec.outcome == "replaced" and rec.replaced_path is not None:
            self._hold_replaced(rec.replaced_path, attrs.sop_instance_uid, ae)
        result = self._result(rec.outcome, attrs, ae, source)
        for listener in self.listeners:
            try:
                listener(result)
            except Exception as exc:  # noqa: BLE001 - a listener never fails a store
                log.warning("store listener %r failed: %s", listener, exc)
        return result

    def _record(self, attrs, written, root: str, folder: str, native: bool, ae: str):
        for _ in range(3):
            f = idx.StoredFile(
                root, folder, written.path.name, written.size, written.digest, native
            )
            try:
                if self.remote_record is not None:
                    # The folder fsync runs while the daemon records.
                    rec = self.remote_record(attrs, f, ae, meanwhile=written.settle)
                else:
                    rec = idx.record_instance(
                        attrs,
                        f,
                        calling_ae=ae,
                        policy=self.cfg.DuplicatePolicy,
                        private=self.cfg.NewStudiesPrivate,
                        committer=self.committer,
                        meanwhile=written.settle,
                        same=_repeats(written.path, written.digest),
                    )
                self._remember(attrs.study_instance_uid, (root, folder))
                return rec
            except idx.LocationChanged as moved:
                # The study lives elsewhere (another archive root): follow it so
                # the study stays one folder.
                root, folder = moved.storage_root, moved.folder
                if written.settle is not None:
                    written.settle()  # its bytes durable before they move
                self._begin_write((root, folder))
                try:
                    target = Path(root) / folder
                    storage.ensure_dir(target, self.sync)
                    new_path = target / written.path.name
                    shutil.move(written.path, new_path)
                    if self.sync:
                        storage.fsync_dir(target)
                    written = storage.WrittenFile(new_path, written.size, written.digest)  # synced
                finally:
                    self._end_write((root, folder))
        raise DatabaseError("study location kept changing")

    def record_many(
        self, records: list[tuple[meta.InstanceAttrs, idx.StoredFile, str]]
    ) -> list[Future]:
        """A worker process's records (attrs, file, calling AE), committed
        together in this process's index (the worker fsyncs meanwhile)."""
        return idx.record_many(
            [
                (attrs, f, ae, _repeats(Path(f.storage_root) / f.folder / f.file_name, f.digest))
                for attrs, f, ae in records
            ],
            self.committer,
            policy=self.cfg.DuplicatePolicy,
            private=self.cfg.NewStudiesPrivate,
        )

    def _hold_replaced(self, old: Path, sop_uid: str, ae: str) -> None:
        try:
            held = storage.hold(old, self.holding_dir_today(), sync=self.sync)
            storage.remove_file(old, sync=self.sync)
            log.info("replaced SOP Instance %s from %s; earlier file kept as %s", sop_uid, ae, held)
        except OSError as exc:
            log.error(
                "replaced SOP Instance %s but could not move the earlier file: %s", sop_uid, exc
            )

    def holding_dir_today(self) -> Path:
        return self.cfg.holding_dir / dt.date.today().strftime("%Y%m%d")

    def _result(self, outcome: str, attrs: meta.InstanceAttrs, ae: str, source: str) -> StoreResult:
        return StoreResult(
            outcome=outcome,
            sop_instance_uid=attrs.sop_instance_uid,
            study_instance_uid=attrs.study_instance_uid,
            series_instance_uid=attrs.series_instance_uid,
            sop_class_uid=attrs.sop_class_uid,
            calling_ae=ae,
            source=source,
            modality=attrs.series.get("modality", ""),
            study_description=attrs.study.get("study_description", ""),
        )

    # -- access control (NET-9) -----------------------------------------------

    def check_peer(self, calling_ae: str, address: str) -> str | None:
        """None when the AE may associate, else the reason it may not."""
        ae = idx.ae_get(calling_ae.strip())
        if ae is None:
            return "calling AE title not in the AE table"
        if not ae.allowaccess:
            return "AE is not allowed access"
        if ae.ipaddr and ae.ipaddr != address:
            return f"address {address} does not match the AE table's {ae.ipaddr}"
        return None

    # -- consistency ------------------------------------------------------------

    def checkpoint_if_due(self) -> None:
        """The periodic checkpoint: called from a process's main loop at any pace."""
        now = time.monotonic()
        if now - self._last_checkpoint >= CHECKPOINT_EVERY:
            self._last_checkpoint = now
            self.checkpoint()

    def checkpoint(self) -> int:
        """Forget dirty folders that have been quiet; returns how many were cleared."""
        now = time.monotonic()
        with self._lock:
            quiet = [
                loc
                for loc in self._dirty
                if loc not in self._inflight
                and now - self._last_write.get(loc, 0) > CHECKPOINT_QUIET_SECONDS
            ]
            for loc in quiet:
                self._dirty.discard(loc)
                self._last_write.pop(loc, None)
            self._clearing.update(quiet)
        if quiet:
            try:
                idx.clear_dirty(quiet)
            except (DbError, OutcomeUnknown) as exc:
                # The marks stay in the index: the start-up check looks there.
                log.warning("checkpoint of %d quiet folders failed: %s", len(quiet), exc)
                return 0
            finally:
                with self._lock:
                    self._clearing.difference_update(quiet)
                    self._cleared.notify_all()
        return len(quiet)

    def startup_check(self, progress: Callable[[int, int], None] | None = None) -> CheckReport:
        """Make the folders written since the last checkpoint consistent with the index."""
        folders = idx.dirty_folders()
        report = self._check_folders(folders, progress, repair=True, interrupted=True)
        idx.clear_dirty(folders, every_process=True)
        self.purge_holding()
        if (
            report.indexed
            or report.parts_removed
            or report.missing_files
            or report.held
            or report.parts_restored
            or report.interrupted_rows
            or report.torn_removed
        ):
            log.warning("start-up check: %s", report.summary())
        else:
            log.info("start-up check: %s", report.summary())
        return report

    def full_check(
        self, *, repair: bool = False, progress: Callable[[int, int], None] | None = None
    ) -> CheckReport:
        """Every folder of every archive root against the index (``pacsbox check``)."""
        folders: list[tuple[str, str]] = []
        for root in self.archive_roots():
            for study_dir in storage.iter_study_folders(root):
                folders.append((str(root), f"{study_dir.parent.name}/{study_dir.name}"))
        known = set(folders)
        for study in Study.select(Study.storage_root, Study.folder):
            if (study.storage_root, study.folder) not in known:
                folders.append((study.storage_root, study.folder))
        return self._check_folders(folders, progress, repair=repair)

    def archive_roots(self) -> list[Path]:
        roots = {self.cfg.archive_dir.resolve()}
        for ae in ApplicationEntity.select(ApplicationEntity.archivedir):
            if ae.archivedir:
                roots.add(Path(ae.archivedir).resolve())
        for (root,) in Study.select(Study.storage_root).distinct().tuples():
            roots.add(Path(root).resolve())
        return sorted(roots)

    def _check_folders(
        self,
        folders: list[tuple[str, str]],
        progress: Callable[[int, int], None] | None,
        *,
        repair: bool,
        interrupted: bool = False,
    ) -> CheckReport:
        """``interrupted``: these folders were being written when the box went
        down (the start-up check). A store's record commits while its file and
        folder fsyncs run (``index.alongside``), so a crash may leave a file
        torn under its final name (its name's CRC tells), a row whose rename
        never reached the disk, or a row without a file: each a store never
        acknowledged."""
        report = CheckReport(folders=len(folders))
        for n, (root, folder) in enumerate(folders, 1):
            path = Path(root) / folder
            indexed = idx.indexed_names(root, folder)
            on_disk = {p.name: p for p in storage.stored_files(path)}
            if interrupted:
                self._remove_torn(on_disk, report, repair=repair)
            by_stem = {storage.stem_of(name): name for name in indexed}
            for part in storage.leftover_parts(path):
                name = by_stem.get(storage.stem_of(part.name), "")
                if interrupted and name in indexed and name not in on_disk:
                    if self._restore_part(part, path / name, indexed[name]):
                        report.parts_restored += 1
                        on_disk[name] = path / name
                        continue
                report.parts_removed += 1
                if repair:
                    storage.remove_file(part, sync=self.sync)
            report.files_seen += len(on_disk)
            for name, sop in indexed.items():
                if name in on_disk:
                    continue
                if interrupted:
                    self._drop_interrupted(sop, path / name)
                    report.interrupted_rows += 1
                    continue
                report.missing_files.append(sop)
                log.error("index row without file: SOP Instance %s (%s)", sop, path / name)
            for name, file_path in on_disk.items():
                if name in indexed:
                    continue
                self._adopt(file_path, root, folder, report, repair=repair)
            if progress:
                progress(n, len(folders))
        return report

    def _remove_torn(self, on_disk: dict[str, Path], report: CheckReport, *, repair: bool) -> None:
        for name, path in list(on_disk.items()):
            try:
                whole = storage.is_whole(path)
            except OSError as exc:
                log.warning("start-up check: cannot read %s: %s", path, exc)
                continue
            if whole:
                continue
            del on_disk[name]  # its row, if any, goes as a row without a file
            report.torn_removed += 1
            log.warning(
                "start-up check: removed %s, cut short by the crash before its "
                "store was acknowledged",
                path,
            )
            if repair:
                storage.remove_file(path, sync=self.sync)

    def _restore_part(self, part: Path, final: Path, sop_uid: str) -> bool:
        """Put back a rename that a crash undid, if the temp file holds the indexed bytes."""
        inst = idx.find_instance(sop_uid)
        try:
            data = part.read_bytes()
        except OSError:
            return False
        if inst is None or inst.file_size != len(data) or inst.digest != storage.digest([data]):
            return False
        part.rename(final)
        if self.sync:
            storage.fsync_dir(final.parent)
        log.warning("start-up check: completed the rename of SOP Instance %s (%s)", sop_uid, final)
        return True

    def _drop_interrupted(self, sop_uid: str, path: Path) -> None:
        inst = idx.find_instance(sop_uid)
        if inst is not None:
            idx.delete_instance(inst)
        log.warning(
            "start-up check: removed the index row of SOP Instance %s, whose store was "
            "interrupted before its file %s was on disk (never acknowledged)",
            sop_uid,
            path,
        )

    def _adopt(
        self, path: Path, root: str, folder: str, report: CheckReport, *, repair: bool
    ) -> None:
        """Index a file found on disk without a row; never let it replace an indexed one."""
        try:
            with open(path, "rb") as fh:
                data = fh.read()
            if storage.named_digest(path.name) not in (None, storage.digest([data])):
                raise CannotUnderstand("torn: its bytes differ from the CRC-32 in its name")
            parsed = meta.parse(data)
        except (OSError, PacsboxError) as exc:
            report.unreadable.append(str(path))
            log.warning("unreadable file in archive: %s (%s)", path, exc)
            return
        attrs = parsed.attrs
        existing = idx.find_instance(attrs.sop_instance_uid)
        if existing is not None:
            if not repair:
                report.held += 1
                return
            if _holds(existing, [data]):
                storage.remove_file(path, sync=self.sync)
                report.duplicates_removed += 1
            else:
                storage.hold(path, self.holding_dir_today(), sync=self.sync)
                storage.remove_file(path, sync=self.sync)
                report.held += 1
            return
        report.indexed += 1
        if not repair:
            return
        f = idx.StoredFile(
            root, folder, path.name, len(data), storage.digest([data]), not parsed.has_meta
        )
        try:
            idx.record_instance(attrs, f, policy="keep-first", private=self.cfg.NewStudiesPrivate)
        except idx.LocationChanged as moved:
            target = Path(moved.storage_root) / moved.folder
            storage.ensure_dir(target, self.sync)
            shutil.move(path, target / path.name)
            f = idx.StoredFile(
                moved.storage_root, moved.folder, path.name, f.size, f.digest, f.native
            )
            idx.record_instance(attrs, f, policy="keep-first", private=self.cfg.NewStudiesPrivate)

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> CheckReport:
        """Rebuild the whole index from the files (the AE table is kept)."""
        with idx.write_transaction():
            Instance.delete().execute()
            Series.delete().execute()
            Study.delete().execute()
            Patient.delete().execute()
        with self._lock:
            self._locations.clear()
        report = self.full_check(repair=True, progress=progress)
        log.info("index rebuilt: %s", report.summary())
        return report

    def purge_holding(self) -> int:
        """Delete replaced files older than HoldingDays."""
        root = self.cfg.holding_dir
        if not root.is_dir():
            return 0
        cutoff = (dt.date.today() - dt.timedelta(days=self.cfg.HoldingDays)).strftime("%Y%m%d")
        removed = 0
        for day in root.iterdir():
            if day.is_dir() and day.name.isdigit() and day.name < cutoff:
                shutil.rmtree(day, ignore_errors=True)
                removed += 1
        return removed

    # -- reading back -------------------------------------------------------------

    def read_part10(self, inst: Instance) -> bytes:
        """The stored object as a Part-10 file (Native files get their header back)."""
        path = idx.instance_path(inst)
        with open(path, "rb") as fh:
            data = fh.read()
        if not inst.native:
            return data
        attrs = meta.InstanceAttrs(
            sop_class_uid=inst.sop_class_uid,
            sop_instance_uid=inst.sop_instance_uid,
            study_instance_uid="",
            series_instance_uid="",
            transfer_syntax_uid=inst.transfer_syntax_uid,
        )
        return (
            meta.part10_header(attrs, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME) + data
        )


def _holds(existing: Instance, chunks: list[bytes]) -> bool:
    """Does the indexed instance's file hold exactly these bytes?"""
    return storage.same_content(
        existing.digest, idx.instance_path(existing), storage.digest(chunks), chunks
    )


def _repeats(new: Path, digest: str) -> Callable[[str, Path], bool]:
    """What the index asks in its transaction: does the stored object (its
    digest, its path) hold exactly the bytes of the file just written?"""
    return partial(storage.same_content, new_digest=digest, new=new)
