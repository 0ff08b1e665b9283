"""The archive: the one write path every image takes into the box.

C-STORE, media import, web upload and retrieve all call ``Archive.store``:
parse (no pixel data), write a server-named file durably, index it in one
transaction, and only then report success. If indexing fails the file is
removed (A701); if the disk is full nothing is left behind (A700). Listeners
run after the commit and can never fail a store.

The start-up check, ``pacsbox check`` and ``rebuild`` are in ``recovery``.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pacsbox import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, meta, recovery, storage
from pacsbox.config import Config
from pacsbox.db import (
    DbError,
    aes,
    assocbuffer,
    close_database,
    commit,
    dirty,
    lookup,
    open_database,
    rows,
)
from pacsbox.db import index as idx
from pacsbox.db.models import Instance, Study
from pacsbox.db.stored import StoredInstance
from pacsbox.errors import (
    DatabaseError,
    DatasetMismatch,
    DuplicateRejected,
    OutcomeUnknown,
    OutOfResources,
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


class Archive:
    """Holds the open index and the bookkeeping the write path needs between calls."""

    def __init__(
        self,
        cfg: Config,
        *,
        migrate: bool = True,
        space_check: Callable[[Path], None] | None = None,
        remote_record: Callable[..., rows.Recorded] | None = None,
    ) -> None:
        self.cfg = cfg
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = open_database(cfg.database_url, run_migrations=migrate)
        self.sync = bool(cfg.SyncWrites)
        self.listeners: list[Callable[[StoreResult], None]] = []
        # Raises OutOfResources when a root is full and nothing can be purged
        # (the watermark monitor's); None means "no check".
        self.space_check = space_check
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
        self.committer = commit.GroupCommitter()
        # In a worker process: the daemon's index writer records for us
        # (record_link.RecordClient.record, one of record_many's records).
        self.remote_record = remote_record
        assocbuffer.recorder.configure(cfg.AssociationLogDays, cfg.AssociationLogKeep)

    def close(self) -> None:
        self.committer.close()
        assocbuffer.recorder.flush()  # this process's last associations, before the index goes
        close_database()

    # -- where things go ------------------------------------------------------

    def archive_root_for(self, calling_ae: str | None) -> Path:
        if calling_ae:
            ae = aes.ae_get(calling_ae)
            if ae is not None and ae.archivedir:
                return Path(ae.archivedir)
        return self.cfg.archive_dir

    def _location(self, study_uid: str, calling_ae: str | None) -> tuple[str, str]:
        with self._lock:
            cached = self._locations.get(study_uid)
            if cached:
                self._locations.move_to_end(study_uid)
                return cached
        found = lookup.study_location(study_uid)
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
            dirty.mark_dirty(*loc)
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
        expect_study_instance: str | None = None,
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
        if expect_study_instance and attrs.study_instance_uid != expect_study_instance:
            raise DatasetMismatch(f"Study Instance UID is not {expect_study_instance}")
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
        if lookup.stored_digest(sop_instance_uid) is None:
            return False
        existing = lookup.find_instance(sop_instance_uid)
        return existing is not None and recovery.holds(existing, chunks)

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
        except (DatasetMismatch, DuplicateRejected, OutOfResources):
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

    def _record(
        self,
        attrs: meta.InstanceAttrs,
        written: storage.WrittenFile,
        root: str,
        folder: str,
        native: bool,
        ae: str,
    ) -> rows.Recorded:
        for _ in range(3):
            f = rows.StoredFile(
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
            except rows.LocationChanged as moved:
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
        self, records: list[tuple[meta.InstanceAttrs, rows.StoredFile, str]]
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

    def rewrite(
        self, inst: Instance, chunks: list[bytes], also: Callable[[], None] | None = None
    ) -> bool:
        """Give an indexed instance new bytes (an edit of its attributes), by a store's steps.

        A new server-named file is written durably in the study's folder
        (marked dirty first), the row swapped to it in one transaction with
        ``also``'s row changes, and only then the earlier file moved to
        holding/ as a replace moves it. A crash between two steps leaves one
        file indexed and the other unindexed in a dirty folder, which the
        start-up check moves to holding. Returns False, changing nothing, when
        the instance was removed or re-stored meanwhile. Raises OutOfResources
        (A700) and database errors.
        """
        study = inst.series.study
        loc = (study.storage_root, study.folder)
        old = lookup.instance_path(inst)
        self._begin_write(loc)
        try:
            written = storage.write_file(Path(loc[0]) / loc[1], chunks, sync=self.sync)
            try:
                with commit.write_transaction():
                    swapped = (
                        Instance.update(
                            file_name=written.path.name,
                            file_size=written.size,
                            digest=written.digest,
                        )
                        .where((Instance.id == inst.id) & (Instance.file_name == inst.file_name))
                        .execute()
                    )
                    if swapped:
                        Study.update(
                            size_bytes=Study.size_bytes + (written.size - inst.file_size)
                        ).where(Study.id == study.id).execute()
                        if also is not None:
                            also()
            except BaseException:
                storage.remove_file(written.path, sync=self.sync)
                raise
            if not swapped:
                storage.remove_file(written.path, sync=self.sync)
                return False
        finally:
            self._end_write(loc)
        self._hold_replaced(old, inst.sop_instance_uid, "an edit")
        return True

    def _hold_replaced(self, old: Path, sop_uid: str, ae: str) -> None:
        try:
            held = storage.hold(old, recovery.holding_dir_today(self.cfg), sync=self.sync)
            storage.remove_file(old, sync=self.sync)
            log.info("replaced SOP Instance %s from %s; earlier file kept as %s", sop_uid, ae, held)
        except OSError as exc:
            log.error(
                "replaced SOP Instance %s but could not move the earlier file: %s", sop_uid, exc
            )

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

    def check_peer(self, calling_ae: str, address: str) -> tuple[str, str] | None:
        """None when the AE may associate, else why not: (``assoclog.REASONS`` code, words)."""
        ae = aes.ae_get(calling_ae.strip())
        if ae is None:
            return "unknown-calling-ae", "calling AE title not in the AE table"
        if not ae.allowaccess:
            return "disabled-ae", "AE is not allowed access"
        if ae.ipaddr and ae.ipaddr != address:
            return (
                "address-mismatch",
                f"address {address} does not match the AE table's {ae.ipaddr}",
            )
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
                dirty.clear_dirty(quiet)
            except (DbError, OutcomeUnknown) as exc:
                # The marks stay in the index: the start-up check looks there.
                log.warning("checkpoint of %d quiet folders failed: %s", len(quiet), exc)
                return 0
            finally:
                with self._lock:
                    self._clearing.difference_update(quiet)
                    self._cleared.notify_all()
        return len(quiet)

    # -- reading back -------------------------------------------------------------

    def read_part10(self, inst: Instance) -> bytes:
        """The stored object as a Part-10 file (Native files get their header back)."""
        path = str(lookup.instance_path(inst))
        ts = inst.transfer_syntax_uid
        return read_stored(
            StoredInstance(inst.sop_class_uid, inst.sop_instance_uid, ts, path, inst.native)
        )


def read_stored(item: StoredInstance) -> bytes:
    """The stored file as Part-10 bytes (a Native file is the bare data set: given its meta)."""
    with open(item.path, "rb") as fh:
        data = fh.read()
    if not item.native:
        return data
    attrs = meta.InstanceAttrs(
        item.sop_class_uid, item.sop_instance_uid, "", "", item.transfer_syntax_uid
    )
    return meta.part10_header(attrs, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME) + data


def _repeats(new: Path, digest: str) -> Callable[[str, Path], bool]:
    """What the index asks in its transaction: does the stored object (its
    digest, its path) hold exactly the bytes of the file just written?"""
    return partial(storage.same_content, new_digest=digest, new=new)
