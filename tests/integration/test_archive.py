"""The archive's one write path, in process, on a real SQLite file and real files."""

from __future__ import annotations

import errno
import functools
import io
import os
import re
import threading
import zlib
from pathlib import Path

import pydicom
import pytest
from peewee import OperationalError

from pacsbox import recovery, storage
from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db import commit, dirty, lookup
from pacsbox.db import index as idx
from pacsbox.db.models import Instance, Patient, Series, Study
from pacsbox.errors import (
    CannotUnderstand,
    DatabaseError,
    DatasetMismatch,
    DuplicateRejected,
    OutcomeUnknown,
    OutOfResources,
)
from tests.helpers import cli, write_config
from tests.postgres import DATABASES, index_settings
from tests.synth import make_instance, make_study


def _archive(tmp_path: Path, **settings) -> Archive:
    return Archive(load(write_config(tmp_path / "box", **settings)))


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _counts_are_exact() -> None:
    for se in Series.select():
        assert se.num_instances == Instance.select().where(Instance.series == se).count()
    for st in Study.select():
        insts = Instance.select().join(Series).where(Series.study == st)
        assert st.num_instances == insts.count()
        assert st.size_bytes == sum(i.file_size for i in insts)
        assert st.num_series == Series.select().where(Series.study == st).count()
    for p in Patient.select():
        assert p.num_studies == Study.select().where(Study.patient == p).count()
        assert p.num_instances == (
            Instance.select().join(Series).join(Study).where(Study.patient == p).count()
        )


def _concurrently(*calls) -> None:
    """Run each call in its own thread, all at once, and wait for every one."""
    threads = [threading.Thread(target=call) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.fixture(params=DATABASES)
def archive(request, tmp_path):
    """The write path on the index in SQLite and in a real PostgreSQL."""
    a = _archive(tmp_path, **index_settings(request, request.param))
    yield a
    a.close()


def test_store_indexes_every_level_and_names_files_itself(archive):
    datas = make_study(patient_id="P1", n_series=2, per_series=3, modality="MR")
    for d in datas:
        assert archive.store(d).outcome == "stored"
    st = Study.get()
    assert (st.num_series, st.num_instances, st.modalities) == (2, 6, "MR")
    assert st.patient.num_instances == 6
    files = _files(archive.cfg.archive_dir)
    assert len(files) == 6
    # Server-made names: hex only (a random stem, then the CRC-32 of the file's
    # bytes), all in the study's one folder.
    assert len({f.parent for f in files}) == 1
    assert all(re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]{8}\.dcm", f.name) for f in files)
    assert all(storage.named_digest(f.name) == storage.digest([f.read_bytes()]) for f in files)


def test_a_series_of_another_study_is_refused_and_leaves_no_file(archive):
    """Acknowledged but unretrievable was the bug: the row went to the old study,
    the file to the new study's folder."""
    first = make_instance(study_uid="1.2.3.100", series_uid="1.2.3.100.1", sop_uid="1.2.3.100.1.1")
    other = make_instance(study_uid="1.2.3.200", series_uid="1.2.3.100.1", sop_uid="1.2.3.200.1.1")
    assert archive.store(first).outcome == "stored"
    with pytest.raises(DatasetMismatch, match="another study"):
        archive.store(other)
    assert lookup.find_instance("1.2.3.200.1.1") is None
    files = _files(archive.cfg.archive_dir)
    assert len(files) == 1 and files[0].read_bytes().endswith(first[-64:])
    assert [s.study_instance_uid for s in Study.select()] == ["1.2.3.100"]


def test_identical_resend_keeps_one_copy(archive):
    data = make_instance()
    assert archive.store(data).outcome == "stored"
    assert archive.store(data).outcome == "duplicate"
    assert Instance.select().count() == 1 and len(_files(archive.cfg.archive_dir)) == 1


def _crc32_twin(data: bytes, flip_at: int) -> bytes:
    """``data`` with one bit flipped and its last 4 bytes set so CRC-32 stays the same.

    CRC-32 runs backwards: the top byte of each step's result names the table
    entry it used, so the 4 entries that reach the old CRC can be found, and
    then the 4 bytes that select them.
    """
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    by_top = {c >> 24: n for n, c in enumerate(table)}
    body = bytearray(data[:-4])
    body[flip_at] ^= 0x01
    want = zlib.crc32(data) ^ 0xFFFFFFFF
    entries = []
    for _ in range(4):
        n = by_top[want >> 24]
        entries.append(n)
        want = ((want ^ table[n]) << 8) & 0xFFFFFFFF
    state = zlib.crc32(body) ^ 0xFFFFFFFF
    for n in reversed(entries):
        body.append((state ^ n) & 0xFF)
        state = table[n] ^ (state >> 8)
    twin = bytes(body)
    assert twin != data and len(twin) == len(data) and zlib.crc32(twin) == zlib.crc32(data)
    return twin


def test_a_digest_match_is_confirmed_byte_for_byte(archive):
    """Digests only filter: same CRC-32 but other bytes is a replacement, not a resend."""
    first = make_instance()
    twin = _crc32_twin(first, flip_at=len(first) - 20)  # a pixel, a different image
    archive.store(first)
    assert archive.store(twin).outcome == "replaced"
    assert lookup.instance_path(Instance.get()).read_bytes() == twin
    # An index made before CRC-32 digests: identical bytes are still a resend.
    Instance.update(digest="0" * 32).execute()
    assert archive.store(twin).outcome == "duplicate"
    assert archive.store(first).outcome == "replaced"
    assert Instance.select().count() == 1
    assert lookup.instance_path(Instance.get()).read_bytes() == first
    assert len(_files(archive.cfg.holding_dir)) == 2
    _counts_are_exact()


def _changed(data: bytes, **changes) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    for k, v in changes.items():
        setattr(ds, k, v)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_replace_policy_swaps_and_holds_the_earlier_file(archive, caplog):
    first = make_instance()
    second = _changed(first, StudyDescription="CORRECTED")
    archive.store(first)
    old_path = lookup.instance_path(Instance.get())
    with caplog.at_level("INFO"):
        assert archive.store(second).outcome == "replaced"
    assert Instance.select().count() == 1
    inst = Instance.get()
    assert lookup.instance_path(inst).read_bytes() == second
    assert not old_path.exists()
    held = _files(archive.cfg.holding_dir)
    assert len(held) == 1 and held[0].read_bytes() == first
    assert any("replaced SOP Instance" in r.message for r in caplog.records)
    _counts_are_exact()


def test_keep_first_and_reject_policies(tmp_path):
    for policy, expect in (("keep-first", "kept-first"), ("reject", DuplicateRejected)):
        a = _archive(tmp_path / policy, DuplicatePolicy=policy)
        try:
            first = make_instance()
            a.store(first)
            second = _changed(first, StudyDescription="OTHER")
            if expect is DuplicateRejected:
                with pytest.raises(DuplicateRejected) as exc:
                    a.store(second)
                assert exc.value.dimse_status & 0xF000 == 0xA000
            else:
                assert a.store(second).outcome == expect
            assert lookup.instance_path(Instance.get()).read_bytes() == first
            assert len(_files(a.cfg.archive_dir)) == 1
        finally:
            a.close()


def test_parallel_senders_of_one_instance(archive):
    data = make_instance()
    outcomes, errors = [], []

    def send():
        try:
            outcomes.append(archive.store(data).outcome)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    _concurrently(*[send] * 10)
    assert not errors
    assert outcomes.count("stored") == 1 and outcomes.count("duplicate") == 9
    assert Instance.select().count() == 1 and len(_files(archive.cfg.archive_dir)) == 1


@pytest.mark.parametrize("db", DATABASES)
def test_group_commit_counts_stay_exact_and_only_the_rejected_record_fails(tmp_path, request, db):
    """Eight senders at once (batches of records in one transaction): the one
    record per batch that policy "reject" refuses fails alone, every other
    image is stored, and every counter equals what the rows say."""
    archive = _archive(tmp_path, DuplicatePolicy="reject", **index_settings(request, db))
    try:
        first = make_instance(sop_uid="1.2.3.99", study_uid="1.2.3.1", series_uid="1.2.3.1.1")
        archive.store(first)
        other = make_instance(sop_uid="1.2.3.99", study_uid="1.2.3.1", series_uid="1.2.3.1.1",
                              pixel_seed=5)  # fmt: skip
        rejected, errors = [], []

        def send(t: int) -> None:
            for i in range(20):
                study = f"1.2.3.{1 + t % 2}"
                data = make_instance(
                    patient_id=f"P{t % 2}",
                    study_uid=study,
                    series_uid=f"{study}.{t % 4}",
                    sop_uid=f"1.2.4.{t}.{i}",
                    instance_number=i,
                    pixel_seed=t * 100 + i,
                )
                try:
                    archive.store(data)
                    if i == 10:
                        archive.store(other)
                except DuplicateRejected:
                    rejected.append(t)
                except Exception as exc:  # noqa: BLE001
                    errors.append(exc)

        _concurrently(*[functools.partial(send, t) for t in range(8)])
        assert not errors and len(rejected) == 8
        assert Instance.select().count() == 161
        assert lookup.stored_digest("1.2.3.99") == storage.digest([first])
        _counts_are_exact()
    finally:
        archive.close()


def test_status_classes(archive):
    with pytest.raises(CannotUnderstand) as e:
        archive.store(b"this is not DICOM at all" * 10)
    assert e.value.dimse_status == 0xC000
    no_uid = _changed(make_instance(), StudyInstanceUID="")
    with pytest.raises(DatasetMismatch) as e:
        archive.store(no_uid)
    assert e.value.dimse_status == 0xA900
    with pytest.raises(DatasetMismatch):
        archive.store(make_instance(), expect_sop_class="1.2.840.10008.5.1.4.1.1.4")
    truncated = make_instance()[:-100]
    with pytest.raises(CannotUnderstand):
        archive.store(truncated)
    assert _files(archive.cfg.archive_dir) == []


def test_disk_full_is_a700_and_leaves_earlier_images(archive, monkeypatch):
    kept = make_instance()
    archive.store(kept)
    real_write = os.write

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.os, "write", full)
    with pytest.raises(OutOfResources) as e:
        archive.store(make_instance())
    assert e.value.dimse_status == 0xA700
    monkeypatch.setattr(storage.os, "write", real_write)
    files = _files(archive.cfg.archive_dir)
    assert len(files) == 1 and files[0].read_bytes() == kept
    assert Instance.select().count() == 1


def test_folder_sync_failure_refuses_a_new_folder_and_leaves_a_recorded_image_unknown(
    archive, monkeypatch
):
    """A new study folder that cannot be made durable refuses the image (A700,
    nothing kept). The rename's folder fsync runs while the index records the
    image, alone or in a group commit; when it fails the row is committed, so
    the sender gets A701, file and row stay, and its resend succeeds."""
    kept = make_instance(study_uid="1.2.3")
    archive.store(kept)

    def broken(path):
        raise OSError(errno.EIO, "Input/output error")

    with monkeypatch.context() as m:
        m.setattr(storage, "fsync_dir", broken)
        with pytest.raises(OutOfResources) as e:
            archive.store(make_instance())
        assert e.value.dimse_status == 0xA700
        assert [p.read_bytes() for p in _files(archive.cfg.archive_dir)] == [kept]
        sent = [make_instance(study_uid="1.2.3") for _ in range(9)]
        errors = []

        def send(data: bytes) -> None:
            try:
                archive.store(data)
            except OutcomeUnknown as exc:
                errors.append(exc)

        send(sent[0])
        _concurrently(*[functools.partial(send, d) for d in sent[1:]])
    assert len(errors) == 9 and all(e.dimse_status == 0xA701 for e in errors)
    assert sorted(p.read_bytes() for p in _files(archive.cfg.archive_dir)) == sorted([kept, *sent])
    assert Instance.select().count() == 10
    assert archive.store(sent[0]).outcome == "duplicate"
    _counts_are_exact()


def test_index_failure_is_a701_and_removes_the_file(archive, monkeypatch):
    def broken(*a, **k):
        raise OperationalError("database is locked")

    monkeypatch.setattr(idx, "record_instance", broken)
    with pytest.raises(DatabaseError) as e:
        archive.store(make_instance())
    assert e.value.dimse_status == 0xA701
    assert _files(archive.cfg.archive_dir) == []


def test_native_format_stores_the_data_set_alone(tmp_path):
    a = _archive(tmp_path, StorageFormat="Native")
    try:
        data = make_instance()
        a.store(data)
        inst = Instance.get()
        stored = lookup.instance_path(inst).read_bytes()
        assert inst.native and stored[128:132] != b"DICM" and data.endswith(stored)
        assert a.read_part10(inst)[128:132] == b"DICM"
        assert (
            pydicom.dcmread(io.BytesIO(a.read_part10(inst))).SOPInstanceUID == inst.sop_instance_uid
        )
    finally:
        a.close()


def test_per_ae_archivedir(tmp_path):
    ini = write_config(tmp_path / "box")
    other = tmp_path / "mr-archive"
    cli(ini, "ae", "add", "MR1", "--archivedir", str(other))
    a = Archive(load(ini))
    try:
        a.store(make_instance(), calling_ae="MR1")
        a.store(make_instance(), calling_ae="CT9")
        assert len(_files(other)) == 1
        assert len(_files(a.cfg.archive_dir)) == 1
    finally:
        a.close()


def test_startup_check_removes_temp_files_and_adopts_orphans(tmp_path):
    a = _archive(tmp_path)
    study = make_study(n_series=1, per_series=3)
    a.store(study[0])
    folder = lookup.instance_path(Instance.get()).parent
    # A crash left: a half-written temp file, and a complete file never indexed.
    (folder / "deadbeef.dcm.part").write_bytes(study[1][:500])
    orphan = folder / "0123456789abcdef.dcm"
    orphan.write_bytes(study[2])
    a.close()
    b = Archive(a.cfg)
    try:
        report = recovery.startup_check(b.cfg)
        assert report.parts_removed == 1 and report.indexed == 1
        assert not (folder / "deadbeef.dcm.part").exists()
        assert Instance.select().count() == 2
        _counts_are_exact()
    finally:
        b.close()


def test_a_power_cut_losing_the_index_tail_loses_no_acknowledged_image(tmp_path, monkeypatch):
    """Store records commit without waiting for the disk, so a power cut may
    lose them; the folder marks, which wait, bring every image back.

    The cut is simulated on the real files: the database as it was on disk
    right after the folder's mark (a waiting commit), with every later
    record's commit lost, is put back under a fresh archive."""
    import shutil

    a = _archive(tmp_path)
    db_file = Path(a.cfg.database_url[len("sqlite:///") :])
    synced = tmp_path / "synced"
    mark = dirty.mark_dirty

    def mark_then_snapshot(root: str, folder: str) -> None:
        mark(root, folder)
        synced.mkdir(exist_ok=True)
        for suffix in ("", "-wal"):
            shutil.copyfile(f"{db_file}{suffix}", synced / f"db{suffix}")

    monkeypatch.setattr(dirty, "mark_dirty", mark_then_snapshot)
    sent = make_study(n_series=2, per_series=3)
    stored = {a.store(d).sop_instance_uid: d for d in sent}
    assert Instance.select().count() == 6
    a.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    for suffix in ("", "-wal"):
        shutil.copyfile(synced / f"db{suffix}", f"{db_file}{suffix}")
    b = Archive(a.cfg)
    try:
        assert Instance.select().count() == 0  # every record's commit was lost
        report = recovery.startup_check(b.cfg)
        assert report.indexed == 6 and not report.missing_files
        for inst in Instance.select():
            assert lookup.instance_path(inst).read_bytes() == stored[inst.sop_instance_uid]
        _counts_are_exact()
    finally:
        b.close()


def test_a_folder_stays_marked_while_another_process_wrote_it(tmp_path, monkeypatch):
    """Each process clears only its own marks: the daemon going quiet on a
    study must not unmark a folder whose worker's rows may not be durable."""
    import subprocess
    import sys

    from pacsbox import archive as archive_mod

    ini = write_config(tmp_path / "box")
    a = Archive(load(ini))
    try:
        study = make_study(per_series=2)
        a.store(study[0])
        folder = lookup.instance_path(Instance.get()).parent
        other = tmp_path / "other.dcm"
        other.write_bytes(study[1])
        # Another process stores into the same folder and dies without a checkpoint.
        code = (
            "import os, sys; from pacsbox.archive import Archive; from pacsbox.config import load; "
            "a = Archive(load(sys.argv[1])); a.store(open(sys.argv[2], 'rb').read()); os._exit(0)"
        )
        subprocess.run(
            [sys.executable, "-c", code, str(ini), str(other)],
            check=True,
            cwd=Path(__file__).resolve().parents[2],
            timeout=60,
        )
        monkeypatch.setattr(archive_mod, "CHECKPOINT_QUIET_SECONDS", 0.0)
        assert a.checkpoint() == 1
        root = str(a.cfg.archive_dir)
        assert dirty.dirty_folders() == [(root, f"{folder.parent.name}/{folder.name}")]
    finally:
        a.close()


def test_a_replace_is_durable_before_the_earlier_file_moves(archive, monkeypatch):
    """The one record that waits for the disk: a lost replace would leave
    the index naming a file already moved to holding."""
    events: list[str] = []
    durable, hold = commit.made_durable, storage.hold

    def made_durable() -> None:
        events.append("index durable")
        durable()

    def held(*args, **kw):
        events.append("earlier file moved")
        return hold(*args, **kw)

    monkeypatch.setattr(commit, "made_durable", made_durable)
    monkeypatch.setattr(storage, "hold", held)
    first = make_instance()
    archive.store(first)
    assert events == []
    assert archive.store(_changed(first, StudyDescription="CORRECTED")).outcome == "replaced"
    assert events == ["index durable", "earlier file moved"]


def _rename_undone(tmp_path: Path):
    """Two images stored, the archive closed, and the second one's rename undone
    (it never reached the disk): its file is back under its temp name."""
    a = _archive(tmp_path)
    study = make_study(per_series=2)
    a.store(study[0])
    a.store(study[1])
    inst = Instance.select().order_by(Instance.id.desc()).get()
    final = lookup.instance_path(inst)
    a.close()
    part = final.with_name(storage.stem_of(final.name) + storage.PART_SUFFIX)
    final.rename(part)
    return a.cfg, study, inst, final, part


def test_startup_check_completes_a_rename_the_crash_undid(tmp_path):
    """A row commits while its file and folder fsyncs still run: after a
    crash the row may name a file that is still under its temp name."""
    cfg, study, _, final, _ = _rename_undone(tmp_path)
    b = Archive(cfg)
    try:
        report = recovery.startup_check(b.cfg)
        assert report.parts_restored == 1 and report.parts_removed == 0
        assert not report.missing_files and report.interrupted_rows == 0
        assert final.read_bytes() == study[1] and Instance.select().count() == 2
    finally:
        b.close()


def test_startup_check_never_puts_back_a_temp_file_that_differs_from_its_row(tmp_path):
    """A torn temp file (the crash cut its write short) under an indexed name is
    not renamed into place: it is removed, and so is the row of that store."""
    cfg, study, inst, final, part = _rename_undone(tmp_path)
    part.write_bytes(study[1][: len(study[1]) // 2])
    b = Archive(cfg)
    try:
        report = recovery.startup_check(b.cfg)
        assert report.parts_restored == 0 and report.parts_removed == 1
        assert report.interrupted_rows == 1
        assert not part.exists() and not final.exists()
        assert lookup.find_instance(inst.sop_instance_uid) is None
        assert Instance.select().count() == 1
        _counts_are_exact()
    finally:
        b.close()


def test_startup_check_removes_files_a_crash_cut_short_with_or_without_their_row(tmp_path):
    """A store's file gets its final name before its fsync, which runs while
    the index records it: a power cut in between can leave that name on torn
    bytes, with its row or (the row's commit lost too) without. The CRC in
    the name tells; neither was acknowledged, both go, the rest stays."""
    a = _archive(tmp_path)
    study = make_study(per_series=4)
    for data in study:
        a.store(data)
    rows = list(Instance.select().order_by(Instance.id))
    with_row, without_row = lookup.instance_path(rows[2]), lookup.instance_path(rows[3])
    idx.delete_instance(rows[3])  # its record's commit was lost
    a.close()
    with_row.write_bytes(study[2][:1000])
    without_row.write_bytes(study[3][:-100] + b"\0" * 100)  # the same size, its tail never written
    b = Archive(a.cfg)
    try:
        report = recovery.startup_check(b.cfg)
        assert report.torn_removed == 2 and report.interrupted_rows == 1
        assert report.indexed == 0 and not report.missing_files
        assert not with_row.exists() and not without_row.exists()
        assert sorted(i.sop_instance_uid for i in Instance.select()) == sorted(
            r.sop_instance_uid for r in rows[:2]
        )
        for inst in Instance.select():
            assert lookup.instance_path(inst).read_bytes() in study[:2]
        _counts_are_exact()
    finally:
        b.close()


def test_a_store_returns_only_once_its_file_and_folder_are_fsynced(archive, monkeypatch):
    """The fsyncs run while the index records, but never after the answer."""
    synced: list[str] = []
    fsync = os.fsync

    def watched(fd: int) -> None:
        fsync(fd)
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))

    monkeypatch.setattr(os, "fsync", watched)
    archive.store(make_instance())
    (path,) = _files(archive.cfg.archive_dir)
    assert str(path) in synced and str(path.parent) in synced


def test_startup_check_removes_the_row_of_a_store_whose_file_never_reached_the_disk(tmp_path):
    a = _archive(tmp_path)
    study = make_study(per_series=3)
    for data in study:
        a.store(data)
    lost = Instance.select().order_by(Instance.id.desc()).get()
    a.close()
    lookup.instance_path(lost).unlink()  # neither its name nor its temp name survived
    b = Archive(a.cfg)
    try:
        report = recovery.startup_check(b.cfg)
        assert report.interrupted_rows == 1 and not report.missing_files
        assert Instance.select().count() == 2
        assert lookup.find_instance(lost.sop_instance_uid) is None
        _counts_are_exact()
        # The sender, never answered, sends it again: it is stored.
        assert b.store(study[2]).outcome == "stored"
    finally:
        b.close()


def test_rebuild_index_after_losing_the_database(tmp_path):
    ini = write_config(tmp_path / "box")
    a = Archive(load(ini))
    sops = {a.store(d).sop_instance_uid for d in make_study(n_series=2, per_series=4)}
    sops |= {a.store(d).sop_instance_uid for d in make_study(patient_id="P2", per_series=3)}
    db_file = Path(a.cfg.database_url[len("sqlite:///") :])
    torn = Instance.select().order_by(Instance.id.desc()).get()
    torn_path = lookup.instance_path(torn)
    a.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(db_file) + suffix).unlink(missing_ok=True)
    # One file's tail never reached the disk: it still parses, but its name's CRC tells.
    data = torn_path.read_bytes()
    torn_path.write_bytes(data[:-64] + b"\0" * 64)
    r = cli(ini, "rebuild-index")
    assert "10 indexed" in r.stdout and "1 unreadable" in r.stdout
    b = Archive(load(ini))
    try:
        assert {i.sop_instance_uid for i in Instance.select()} == sops - {torn.sop_instance_uid}
        _counts_are_exact()
    finally:
        b.close()
    r = cli(ini, "check", check=False)
    assert r.returncode == 1 and f"{torn_path} (torn:" in r.stderr


def test_check_reports_without_changing(tmp_path):
    ini = write_config(tmp_path / "box")
    a = Archive(load(ini))
    a.store(make_instance())
    a.store(make_instance())
    victim = lookup.instance_path(Instance.select().first())
    a.close()
    victim.unlink()
    r = cli(ini, "check", check=False)
    assert r.returncode == 1 and "missing file for SOP Instance" in r.stdout
    b = Archive(load(ini))
    try:
        assert Instance.select().count() == 2  # check changed nothing
    finally:
        b.close()


def test_instances_of_a_series_have_one_index_and_an_old_database_loses_the_second(tmp_path):
    """Each stored image writes one index page less: series lookups use
    (series_id, instance_number), and a database made before migration 11
    has its index on series_id alone dropped at start-up."""
    from pacsbox.db.migrations import migrate
    from pacsbox.db.models import SchemaVersion, database

    def instance_indexes() -> set[str]:
        return {r[1] for r in database.execute_sql("PRAGMA index_list(instance)").fetchall()}

    ini = write_config(tmp_path / "box")
    a = Archive(load(ini))
    try:
        a.store(make_instance())
        assert "instance_series_id" not in instance_indexes()
        plan = " ".join(
            str(r)
            for r in database.execute_sql(
                "EXPLAIN QUERY PLAN SELECT id FROM instance WHERE series_id = ?", (1,)
            ).fetchall()
        )
        assert "instance_series_number" in plan
        # A database from before: the old index, schema version 10.
        database.execute_sql('CREATE INDEX "instance_series_id" ON "instance" ("series_id")')
        SchemaVersion.delete().where(SchemaVersion.version >= 11).execute()
        assert "instance_series_id" in instance_indexes()
        assert migrate(database.obj)[:2] == [11, 12]
        assert "instance_series_id" not in instance_indexes()
        assert a.store(make_instance()).outcome == "stored"
    finally:
        a.close()
