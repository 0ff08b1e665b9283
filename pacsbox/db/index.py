"""Writes to the index: one transaction per stored instance, counters kept exact.

``record_instance`` is the only way an instance enters the index. It runs in
one IMMEDIATE transaction (the SQLite writer lock is taken up front, so two
senders of the same SOP Instance UID serialise here and never create two
rows) and applies the duplicate policy inside it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from peewee import SqliteDatabase

from pacsbox import db as dbpkg
from pacsbox.db.models import (
    ApplicationEntity,
    DirtyFolder,
    Instance,
    Patient,
    Series,
    Study,
    database,
    utcnow,
)
from pacsbox.errors import DuplicateRejected, OutcomeUnknown
from pacsbox.meta import InstanceAttrs

T = TypeVar("T")


@dataclass(frozen=True)
class StoredFile:
    storage_root: str
    folder: str
    file_name: str
    size: int
    digest: str
    native: bool


@dataclass(frozen=True)
class Recorded:
    outcome: str  # "stored" | "duplicate" | "replaced" | "kept-first"
    replaced_path: Path | None = None  # the earlier file, to be moved to holding
    # (series, study, patient row ids, file size) still to be counted: a
    # transaction adds its records' counts once per row, just before COMMIT.
    counts: tuple[int, int, int, int] | None = None


class LocationChanged(Exception):
    """The study already lives elsewhere; the caller moves the file there and retries."""

    def __init__(self, storage_root: str, folder: str) -> None:
        super().__init__(f"{storage_root}/{folder}")
        self.storage_root = storage_root
        self.folder = folder


@contextlib.contextmanager
def write_transaction() -> Iterator[None]:
    """A transaction that takes the writer lock at once (SQLite IMMEDIATE)."""
    db = database.obj
    if isinstance(db, SqliteDatabase):
        lock = dbpkg.writer_lock
        if lock is None or db.in_transaction():
            with db.atomic("IMMEDIATE"):
                yield
            return
        with lock, db.atomic("IMMEDIATE"):
            yield
    else:
        with db.atomic():
            yield


def instance_path(inst: Instance) -> Path:
    study = inst.series.study
    return Path(study.storage_root) / study.folder / inst.file_name


def study_location(study_uid: str) -> tuple[str, str] | None:
    row = _one("SELECT storage_root, folder FROM study WHERE study_instance_uid = ?", (study_uid,))
    return (row[0], row[1]) if row else None


def find_instance(sop_instance_uid: str) -> Instance | None:
    return Instance.get_or_none(Instance.sop_instance_uid == sop_instance_uid)


# The store path runs once per received image, so it speaks parameterised
# SQL directly: compiling peewee queries cost ~3 ms per image, the SQL below
# ~0.2 ms. The schema is still the peewee models' (column names included);
# rare paths (replace, delete) keep using the models.

PATIENT_COLS = (
    "patient_name",
    "patient_name_ci",
    "birth_date",
    "birth_time",
    "sex",
    "age",
    "size",
    "weight",
    "charset",
)
STUDY_COLS = (
    "study_date",
    "study_time",
    "accession_number",
    "study_id",
    "referring_physician",
    "reading_physician",
    "study_description",
    "institution_name",
    "charset",
)
SERIES_COLS = (
    "modality",
    "series_number",
    "series_date",
    "series_time",
    "body_part",
    "series_description",
    "protocol_name",
)
INSTANCE_COLS = (
    "sop_instance_uid",
    "series_id",
    "sop_class_uid",
    "instance_number",
    "transfer_syntax_uid",
    "file_name",
    "file_size",
    "digest",
    "native",
    "calling_ae",
    "received",
    "creation_date",
    "creation_time",
    "overlay_number",
    "curve_number",
    "lut_number",
    "samples_per_pixel",
    "rows",
    "columns",
    "bits_allocated",
    "bits_stored",
    "pixel_representation",
    "number_of_frames",
)


def _sql(text: str) -> str:
    """Our SQL is written with ``?``; PostgreSQL's driver wants ``%s``."""
    p = database.obj.param
    return text if p == "?" else text.replace("?", p)


def _one(sql: str, params: tuple):
    return database.execute_sql(_sql(sql), params).fetchone()


def _run(sql: str, params: tuple) -> None:
    database.execute_sql(_sql(sql), params)


def _insert(table: str, values: dict) -> int:
    cols = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    row = _one(
        f"INSERT INTO {table} ({cols}) VALUES ({marks}) RETURNING id", tuple(values.values())
    )
    return row[0]


def _merge_row(table: str, row_id: int, cols: tuple, current: tuple, new: dict) -> None:
    """Latest non-empty value wins; one UPDATE only when something changed."""
    changes = {
        c: new[c]
        for c, old in zip(cols, current, strict=True)
        if new.get(c) not in ("", None) and new[c] != old
    }
    if changes:
        sets = ", ".join(f"{c} = ?" for c in changes)
        _run(f"UPDATE {table} SET {sets} WHERE id = ?", (*changes.values(), row_id))


def _patient_values(attrs: InstanceAttrs) -> dict:
    p = dict(attrs.patient)
    p["patient_name_ci"] = p["patient_name"].upper()
    p["charset"] = attrs.charset
    return p


def _study_values(attrs: InstanceAttrs) -> dict:
    st = dict(attrs.study)
    st["charset"] = attrs.charset
    return st


def _series_values(attrs: InstanceAttrs) -> dict:
    se = dict(attrs.series)
    se["series_number"] = attrs.series_number
    return se


_KNOWN_SERIES_SQL = (
    "SELECT se.id, st.id, p.id, st.study_instance_uid, p.patient_id, p.issuer, st.storage_root, "
    "st.folder, "
    + ", ".join(
        [
            *(f"se.{c}" for c in SERIES_COLS),
            *(f"st.{c}" for c in STUDY_COLS),
            *(f"p.{c}" for c in PATIENT_COLS),
        ]
    )
    + " FROM series se JOIN study st ON st.id = se.study_id JOIN patient p ON p.id = st.patient_id"
    " WHERE se.series_instance_uid = ?"
)


def _known_series(attrs: InstanceAttrs, f: StoredFile) -> tuple[int, int, int] | None:
    """(series, study, patient) ids when the series is indexed under this study and patient.

    The usual case (every image of a series after its first) costs one SELECT
    instead of three; anything unusual returns None and takes the general path.
    Raises LocationChanged.
    """
    row = _one(_KNOWN_SERIES_SQL, (attrs.series_instance_uid,))
    if row is None:
        return None
    series_id, study_id, patient_id, study_uid, pid, issuer, root, folder = row[:8]
    if study_uid != attrs.study_instance_uid or (pid, issuer) != (
        attrs.patient["patient_id"],
        attrs.patient["issuer"],
    ):
        return None
    if (root, folder) != (f.storage_root, f.folder):
        raise LocationChanged(root, folder)
    a = 8 + len(SERIES_COLS)
    b = a + len(STUDY_COLS)
    _merge_row("series", series_id, SERIES_COLS, row[8:a], _series_values(attrs))
    _merge_row("study", study_id, STUDY_COLS, row[a:b], _study_values(attrs))
    _merge_row("patient", patient_id, PATIENT_COLS, row[b:], _patient_values(attrs))
    return series_id, study_id, patient_id


def _patient_row(attrs: InstanceAttrs, private: bool) -> int:
    p = _patient_values(attrs)
    row = _one(
        f"SELECT id, {', '.join(PATIENT_COLS)} FROM patient WHERE patient_id = ? AND issuer = ?",
        (p["patient_id"], p["issuer"]),
    )
    if row is None:
        values = {c: p.get(c, "") for c in ("patient_id", "issuer", *PATIENT_COLS)}
        values.update(
            num_studies=0,
            num_series=0,
            num_instances=0,
            private=bool(private),
            created=str(utcnow()),
        )
        return _insert("patient", values)
    _merge_row("patient", row[0], PATIENT_COLS, row[1:], p)
    return row[0]


def _study_row(
    attrs: InstanceAttrs, patient_id: int, f: StoredFile, calling_ae: str, private: bool
) -> tuple[int, int]:
    """(study row id, its patient row id); raises LocationChanged."""
    st = _study_values(attrs)
    row = _one(
        f"SELECT id, patient_id, storage_root, folder, {', '.join(STUDY_COLS)} FROM study "
        "WHERE study_instance_uid = ?",
        (attrs.study_instance_uid,),
    )
    now = str(utcnow())
    if row is None:
        values = {c: st.get(c, "") for c in STUDY_COLS}
        values.update(
            study_instance_uid=attrs.study_instance_uid,
            patient_id=patient_id,
            modalities="",
            num_series=0,
            num_instances=0,
            size_bytes=0,
            storage_root=f.storage_root,
            folder=f.folder,
            calling_ae=calling_ae,
            received=now,
            updated=now,
            private=bool(private),
            read=False,
            protected=False,
            purge_state="",
        )
        study_id = _insert("study", values)
        _run("UPDATE patient SET num_studies = num_studies + 1 WHERE id = ?", (patient_id,))
        return study_id, patient_id
    if (row[2], row[3]) != (f.storage_root, f.folder):
        raise LocationChanged(row[2], row[3])
    _merge_row("study", row[0], STUDY_COLS, row[4:], st)
    return row[0], row[1]


def _series_row(attrs: InstanceAttrs, study_id: int, patient_id: int) -> tuple[int, bool]:
    se = _series_values(attrs)
    row = _one(
        f"SELECT id, {', '.join(SERIES_COLS)} FROM series WHERE series_instance_uid = ?",
        (attrs.series_instance_uid,),
    )
    if row is None:
        values = {c: se.get(c, "") for c in SERIES_COLS}
        values.update(
            series_instance_uid=attrs.series_instance_uid, study_id=study_id, num_instances=0
        )
        series_id = _insert("series", values)
        _run("UPDATE study SET num_series = num_series + 1 WHERE id = ?", (study_id,))
        _run("UPDATE patient SET num_series = num_series + 1 WHERE id = ?", (patient_id,))
        return series_id, True
    _merge_row("series", row[0], SERIES_COLS, row[1:], se)
    return row[0], False


def _instance_row(attrs: InstanceAttrs, series_id: int, f: StoredFile, calling_ae: str) -> None:
    inst = attrs.instance
    values = (
        attrs.sop_instance_uid,
        series_id,
        attrs.sop_class_uid,
        attrs.instance_number,
        attrs.transfer_syntax_uid,
        f.file_name,
        f.size,
        f.digest,
        bool(f.native),
        calling_ae,
        str(utcnow()),
        inst.get("creation_date", ""),
        inst.get("creation_time", ""),
        inst.get("overlay_number", ""),
        inst.get("curve_number", ""),
        inst.get("lut_number", ""),
        inst.get("samples_per_pixel"),
        inst.get("rows"),
        inst.get("columns"),
        inst.get("bits_allocated"),
        inst.get("bits_stored"),
        inst.get("pixel_representation"),
        inst.get("number_of_frames"),
    )
    _run(
        f"INSERT INTO instance ({', '.join(INSTANCE_COLS)}) "
        f"VALUES ({', '.join('?' for _ in INSTANCE_COLS)})",
        values,
    )


def _apply_counts(records: list[Recorded]) -> None:
    """Add the instance counts of a transaction's records, one UPDATE per row touched.

    Counts are sums, so adding them at the end of the transaction gives the
    same rows as adding each at once (a replaced instance's decrement
    included); an UPDATE of a row deleted meanwhile changes nothing.
    """
    series: dict[int, int] = {}
    studies: dict[int, tuple[int, int]] = {}
    patients: dict[int, int] = {}
    for rec in records:
        if rec.counts is None:
            continue
        series_id, study_id, patient_id, size = rec.counts
        series[series_id] = series.get(series_id, 0) + 1
        n, total = studies.get(study_id, (0, 0))
        studies[study_id] = (n + 1, total + size)
        patients[patient_id] = patients.get(patient_id, 0) + 1
    if not series:
        return
    now = str(utcnow())
    for row_id, n in series.items():
        _run("UPDATE series SET num_instances = num_instances + ? WHERE id = ?", (n, row_id))
    for row_id, (n, total) in studies.items():
        _run(
            "UPDATE study SET num_instances = num_instances + ?, size_bytes = size_bytes + ?, "
            "updated = ? WHERE id = ?",
            (n, total, now, row_id),
        )
    for row_id, n in patients.items():
        _run("UPDATE patient SET num_instances = num_instances + ? WHERE id = ?", (n, row_id))


def _refresh_modalities(study_id: int) -> None:
    mods = sorted(
        {
            m
            for (m,) in database.execute_sql(
                _sql("SELECT DISTINCT modality FROM series WHERE study_id = ? AND modality <> ''"),
                (study_id,),
            ).fetchall()
        }
    )
    _run("UPDATE study SET modalities = ? WHERE id = ?", ("\\".join(mods), study_id))


def stored_digest(sop_instance_uid: str) -> str | None:
    """The digest of the stored object with this UID, or None (a cheap duplicate pre-check)."""
    row = _one("SELECT digest FROM instance WHERE sop_instance_uid = ?", (sop_instance_uid,))
    return row[0] if row else None


def _record_in_transaction(
    attrs: InstanceAttrs,
    f: StoredFile,
    calling_ae: str,
    policy: str,
    private: bool,
    same: Callable[[str, Path], bool] | None,
) -> Recorded:
    replaced: Path | None = None
    digest = stored_digest(attrs.sop_instance_uid)
    if digest is not None:
        existing = find_instance(attrs.sop_instance_uid)
        if same(digest, instance_path(existing)) if same else digest == f.digest:
            return Recorded("duplicate")
        if policy == "keep-first":
            return Recorded("kept-first")
        if policy == "reject":
            raise DuplicateRejected(
                f"SOP Instance {attrs.sop_instance_uid} is already stored with other content"
            )
        replaced = instance_path(existing)
        _delete_instance_rows(existing)
    known = _known_series(attrs, f) if replaced is None else None
    if known is not None:
        series_id, study_id, patient_id = known
        new_series = False
    else:
        patient_id = _patient_row(attrs, private)
        study_id, patient_id = _study_row(attrs, patient_id, f, calling_ae, private)
        series_id, new_series = _series_row(attrs, study_id, patient_id)
    _instance_row(attrs, series_id, f, calling_ae)
    if new_series or replaced is not None:
        _refresh_modalities(study_id)
    return Recorded(
        "replaced" if replaced is not None else "stored",
        replaced,
        (series_id, study_id, patient_id, f.size),
    )


def record_instance(
    attrs: InstanceAttrs,
    f: StoredFile,
    *,
    calling_ae: str = "",
    policy: str = "replace",
    private: bool = False,
    committer: GroupCommitter | None = None,
    meanwhile: Callable[[], None] | None = None,
    same: Callable[[str, Path], bool] | None = None,
) -> Recorded:
    """Index a stored file in one transaction, applying the duplicate policy.

    With a ``committer`` the record joins the next group commit; it returns
    only after that commit. ``meanwhile`` (the file's folder fsync) runs
    while the record is made, and the call returns only once both are done
    (see ``GroupCommitter.run``); without a committer it runs first.
    ``same(digest, path)`` tells whether the object already stored under this
    UID holds the new bytes (digests are only a filter); without it, equal
    digests decide.
    Raises DuplicateRejected (policy "reject"), LocationChanged (the study
    lives in another folder), and peewee errors when the database fails.
    """
    record = _recorder(attrs, f, calling_ae, policy, private, same)
    if committer is not None:
        return committer.run(record, meanwhile)
    if meanwhile is not None:
        meanwhile()
    return _together([record])[0]


def alongside(meanwhile: Callable[[], None] | None, wait: Callable[[], T]) -> T:
    """``wait()`` for a record already on its way, running ``meanwhile`` first.

    The record may commit before ``meanwhile`` (a folder fsync) is done, so
    a failure of ``meanwhile`` after a successful record is OutcomeUnknown
    (the file stays; a crash before the fsync is the start-up check's to
    mend, see ``Archive._check_folders``). A failed record raises its own error.
    """
    failed: Exception | None = None
    if meanwhile is not None:
        try:
            meanwhile()
        except Exception as exc:  # noqa: BLE001 - decided once the record's outcome is in
            failed = exc
    result = wait()
    if failed is not None:
        raise OutcomeUnknown(f"recorded, but {failed}")
    return result


def record_many(
    records: list[tuple[InstanceAttrs, StoredFile, str, Callable[[str, Path], bool] | None]],
    committer: GroupCommitter,
    *,
    policy: str = "replace",
    private: bool = False,
) -> list[Future]:
    """``record_instance`` for (attrs, file, calling AE, same) each, committed
    together in the caller's thread (a worker process's records, which the
    worker makes durable meanwhile): each Future holds its Recorded or its
    exception."""
    return committer.run_batch(
        [_recorder(attrs, f, ae, policy, private, same) for attrs, f, ae, same in records]
    )


def _recorder(
    attrs: InstanceAttrs,
    f: StoredFile,
    calling_ae: str,
    policy: str,
    private: bool,
    same: Callable[[str, Path], bool] | None,
) -> Callable[[], Recorded]:
    """One record as a call the group commit runs inside its transaction."""
    return partial(_record_in_transaction, attrs, f, calling_ae, policy, private, same)


def _replaced(result) -> bool:
    return isinstance(result, Recorded) and result.outcome == "replaced"


def _made_durable() -> None:
    """fsync the SQLite WAL after a COMMIT that did not wait for the disk.

    One fdatasync covers every frame written before it. The WAL is opened by
    name: SQLite removes it when its last connection closes. Raises
    OutcomeUnknown: the row is committed but maybe not on disk.
    """
    db = database.obj
    if not isinstance(db, SqliteDatabase):
        return
    try:
        fd = os.open(db.database + "-wal", os.O_RDONLY)
    except FileNotFoundError:
        return  # checkpointed and removed: its content is in the synced database file
    except OSError as exc:
        raise OutcomeUnknown(f"index journal not synced: {exc}") from None
    try:
        os.fdatasync(fd)
    except OSError as exc:
        raise OutcomeUnknown(f"index journal not synced: {exc}") from None
    finally:
        os.close(fd)


@contextlib.contextmanager
def _lazy_commit() -> Iterator[None]:
    """This connection's COMMITs skip the WAL fsync (SQLite: synchronous is per connection)."""
    if not isinstance(database.obj, SqliteDatabase):
        yield
        return
    database.execute_sql("PRAGMA synchronous = NORMAL")
    try:
        yield
    finally:
        database.execute_sql("PRAGMA synchronous = FULL")


def _together(fns: list, isolate: bool = False, lazy: bool = False) -> list:
    """Run record functions in one transaction, add their counts, commit.

    Without ``isolate`` any failure rolls back everyone and is raised (a
    batch then retries isolated). With it, each runs in a savepoint and its
    exception is returned in its place; the others still commit.

    ``lazy`` (the store path): the COMMIT does not wait for the WAL's fsync,
    which cost a third of a small image's time (0.2-0.5 ms of ~1.5 ms). The
    row may then be lost in a power cut but never its image: the file and
    its folder were fsynced before, the folder is marked dirty by a commit
    that did wait (``mark_dirty``, kept until a later waiting commit has
    made these rows durable), and the start-up check indexes every file of a
    dirty folder that has no row. SQLite in WAL mode stays consistent; a
    lost commit is lost whole.
    """
    with _lazy_commit() if lazy else contextlib.nullcontext():
        return _in_one_transaction(fns, isolate)


def _in_one_transaction(fns: list, isolate: bool) -> list:
    results: list = []
    with write_transaction():
        for fn in fns:
            if not isolate:
                results.append(fn())
                continue
            try:
                with database.savepoint():
                    results.append(fn())
            except Exception as exc:  # noqa: BLE001 - handed to its caller
                results.append(exc)
        _apply_counts([r for r in results if not isinstance(r, Exception)])
    return results


class GroupCommitter:
    """One writer thread that makes concurrent index records durable together.

    A batch is whatever queued while the last one committed, run in one
    transaction; callers get their result only after the shared COMMIT. If a
    record fails (a duplicate rejected, a study that moved), the batch is
    rolled back and run again with a savepoint per record, so only that one
    fails. With one association nothing waits.

    The writer does no fsync at all: each caller fsyncs its file's folder
    while its record is made (``meanwhile``; callers of one folder share
    one, ``storage._FolderSync``), and an inline caller does it after its
    commit, having handed the writer lock on.

    The COMMIT does not wait for the disk (see ``_together``): what makes an
    acknowledged image survive a power cut is its file and folder, fsynced
    before the record, in a folder marked dirty by a commit that did wait;
    the start-up check indexes any file there whose row was lost. Only a
    replace, which then moves the earlier file away, waits for its row to be
    durable first.

    The folder fsyncs used to run in the writer, before each batch's SQL,
    which every record of the batch then waited for.
    """

    MAX_BATCH = 64

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue()
        # Held by whoever commits now (an inline caller or the writer's batch).
        self._idle = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="pacsbox-index-writer", daemon=True)
        self._thread.start()

    def run(self, fn, meanwhile=None):
        # Alone (one association, an import): commit in the caller's thread,
        # with no hand-over to the writer. Several at once: join the batch.
        if self._idle.acquire(blocking=False):
            try:
                result = _together([fn], lazy=True)[0]
            finally:
                self._idle.release()
            if _replaced(result):
                _made_durable()
            return alongside(meanwhile, lambda: result)
        return alongside(meanwhile, self.submit(fn).result)

    def submit(self, fn) -> Future:
        """Join the next batch without waiting; the Future is done after its COMMIT."""
        fut: Future = Future()
        self._queue.put((fn, fut))
        return fut

    def run_batch(self, fns: list) -> list[Future]:
        """Commit ``fns`` together in the caller's thread (waiting for the writer
        lock); their Futures are done on return. A worker's records come in
        bunches on one socket: its reader commits them itself, saving the hop to
        the writer thread (a fifth of a worker's record time)."""
        ready = [(fn, Future()) for fn in fns]
        with self._idle:
            self._commit_batch(ready)
        return [fut for _, fut in ready]

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(10)

    def _batches(self) -> Iterator[list]:
        """What has queued up, up to MAX_BATCH at a time, until the None that ends it."""
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    yield batch
                    return
                batch.append(nxt)
            yield batch

    def _loop(self) -> None:
        for batch in self._batches():
            with self._idle:
                self._commit_batch(batch)
        if not database.is_closed():
            database.close()

    def _commit_batch(self, ready: list) -> None:
        if not ready:
            return
        fns = [fn for fn, _ in ready]
        try:
            results = _together(fns, lazy=True)
        except Exception as exc:  # noqa: BLE001 - one record (or the COMMIT) failed
            if len(ready) == 1:
                ready[0][1].set_exception(exc)
                return
            try:
                results = _together(fns, isolate=True, lazy=True)
            except Exception as exc:  # noqa: BLE001 - the COMMIT failed: nobody is stored
                for _, fut in ready:
                    fut.set_exception(exc)
                return
        if any(_replaced(r) for r in results):
            try:
                _made_durable()
            except OutcomeUnknown as exc:
                results = [exc if _replaced(r) else r for r in results]
        for (_, fut), result in zip(ready, results, strict=True):
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)


def _delete_instance_rows(inst: Instance) -> None:
    """Remove one instance row and keep every counter exact (empty parents go too)."""
    series = inst.series
    study = series.study
    patient_id = study.patient_id
    inst.delete_instance()
    Series.update(num_instances=Series.num_instances - 1).where(Series.id == series.id).execute()
    Study.update(
        num_instances=Study.num_instances - 1, size_bytes=Study.size_bytes - inst.file_size
    ).where(Study.id == study.id).execute()
    Patient.update(num_instances=Patient.num_instances - 1).where(
        Patient.id == patient_id
    ).execute()
    if not Instance.select().where(Instance.series == series.id).exists():
        series.delete_instance()
        Study.update(num_series=Study.num_series - 1).where(Study.id == study.id).execute()
        Patient.update(num_series=Patient.num_series - 1).where(Patient.id == patient_id).execute()
        _refresh_modalities(study.id)
        if not Series.select().where(Series.study == study.id).exists():
            Study.delete().where(Study.id == study.id).execute()
            Patient.update(num_studies=Patient.num_studies - 1).where(
                Patient.id == patient_id
            ).execute()
            if not Study.select().where(Study.patient == patient_id).exists():
                Patient.delete().where(Patient.id == patient_id).execute()


def delete_instance(inst: Instance) -> Path:
    """Remove an instance from the index; returns its file path for the caller to delete."""
    with write_transaction():
        path = instance_path(inst)
        _delete_instance_rows(inst)
    return path


def instance_files(query) -> Iterator[tuple[Instance, Path]]:
    """(instance, path) for every instance of a select on Instance joined to its study."""
    for inst in query:
        yield inst, instance_path(inst)


def indexed_names(storage_root: str, folder: str) -> dict[str, str]:
    """{file name: SOP Instance UID} of the instances indexed in one study folder."""
    rows = (
        Instance.select(Instance.file_name, Instance.sop_instance_uid)
        .join(Series)
        .join(Study)
        .where((Study.storage_root == storage_root) & (Study.folder == folder))
        .tuples()
    )
    return dict(rows)


# -- dirty folders: what the start-up check must look at --------------------


def _this_process() -> str:
    return str(os.getpid())


def mark_dirty(storage_root: str, folder: str) -> None:
    """Before the first file this process writes into a folder; the commit waits for the disk."""
    with write_transaction():
        DirtyFolder.insert(
            storage_root=storage_root, folder=folder, owner=_this_process()
        ).on_conflict_ignore().execute()


def dirty_folders() -> list[tuple[str, str]]:
    return list(
        DirtyFolder.select(DirtyFolder.storage_root, DirtyFolder.folder).distinct().tuples()
    )


def clear_dirty(folders: list[tuple[str, str]], *, every_process: bool = False) -> None:
    """Forget this process's marks (all marks: the start-up check, before any worker runs).

    The rows committed into those folders without waiting for the disk are
    made durable first, so no folder loses its mark while a row of it could
    still be lost.
    """
    _made_durable()
    with write_transaction():
        for root, folder in folders:
            which = (DirtyFolder.storage_root == root) & (DirtyFolder.folder == folder)
            if not every_process:
                which &= DirtyFolder.owner == _this_process()
            DirtyFolder.delete().where(which).execute()


# -- counts for status and logs ----------------------------------------------


def totals() -> dict[str, int]:
    """Archive-wide counts from the patient rows' counters (one scan of the smallest table)."""
    row = _one(
        "SELECT COUNT(*), COALESCE(SUM(num_studies), 0), COALESCE(SUM(num_series), 0), "
        "COALESCE(SUM(num_instances), 0) FROM patient",
        (),
    )
    return {"patients": row[0], "studies": row[1], "series": row[2], "instances": row[3]}


# -- the AE table -------------------------------------------------------------


def ae_get(title: str) -> ApplicationEntity | None:
    return ApplicationEntity.get_or_none(ApplicationEntity.title == title)


def ae_list() -> list[ApplicationEntity]:
    return list(ApplicationEntity.select().order_by(ApplicationEntity.title))


def ae_upsert(title: str, **fields) -> ApplicationEntity:
    with write_transaction():
        ae = ae_get(title)
        if ae is None:
            return ApplicationEntity.create(title=title, **fields)
        for k, v in fields.items():
            setattr(ae, k, v)
        ae.save()
        return ae


def ae_remove(title: str) -> bool:
    with write_transaction():
        return ApplicationEntity.delete().where(ApplicationEntity.title == title).execute() > 0


# -- selections for export, forward and delete ---------------------------------


def select_instances(
    patient_ids: list[str] | None = None,
    study_uids: list[str] | None = None,
    series_uids: list[str] | None = None,
) -> list[Instance]:
    """Instances of the given patients, studies and series (union), in a stable order."""
    conds = []
    if patient_ids:
        conds.append(Patient.patient_id.in_(patient_ids))
    if study_uids:
        conds.append(Study.study_instance_uid.in_(study_uids))
    if series_uids:
        conds.append(Series.series_instance_uid.in_(series_uids))
    if not conds:
        return []
    where = conds[0]
    for c in conds[1:]:
        where = where | c
    q = (
        Instance.select(Instance, Series, Study)
        .join(Series)
        .join(Study)
        .join(Patient)
        .where(where)
        .order_by(Patient.id, Study.id, Series.series_number, Series.id, Instance.instance_number)
    )
    return list(q)


def last_study() -> dict | None:
    """The most recently received study, for the status snapshot (no patient data)."""
    row = _one(
        "SELECT study_instance_uid, calling_ae, modalities, study_description, received "
        "FROM study ORDER BY received DESC LIMIT 1",
        (),
    )
    if row is None:
        return None
    received = row[4] if isinstance(row[4], str) else str(row[4])
    return {
        "study_uid": row[0],
        "calling_ae": row[1],
        "modality": row[2],
        "description": row[3],
        "received_utc": received,
    }


def studies_received_since(utc_naive) -> int:
    return _one("SELECT COUNT(*) FROM study WHERE received >= ?", (str(utc_naive),))[0]


def newest_instance_id() -> int:
    """The highest instance row id: an O(1) sign that something was stored."""
    return _one("SELECT COALESCE(MAX(id), 0) FROM instance", ())[0]
