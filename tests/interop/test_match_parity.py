"""A workstation (DCMTK findscu) and the web page (/studies.json) get the same studies.

One corpus with chosen names (mixed case, accents, a bracket), IDs and
accession numbers with ``%`` and ``_`` in them, empty dates and times, is
stored in a running pacsbox; then one table of queries runs through findscu
(Study Root, STUDY level) and through the daemon's own web port with the same
keys, and both must answer the expected studies (the table names them, so the
two cannot agree on a wrong answer). Each case runs on SQLite and on
PostgreSQL, and the person name cases with PersonNameCaseInsensitive off and
on (issue 16: one PS3.4 matcher).
"""

from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from tests.helpers import cli, free_port
from tests.interop.test_find import findscu, start_box, store_folder
from tests.postgres import DATABASES, index_settings
from tests.synth import ROOT, make_instance, write_files

PASSWORD = "parity horse battery"

# label: (patient id, patient name, date, time, accession, description, modalities)
CORPUS = {
    "john1": ("PID-001", "SMITH^JOHN", "20240105", "083000", "ACC100", "CT HEAD", ["CT"]),
    "john2": ("PID-001", "SMITH^JOHN", "20240210", "141500", "ACC101", "MR BRAIN", ["MR"]),
    "jane": ("pid-002", "Smith^Jane", "20231231", "235959", "acc200", "ct chest", ["US", "OT"]),
    "anna": ("PID_003", "SMITHERS^ANNA", "20240101", "000000", "A_1", "100% CONTRAST", ["US"]),
    "jurgen": ("PID%004", "MÜLLER^JÜRGEN", "20240115", "120000", "A%1", "CT_ABDOMEN", ["CT"]),
    "muller": ("PIDX004", "müller^anna", "20240115", "235900", "AX1", "CTXABDOMEN", ["MR"]),
    "nodate": ("PID-007", "JONES^BOB", "", "", "", "", ["OT"]),
    "notime": ("PID-008", "JONES^ALICE", "20240120", "", "ACC800", "XR", ["CR"]),
    "middle": ("PID-009", "DOE^JOHN", "20240110", "101010", "ACC900", "CT NECK", ["CT"]),
    "bracket": ("PID-010", "ROE^[A]", "20240301", "170000", "ACC1000", "MR KNEE", ["MR"]),
    "nobracket": ("PID-011", "ROE^ABC", "20240302", "170000", "ACC1100", "MR HIP", ["MR"]),
}
ALL = set(CORPUS)
ERROR = None  # the query is refused: C-FIND C000, the web page 400 with a reason

# DICOM key -> the web search form's field for it.
WEB_FIELD = {
    "PatientName": "patient_name",
    "PatientID": "patient_id",
    "AccessionNumber": "accession",
    "StudyDescription": "description",
    "StudyID": "study_id",
    "StudyDate": "study_date",
    "StudyTime": "study_time",
    "StudyInstanceUID": "study_uid",
    "ModalitiesInStudy": "modality",
}


def _uids_of(labels):
    return lambda box: "\\".join(box.uid[x] for x in labels)


# (keys, expected labels) with PersonNameCaseInsensitive off. A value may be a
# function of the box (for UIDs, made when the corpus is).
CASES = [
    # C.2.2.2.3 universal matching: an empty value or a lone "*".
    ({"PatientName": ""}, ALL),
    ({"PatientName": "*"}, ALL),
    ({"StudyDate": ""}, ALL),
    ({"AccessionNumber": ""}, ALL),
    # C.2.2.2.1 single value (case-sensitive).
    ({"PatientID": "PID-001"}, {"john1", "john2"}),
    ({"PatientID": "PID_003"}, {"anna"}),
    ({"AccessionNumber": "A%1"}, {"jurgen"}),
    ({"AccessionNumber": "A_1"}, {"anna"}),
    ({"StudyDescription": "CT HEAD"}, {"john1"}),
    ({"PatientName": "ROE^[A]"}, {"bracket"}),
    # C.2.2.2.4 wild cards: case-sensitive, and % _ [ are plain characters.
    ({"PatientID": "PID-00?"}, {"john1", "john2", "nodate", "notime", "middle"}),
    ({"PatientID": "PID_00*"}, {"anna"}),
    ({"PatientID": "PID%*"}, {"jurgen"}),
    ({"PatientID": "pid*"}, {"jane"}),
    ({"AccessionNumber": "ACC10*"}, {"john1", "john2", "bracket"}),
    ({"AccessionNumber": "A?1"}, {"anna", "jurgen", "muller"}),
    ({"AccessionNumber": "acc*"}, {"jane"}),
    ({"StudyDescription": "CT_*"}, {"jurgen"}),
    ({"StudyDescription": "*% CONTRAST"}, {"anna"}),
    ({"StudyDescription": "*HEAD"}, {"john1"}),
    ({"StudyDescription": "ct*"}, {"jane"}),
    ({"PatientName": "ROE^[A]*"}, {"bracket"}),
    # C.2.2.2.5 date ranges open on either side; empty dates never match a range.
    ({"StudyDate": "20240105"}, {"john1"}),
    ({"StudyDate": "20240101-20240131"}, {"john1", "anna", "jurgen", "muller", "notime", "middle"}),
    ({"StudyDate": "-20240101"}, {"jane", "anna"}),
    ({"StudyDate": "20240115-"}, {"john2", "jurgen", "muller", "notime", "bracket", "nobracket"}),
    ({"StudyDate": "2024-13"}, ERROR),
    ({"StudyDate": "-"}, ERROR),
    ({"StudyDate": "2024O101"}, ERROR),
    # Time ranges; a single time covers its precision; empty times never match.
    ({"StudyTime": "0800-1200"}, {"john1", "jurgen", "middle"}),
    ({"StudyTime": "-0900"}, {"john1", "anna"}),
    ({"StudyTime": "2300-"}, {"jane", "muller"}),
    ({"StudyTime": "12"}, {"jurgen"}),
    ({"StudyTime": "noon"}, ERROR),
    # C.2.2.2.5.1 combined date and time: one range from 5 Jan 12:00 to 15 Jan 23:59.
    ({"StudyDate": "20240105-20240115", "StudyTime": "1200-2359"}, {"jurgen", "muller", "middle"}),
    (
        {"StudyDate": "20240115-", "StudyTime": "1300-"},
        {"john2", "muller", "notime", "bracket", "nobracket"},
    ),
    # C.2.2.2.2 list of UID matching.
    ({"StudyInstanceUID": _uids_of(["jane", "anna", "bracket"])}, {"jane", "anna", "bracket"}),
    ({"StudyInstanceUID": _uids_of(["middle"])}, {"middle"}),
    ({"StudyInstanceUID": "1.2.3.4.5.6.7.8.9"}, set()),
    # Modalities In Study (C.6.2.1.2): a study with any series of the modality.
    ({"ModalitiesInStudy": "MR"}, {"john2", "muller", "bracket", "nobracket"}),
    ({"ModalitiesInStudy": "US\\CR"}, {"jane", "anna", "notime"}),
    ({"ModalitiesInStudy": "O*"}, {"jane", "nodate"}),
    # Several keys: all must match.
    (
        {"PatientName": "SMITH*", "StudyDate": "20240101-", "ModalitiesInStudy": "CT"},
        {"john1"},
    ),
]

# (keys, expected with PersonNameCaseInsensitive off, expected with it on)
NAME_CASES = [
    ({"PatientName": "SMITH*"}, {"john1", "john2", "anna"}, {"john1", "john2", "jane", "anna"}),
    ({"PatientName": "smith*"}, set(), {"john1", "john2", "jane", "anna"}),
    ({"PatientName": "SM?TH^J*"}, {"john1", "john2"}, {"john1", "john2", "jane"}),
    ({"PatientName": "Smith^Jane"}, {"jane"}, {"jane"}),
    ({"PatientName": "SMITH^JANE"}, set(), {"jane"}),
    ({"PatientName": "MÜLLER*"}, {"jurgen"}, {"jurgen", "muller"}),
    ({"PatientName": "müller*"}, {"muller"}, {"jurgen", "muller"}),
    ({"PatientName": "*ANNA"}, {"anna"}, {"anna", "muller"}),
]


@dataclass
class Box:
    server: object
    tmp: Path
    web: str
    uid: dict[str, str] = field(default_factory=dict)
    runs: int = 0
    opener: urllib.request.OpenerDirector | None = None


def _corpus(folder: Path) -> dict[str, str]:
    uids, datas = {}, []
    for label, (pid, name, date, time, acc, desc, mods) in CORPUS.items():
        study = uids[label] = generate_uid(ROOT)
        for n, mod in enumerate(mods, 1):
            datas.append(
                make_instance(
                    patient_id=pid,
                    patient_name=name,
                    study_uid=study,
                    modality=mod,
                    study_date=date,
                    study_time=time,
                    accession=acc,
                    description=desc,
                    series_number=n,
                    rows=8,
                    columns=8,
                    charset="ISO_IR 192",
                )
            )
    write_files(folder, datas)
    return uids


def _start(request, tmp_path_factory, case_insensitive: bool):
    tmp = tmp_path_factory.mktemp("parity")
    uids = _corpus(tmp / "corpus")
    port = free_port()
    ini, srv = start_box(
        tmp,
        WebPort=port,
        PersonNameCaseInsensitive="yes" if case_insensitive else "no",
        **index_settings(request, request.param),
    )
    try:
        store_folder(srv, tmp / "corpus")
        cli(ini, "user", "passwd", "root", input=PASSWORD + "\n")
        box = Box(srv, tmp, f"http://127.0.0.1:{port}", uids)
        box.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        body = urllib.parse.urlencode({"name": "root", "password": PASSWORD}).encode()
        with box.opener.open(box.web + "/login.json", body, timeout=30) as r:
            assert json.load(r)["ok"]
        yield box
    finally:
        srv.stop()


@pytest.fixture(scope="module", params=DATABASES)
def box(request, tmp_path_factory):
    """The corpus in a pacsbox with PersonNameCaseInsensitive off."""
    yield from _start(request, tmp_path_factory, False)


@pytest.fixture(scope="module", params=DATABASES)
def box_ci(request, tmp_path_factory):
    """The same corpus in a pacsbox with PersonNameCaseInsensitive on (the default)."""
    yield from _start(request, tmp_path_factory, True)


def _values(box: Box, keys: dict) -> dict[str, str]:
    return {k: (v(box) if callable(v) else v) for k, v in keys.items()}


def by_findscu(box: Box, keys: dict[str, str]):
    """(error?, set of StudyInstanceUIDs) from a Study Root C-FIND at the STUDY level."""
    args = ["SpecificCharacterSet=ISO_IR 192"] + [f"{k}={v}" for k, v in keys.items()]
    status, rsps = findscu(box, "S", "STUDY", *args, "StudyInstanceUID")
    if status == "Failed: UnableToProcess":
        return True, set()
    assert status == "Success", status
    return False, {str(r.StudyInstanceUID) for r in rsps}


def by_web(box: Box, keys: dict[str, str]):
    """(error?, set of study UIDs) from /studies.json, following the page cursor."""
    params = {WEB_FIELD[k]: v for k, v in keys.items()}
    found: set[str] = set()
    url = box.web + "/studies.json?" + urllib.parse.urlencode(params)
    while url:
        try:
            with box.opener.open(url, timeout=30) as r:
                data = json.load(r)
        except urllib.error.HTTPError as exc:
            data = json.load(exc)
            assert exc.code == 400 and data["error"], (exc.code, data)
            return True, set()
        found |= {s["study_uid"] for s in data["studies"]}
        after = data["next"]
        url = box.web + "/studies.json?" + urllib.parse.urlencode({**params, "after": after})
        url = url if after else ""
    return False, found


def _check(box: Box, keys: dict, want: set[str] | None) -> None:
    keys = _values(box, keys)
    expected = (True, set()) if want is ERROR else (False, {box.uid[x] for x in want})
    workstation, web = by_findscu(box, keys), by_web(box, keys)
    label = {v: k for k, v in box.uid.items()}

    def named(answer):
        return answer[0] and "refused" or sorted(label.get(u, u) for u in answer[1])

    got = {"findscu": named(workstation), "web": named(web)}
    assert got == {"findscu": named(expected), "web": named(expected)}


def _id(case) -> str:
    return "&".join(f"{k}={'<uids>' if callable(v) else v}" for k, v in case[0].items())


def _params(cases):
    return [pytest.param(*c, id=_id(c)) for c in cases]


@pytest.mark.parametrize(("keys", "want"), _params(CASES))
def test_same_studies(box, keys, want):
    _check(box, keys, want)


@pytest.mark.parametrize(("keys", "off", "on"), _params(NAME_CASES))
def test_person_names_case_sensitive_by_default(box, keys, off, on):
    _check(box, keys, off)


@pytest.mark.parametrize(("keys", "off", "on"), _params(NAME_CASES))
def test_person_names_case_insensitive_when_configured(box_ci, keys, off, on):
    _check(box_ci, keys, on)
