"""``pacsbox forward`` and ``pacsbox queue`` with real peers (SCU-3, issue 17 items 1, 2, 9):
DCMTK storescp as the destination, a daemon that runs the queue, a destination that
is down and comes back, and one that refuses."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from pathlib import Path

import pydicom
import webtest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from pacsbox import meta
from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db import queue
from pacsbox.db.auth_models import Journal
from pacsbox.db.models import Patient, Series, Study, utcnow
from pacsbox.outbound.control_client import SOCKET_NAME
from pacsbox.outbound.kinds import HANDLERS
from pacsbox.outbound.runner import Runner
from pacsbox.web.app import create_app
from tests.helpers import DCMTK_ENV, Server, cli, free_port, poll, write_config
from tests.integration.web.conftest import Clock, login
from tests.peers import StoreSCP
from tests.synth import make_instance

STUDY = "1.2.826.0.1.3680043.8.498.515151.1"
OTHER = "1.2.826.0.1.3680043.8.498.515151.2"


def _stored(ini: Path, n: int = 3) -> dict[str, bytes]:
    """``n`` images of STUDY and one of OTHER, stored; {SOP Instance UID: data set bytes}."""
    archive = Archive(load(ini))
    try:
        datas = [make_instance(study_uid=STUDY) for _ in range(n)]
        for data in [*datas, make_instance(study_uid=OTHER)]:
            archive.store(data, source="test")
    finally:
        archive.close()
    return {meta.parse(d).attrs.sop_instance_uid: d[meta.parse(d).dataset_offset :] for d in datas}


def _queue(ini: Path) -> list[dict]:
    return json.loads(cli(ini, "queue", "--json").stdout)


def _received(scp: StoreSCP) -> dict[str, bytes]:
    out = {}
    for f in scp.files():
        data = f.read_bytes()
        out[pydicom.dcmread(f).SOPInstanceUID] = data[meta.parse(data).dataset_offset :]
    return out


def test_forward_with_wait_and_no_daemon_sends_the_study_byte_for_byte(ini, tmp_path):
    sent = _stored(ini)
    scp = StoreSCP(tmp_path / "ws", "WORKSTATION", "+B", ini=ini)
    try:
        r = cli(ini, "forward", "--study", STUDY, "--to", "WORKSTATION", "--wait")
    finally:
        scp.stop()
    assert r.stdout.splitlines()[0].endswith("forward of 1 study to WORKSTATION queued")
    assert r.stdout.splitlines()[-1].endswith(": done: 3 delivered"), r.stdout
    assert _received(scp) == sent  # the other study stayed home
    (job,) = _queue(ini)
    assert {k: job[k] for k in ("kind", "destination", "state", "done", "total", "attempts")} == {
        "kind": "forward", "destination": "WORKSTATION", "state": "done",
        "done": 3, "total": 3, "attempts": 1,
    }  # fmt: skip
    assert job["owner"].startswith("cli:")
    listing = cli(ini, "queue").stdout
    assert "forward  WORKSTATION      done" in listing and "3/3" in listing
    archive = Archive(load(ini))  # the system journal says who sent what where
    try:
        (entry,) = Journal.select().where(Journal.action == "forward")
        assert entry.user.startswith("cli:") and entry.target == "WORKSTATION"
        assert entry.detail == f"job {job['id']}: 1 study to WORKSTATION: studies={STUDY}"
    finally:
        archive.close()


def test_the_daemon_sends_a_queued_forward_and_retries_a_destination_that_was_down(ini, tmp_path):
    sent = _stored(ini)
    port = free_port()
    cli(ini, "ae", "add", "LATER", "--host", "127.0.0.1", "--port", str(port))
    server = Server(ini).start()
    scp = None
    try:
        r = cli(ini, "forward", "--series", _series_of(ini), "--study", STUDY, "--to", "LATER")
        job_id = int(r.stdout.split()[1].rstrip(":"))
        job = poll(lambda: next((j for j in _queue(ini) if j["id"] == job_id and
                                 j["state"] == "retrying"), None), 30, what="a retry")  # fmt: skip
        assert "LATER (127.0.0.1:" in job["last_error"] and job["next_attempt"]
        # The workstation comes up on its port: the next try delivers.
        scp = subprocess.Popen(["storescp", "-aet", "LATER", "+B", "-od", str(tmp_path), str(port)],
                               env=DCMTK_ENV)  # fmt: skip
        job = poll(lambda: next((j for j in _queue(ini) if j["id"] == job_id and
                                 j["state"] == "done"), None), 60, what="the delivery")  # fmt: skip
        assert job["attempts"] >= 2 and (job["done"], job["total"]) == (3, 3)
    finally:
        server.stop()
        if scp is not None:
            scp.terminate()
            scp.wait(10)
    got = {}
    for f in tmp_path.iterdir():
        if f.is_file() and f.name.startswith("CT"):
            data = f.read_bytes()
            got[pydicom.dcmread(f).SOPInstanceUID] = data[meta.parse(data).dataset_offset :]
    assert got == sent
    out = server.output()
    assert f"job {job_id} (forward to LATER): retrying" in out
    assert f"job {job_id} (forward to LATER): done: 3 delivered" in out


def _series_of(ini: Path) -> str:
    archive = Archive(load(ini))
    try:
        first = Series.select().join(Study).where(Study.study_instance_uid == STUDY).first()
        return first.series_instance_uid
    finally:
        archive.close()


def test_a_refusing_destination_counts_against_retries_and_can_be_cancelled_and_retried(ini):
    _stored(ini, 2)
    ae = AE("REFUSER")
    ae.add_supported_context(CTImageStorage, ExplicitVRLittleEndian)  # as stored
    port = free_port()
    peer = ae.start_server(("127.0.0.1", port), block=False,
                           evt_handlers=[(evt.EVT_C_STORE, lambda event: 0xA700)])  # fmt: skip
    cli(ini, "ae", "add", "REFUSER", "--host", "127.0.0.1", "--port", str(port))
    server = Server(ini).start()
    try:
        r = cli(ini, "forward", "--study", STUDY, "--to", "REFUSER")
        job_id = int(r.stdout.split()[1].rstrip(":"))

        def job() -> dict:
            return next(j for j in _queue(ini) if j["id"] == job_id)

        first = poll(lambda: job()["state"] == "retrying" and job(), 30, what="a refusal")
        assert first["failures"] == 1 and first["attempts"] == 1
        assert first["last_error"] == "0 delivered, 2 refused (status A700)"
        assert cli(ini, "queue", "cancel", str(job_id)).stdout.strip() == f"job {job_id} cancelled"
        assert job()["state"] == "cancelled"
        r = cli(ini, "queue", "retry", str(job_id))
        assert r.stdout.strip() == f"job {job_id} queued again"
        again = poll(lambda: job()["attempts"] == 2 and job()["state"] == "retrying" and job(),
                     30, what="the second try")  # fmt: skip
        assert again["failures"] == 1  # a retry by hand starts the count again
    finally:
        server.stop()
        peer.shutdown()


def test_mistakes_are_refused_at_once_with_one_line(ini):
    _stored(ini, 1)
    for args, words in (
        (["--study", STUDY, "--to", "NOBODY"], "AE NOBODY is not in the AE table"),
        (["--study", "1.2.3.4", "--to", "FINDSCU"], "no host and port"),
        (["--to", "FINDSCU"], "name what to forward"),
        (["queue", "retry"], "needs the job's ID"),
        (["queue", "cancel", "99"], "job 99 has ended already (or does not exist)"),
    ):
        argv = args if args[0] == "queue" else ["forward", *args]
        r = cli(ini, *argv, check=False)
        assert r.returncode != 0 and words in r.stderr and len(r.stderr.splitlines()) == 1, (
            argv, r.stderr)  # fmt: skip
    assert _queue(ini) == []


def test_with_a_daemon_running_the_cli_hands_the_forward_over_its_control_socket(ini, tmp_path):
    """The same command, the same output and exit codes; the daemon queues and follows the
    job, and the journal names the user the socket's peer credentials give."""
    sent = _stored(ini)
    server = Server(ini).start()
    scp = StoreSCP(tmp_path / "ws", "WORKSTATION", "+B", ini=ini)
    try:
        assert (load(ini).data_dir / SOCKET_NAME).is_socket()
        r = cli(ini, "forward", "--study", STUDY, "--to", "WORKSTATION", "--wait")
        assert r.stdout.splitlines()[0].endswith("forward of 1 study to WORKSTATION queued")
        assert r.stdout.splitlines()[-1].endswith(": done: 3 delivered"), r.stdout
        wrong = cli(ini, "forward", "--study", STUDY, "--to", "NOBODY", check=False)
        assert wrong.returncode == 3 and wrong.stderr.strip() == (
            "pacsbox: AE NOBODY is not in the AE table"
        ), (wrong.returncode, wrong.stderr)
    finally:
        scp.stop()
        server.stop()
    assert _received(scp) == sent
    owner = f"cli:{pwd.getpwuid(os.getuid()).pw_name}"
    assert f"control: forward of 1 study to WORKSTATION for {owner}" in server.output()
    (job,) = _queue(ini)
    assert job["owner"] == owner and job["state"] == "done"
    assert not (load(ini).data_dir / SOCKET_NAME).exists()  # removed at stop


def test_kill9_of_the_daemon_mid_forward_loses_nothing_and_resends_little(ini, tmp_path):
    """Two kill -9 rounds while a 600-image forward runs: after each restart the job
    resumes; in the end every image has arrived, and at most the one image in flight
    at each cut arrived twice (the job's ack log notes every answer as it comes)."""
    archive = Archive(load(ini))
    try:
        uids = set()
        for _ in range(600):
            res = archive.store(make_instance(study_uid=STUDY), source="test")
            uids.add(res.sop_instance_uid)
    finally:
        archive.close()
    scp = StoreSCP(tmp_path / "ws", "WORKSTATION", "+uf", ini=ini)  # a duplicate is a new file
    server = Server(ini).start()
    try:
        r = cli(ini, "forward", "--study", STUDY, "--to", "WORKSTATION")
        job_id = int(r.stdout.split()[1].rstrip(":"))
        for at in (100, 300):
            poll(lambda at=at: len(scp.files()) >= at, 60, interval=0.005, what=f"{at} images")
            server.kill9()
            server = Server(ini).start()
        poll(lambda: next(j for j in _queue(ini) if j["id"] == job_id)["state"] == "done", 120,
             what="the resumed job to end")  # fmt: skip
    finally:
        server.stop()
        scp.stop()
    received = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in scp.files()]
    assert set(received) == uids
    assert len(received) - len(uids) <= 2, len(received) - len(uids)
    (job,) = [j for j in _queue(ini) if j["id"] == job_id]
    assert (job["done"], job["total"]) == (600, 600) and job["attempts"] == 3
    assert server.output().count("jobs left running by the last run are queued again") == 2


# -- the web page ------------------------------------------------------------------------


def _web(tmp_path):
    """The web app in-process over a fresh archive in tmp_path."""

    ini = write_config(tmp_path / "box", SyncWrites="no")
    cfg = load(ini)
    archive = Archive(cfg)
    app = create_app(cfg, archive, clock=Clock())
    return ini, cfg, archive, app


def test_the_forward_button_queues_a_job_that_the_runner_delivers(tmp_path):
    ini, cfg, archive, app = _web(tmp_path)
    try:
        for _ in range(2):
            archive.store(make_instance(study_uid=STUDY), source="test")
        scp = StoreSCP(tmp_path / "ws", "WORKSTATION", "+B", ini=ini)
        cli(ini, "ae", "add", "NOPORT", "--host", "127.0.0.1")  # not offered: no port
        root = login(app, "root")
        page = webtest.TestApp(app, cookiejar=root.t.cookiejar).get(f"/studies/{STUDY}")
        form = next(f for f in page.forms.values() if f.action.endswith("/forward"))
        assert [o[0] for o in form["to"].options] == ["WORKSTATION"]
        answer = form.submit()
        assert answer.status_int == 303 and "/queue/" in answer.headers["Location"]
        job_id = int(answer.headers["Location"].split("/queue/")[1].split("?")[0])
        (listed,) = root.get("/queue.json").json["jobs"]
        assert (listed["id"], listed["state"], listed["owner"]) == (job_id, "queued", "root")
        # The daemon's runner, in this process.
        runner = Runner(cfg, HANDLERS)
        assert runner.run_one(queue.claim(runner.name, utcnow())) == "done"
        scp.stop()
        assert len(scp.files()) == 2
        (job,) = root.get(f"/queue/{job_id}.json").json["jobs"]
        assert (job["state"], job["done"], job["last_error"]) == ("done", 2, "2 delivered")
        assert "2/2" in root.get("/queue").text
        # The journal has it, with the user.
        (entry,) = Journal.select().where(Journal.action == "forward")
        assert (entry.user, entry.target) == ("root", "WORKSTATION")
    finally:
        archive.close()


def test_the_queue_page_shows_a_user_their_own_jobs_and_retries_and_cancels(tmp_path):
    ini, cfg, archive, app = _web(tmp_path)
    try:
        archive.store(make_instance(study_uid=STUDY), source="test")
        Study.update(private=False).execute()  # users without View see public studies only
        Patient.update(private=False).execute()
        cli(ini, "ae", "add", "WS", "--host", "127.0.0.1", "--port", str(free_port()))
        alice = login(app, "alice", ["forward"])
        bob = login(app, "bob", ["forward"])
        r = alice.post(f"/studies/{STUDY}/forward.json", {"to": "WS"})
        job_id = r.json["job"]
        assert r.json["message"] == f"forward job {job_id} queued"
        assert [j["id"] for j in alice.get("/queue.json").json["jobs"]] == [job_id]
        assert bob.get("/queue.json").json["jobs"] == []  # not his
        assert bob.post(f"/queue/{job_id}/cancel.json", expect_errors=True).status_int == 404
        assert alice.post(f"/queue/{job_id}/cancel.json").json["message"] == (
            f"job {job_id} cancelled"
        )
        assert alice.post(f"/queue/{job_id}/retry.json").json["ok"]
        assert alice.get(f"/queue/{job_id}.json").json["jobs"][0]["state"] == "queued"
        r = alice.post(f"/studies/{STUDY}/forward.json", {"to": "NOBODY"}, expect_errors=True)
        assert r.status_int == 404 and "not in the AE table" in r.json["error"]
        # Without the privilege: no button, and the post is refused.
        carol = login(app, "carol", ["view"])
        assert "/forward" not in carol.get(f"/studies/{STUDY}").text
        r = carol.post(f"/studies/{STUDY}/forward.json", {"to": "WS"}, expect_errors=True)
        assert r.status_int == 403
    finally:
        archive.close()
