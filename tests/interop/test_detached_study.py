"""Detached Study Management N-EVENT-REPORT (table 21 of the statement), pynetdicom as the RIS.

No Detached Study Management SCP is packaged for Debian, so pynetdicom (a real
implementation nobody here wrote) sends the notifications.
"""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, build_role

from tests.helpers import Server, cli, poll, write_config

DSM = "1.2.840.10008.3.1.2.3.1"


@pytest.fixture
def box(tmp_path):
    ini = write_config(tmp_path / "box", SyncWrites="no")
    cli(ini, "ae", "add", "RIS", "--host", "127.0.0.1")
    srv = Server(ini).start()
    yield srv
    srv.stop()


def _info(**values: str) -> Dataset:
    """Event information; pynetdicom sends an empty one as a data set that never comes."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    for k, v in values.items():
        setattr(ds, k, v)
    return ds


def _notify(srv: Server, events: list[tuple[int, str, Dataset]], title: str = "RIS") -> list:
    ae = AE(ae_title=title)
    ae.add_requested_context(DSM, [ImplicitVRLittleEndian])
    assoc = ae.associate(
        "127.0.0.1", srv.port, ae_title=srv.ae_title, ext_neg=[build_role(DSM, scp_role=True)]
    )
    if not assoc.is_established:
        return []
    try:
        out = []
        for type_id, study, info in events:
            status, _ = assoc.send_n_event_report(info, type_id, DSM, study)
            out.append(int(status.Status) if "Status" in status else None)
        return out
    finally:
        assoc.release()


def _journal(srv: Server) -> list[tuple[str, str, str, str]]:
    from pacsbox.db import close_database, open_database
    from pacsbox.db.auth_models import Journal
    from pacsbox.db.queue import jobs

    open_database(srv.cfg.database_url, run_migrations=False)
    try:
        rows = [(j.action, j.user, j.target, j.detail) for j in Journal.select()]
        rows += [("job", j.kind, j.payload.get("study_uid", ""), "") for j in jobs()]
        return rows
    finally:
        close_database()


def test_every_event_of_table_21_is_answered_and_journaled(box):
    scheduled, other = generate_uid(), generate_uid()
    info = Dataset()
    info.SpecificCharacterSet = "ISO_IR 100"
    info.ScheduledStudyStartDate = "20261204"
    info.ScheduledStudyStartTime = "0930"
    info.ScheduledStudyLocationAETitle = "CT1"
    info.RequestedProcedureDescription = "CT HEAD"
    info.ReferencedPatientSequence = []
    events = [(2, scheduled, info), (3, other, _info(StudyArrivalDate="20261204"))]
    events += [(n, other, _info()) for n in (1, 4, 5, 6, 7, 8)]
    assert _notify(box, events) == [0x0000] * 8
    rows = poll(lambda: (r := _journal(box)) and any(x[0] == "job" for x in r) and r)
    journaled = [r for r in rows if r[0].startswith("study-")]
    assert len(journaled) == 8 and {r[1] for r in journaled} == {"RIS"}
    (sched,) = [r for r in journaled if r[0] == "study-scheduled"]
    assert sched[2] == scheduled and "ScheduledStudyLocationAETitle=CT1" in sched[3]
    # The study scheduled event queued the worklist query for that study.
    assert [r[1:3] for r in rows if r[0] == "job"] == [("worklist-query", scheduled)]
    log = box.output()
    assert "Detached Study Management study scheduled from RIS" in log
    assert "Traceback" not in log


def test_unknown_event_type_and_unknown_sender(box):
    assert _notify(box, [(42, generate_uid(), _info())]) == [0x0113]
    assert _notify(box, [(2, generate_uid(), _info())], title="STRANGER") == []  # rejected
