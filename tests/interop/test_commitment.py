"""Storage Commitment Push Model with real peers, both roles (issue 17 item 4, NET-7, SCU-5).

Orthanc 1.10 asks pacsbox to commit (pacsbox as SCP: held, file removed,
file altered, unknown, asked under another SOP class), and pacsbox asks Orthanc after ``forward --commit``
(pacsbox as SCU, the report on a new association to pacsbox's listener). A
pynetdicom peer shows what Orthanc cannot: a report on the same association,
a report that never comes, and the web form's checkbox.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    StorageCommitmentPushModel,
)

from pacsbox import meta
from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db import lookup, queue
from pacsbox.db.auth_models import Journal
from pacsbox.db.models import Instance, utcnow
from pacsbox.outbound import forward
from pacsbox.outbound.kinds import HANDLERS
from pacsbox.outbound.runner import Runner
from pacsbox.scp.server import Listener
from pacsbox.scp.services import make_services
from pacsbox.scu import commitment as sc
from pacsbox.web.app import create_app
from tests.helpers import Server, cli, free_port, poll, write_config
from tests.integration.web.conftest import Clock, login
from tests.peers import Orthanc
from tests.synth import make_instance

STUDY = "1.2.826.0.1.3680043.8.498.717171.1"
CT = str(CTImageStorage)
needs_orthanc = pytest.mark.skipif(shutil.which("Orthanc") is None, reason="no Orthanc")


def _store(ini: Path, n: int) -> list[tuple[str, str]]:
    """``n`` images of STUDY stored; their (SOP Class UID, SOP Instance UID)."""
    archive = Archive(load(ini))
    try:
        out = []
        for _ in range(n):
            data = make_instance(study_uid=STUDY)
            archive.store(data, source="test")
            out.append((CT, meta.parse(data).attrs.sop_instance_uid))
        return out
    finally:
        archive.close()


def _path(ini: Path, sop_uid: str) -> Path:
    archive = Archive(load(ini))
    try:
        return lookup.instance_path(Instance.get(Instance.sop_instance_uid == sop_uid))
    finally:
        archive.close()


def _queue(ini: Path) -> list[dict]:
    return json.loads(cli(ini, "queue", "--json").stdout)


def _post(orthanc: Orthanc, path: str, body: dict) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{orthanc.http}{path}", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@needs_orthanc
def test_orthanc_asks_pacsbox_to_commit_and_hears_what_it_holds(ini, tmp_path):
    held, removed, altered, other_class = _store(ini, 4)
    unknown = (CT, "1.2.826.0.1.3680043.8.498.717171.99")
    as_mr = ("1.2.840.10008.5.1.4.1.1.4", other_class[1])  # a CT image asked as MR
    gone, changed = _path(ini, removed[1]), _path(ini, altered[1])
    server = Server(ini).start()
    # Behind the running box's back (its start-up check would have noticed).
    gone.unlink()
    with open(changed, "r+b") as fh:  # same size, other bytes
        fh.seek(-10, 2)
        fh.write(b"\xff" * 10)
    orthanc = Orthanc(tmp_path / "orthanc", server.port)
    try:
        cli(ini, "ae", "add", "ORTHANC", "--host", "127.0.0.1", "--port", str(orthanc.dicom))
        asked = [held, removed, altered, unknown, as_mr]
        body = {"DicomInstances": [{"SOPClassUID": c, "SOPInstanceUID": u} for c, u in asked],
                "Timeout": 30}  # fmt: skip
        answer = _post(orthanc, "/modalities/pacsbox/storage-commitment", body)

        def report():
            got = orthanc.get(f"/storage-commitment/{answer['ID']}")
            return got if got["Status"] != "Pending" else None

        got = poll(report, 60, what="Orthanc to get the commitment report")
        assert got["Status"] == "Failure", got
        assert [s["SOPInstanceUID"] for s in got["Success"]] == [held[1]]
        failures = {f["SOPInstanceUID"]: f["FailureReason"] for f in got["Failures"]}
        assert failures == {removed[1]: 0x0110, altered[1]: 0x0110, unknown[1]: 0x0112,
                            as_mr[1]: 0x0119}  # fmt: skip
        (job,) = [j for j in _queue(ini) if j["kind"] == "commit"]
        assert (job["state"], job["destination"], job["owner"]) == (
            "done", "ORTHANC", "dicom:ORTHANC")  # fmt: skip
        assert job["last_error"] == (
            "report sent: 1 committed, 4 failed (0110 processing failure, "
            "0112 no such object instance, 0119 class-instance conflict)"
        )
    finally:
        orthanc.stop()
        server.stop()
    out = server.output()
    assert "commitment request from ORTHANC: transaction" in out and "5 instances" in out
    archive = Archive(load(ini))
    try:
        actions = [e.action for e in Journal.select().order_by(Journal.id)]
        assert actions[-2:] == ["commitment-asked", "commitment-report"]
    finally:
        archive.close()


def test_requests_pacsbox_cannot_answer_are_refused_with_their_status(tmp_path, caplog):
    """The listener in-process: a requester the report could not reach, another action,
    a request without its sequence, a report for no transaction of ours."""
    ini, cfg, archive = _web_box(tmp_path)
    listener = Listener(cfg, archive, make_services(cfg, archive))
    listener.start(port=free_port())
    try:
        cli(ini, "ae", "add", "NOPORT", "--host", "127.0.0.1")
        cli(ini, "ae", "add", "MODALITY", "--host", "127.0.0.1", "--port", str(free_port()))
        refs = [(CT, "1.2.3.4.5")]
        status = _ask("NOPORT", listener.port, sc.action_dataset("1.2.3.4", refs))
        assert (status.Status, status.ErrorComment) == (
            0x0110, "NOPORT has no host and port in the AE table for the report")  # fmt: skip
        assert _ask("MODALITY", listener.port, sc.action_dataset("1.2.3.4", refs),
                    action=2).Status == 0x0123  # fmt: skip
        no_sequence = Dataset()
        no_sequence.TransactionUID = "1.2.3.4"
        status = _ask("MODALITY", listener.port, no_sequence)
        assert (status.Status, status.ErrorComment) == (
            0x0120, "no Referenced SOP Sequence (0008,1199)")  # fmt: skip
        ae = AE("MODALITY")
        ae.add_requested_context(StorageCommitmentPushModel)
        role = build_role(StorageCommitmentPushModel, scp_role=True)
        assoc = ae.associate("127.0.0.1", listener.port, ae_title="PACSBOX", ext_neg=[role])
        assert assoc.is_established
        status, _ = assoc.send_n_event_report(sc.report_dataset("9.9.9", refs, [], {}), 1,
                                              sc.SOP_CLASS, sc.WELL_KNOWN_INSTANCE)  # fmt: skip
        assoc.release()
        assert (status.Status, status.ErrorComment) == (0x0110, "unknown Transaction UID")
        assert queue.jobs() == []  # nothing accepted that could not be answered
        said = caplog.text
        assert "commitment request from NOPORT (transaction 1.2.3.4, 1 instances) refused" in said
        assert "commitment report from MODALITY for unknown transaction 9.9.9" in said
    finally:
        listener.stop(5)
        archive.close()


def test_an_accepted_request_is_answered_after_a_kill9_of_the_daemon(ini):
    """The requester is not listening yet when the report is due: the report job
    retries, survives kill -9 of the daemon, and reaches it once it listens."""
    refs = _store(ini, 1)
    report_port = free_port()
    cli(ini, "ae", "add", "REQUESTER", "--host", "127.0.0.1", "--port", str(report_port))
    server = Server(ini).start()
    requester = None
    try:
        ask = sc.action_dataset("1.2.826.0.1.3680043.8.498.717171.7", refs)
        assert _ask("REQUESTER", server.port, ask).Status == 0x0000
        poll(lambda: [j for j in _queue(ini) if j["state"] == "retrying"], 30, what="a retry")
        server.kill9()
        server = Server(ini).start()
        got = []

        def on_report(event):
            got.append(sc.report_of(event.event_information))
            return 0x0000, None

        ae = AE("REQUESTER")  # now it listens, accepting our SCP role for the report
        ae.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
        requester = ae.start_server(("127.0.0.1", report_port), block=False,
                                    evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])  # fmt: skip
        poll(lambda: got, 60, what="the report")
    finally:
        server.stop()
        if requester is not None:
            requester.shutdown()
    (report,) = got
    assert report.transaction_uid == "1.2.826.0.1.3680043.8.498.717171.7"
    assert (report.committed, report.failed) == ([refs[0][1]], {})
    (job,) = _queue(ini)
    assert (job["state"], job["last_error"]) == ("done", "report sent: 1 committed, 0 failed")


def _ask(calling: str, port: int, ds: Dataset, action: int = 1) -> Dataset:
    ae = AE(calling)
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate("127.0.0.1", port, ae_title="PACSBOX")
    assert assoc.is_established
    try:
        status, _ = assoc.send_n_action(ds, action, sc.SOP_CLASS, sc.WELL_KNOWN_INSTANCE)
        return status
    finally:
        assoc.release()


@needs_orthanc
def test_forward_commit_to_orthanc_marks_every_instance_committed(ini, tmp_path):
    refs = _store(ini, 3)
    server = Server(ini).start()
    orthanc = Orthanc(tmp_path / "orthanc", server.port)
    try:
        cli(ini, "ae", "add", "ORTHANC", "--host", "127.0.0.1", "--port", str(orthanc.dicom))
        r = cli(ini, "forward", "--study", STUDY, "--to", "ORTHANC", "--commit", "--wait")
        assert len(orthanc.get("/instances")) == 3
    finally:
        orthanc.stop()
        server.stop()
    lines = r.stdout.splitlines()
    assert lines[0].endswith("to ORTHANC queued, then its storage commitment"), r.stdout
    assert lines[-1].endswith(": done: 3 committed by ORTHANC"), r.stdout
    forward, commit = sorted(_queue(ini), key=lambda j: j["id"])
    assert forward["last_error"] == f"3 delivered; commitment job {commit['id']}"
    assert (commit["kind"], commit["state"], commit["destination"]) == ("commit", "done", "ORTHANC")
    assert "commitment report from ORTHANC: transaction" in server.output()
    # The study page says who committed each image, and when.
    cfg = load(ini)
    archive = Archive(cfg)
    try:
        root = login(create_app(cfg, archive, clock=Clock()), "root")
        rows = root.get(f"/studies/{STUDY}.json").json["commitments"]
        assert sorted(c["sop_instance_uid"] for c in rows) == sorted(u for _, u in refs)
        assert {(c["destination"], c["state"], c["by"]) for c in rows} == {
            ("ORTHANC", "committed", "ORTHANC")}  # fmt: skip
        assert all(c["at"] for c in rows)
        assert root.get(f"/studies/{STUDY}").text.count("committed by ORTHANC at") == 3
        journal = [(e.action, e.target) for e in Journal.select().order_by(Journal.id)]
        assert ("commitment", "ORTHANC") in journal and ("commitment-result", "ORTHANC") in journal
    finally:
        archive.close()


# -- a pynetdicom peer: what Orthanc does not do ------------------------------------------


class Peer:
    """A storage and commitment SCP that reports 0.3 s after the N-ACTION's answer on the
    same association, or after ``delay`` s on a new one to ``report_to`` (a port), or
    never (``silent``); the UIDs in ``fail`` come back failed (0112)."""

    def __init__(self, title: str, silent: bool = False, fail: frozenset[str] = frozenset(),
                 report_to: int = 0, delay: float = 0.3):  # fmt: skip
        self.ae = AE(title)
        self.ae.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian,
                                                        ImplicitVRLittleEndian])  # fmt: skip
        self.ae.add_supported_context(StorageCommitmentPushModel)
        self.ae.add_requested_context(StorageCommitmentPushModel)
        self.port = free_port()
        self.silent, self.fail, self.asked = silent, fail, []
        self.report_to, self.delay = report_to, delay
        self.server = self.ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=[
            (evt.EVT_C_STORE, lambda event: 0x0000), (evt.EVT_N_ACTION, self._on_action)])  # fmt: skip

    def _on_action(self, event):
        transaction, refs = sc.refs_of_action(event.action_information)
        self.asked.append((transaction, refs))
        if not self.silent:
            threading.Thread(target=self._report, args=(event.assoc, transaction, refs)).start()
        return 0x0000, None

    def _report(self, assoc, transaction, refs):
        time.sleep(self.delay)  # after the N-ACTION's answer has gone
        ok = [r for r in refs if r[1] not in self.fail]
        bad = [r for r in refs if r[1] in self.fail]
        ds = sc.report_dataset(transaction, ok, bad, {u: 0x0112 for _, u in bad})
        if self.report_to:  # as the SCP role, on an association of its own (PS3.4 J.3.3)
            role = build_role(StorageCommitmentPushModel, scp_role=True)
            assoc = self.ae.associate("127.0.0.1", self.report_to, ae_title="PACSBOX",
                                      ext_neg=[role])  # fmt: skip
        status, _ = assoc.send_n_event_report(ds, 2 if bad else 1, sc.SOP_CLASS,
                                              sc.WELL_KNOWN_INSTANCE)  # fmt: skip
        self.status = status.Status
        if self.report_to:
            assoc.release()

    def stop(self):
        self.server.shutdown()


def test_forward_commit_wait_exits_1_when_an_image_was_not_committed(ini):
    """No daemon: --wait runs both jobs itself; the peer reports on our association."""
    refs = _store(ini, 2)
    peer = Peer("WS", fail=frozenset([refs[0][1]]))
    try:
        cli(ini, "ae", "add", "WS", "--host", "127.0.0.1", "--port", str(peer.port))
        r = cli(ini, "forward", "--study", STUDY, "--to", "WS", "--commit", "--wait", check=False)
    finally:
        peer.stop()
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.splitlines()[-1] == (  # the one error line, after the progress bars
        "pacsbox: job 2: failed: 1 committed by WS, 1 failed (0112 no such object instance)"
    )
    assert r.stdout.splitlines()[-1] == "job 1: done: 2 delivered; commitment job 2"
    listing = cli(ini, "queue").stdout  # the queue page's rows, in a shell
    assert "commit   WS               failed" in listing and "1 failed (0112" in listing


def _web_box(tmp_path, **settings):
    ini = write_config(tmp_path / "box", SyncWrites="no", **settings)
    cfg = load(ini)
    return ini, cfg, Archive(cfg)


def test_the_web_forms_commitment_box_and_a_report_on_the_same_association(tmp_path):
    ini, cfg, archive = _web_box(tmp_path)
    peer = Peer("WS")
    try:
        for _ in range(2):
            archive.store(make_instance(study_uid=STUDY), source="test")
        cli(ini, "ae", "add", "WS", "--host", "127.0.0.1", "--port", str(peer.port))
        root = login(create_app(cfg, archive, clock=Clock()), "root")
        page = root.get(f"/studies/{STUDY}")
        form = next(f for f in page.forms.values() if f.action.endswith("/forward"))
        form["commit"] = True  # "request storage commitment"
        job_id = int(form.submit().headers["Location"].split("/queue/")[1].split("?")[0])
        runner = Runner(cfg, HANDLERS)
        assert runner.run_one(queue.claim(runner.name, utcnow(), only=job_id)) == "done"
        (commit,) = queue.jobs(kind="commit")
        assert (commit.owner, commit.destination, commit.state) == ("root", "WS", "queued")
        assert runner.run_one(queue.claim(runner.name, utcnow(), only=commit.id)) == "done"
        assert queue.get(commit.id).last_error == "2 committed by WS"
        ((transaction, refs),) = peer.asked
        assert len(refs) == 2 and transaction.startswith("1.2.826.0.1.3680043.10.1395.2.")
        rows = root.get(f"/studies/{STUDY}.json").json["commitments"]
        assert [(c["state"], c["by"]) for c in rows] == [("committed", "WS")] * 2
    finally:
        peer.stop()
        archive.close()


def test_a_failed_list_fails_the_job_and_a_retry_asks_only_for_the_rest(tmp_path):
    ini, cfg, archive = _web_box(tmp_path)
    try:
        uids = []
        for _ in range(3):
            data = make_instance(study_uid=STUDY)
            archive.store(data, source="test")
            uids.append(meta.parse(data).attrs.sop_instance_uid)
        peer = Peer("WS", fail=frozenset(uids[:1]))
        cli(ini, "ae", "add", "WS", "--host", "127.0.0.1", "--port", str(peer.port))
        job_id = forward.submit(forward.Selection(studies=[STUDY]), "WS", commit=True)
        runner = Runner(cfg, HANDLERS)
        assert runner.run_one(queue.claim(runner.name, utcnow(), only=job_id)) == "done"
        (commit,) = queue.jobs(kind="commit")
        assert runner.run_one(queue.claim(runner.name, utcnow(), only=commit.id)) == "failed"
        assert queue.get(commit.id).last_error == (
            "2 committed by WS, 1 failed (0112 no such object instance)"
        )
        root = login(create_app(cfg, archive, clock=Clock()), "root")
        rows = {c["sop_instance_uid"]: c for c in root.get(f"/studies/{STUDY}.json").json[
            "commitments"]}  # fmt: skip
        assert rows[uids[0]]["state"] == "failed"
        assert rows[uids[0]]["reason"] == "0112 no such object instance"
        assert (
            "commitment failed: 0112 no such object instance" in root.get(f"/studies/{STUDY}").text
        )
        peer.fail = frozenset()
        assert queue.retry(commit.id, utcnow())
        assert runner.run_one(queue.claim(runner.name, utcnow(), only=commit.id)) == "done"
        assert [len(refs) for _, refs in peer.asked] == [3, 1]  # only what was not committed
        assert queue.get(commit.id).last_error == "3 committed by WS"
    finally:
        peer.stop()
        archive.close()


def test_a_report_that_never_comes_retries_the_request(tmp_path):
    """CommitmentTimeout (minutes): 0.05 is 3 s. The job waits without holding the
    runner, then counts the silence as unreachable: the request is sent again later."""
    ini, cfg, archive = _web_box(tmp_path, CommitmentTimeout=0.05)
    peer = Peer("SILENT", silent=True)
    try:
        archive.store(make_instance(study_uid=STUDY), source="test")
        cli(ini, "ae", "add", "SILENT", "--host", "127.0.0.1", "--port", str(peer.port))
        job_id = forward.submit(forward.Selection(studies=[STUDY]), "SILENT", commit=True)
        runner = Runner(cfg, HANDLERS)
        runner.run_one(queue.claim(runner.name, utcnow(), only=job_id))
        (commit,) = queue.jobs(kind="commit")
        t0 = time.monotonic()
        assert runner.run_one(queue.claim(runner.name, utcnow(), only=commit.id)) == "waiting"
        waiting = queue.get(commit.id)
        assert waiting.last_error.startswith("waiting for the commitment report from SILENT")
        assert waiting.attempts == 0  # a look for the report is no attempt
        again = poll(lambda: queue.claim(runner.name, utcnow(), only=commit.id), 10)
        assert runner.run_one(again) == "retrying"
        assert time.monotonic() - t0 > 2.5
        job = queue.get(commit.id)
        assert job.last_error.startswith("no commitment report from SILENT within 0.05 min")
        assert job.failures == 0 and job.attempts == 1 and job.next_attempt  # backoff
        ((first, _),) = peer.asked
        assert first in job.last_error
        poll(lambda: utcnow().isoformat() >= job.next_attempt[:26], 20, what="the backoff")
        runner.run_one(queue.claim(runner.name, utcnow(), only=commit.id))
        assert len(peer.asked) == 2 and peer.asked[1][0] != first  # asked again, a new UID
    finally:
        peer.stop()
        archive.close()


def test_a_report_on_a_new_association_wakes_the_waiting_job(tmp_path):
    """The report comes to pacsbox's listener after our association has gone: the
    waiting job is due at once, not at the timeout (12 s here)."""
    ini, cfg, archive = _web_box(tmp_path, CommitmentTimeout=0.2)
    listener = Listener(cfg, archive, make_services(cfg, archive))
    listener.start(port=free_port())
    peer = Peer("LATE", report_to=listener.port, delay=4.0)
    try:
        archive.store(make_instance(study_uid=STUDY), source="test")
        cli(ini, "ae", "add", "LATE", "--host", "127.0.0.1", "--port", str(peer.port))
        job_id = forward.submit(forward.Selection(studies=[STUDY]), "LATE", commit=True)
        runner = Runner(cfg, HANDLERS)
        runner.run_one(queue.claim(runner.name, utcnow(), only=job_id))
        (commit,) = queue.jobs(kind="commit")
        assert runner.run_one(queue.claim(runner.name, utcnow(), only=commit.id)) == "waiting"
        t0 = time.monotonic()
        due = poll(lambda: queue.claim(runner.name, utcnow(), only=commit.id), 6,
                   what="the report to make the job due")  # fmt: skip
        assert time.monotonic() - t0 < 6 and peer.status == 0x0000
        assert runner.run_one(due) == "done"
        assert queue.get(commit.id).last_error == "1 committed by LATE"
    finally:
        peer.stop()
        listener.stop(5)
        archive.close()
