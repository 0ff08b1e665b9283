"""Disk watermarks and purge (DATA-4) on real stored studies.

Studies go in through the real write path (``Archive.store``) as pydicom-made
files; the disk usage is injected: a fake disk whose "used" figure is a fixed
base plus the real bytes under the archive folder, so a purge that deletes
files really lowers the usage. A user checks: the oldest received studies go
first and only until the low-water mark; protected, recent and must-keep
studies stay; a crash between the phases leaves nothing inconsistent once
``resume()`` ran; C-STORE answers A700 when nothing can be purged; and
``pacsbox purge --dry-run`` says what would go and why.
"""

from __future__ import annotations

import datetime as dt
import io
import os
from pathlib import Path

import pytest
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pacsbox import attachments, config, recovery
from pacsbox.archive import Archive
from pacsbox.db import lookup
from pacsbox.db.models import Instance, Patient, Series, Study, utcnow
from pacsbox.db.notes_models import StudyNote
from pacsbox.errors import OutOfResources, PacsboxError
from pacsbox.notify import Heartbeats
from pacsbox.watermark.command import purge_command, purge_listing
from pacsbox.watermark.monitor import Watermark
from tests.helpers import poll, write_config

INSTANCES_PER_STUDY = 3
ROWS = 48  # 48*48*2 bytes of pixels: ~4.6 KB per file


class Crash(BaseException):
    """Plays a power cut: nothing in pacsbox catches it."""


class FakeDisk:
    """(total, used, free): used = base + the real bytes of every file under ``root``."""

    def __init__(self, root: Path, total: int = 0, base: int = 0) -> None:
        self.root = root
        self.total = total
        self.base = base

    def archive_bytes(self) -> int:
        n = 0
        for dirpath, _, files in os.walk(self.root):
            for f in files:
                n += os.path.getsize(os.path.join(dirpath, f))
        return n

    def set_percent(self, percent: float) -> None:
        self.base = int(self.total * percent / 100) - self.archive_bytes()

    def __call__(self, path: Path) -> tuple[int, int, int]:
        used = self.base + self.archive_bytes()
        return self.total, used, self.total - used

    def percent(self) -> float:
        _, used, free = self(self.root)
        return 100.0 * used / (used + free)


def make_dataset(study_uid: str, series_uid: str, n: int, patient: str) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientID = patient
    ds.PatientName = f"Purge^{patient}"
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.SeriesNumber = 1
    ds.Modality = "CT"
    ds.InstanceNumber = n + 1
    ds.Rows = ds.Columns = ROWS
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = os.urandom(ROWS * ROWS * 2)
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture
def cfg(tmp_path):
    ini = write_config(
        tmp_path / "box",
        SyncWrites="no",
        HighWaterMark=90,
        LowWaterMark=80,
        PurgeMinAgeHours=24,
        WatermarkInterval=5,
    )
    return config.load(ini)


@pytest.fixture
def archive(cfg):
    arc = Archive(cfg)
    yield arc
    arc.close()


@pytest.fixture
def disk(cfg):
    return FakeDisk(cfg.archive_dir)


def store_study(
    archive: Archive,
    patient: str = "P1",
    instances: int = INSTANCES_PER_STUDY,
    study_uid: str | None = None,
) -> str:
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    for n in range(instances):
        archive.store(make_dataset(study_uid, series_uid, n, patient), calling_ae="MODALITY")
    return study_uid


def set_received(study_uid: str, hours_ago: float) -> None:
    Study.update(received=utcnow() - dt.timedelta(hours=hours_ago)).where(
        Study.study_instance_uid == study_uid
    ).execute()


def study_dir(study_uid: str) -> Path:
    s = Study.get(Study.study_instance_uid == study_uid)
    return Path(s.storage_root) / s.folder


def assert_consistent(archive: Archive) -> None:
    """No row without its file (outside a marked study), no file without a row, counters exact."""
    for inst in Instance.select():
        study = inst.series.study
        if study.purge_state == "":
            assert lookup.instance_path(inst).is_file(), (
                f"row without file: {inst.sop_instance_uid}"
            )
    report = recovery.full_check(archive.cfg, repair=False)
    assert report.missing_files == [] and report.indexed == 0 and report.held == 0, report.summary()
    for series in Series.select():
        assert series.num_instances == Instance.select().where(Instance.series == series).count()
        assert series.num_instances > 0
    for study in Study.select():
        insts = Instance.select().join(Series).where(Series.study == study)
        assert study.num_instances == insts.count()
        assert study.size_bytes == sum(i.file_size for i in insts)
        assert study.num_series == Series.select().where(Series.study == study).count() > 0
    for patient in Patient.select():
        studies = Study.select().where(Study.patient == patient)
        assert patient.num_studies == studies.count() > 0
        assert (
            patient.num_series
            == Series.select().join(Study).where(Study.patient == patient).count()
        )
        assert (
            patient.num_instances
            == Instance.select().join(Series).join(Study).where(Study.patient == patient).count()
        )


def make_box(archive, cfg, disk, ages_hours, patients=None, **kw):
    """Studies received ``ages_hours`` ago (in that order); a disk of ~20 studies' size."""
    uids = []
    for n, age in enumerate(ages_hours):
        uid = store_study(archive, patient=(patients[n] if patients else f"P{n % 2}"))
        set_received(uid, age)
        uids.append(uid)
    per_study = disk.archive_bytes() // len(uids)
    disk.total = per_study * 20
    journal: list[tuple[str, str]] = []
    wm = Watermark(
        cfg, archive, journal=lambda e, d: journal.append((e, d)), usage=disk, reserve_bytes=0, **kw
    )
    return uids, wm, journal


# -- order, amount and the journal --------------------------------------------------


def test_purge_removes_oldest_received_until_under_low_water(archive, cfg, disk):
    # Stored in one order, received in another: age decides, not insertion.
    ages = [30, 100, 50, 200, 75, 40]
    uids, wm, journal = make_box(archive, cfg, disk, ages)
    disk.set_percent(94)  # 14% over low-water: 3 studies' worth (each ~5% of the disk)
    by_age = [u for _, u in sorted(zip(ages, uids, strict=True), reverse=True)]

    assert [s.study_instance_uid for s, _ in wm.plan()] == by_age[:3]
    report = wm.purge()

    assert [p.study_uid for p in report.purged] == by_age[:3]
    assert disk.percent() < 80
    assert {s.study_instance_uid for s in Study.select()} == set(by_age[3:])
    assert not report.still_full and report.errors == []
    assert [e for e, _ in journal] == ["purge"] * 3
    for (_, line), uid in zip(journal, by_age[:3], strict=True):
        assert uid in line and "received" in line and "KB" in line and "high-water" in line
    assert_consistent(archive)
    # Purged folders are gone from the disk, kept ones intact.
    for uid in by_age[3:]:
        assert len(list(study_dir(uid).iterdir())) == INSTANCES_PER_STUDY
    assert wm.state()["last_purge"]["studies"] == 3


def test_a_purged_study_takes_its_notes_and_their_files_along(archive, cfg, disk):
    uids, wm, _ = make_box(archive, cfg, disk, [30, 100, 50, 200, 75, 40])
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
    for uid in uids:
        attachments.add_note(cfg, uid, "clerk", "a note", upload=("scan.png", png))
    disk.set_percent(94)
    purged = {p.study_uid for p in wm.purge().purged}
    assert len(purged) == 3
    kept = {n.study_instance_uid for n in StudyNote.select()}
    assert kept == set(uids) - purged
    files = {p.name for p in (cfg.data_dir / "attachments").iterdir()}
    assert files == {n.stored for n in StudyNote.select()}


def test_under_high_water_nothing_is_purged(archive, cfg, disk):
    uids, wm, _ = make_box(archive, cfg, disk, [100, 200, 300])
    disk.set_percent(89)
    assert wm.plan() == []
    wm.check(cfg.archive_dir)
    assert wm.purge().purged == []
    assert Study.select().count() == 3
    assert wm.state()["storage_full"] is False


# -- protection rules ----------------------------------------------------------------


def test_protected_recent_and_must_keep_studies_stay(archive, cfg, disk):
    ages = [500, 400, 300, 200, 2]  # the last one arrived 2 h ago (< PurgeMinAgeHours)
    uids, wm, _ = make_box(archive, cfg, disk, ages)
    protected, routed, free1, free2, recent = uids
    Study.update(protected=True).where(Study.study_instance_uid == protected).execute()
    wm.must_keep = lambda s: (
        "not yet forwarded to ROUTE1" if s.study_instance_uid == routed else None
    )

    assert [s.study_instance_uid for s, _ in wm.candidates(cfg.archive_dir)] == [free1, free2]
    kept = {s.study_instance_uid: why for s, why in wm.kept(cfg.archive_dir)}
    assert kept == {
        protected: "protected",
        routed: "not yet forwarded to ROUTE1",
        recent: "received within the last 24 h",
    }

    disk.total *= 3  # each study ~1.7% of the disk
    disk.set_percent(99)  # more than every purgeable study can free
    report = wm.purge()
    assert [p.study_uid for p in report.purged] == [free1, free2]
    assert {s.study_instance_uid for s in Study.select()} == {protected, routed, recent}
    assert report.still_full
    assert_consistent(archive)

    # Nothing purgeable left: the write path refuses (A700) and the state says so.
    with pytest.raises(OutOfResources) as exc:
        wm.check(cfg.archive_dir)
    assert exc.value.dimse_status == 0xA700
    assert str(exc.value) == "archive full: nothing can be purged"
    assert wm.state()["storage_full"] is True
    archive.space_check = wm.check
    with pytest.raises(OutOfResources):
        store_study(archive, patient="NEW", instances=1)
    assert Patient.select().where(Patient.patient_id == "NEW").count() == 0

    # Freed by hand (the protected study is unprotected): accepted again.
    Study.update(protected=False).where(Study.study_instance_uid == protected).execute()
    wm._invalidate()
    wm.check(cfg.archive_dir)
    assert wm.state()["storage_full"] is False


def test_truly_full_disk_refuses_even_with_purgeable_studies(archive, cfg, disk):
    uids, wm, _ = make_box(archive, cfg, disk, [100, 200])
    wm.reserve_bytes = 10**12  # capped at 2% of the disk
    disk.set_percent(99.5)
    with pytest.raises(OutOfResources, match="free"):
        wm.check(cfg.archive_dir)
    assert wm._wake.is_set()  # the monitor was asked to purge now


# -- crashes between the phases ---------------------------------------------------------


def restart(archive: Archive, cfg, disk) -> tuple[Archive, Watermark]:
    """A new process: the archive reopened, a fresh Watermark."""
    archive.close()
    arc = Archive(cfg)
    return arc, Watermark(cfg, arc, usage=disk, reserve_bytes=0)


def test_crash_after_marking_then_resume(archive, cfg, disk, monkeypatch):
    uids, wm, _ = make_box(archive, cfg, disk, [300, 200, 100, 50])
    disk.set_percent(92)  # 12% over low-water: three studies would go
    folder = study_dir(uids[0])

    def crash(self, study):
        raise Crash()

    monkeypatch.setattr(Watermark, "_delete_files", crash)
    with pytest.raises(Crash):
        wm.purge()
    monkeypatch.undo()
    marked = Study.get(Study.study_instance_uid == uids[0])
    assert marked.purge_state == "purging"
    assert len(list(folder.iterdir())) == INSTANCES_PER_STUDY  # no file touched yet

    archive, wm2 = restart(archive, cfg, disk)
    try:
        report = wm2.resume()
        assert report.resumed == 1 and [p.study_uid for p in report.purged] == [uids[0]]
        assert not folder.exists()
        assert Study.select().where(Study.purge_state != "").count() == 0
        assert_consistent(archive)
        # The other studies were not touched by resume().
        assert {s.study_instance_uid for s in Study.select()} == set(uids[1:])
    finally:
        archive.close()


@pytest.mark.parametrize("how", ["some files deleted", "all files deleted"])
def test_crash_after_deleting_files_then_resume(archive, cfg, disk, monkeypatch, how):
    uids, wm, _ = make_box(archive, cfg, disk, [300, 200, 100, 50, 40, 30])
    disk.set_percent(97)
    folder = study_dir(uids[0])
    real_delete = Watermark._delete_files

    def crash(self, study):
        if how == "all files deleted":
            real_delete(self, study)
        else:
            victim = sorted(folder.iterdir())[0]
            victim.unlink()
        raise Crash()

    monkeypatch.setattr(Watermark, "_delete_files", crash)
    with pytest.raises(Crash):
        wm.purge()
    monkeypatch.undo()
    left = INSTANCES_PER_STUDY - (1 if how == "some files deleted" else INSTANCES_PER_STUDY)
    assert len(list(folder.iterdir())) == left
    # Rows point to missing files only inside the marked study.
    assert Study.get(Study.study_instance_uid == uids[0]).purge_state == "purging"
    for uid in uids[1:]:
        assert len(list(study_dir(uid).iterdir())) == INSTANCES_PER_STUDY

    archive, wm2 = restart(archive, cfg, disk)
    try:
        wm2.resume()
        assert not folder.exists()
        assert_consistent(archive)
        assert {s.study_instance_uid for s in Study.select()} == set(uids[1:])
        # And the purge carries on normally afterwards (97% - 5% is still above 90%).
        report = wm2.purge()
        assert [p.study_uid for p in report.purged] == uids[1:4]
        assert disk.percent() < 80
        assert_consistent(archive)
    finally:
        archive.close()


def test_crash_after_deleting_rows_is_complete(archive, cfg, disk, monkeypatch):
    uids, wm, _ = make_box(archive, cfg, disk, [300, 200, 100, 50])
    disk.set_percent(92)
    real_rows = Watermark._delete_rows

    def crash(self, study, ids):
        real_rows(self, study, ids)
        raise Crash()

    monkeypatch.setattr(Watermark, "_delete_rows", crash)
    with pytest.raises(Crash):
        wm.purge()
    monkeypatch.undo()
    archive, wm2 = restart(archive, cfg, disk)
    try:
        assert wm2.resume().resumed == 0
        assert_consistent(archive)
        assert Study.select().where(Study.study_instance_uid == uids[0]).count() == 0
    finally:
        archive.close()


def test_files_of_an_unmarked_study_are_never_deleted(archive, cfg, disk):
    uids, wm, _ = make_box(archive, cfg, disk, [300, 200])
    study = Study.get(Study.study_instance_uid == uids[0])
    with pytest.raises(PacsboxError, match="not marked"):
        wm._delete_files(study)
    assert len(list(study_dir(uids[0]).iterdir())) == INSTANCES_PER_STUDY
    assert wm.resume().purged == []
    assert Study.select().count() == 2


def test_instance_arriving_during_purge_is_kept(archive, cfg, disk, monkeypatch):
    """A store into the study between phase 2 and 3 keeps its row and its file."""
    uids, wm, _ = make_box(archive, cfg, disk, [300, 200, 100, 50])
    disk.set_percent(88)
    wm.high = 87  # one study's worth over low-water would be 8%: purge one study
    wm.low = 84
    real_rows = Watermark._delete_rows
    late: list[str] = []

    def late_arrival(self, study, ids):
        if not late:
            late.append(study.study_instance_uid)
            series = generate_uid()
            archive.store(
                make_dataset(study.study_instance_uid, series, 9, "P0"), calling_ae="MODALITY"
            )
        return real_rows(self, study, ids)

    monkeypatch.setattr(Watermark, "_delete_rows", late_arrival)
    report = wm.purge()
    assert late == [uids[0]]
    survivor = Study.get(Study.study_instance_uid == uids[0])
    assert survivor.purge_state == "" and survivor.num_instances == 1
    assert report.purged[0].instances == INSTANCES_PER_STUDY
    assert_consistent(archive)


# -- the monitor thread ---------------------------------------------------------------


def test_monitor_thread_purges_when_a_store_finds_the_disk_high(archive, cfg, disk):
    uids, wm, journal = make_box(archive, cfg, disk, [300, 200, 100, 50])
    beats = Heartbeats()
    wm.heartbeats = beats
    disk.set_percent(50)
    thread = wm.start()  # as the daemon runs it: a worker with stop()
    try:
        poll(lambda: beats.age("watermark") is not None, 5, what="first heartbeat")
        disk.set_percent(92)
        wm._invalidate()
        wm.check(cfg.archive_dir)  # above high-water, purgeable: accepted, monitor woken
        poll(lambda: len(journal) == 3, 10, what="the monitor's purge")
        assert disk.percent() < 80
        assert beats.stale() == []
    finally:
        wm.stop()
    assert not thread.is_alive()
    assert "watermark" not in beats.stale()


def test_monitor_expires_the_holding_area_without_a_restart(archive, cfg, disk):
    """HoldingDays is kept by the running box, not only by the start-up check."""
    _, wm, _ = make_box(archive, cfg, disk, [1])
    disk.set_percent(10)
    today = dt.date.today()
    old = cfg.holding_dir / (today - dt.timedelta(days=cfg.HoldingDays + 1)).strftime("%Y%m%d")
    recent = cfg.holding_dir / (today - dt.timedelta(days=cfg.HoldingDays - 1)).strftime("%Y%m%d")
    for day in (old, recent):
        day.mkdir(parents=True)
        (day / "replaced.dcm").write_bytes(b"DICM")
    wm.start()
    try:
        poll(lambda: not old.exists(), 10, what="the monitor to expire the old holding folder")
        assert (recent / "replaced.dcm").exists()
    finally:
        wm.stop()


# -- pacsbox purge [--dry-run] ---------------------------------------------------------------


def test_dry_run_lists_what_would_go_and_why_others_stay(archive, cfg, disk):
    ages = [500, 400, 300, 200, 100, 3, 1]
    uids, wm, _ = make_box(archive, cfg, disk, ages)
    Study.update(protected=True).where(Study.study_instance_uid == uids[0]).execute()
    disk.set_percent(91)  # 11%: three studies of ~5% each
    out = io.StringIO()
    rc = purge_listing(wm, True, out)
    text = out.getvalue()
    assert rc == 0, text
    lines = text.splitlines()
    would = [ln for ln in lines if "would purge" in ln]
    assert [ln.split()[2] for ln in would] == uids[1:4]
    assert all("older than 24 h" in ln and "received" in ln for ln in would)
    assert any(uids[0] in ln and "keep" in ln and "protected" in ln for ln in lines)
    assert any("2 studies received within the last 24 h" in ln for ln in lines)
    assert "91.0% used" in text and "high-water 90%" in text
    # A dry run changes nothing.
    assert Study.select().count() == len(uids)
    assert Study.select().where(Study.purge_state != "").count() == 0

    out = io.StringIO()
    assert purge_listing(wm, False, out) == 0
    assert sum("purged study" in ln for ln in out.getvalue().splitlines()) == 3
    assert {s.study_instance_uid for s in Study.select()} == {uids[0], *uids[4:]}


def test_purge_command_with_real_disk_usage(tmp_path):
    """psutil's real figures: a 1% high-water mark makes any disk 'full'; dry run only."""
    ini = write_config(tmp_path / "box", SyncWrites="no", HighWaterMark=2, LowWaterMark=1)
    cfg = config.load(ini)
    arc = Archive(cfg)
    old = store_study(arc, "OLD")
    set_received(old, 48)
    recent = store_study(arc, "RECENT")
    arc.close()
    out = io.StringIO()
    rc = purge_command(cfg, True, out)
    text = out.getvalue()
    assert "would purge" in text and old in text
    assert "1 study received within the last 24 h" in text
    assert "not enough can be purged" in text
    assert "would stay above the high-water mark: C-STORE answers A700" in text
    assert rc == 1
    arc = Archive(cfg)
    try:
        assert Study.select().count() == 2 and recent
    finally:
        arc.close()


def test_a_study_a_queue_job_has_still_to_send_is_not_purged(archive, cfg, disk):
    """The purge guard of issue 17: a forward that has not delivered (queued, retrying
    or failed) keeps its study; once it is done or cancelled, the study may go."""
    from pacsbox.db import queue

    uids, wm, _ = make_box(archive, cfg, disk, [500, 400, 300])
    forwarded, by_series, free = uids
    series = Study.get(Study.study_instance_uid == by_series).series.get().series_instance_uid
    first = queue.submit("forward", "WS", {"studies": [forwarded]})
    second = queue.submit("forward", "WS", {"series": [series]})
    queue.claim("test", utcnow(), 2)
    queue.refused(first, "refused (status A700)", utcnow())  # retrying, then:
    for hours in (1, 2, 3):  # each try after the last one's backoff
        later = utcnow() + dt.timedelta(hours=hours)
        assert queue.claim("test", later, 2, only=first) is not None
        queue.refused(first, "refused (status A700)", later)
    assert queue.get(first).state == "failed"
    kept = {s.study_instance_uid: why for s, why in wm.kept(cfg.archive_dir)}
    assert kept == {
        forwarded: f"queue job {first} (forward to WS, failed) has still to send it",
        by_series: f"queue job {second} (forward to WS, queued) has still to send it",
    }
    assert [s.study_instance_uid for s, _ in wm.candidates(cfg.archive_dir)] == [free]
    disk.set_percent(95)
    out = io.StringIO()  # pacsbox purge --dry-run says which rule keeps which study
    purge_listing(wm, True, out)
    assert any(forwarded in ln and "keep" in ln and f"queue job {first}" in ln
               for ln in out.getvalue().splitlines()), out.getvalue()  # fmt: skip
    queue.cancel(first)
    queue.claim("test", utcnow(), 2, only=second)
    queue.succeed(second, "2 delivered")
    wm._pending = None  # the guard's cache (2 s) is not what this test waits for
    assert [s.study_instance_uid for s, _ in wm.candidates(cfg.archive_dir)] == uids


# -- storage commitment (issue 17 item 5) ---------------------------------------------------


def ask_commitment(study_uid: str, destination: str, forward_job: int) -> tuple[int, list[str]]:
    """A commit job for every instance of the study, as a delivered forward queues it."""
    from pacsbox.db import commitments

    refs = [
        (i.sop_class_uid, i.sop_instance_uid)
        for i in Instance.select().join(Series).join(Study).where(
            Study.study_instance_uid == study_uid)
    ]  # fmt: skip
    job = commitments.submit_after(forward_job, destination, refs, "test")
    return job, [uid for _, uid in refs]


def answer_commitment(job: int, by: str, committed: list[str], failed: list[str] = ()) -> None:
    from pacsbox.db import commitments

    transaction = generate_uid()
    commitments.asked(job, transaction, [*committed, *failed])
    commitments.answer(transaction, by, committed, {uid: 0x0110 for uid in failed})


def test_a_pending_commitment_keeps_its_study_until_answered_or_cancelled(archive, cfg, disk):
    from pacsbox.db import queue

    uids, wm, _ = make_box(archive, cfg, disk, [500, 400, 300])
    asked, cancelled, free = uids
    job, sops = ask_commitment(asked, "ORTHANC", 1)
    other, _ = ask_commitment(cancelled, "BACKUP", 2)
    queue.cancel(other)  # a cancelled request holds nothing back
    kept = {s.study_instance_uid: why for s, why in wm.kept(cfg.archive_dir)}
    assert kept == {asked: "commitment pending from ORTHANC"}
    assert [s.study_instance_uid for s, _ in wm.candidates(cfg.archive_dir)] == [cancelled, free]
    disk.set_percent(99)
    out = io.StringIO()  # pacsbox purge --dry-run says which rule keeps which study
    purge_listing(wm, True, out)
    assert any(asked in ln and "keep" in ln and "commitment pending from ORTHANC" in ln
               for ln in out.getvalue().splitlines()), out.getvalue()  # fmt: skip
    answer_commitment(job, "ORTHANC", sops[:2], sops[2:])  # answered, one failed: not pending
    wm._committing = None  # the guard's cache (2 s) is not what this test waits for
    assert [s.study_instance_uid for s, _ in wm.candidates(cfg.archive_dir)] == uids


def test_purge_requires_commitment_keeps_what_no_destination_committed_whole(tmp_path):
    """PurgeRequiresCommitment = yes: a study goes only once one destination has
    committed every instance of it; parts committed by two do not count."""
    cfg = config.load(write_config(tmp_path / "box", SyncWrites="no", HighWaterMark=90,
                                   LowWaterMark=80, PurgeRequiresCommitment="yes"))  # fmt: skip
    archive = Archive(cfg)
    try:
        disk = FakeDisk(cfg.archive_dir)
        uids, wm, _ = make_box(archive, cfg, disk, [500, 400, 300])
        whole, split, never = uids
        job, sops = ask_commitment(whole, "ORTHANC", 1)
        answer_commitment(job, "ORTHANC", sops)
        job, sops = ask_commitment(split, "ORTHANC", 2)
        answer_commitment(job, "ORTHANC", sops[:2], sops[2:])
        job, sops = ask_commitment(split, "BACKUP", 3)
        answer_commitment(job, "BACKUP", sops[2:], sops[:2])
        rule = "not committed anywhere (PurgeRequiresCommitment)"
        kept = {s.study_instance_uid: why for s, why in wm.kept(cfg.archive_dir)}
        assert kept == {split: rule, never: rule}
        ((study, why),) = wm.candidates(cfg.archive_dir)
        assert study.study_instance_uid == whole and why.endswith("committed by ORTHANC")
        disk.set_percent(99)
        out = io.StringIO()
        purge_listing(wm, True, out)
        lines = out.getvalue().splitlines()
        assert any(never in ln and "keep" in ln and rule in ln for ln in lines), lines
        assert [ln.split()[2] for ln in lines if "would purge" in ln] == [whole]
        report = wm.purge()
        assert [p.study_uid for p in report.purged] == [whole]
        assert {s.study_instance_uid for s in Study.select()} == {split, never}
    finally:
        archive.close()


def test_without_purge_requires_commitment_an_uncommitted_study_may_go(archive, cfg, disk):
    assert cfg.PurgeRequiresCommitment is False  # the default
    uids, wm, _ = make_box(archive, cfg, disk, [500])
    assert [s.study_instance_uid for s, _ in wm.candidates(cfg.archive_dir)] == uids
