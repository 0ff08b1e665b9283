"""``pacsbox query`` and ``pacsbox retrieve`` against real remote archives (SCU-2, issue 17
item 6): DCMTK dcmqrscp and Orthanc hold studies; pacsbox finds them by Patient ID and by
date range, retrieves one through its own C-STORE SCP, and then answers findscu for it."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from pathlib import Path

import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore[attr-defined]

from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db.auth_models import Journal
from pacsbox.db.models import SyncSchedule
from tests.helpers import Server, cli, free_port, poll, require_tools
from tests.interop.test_find import Box, findscu, values
from tests.peers import QRSCP, Orthanc
from tests.synth import make_instance

A = "1.2.826.0.1.3680043.8.498.777.1"  # P77, 2024, two series of 2 and 1 images
B = "1.2.826.0.1.3680043.8.498.777.2"  # P88, 2023, one image
SERIES_A = ("1.2.826.0.1.3680043.8.498.777.1.1", "1.2.826.0.1.3680043.8.498.777.1.2")


def _studies(folder: Path) -> list[Path]:
    """Files of study A (3 images in 2 series) and study B (1 image)."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = [
        dict(patient_id="P77", patient_name="ROE^ANN", study_uid=A, series_uid=SERIES_A[0],
             study_date="20240510", accession="ACC77", instance_number=1),
        dict(patient_id="P77", patient_name="ROE^ANN", study_uid=A, series_uid=SERIES_A[0],
             study_date="20240510", accession="ACC77", instance_number=2),
        dict(patient_id="P77", patient_name="ROE^ANN", study_uid=A, series_uid=SERIES_A[1],
             study_date="20240510", accession="ACC77", modality="MR", series_number=2),
        dict(patient_id="P88", patient_name="POE^BEN", study_uid=B, study_date="20230101",
             accession="ACC88"),
    ]  # fmt: skip
    files = []
    for n, spec in enumerate(specs):
        path = folder / f"img{n}.dcm"
        path.write_bytes(make_instance(**spec))
        files.append(path)
    return files


def _query(ini: Path, ae: str, *args: str) -> list[dict]:
    return json.loads(cli(ini, "query", ae, "--json", *args).stdout)


def _job(ini: Path, job_id: int) -> dict:
    return next(j for j in json.loads(cli(ini, "queue", "--json").stdout) if j["id"] == job_id)


def _job_id(stdout: str) -> int:
    return int(stdout.split()[1].rstrip(":"))


@pytest.fixture
def qr(tmp_path, ini):
    """dcmqrscp holding studies A and B, in pacsbox's AE table as DCMQR."""
    require_tools("dcmqrscp")
    scp = QRSCP(tmp_path / "qr")
    try:
        scp.store(*_studies(tmp_path / "files"))
        cli(ini, "ae", "add", "DCMQR", "--host", "127.0.0.1", "--port", str(scp.port))
        yield scp
    finally:
        scp.stop()


def test_query_dcmqrscp_by_patient_id_date_range_wildcard_and_level(ini, qr):
    (row,) = _query(ini, "DCMQR", "-k", "PatientID=P77")
    assert row["StudyInstanceUID"] == A and row["QueryRetrieveLevel"] == "STUDY"
    assert row["local"] == "none" and row["local_count"] == 0
    (row,) = _query(ini, "DCMQR", "-k", "StudyDate=20230101-20231231")
    assert row["StudyInstanceUID"] == B and row["PatientID"] == "P88"
    assert {r["StudyInstanceUID"] for r in _query(ini, "DCMQR", "-k", "PatientName=?OE^*")} == {
        A, B}  # fmt: skip
    assert _query(ini, "DCMQR", "-k", "StudyDate=20250101-") == []
    patients = _query(ini, "DCMQR", "--level", "patient", "-k", "PatientID=P*")
    assert sorted(p["PatientID"] for p in patients) == ["P77", "P88"]
    series = _query(ini, "DCMQR", "--level", "series", "-k", f"StudyInstanceUID={A}")
    assert sorted(s["SeriesInstanceUID"] for s in series) == sorted(SERIES_A)
    # The terminal table: one line per study with its UID, and the local column.
    text = cli(ini, "query", "DCMQR", "-k", "PatientID=P*").stdout.splitlines()
    assert text[0].startswith("DATE") and text[0].endswith("LOCAL") and text[-1] == (
        "2 matches on DCMQR")  # fmt: skip
    assert any(A in line and line.endswith("none (0/? instances)") for line in text), text


@pytest.fixture
def failing(ini):
    """A Q/R SCP that answers every C-FIND with C000 (unable to process)."""
    ae = AE("FAILING")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    port = free_port()
    scp = ae.start_server(("127.0.0.1", port), block=False,
                          evt_handlers=[(evt.EVT_C_FIND, lambda event: iter([(0xC000, None)]))])  # fmt: skip
    cli(ini, "ae", "add", "FAILING", "--host", "127.0.0.1", "--port", str(port))
    yield
    scp.shutdown()


def test_query_mistakes_exit_non_zero_with_one_line(ini, qr, failing):
    down = free_port()
    cli(ini, "ae", "add", "DOWN", "--host", "127.0.0.1", "--port", str(down))
    for args, code, words in (
        (["NOBODY"], 3, "AE NOBODY is not in the AE table"),
        (["FINDSCU"], 2, "no host and port"),
        (["DCMQR", "--level", "series"], 2, "a series query needs -k StudyInstanceUID=UID"),
        (["DCMQR", "-k", "PatientID"], 2, "expected KEY=VALUE"),
        (["DCMQR", "-k", "NoSuchKey=1"], 2, "neither an attribute keyword nor a tag"),
        (["DCMQR", "-k", "StudyDate=2024-05"], 2, "a date YYYYMMDD or a range of them"),
        (["DOWN"], 1, f"DOWN (127.0.0.1:{down}) does not answer"),
        (["FAILING"], 1, "FAILING (127.0.0.1:"),
    ):
        r = cli(ini, "query", *args, check=False)
        assert r.returncode == code and words in r.stderr, (args, r.returncode, r.stderr)
        assert len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.endswith("answered the C-FIND with status C000\n"), r.stderr


def test_retrieve_from_dcmqrscp_arrives_through_the_daemon_and_answers_findscu(ini, qr):
    server = Server(ini).start()
    try:
        qr.restart({server.ae_title: server.port})  # dcmqrscp now knows where PACSBOX is
        r = cli(ini, "retrieve", "DCMQR", "--study", A, "--wait")
        job_id = _job_id(r.stdout)
        assert r.stdout.splitlines()[0] == f"job {job_id}: retrieve of 1 study from DCMQR queued"
        assert r.stdout.splitlines()[-1] == f"job {job_id}: done: 3 retrieved", r.stdout
        job = _job(ini, job_id)
        assert (job["kind"], job["destination"], job["state"]) == ("retrieve", "DCMQR", "done")
        assert (job["done"], job["total"]) == (3, 3) and job["owner"].startswith("cli:")
        # pacsbox answers for it now, as any archive would.
        status, rsps = findscu(Box(server, ini, [], ini.parent), "S", "STUDY",
                               f"StudyInstanceUID={A}", "NumberOfStudyRelatedInstances")  # fmt: skip
        assert status == "Success" and values(rsps, "NumberOfStudyRelatedInstances") == {"3"}
        # ... and the remote's listing says it is here (B is not).
        rows = {r["StudyInstanceUID"]: r for r in _query(ini, "DCMQR", "-k", "PatientID=P*")}
        assert {k: rows[A][k] for k in ("local", "local_count", "remote_count")} == {
            "local": "all", "local_count": 3, "remote_count": 3}  # fmt: skip
        assert rows[B]["local"] == "none"
        # One series only: retrieved again, it is complete, the other series too.
        r = cli(ini, "retrieve", "DCMQR", "--study", A, "--series", SERIES_A[1], "--wait")
        assert r.stdout.splitlines()[-1].endswith(": done: 1 retrieved"), r.stdout
        series = _query(ini, "DCMQR", "--level", "series", "-k", f"StudyInstanceUID={A}")
        assert {s["local"] for s in series} == {"all"}
    finally:
        server.stop()
    assert f"job {job_id} (retrieve to DCMQR): done: 3 retrieved" in server.output()
    archive = Archive(load(ini))  # the system journal says who fetched what from where
    try:
        entry = Journal.select().where(Journal.action == "retrieve").order_by(Journal.id).first()
        assert entry.user.startswith("cli:") and entry.target == "DCMQR"
        assert entry.detail == f"job {job_id}: 1 study from DCMQR: study={A}"
    finally:
        archive.close()


def test_retrieve_from_a_remote_that_does_not_know_pacsbox_fails_with_the_a801_reason(ini, qr):
    server = Server(ini).start()  # dcmqrscp's move destinations: none
    try:
        r = cli(ini, "retrieve", "DCMQR", "--study", A, "--wait", check=False)
        assert r.returncode == 1, r.stdout + r.stderr
        job_id = _job_id(r.stdout)
        assert r.stderr.strip() == (
            f"pacsbox: job {job_id}: failed: DCMQR does not know PACSBOX as a move destination "
            f"(A801): add PACSBOX (this box's address, port {server.port}) to DCMQR's AE table, "
            "then retry the job"
        )
        job = _job(ini, job_id)
        assert job["state"] == "failed" and job["attempts"] == 1
        # Once the remote knows us, a retry by hand brings the study.
        qr.restart({server.ae_title: server.port})
        cli(ini, "queue", "retry", str(job_id))
        poll(lambda: _job(ini, job_id)["state"] == "done", 30, what="the retried retrieve")
        assert _job(ini, job_id)["last_error"] == "3 retrieved"
    finally:
        server.stop()


def test_without_a_daemon_a_retrieve_waits_for_it_and_wait_says_so(ini, qr):
    r = cli(ini, "retrieve", "DCMQR", "--study", B)
    job_id = _job_id(r.stdout)
    assert r.stdout.splitlines()[1] == (
        f"job {job_id} waits: pacsbox is not running, so nothing can receive the images; "
        "the retrieve runs once `pacsbox serve` starts"
    )
    r = cli(ini, "retrieve", "DCMQR", "--study", B, "--wait", check=False)
    assert r.returncode == 1 and "waits: pacsbox is not running" in r.stderr
    assert len(r.stderr.splitlines()) == 1
    assert _job(ini, job_id)["state"] == "queued"
    qr.stop()  # until it knows the daemon's port: the jobs find it down and try again
    server = Server(ini).start()
    try:
        qr.restart({server.ae_title: server.port})
        for jid in (job_id, job_id + 1):
            poll(lambda jid=jid: _job(ini, jid)["state"] == "done", 60, what=f"job {jid}")
    finally:
        server.stop()
    (row,) = _query(ini, "DCMQR", "-k", "PatientID=P88")
    assert row["local"] == "all"


def test_retrieve_mistakes_are_refused_at_once(ini, qr):
    for args, code, words in (
        (["NOBODY", "--study", A], 3, "AE NOBODY is not in the AE table"),
        (["FINDSCU", "--study", A], 2, "no host and port"),
    ):
        r = cli(ini, "retrieve", *args, check=False)
        assert r.returncode == code and words in r.stderr, (args, r.stderr)
    assert json.loads(cli(ini, "queue", "--json").stdout) == []


# -- synchronisation (SCU-8) ---------------------------------------------------------


def test_sync_pulls_what_is_not_here_on_schedule_and_on_demand(ini, qr, tmp_path):
    archive = Archive(load(ini))  # study B is here already
    try:
        archive.store((tmp_path / "files" / "img3.dcm").read_bytes(), source="test")
    finally:
        archive.close()
    since_a = (dt.date.today() - dt.date(2024, 5, 10)).days + 1  # A is inside, B outside
    every_hour = ",".join(map(str, range(24)))
    cli(ini, "sync", "add", "DCMQR", "--hours", every_hour, "--days", str(since_a))
    archive = Archive(load(ini))  # the schedule was set two hours ago: this hour is due
    try:
        back = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=2)
        SyncSchedule.update(last_slot=back).execute()
    finally:
        archive.close()
    qr.stop()  # until it knows the daemon's port: the sync finds it down and tries again
    server = Server(ini).start()
    try:
        qr.restart({server.ae_title: server.port})

        def jobs(kind: str) -> list[dict]:
            return [j for j in json.loads(cli(ini, "queue", "--json").stdout) if j["kind"] == kind]

        (run,) = poll(lambda: [j for j in jobs("sync") if j["state"] == "done"], 60,
                      what="the scheduled sync run")  # fmt: skip
        assert run["owner"] == "sync schedule"
        assert run["last_error"] == "1 study on DCMQR, 1 not all here: 1 retrieve queued"
        (got,) = poll(lambda: [j for j in jobs("retrieve") if j["state"] == "done"], 60,
                      what="the retrieve it queued")  # fmt: skip
        assert got["payload"]["study_uid"] == A and got["owner"] == "sync schedule"
        # On demand, over every study: nothing is missing any more.
        r = cli(ini, "sync", "run", "DCMQR", "--days", "36500", "--wait")
        assert r.stdout.splitlines()[-1].endswith(
            ": done: 2 studies on DCMQR, 0 not all here: 0 retrieves queued"), r.stdout  # fmt: skip
    finally:
        server.stop()
    assert {r["local"] for r in _query(ini, "DCMQR", "-k", "PatientID=*")} == {"all"}


# -- Orthanc ------------------------------------------------------------------------


def _post_to_orthanc(orthanc: Orthanc, files: list[Path]) -> None:
    for f in files:
        req = urllib.request.Request(f"http://127.0.0.1:{orthanc.http}/instances",
                                     data=f.read_bytes(), method="POST")  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as rsp:
            assert json.loads(rsp.read())["Status"] == "Success"


def test_query_and_retrieve_from_orthanc(ini, tmp_path):
    require_tools("Orthanc")
    server = Server(ini).start()
    orthanc = Orthanc(tmp_path / "orthanc", server.port)
    try:
        _post_to_orthanc(orthanc, _studies(tmp_path / "files"))
        cli(ini, "ae", "add", "ORTHANC", "--host", "127.0.0.1", "--port", str(orthanc.dicom))
        (row,) = _query(ini, "ORTHANC", "-k", "PatientID=P77")
        assert row["StudyInstanceUID"] == A and row["NumberOfStudyRelatedInstances"] == 3
        assert (row["local"], row["remote_count"]) == ("none", 3)
        (row,) = _query(ini, "ORTHANC", "-k", "StudyDate=20230101-20231231")
        assert row["StudyInstanceUID"] == B
        r = cli(ini, "retrieve", "ORTHANC", "--study", A, "--wait")
        assert r.stdout.splitlines()[-1].endswith(": done: 3 retrieved"), r.stdout
        status, rsps = findscu(Box(server, ini, [], ini.parent), "S", "STUDY",
                               f"StudyInstanceUID={A}", "NumberOfStudyRelatedInstances")  # fmt: skip
        assert status == "Success" and values(rsps, "NumberOfStudyRelatedInstances") == {"3"}
        rows = {r["StudyInstanceUID"]: r for r in _query(ini, "ORTHANC", "-k", "PatientID=*")}
        assert (rows[A]["local"], rows[A]["local_count"]) == ("all", 3)
        assert rows[B]["local"] == "none"
    finally:
        orthanc.stop()
        server.stop()
