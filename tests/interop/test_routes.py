"""Routes with a running daemon and real peers: images a modality sends with DCMTK
storescu reach DCMTK storescp and Orthanc with no manual step, once each, and
survive a kill -9 of the daemon before the study was sent."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
from pathlib import Path

import pydicom
import pytest

from pacsbox import meta
from pacsbox.archive import Archive
from pacsbox.config import load
from tests.helpers import Server, cli, dcmtk, free_port, poll, write_config
from tests.peers import Orthanc, StoreSCP
from tests.synth import make_instance

STUDY = "1.2.826.0.1.3680043.8.498.717171.1"
OTHER = "1.2.826.0.1.3680043.8.498.717171.2"


@pytest.fixture
def ini(tmp_path):
    path = write_config(tmp_path / "box", StableStudySeconds=4)
    for title in ("CT1", "US1"):
        cli(path, "ae", "add", title, "--host", "127.0.0.1")
    return path


def _files(folder: Path, n: int, **kw) -> dict[str, bytes]:
    """``n`` images written to ``folder``; {SOP Instance UID: data set bytes}."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i in range(n):
        data = make_instance(instance_number=i + 1, **kw)
        parsed = meta.parse(data)
        (folder / f"{parsed.attrs.sop_instance_uid}.dcm").write_bytes(data)
        out[parsed.attrs.sop_instance_uid] = data[parsed.dataset_offset :]
    return out


def _send(server: Server, calling: str, *files: Path) -> None:
    r = dcmtk("storescu", "-aet", calling, "-aec", server.ae_title, "127.0.0.1",
              str(server.port), *map(str, files))  # fmt: skip
    assert r.returncode == 0, r.stderr


def _received(scp: StoreSCP) -> list[tuple[str, bytes]]:
    """Every file storescp wrote (+uf: a duplicate is a second file)."""
    out = []
    for f in scp.files():
        data = f.read_bytes()
        out.append((pydicom.dcmread(f).SOPInstanceUID, data[meta.parse(data).dataset_offset :]))
    return out


def _route_jobs(ini: Path) -> list[dict]:
    return [j for j in json.loads(cli(ini, "queue", "--json").stdout) if j["kind"] == "route"]


def test_a_route_by_calling_ae_sends_a_study_from_two_associations_once_then_a_follow_up(
    ini, tmp_path
):
    scp = StoreSCP(tmp_path / "ws", "WS", "+B", "+uf", ini=ini)
    cli(ini, "route", "add", "FROMCT", "--to", "WS", "--from-ae", "CT1")
    first = _files(tmp_path / "a", 4, study_uid=STUDY)
    second = _files(tmp_path / "b", 3, study_uid=STUDY)
    _files(tmp_path / "other", 2, study_uid=OTHER)
    server = Server(ini).start()
    try:
        _send(server, "CT1", *sorted((tmp_path / "a").iterdir()))
        _send(server, "CT1", *sorted((tmp_path / "b").iterdir()))  # a second association
        _send(server, "US1", *sorted((tmp_path / "other").iterdir()))  # not this route's
        poll(lambda: len(scp.files()) >= 7 and all(j["state"] == "done" for j in _route_jobs(ini)),
             60, what="the routed study")  # fmt: skip
        (job,) = _route_jobs(ini)
        assert (job["destination"], job["done"], job["total"]) == ("WS", 7, 7)
        assert job["owner"] == "route FROMCT"
        # Later images of the study: a follow-up with just those.
        later = _files(tmp_path / "c", 2, study_uid=STUDY)
        _send(server, "CT1", *sorted((tmp_path / "c").iterdir()))
        poll(lambda: len(_route_jobs(ini)) == 2 and _route_jobs(ini)[0]["state"] == "done",
             60, what="the follow-up")  # fmt: skip
        follow = _route_jobs(ini)[0]  # newest first
        assert (follow["done"], follow["total"]) == (2, 2)
        assert follow["label"] == "follow-up of study by route FROMCT to WS"
    finally:
        server.stop()
        scp.stop()
    got = _received(scp)
    assert sorted(uid for uid, _ in got) == sorted({**first, **second, **later})  # each once
    assert dict(got) == {**first, **second, **later}  # byte for byte
    out = server.output()
    assert "route FROMCT: study " + STUDY + " to WS queued as job" in out


def test_kill_9_before_the_study_was_stable_loses_nothing(ini, tmp_path):
    scp = StoreSCP(tmp_path / "ws", "WS", "+B", "+uf", ini=ini)
    cli(ini, "route", "add", "ALL", "--to", "WS")
    sent = _files(tmp_path / "a", 5, study_uid=STUDY)
    server = Server(ini).start()
    try:
        _send(server, "CT1", *sorted((tmp_path / "a").iterdir()))
        os.kill(server.proc.pid, signal.SIGKILL)  # inside the 4 s the study needs to be stable
        server.proc.wait(10)
        assert scp.files() == []
        server.start()
        poll(lambda: len(scp.files()) >= 5 and all(j["state"] == "done" for j in _route_jobs(ini)),
             60, what="the routed study after the restart")  # fmt: skip
    finally:
        server.stop()
        scp.stop()
    assert sorted(uid for uid, _ in _received(scp)) == sorted(sent)
    assert len(_route_jobs(ini)) == 1


@pytest.mark.skipif(shutil.which("Orthanc") is None, reason="Orthanc is not installed")
def test_a_route_by_key_pattern_delivers_to_orthanc(ini, tmp_path):
    server = Server(ini).start()
    orthanc = Orthanc(tmp_path / "orthanc", server.port)
    try:
        cli(ini, "ae", "add", "ORTHANC", "--host", "127.0.0.1", "--port", str(orthanc.dicom))
        cli(ini, "route", "add", "NORTH", "--to", "ORTHANC", "--match", "InstitutionName=north*",
            "--match", "Modality=CT")  # fmt: skip
        north = _files(tmp_path / "n", 3, study_uid=STUDY,
                       extra={"InstitutionName": "North Clinic"})  # fmt: skip
        _files(tmp_path / "s", 2, study_uid=OTHER, extra={"InstitutionName": "SOUTH"})
        _send(
            server, "US1", *sorted((tmp_path / "n").iterdir()), *sorted((tmp_path / "s").iterdir())
        )
        poll(lambda: len(orthanc.get("/instances")) >= 3 and
             all(j["state"] == "done" for j in _route_jobs(ini)), 60,
             what="Orthanc to have the northern study")  # fmt: skip
        ids = orthanc.get("/instances")
        assert len(ids) == 3
        got = {}
        for oid in ids:
            data = orthanc.get(f"/instances/{oid}/file")
            got[pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID] = data[
                meta.parse(data).dataset_offset :
            ]
        assert got == north
    finally:
        orthanc.stop()
        server.stop()


def test_a_notify_route_sends_an_instance_availability_notification(ini, tmp_path):
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import InstanceAvailabilityNotification  # type: ignore[attr-defined]

    got = []

    def on_create(event):
        got.append((event.request.AffectedSOPInstanceUID, event.attribute_list))
        return 0x0000, None

    ris = AE("RIS")
    ris.add_supported_context(InstanceAvailabilityNotification)
    port = free_port()
    scp = ris.start_server(("127.0.0.1", port), block=False,
                           evt_handlers=[(evt.EVT_N_CREATE, on_create)])  # fmt: skip
    cli(ini, "ae", "add", "RIS", "--host", "127.0.0.1", "--port", str(port))
    cli(ini, "route", "add", "TELLRIS", "--to", "RIS", "--notify", "--match", "Modality=CT")
    sent = _files(tmp_path / "a", 3, study_uid=STUDY)
    server = Server(ini).start()
    try:
        _send(server, "CT1", *sorted((tmp_path / "a").iterdir()))
        poll(lambda: got and all(j["state"] == "done" for j in _ians(ini)), 60,
             what="the notification")  # fmt: skip
        (job,) = _ians(ini)
        assert job["last_error"] == "3 instances notified, RIS accepted"
    finally:
        server.stop()
        scp.shutdown()
    ((instance_uid, ds),) = got
    assert instance_uid  # the SCU makes the notification's own instance UID
    assert ds.StudyInstanceUID == STUDY and ds.ReferencedPerformedProcedureStepSequence == []
    refs = [r for series in ds.ReferencedSeriesSequence for r in series.ReferencedSOPSequence]
    assert len(ds.ReferencedSeriesSequence) == 3  # make_instance gives each image a series
    assert sorted(r.ReferencedSOPInstanceUID for r in refs) == sorted(sent)
    assert {(r.InstanceAvailability, r.RetrieveAETitle) for r in refs} == {
        ("ONLINE", server.ae_title)
    }


def _ians(ini: Path) -> list[dict]:
    return [j for j in json.loads(cli(ini, "queue", "--json").stdout) if j["kind"] == "ian"]


def test_kill_9_twice_during_a_routed_delivery_loses_nothing_and_resends_little(ini, tmp_path):
    """A 600-image study matched by a route; the daemon is killed twice while the
    route's job sends it: every image arrives, at most the one in flight at each cut
    twice, and the route made one job, not three."""
    scp = StoreSCP(tmp_path / "ws", "WS", "+uf", ini=ini)  # a duplicate is a new file
    cli(ini, "route", "add", "ALL", "--to", "WS")  # before the images: it matches them
    archive = Archive(load(ini))
    try:
        uids = set()
        for i in range(600):
            data = make_instance(study_uid=STUDY, instance_number=i + 1)
            uids.add(archive.store(data, calling_ae="CT1", source="test").sop_instance_uid)
    finally:
        archive.close()
    server = Server(ini).start()
    try:
        for at in (100, 300):
            poll(lambda at=at: len(scp.files()) >= at, 90, interval=0.005, what=f"{at} images")
            server.kill9()
            server = Server(ini).start()
        poll(lambda: _route_jobs(ini) and _route_jobs(ini)[0]["state"] == "done", 120,
             what="the resumed route job")  # fmt: skip
    finally:
        server.stop()
        scp.stop()
    received = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in scp.files()]
    assert set(received) == uids
    assert len(received) - len(uids) <= 2, len(received) - len(uids)
    (job,) = _route_jobs(ini)
    assert (job["done"], job["total"]) == (600, 600) and job["attempts"] == 3
