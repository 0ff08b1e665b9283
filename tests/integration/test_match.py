"""The one matcher (db/match.py) on a real index, in SQLite and in a real PostgreSQL.

Expected answers are written from the stored records, not read from the index;
the same table must hold on both databases (GLOB on one, LIKE on the other).
"""

from __future__ import annotations

import pytest

from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db import match as m
from pacsbox.db.models import Instance, Patient, Series, Study, database
from pacsbox.errors import UnableToProcess
from tests.helpers import write_config
from tests.postgres import DATABASES, index_settings
from tests.synth import make_instance

# label: patient id, name, study date, time, accession, [(modality, series date)]
RECORDS = {
    "a": ("P_1", "Doe^John", "20240105", "083000", "A%1", [("CT", "20240105")]),
    "b": ("PX1", "DOE^JANE", "20240110", "120000", "AX1", [("MR", "20240111"), ("CT", "")]),
    "c": ("P[1]", "ÉCOLE^ANNE", "", "", "", [("US", "")]),
    "d": ("p_1", "école^zoé", "20231231", "235959", "a%1", [("OT", "20240301")]),
}


@pytest.fixture(scope="module", params=DATABASES)
def index(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("match")
    archive = Archive(load(write_config(tmp / "box", **index_settings(request, request.param))))
    uids = {}
    for label, (pid, name, date, time, acc, series) in RECORDS.items():
        uids[label] = f"1.2.826.0.1.3680043.10.1395.77.{len(uids) + 1}"
        for n, (mod, sdate) in enumerate(series, 1):
            extra = {"SeriesDate": sdate}
            data = make_instance(
                patient_id=pid, patient_name=name, study_uid=uids[label], modality=mod,
                study_date=date, study_time=time, accession=acc, series_number=n,
                instance_number=n, rows=4, columns=4, charset="ISO_IR 192", extra=extra,
            )  # fmt: skip
            archive.store(data)
    yield uids
    archive.close()


def studies(index, keys, ci=False) -> set[str]:
    found = m.match(keys, m.STUDY, pn_case_insensitive=ci)
    sel = m.joined(Study.select(Study.study_instance_uid), m.STUDY)
    for cond in found.conditions:
        sel = sel.where(cond)
    label = {v: k for k, v in index.items()}
    return {label[u] for (u,) in sel.tuples()}


@pytest.mark.parametrize(
    ("keys", "want"),
    [
        ({"PatientID": "P_1"}, {"a"}),  # single value: _ is a character, case counts
        ({"PatientID": "P_*"}, {"a"}),  # wild card: _ stays literal (not LIKE's any-one)
        ({"PatientID": "P?1"}, {"a", "b"}),
        ({"PatientID": "P[1]*"}, {"c"}),  # [ is literal (not GLOB's character class)
        ({"AccessionNumber": "A%*"}, {"a"}),
        ({"AccessionNumber": "a*"}, {"d"}),
        ({"AccessionNumber": "A%1\\AX1"}, {"a", "b"}),  # a value list: any of them
        ({"PatientName": "DOE*"}, {"b"}),
        ({"PatientName": "*"}, {"a", "b", "c", "d"}),  # universal
        ({"PatientName": ""}, {"a", "b", "c", "d"}),
        ({"PatientName": "ÉCOLE*"}, {"c"}),
        ({"StudyDate": "-20240105"}, {"a", "d"}),  # the study without a date never matches
        ({"StudyDate": "20240105-"}, {"a", "b"}),
        ({"StudyDate": "20240101-20240131"}, {"a", "b"}),
        ({"StudyDate": "20240110"}, {"b"}),
        ({"StudyTime": "-1200"}, {"a", "b"}),
        ({"StudyTime": "08"}, {"a"}),
        ({"StudyDate": "20240105-20240110", "StudyTime": "0900-1200"}, {"b"}),
        ({"StudyDate": "20231231-", "StudyTime": "2300-"}, {"a", "b", "d"}),
        ({"ModalitiesInStudy": "CT"}, {"a", "b"}),
        ({"ModalitiesInStudy": "US\\OT"}, {"c", "d"}),
        # Keys below the level: a study with one series matching all of them.
        ({"SeriesDate": "20240101-", "Modality": "CT"}, {"a"}),
        ({"SeriesDate": "20240101-", "Modality": "MR"}, {"b"}),
        ({"SeriesDate": "-20231231"}, set()),
        ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.4"}, {"b", "c", "d"}),  # MR image storage
    ],
    ids=lambda v: "&".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else None,
)
def test_keys_match_the_records(index, keys, want):
    assert studies(index, keys) == want


def test_uid_lists_and_repeated_keys(index):
    assert studies(index, {"StudyInstanceUID": f"{index['a']}\\{index['d']}"}) == {"a", "d"}
    twice = [m.Condition("StudyDate", "20240101-"), m.Condition("StudyDate", "-20240107")]
    assert studies(index, twice) == {"a"}  # both must match


def test_person_names_ignore_case_only_when_asked(index):
    assert studies(index, {"PatientName": "doe*"}) == set()
    assert studies(index, {"PatientName": "doe*"}, ci=True) == {"a", "b"}
    assert studies(index, {"PatientName": "école*"}) == {"d"}
    assert studies(index, {"PatientName": "école*"}, ci=True) == {"c", "d"}
    # Other text keys never ignore case.
    assert studies(index, {"AccessionNumber": "ax1"}, ci=True) == set()


@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        ({"StudyDate": "2024-13"}, "StudyDate: '2024' is not a date"),
        ({"StudyDate": "-"}, "StudyDate: a range needs"),
        ({"StudyTime": "noon"}, "StudyTime: 'noon' is not a time"),
        ({"StudyDate": "20240101-", "StudyTime": "25x-"}, "StudyTime: '25x' is not a time"),
        ({"SeriesNumber": "two"}, "SeriesNumber: 'two' is not a number"),
        ({"PatientComments": "x"}, "PatientComments: not a key"),
    ],
)
def test_bad_values_are_refused_with_the_key_named(index, keys, reason):
    with pytest.raises(UnableToProcess, match=reason.replace("(", r"\(")):
        m.match(keys, m.STUDY)


def test_counts_of_keys_that_match(index):
    assert m.match({"PatientName": "", "StudyDate": "*"}, m.STUDY).matched == 0
    both = m.match({"StudyDate": "20240101-", "StudyTime": "08-", "PatientID": "X"}, m.STUDY)
    assert both.matched == 3 and len(both.conditions) == 2  # date and time are one range


def test_an_exact_value_is_an_equality_on_the_indexed_column(index):
    """Wild cards and ranges aside, a key stays ``column = ?`` so its index is used."""
    for level, keys, column in (
        (m.STUDY, {"PatientID": "P_1"}, Patient.patient_id),
        (m.SERIES, {"StudyInstanceUID": index["a"]}, Study.study_instance_uid),
        (m.SERIES, {"SeriesInstanceUID": "1.2.3"}, Series.series_instance_uid),
        (m.IMAGE, {"SOPInstanceUID": "1.2.3"}, Instance.sop_instance_uid),
    ):
        (cond,) = m.match(keys, level).conditions
        sql, params = m.joined(m.TABLE[level].select(column), level).where(cond).sql()
        assert f'."{column.column_name}" = ' in sql and "LIKE" not in sql and "GLOB" not in sql
        if database.obj.__class__.__name__ == "SqliteDatabase":
            rows = database.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()
            plan = " ".join(r[-1] for r in rows)
            assert f"({column.column_name}=?)" in plan, plan


def test_resolve_takes_keywords_tags_and_paths():
    assert m.resolve("PatientName") == "PatientName"
    assert m.resolve("00100010") == "PatientName"
    assert m.resolve("(0010,0020)") == "PatientID"
    assert m.resolve("00400100.Modality") == "ScheduledProcedureStepSequence.Modality"
    for bad in ("NoSuchKeyword", "0010001", "7FE1FFFF"):
        with pytest.raises(UnableToProcess):
            m.resolve(bad)
