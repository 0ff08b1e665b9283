"""HL7 messages carried out in-process on a real index: the order controls' decisions
(XO without NW, DC of a step in progress, CA of a finished one), an ADT for a patient
the archive does not hold, an A40 to an ID nobody has, and a merge job run twice."""

from __future__ import annotations

import pytest

from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db import worklist
from pacsbox.db.auth_models import Journal
from pacsbox.db.models import Patient, Study
from pacsbox.hl7.process import Processor
from tests.helpers import run_jobs
from tests.integration.web.conftest import make_dicom

MSH = "MSH|^~\\&|RIS|HOSP|PACSBOX|CLINIC|20261204101500||{kind}|{ctl}|P|2.5"


@pytest.fixture
def box(ini):
    cfg = load(ini).replace(HL7StationMap="MR=MR01")
    archive = Archive(cfg)
    yield cfg, archive, Processor(cfg)
    archive.close()


def _say(proc: Processor, *segments: str) -> list[str]:
    answer = proc.handle("\r".join(segments).encode(), "127.0.0.1")
    return next(s for s in answer.data.decode().split("\r") if s.startswith("MSA")).split("|")


def _order(ctl: str, control: str, placer: str, modality: str = "MR") -> tuple[str, ...]:
    obr = ["OBR", "1", placer, "", "MRK^MR knee", *[""] * 13, "A" + placer, "", "", "", "",
           "", modality]  # fmt: skip
    return (MSH.format(kind="ORM^O01", ctl=ctl), "PID|1||P1||DOE^JOHN", f"ORC|{control}|{placer}",
            "|".join(obr))  # fmt: skip


def test_order_controls(box):
    _, _, proc = box
    assert _say(proc, *_order("1", "XO", "PX"))[1] == "AA"  # no NW came: XO creates it
    (item,) = worklist.find_order(placer="PX")
    assert (item.station_ae, item.accession_number, item.source) == ("MR01", "APX", "hl7:RIS")
    worklist.set_status(item.id, worklist.IN_PROGRESS)
    msa = _say(proc, *_order("2", "DC", "PX"))
    assert msa[1] == "AA" and "discontinued" in msa[3]
    assert worklist.get(item.id).status == worklist.DISCONTINUED
    msa = _say(proc, *_order("3", "CA", "PX"))
    assert msa[1] == "AA" and "already discontinued" in msa[3]
    assert _say(proc, *_order("4", "NW", "PY", modality=""))[1:4] == [
        "AR", "4", "OBR-24 (modality) is missing",
    ]  # fmt: skip
    journal = [(j.action, j.target, j.detail[:2]) for j in Journal.select().order_by(Journal.id)]
    assert journal == [("hl7 ORM^O01", str(n), c) for n, c in enumerate("AA AA AA AR".split(), 1)]


def test_an_adt_for_a_patient_without_images_updates_the_worklist_only(box):
    _, _, proc = box
    _say(proc, *_order("1", "NW", "P1"))
    msa = _say(proc, MSH.format(kind="ADT^A08", ctl="2"), "PID|1||P1||ROE^JANE||19800101|F")
    assert msa[1] == "AA" and "not in the archive" in msa[3]
    (item,) = worklist.items()
    assert (item.patient_name, item.birth_date, item.sex) == ("ROE^JANE", "19800101", "F")
    assert item.patient_name_ci == "ROE^JANE"


def test_a40_to_an_id_nobody_has_renames_and_a_merge_run_twice_changes_nothing(box):
    cfg, archive, proc = box
    archive.store(make_dicom(patient_id="OLD", patient_name="A^B"), source="test")
    msa = _say(proc, MSH.format(kind="ADT^A40", ctl="1"), "PID|1||NEW||A^B", "MRG|OLD")
    assert msa[1] == "AA" and "edit job" in msa[3]
    assert run_jobs(cfg, archive) == ["done"]
    assert [p.patient_id for p in Patient.select()] == ["NEW"]
    archive.store(make_dicom(patient_id="OTHER", patient_name="C^D"), source="test")
    msa = _say(proc, MSH.format(kind="ADT^A40", ctl="2"), "PID|1||NEW||A^BE", "MRG|OTHER")
    assert msa[1] == "AA"
    assert run_jobs(cfg, archive) == ["done", "done"]  # NEW's own name, then the merge
    (pt,) = Patient.select()
    assert (pt.patient_id, pt.patient_name, pt.num_studies, pt.num_instances) == (
        "NEW", "A^BE", 2, 2,
    )  # fmt: skip
    assert {s.patient_id for s in Study.select()} == {pt.id}
    # The same merge again (a retried job) finds nothing left to move.
    from pacsbox import edit

    plan = edit.Edit("merge", 999, {"patient_id": "NEW"}, into=pt.id)
    assert "0 files rewritten" in edit.run(archive, plan)
    assert Patient.select().count() == 1


def test_an_edit_on_the_web_page_updates_the_patients_open_worklist_items(box):
    cfg, archive, proc = box
    from pacsbox import edit

    archive.store(make_dicom(patient_id="P1", patient_name="DOE^JOHN"), source="test")
    _say(proc, *_order("1", "NW", "PA"))
    done = worklist.add({"patient_id": "P1", "patient_name": "DOE^JOHN", "modality": "CT"})
    worklist.set_status(done, worklist.COMPLETED)
    pk = Patient.get(Patient.patient_id == "P1").id
    plan = edit.patient_edit(pk, {"patient_name": "DOE^JANE", "sex": "F"})
    assert edit.describe(plan) == "patient_name: 'DOE^JOHN' -> 'DOE^JANE'; sex: '' -> 'F'"
    edit.run(archive, plan)
    (open_item,) = worklist.find_order(placer="PA")
    assert (open_item.patient_name, open_item.sex) == ("DOE^JANE", "F")
    assert worklist.get(done).patient_name == "DOE^JOHN"  # a finished step keeps its record


def test_a_port_in_use_is_an_error_at_start(box):
    import socket

    from pacsbox.hl7.listener import Hl7Listener

    cfg, _, _ = box
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listener = Hl7Listener(cfg.replace(BindAddress="127.0.0.1"), taken.getsockname()[1])
        with pytest.raises(OSError):
            listener.start()
        listener.stop()
