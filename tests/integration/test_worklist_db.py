"""Worklist items in a real SQLite index: defaults every source relies on, states
that only move forward, and expiry that spares a step still in progress."""

from __future__ import annotations

import datetime as dt

import pytest

from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db import worklist
from pacsbox.errors import NotFound, UsageError


@pytest.fixture
def index(ini):
    archive = Archive(load(ini))
    yield
    archive.close()


def test_an_item_gets_a_study_uid_and_ids_from_its_accession(index):
    item_id = worklist.add(
        {"patient_id": "P1", "patient_name": "Müller^Anna", "accession_number": "A100",
         "modality": "MR", "station_ae": "MR1", "start_date": "20261204", "start_time": "09:30"},
        source="cli",
    )  # fmt: skip
    item = worklist.get(item_id)
    assert item.study_instance_uid.startswith("2.25.") and len(item.study_instance_uid) <= 64
    assert (item.requested_procedure_id, item.sps_id) == ("A100", "A100")
    assert (item.patient_name_ci, item.start_time, item.status) == (
        "MÜLLER^ANNA",
        "0930",
        "scheduled",
    )
    s = worklist.summary(item)
    assert (s["start"], s["accession"], s["station_ae"]) == ("2026-12-04T09:30", "A100", "MR1")
    assert [i.id for i in worklist.find_order(accession="A100")] == [item_id]


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"modality": "CT"}, "patient ID or a patient name"),
        ({"patient_id": "P1"}, "needs a modality"),
        ({"patient_id": "P1", "modality": "CT", "start_date": "2026-12-04"}, "YYYYMMDD"),
        ({"patient_id": "P1", "modality": "CT", "start_time": "9h"}, "HHMM"),
        ({"patient_id": "P1", "modality": "CT", "station_ae": "A" * 17}, "at most 16"),
        ({"patient_id": "P1", "modality": "CT", "colour": "red"}, "not a worklist field"),
    ],
)
def test_bad_values_are_refused_with_the_reason(index, values, reason):
    with pytest.raises(UsageError, match=reason):
        worklist.add(values)
    assert worklist.items() == []


def test_a_finished_step_is_never_reopened(index):
    item_id = worklist.add({"patient_id": "P1", "modality": "CT"})
    worklist.set_status(item_id, worklist.IN_PROGRESS)
    with pytest.raises(UsageError, match="in progress: it cannot become scheduled"):
        worklist.set_status(item_id, worklist.SCHEDULED)
    worklist.set_status(item_id, worklist.COMPLETED)
    with pytest.raises(UsageError, match="completed"):
        worklist.set_status(item_id, worklist.DISCONTINUED)
    assert worklist.get(item_id).status == "completed"
    worklist.remove(item_id)
    with pytest.raises(NotFound):
        worklist.remove(item_id)


def test_expiry_removes_old_steps_but_not_one_in_progress(index):
    old = worklist.add({"patient_id": "P1", "modality": "CT", "start_date": "20261101"})
    running = worklist.add({"patient_id": "P2", "modality": "CT", "start_date": "20261101"})
    recent = worklist.add({"patient_id": "P3", "modality": "CT", "start_date": "20261203"})
    worklist.set_status(running, worklist.IN_PROGRESS)
    now = dt.datetime(2026, 12, 4, 12, 0)
    assert worklist.expire(0, now=now) == 0
    assert worklist.expire(7, now=now) == 1
    assert sorted(i.id for i in worklist.items()) == sorted([running, recent])
    assert old not in [i.id for i in worklist.items([worklist.SCHEDULED])]
