"""Study and patient searches and their JSON twins (WEB-1): DICOM keys through the one matcher.

Each form field is a DICOM key and is matched by ``db/match.py``, exactly as
a workstation's C-FIND is, so the page and a workstation find the same
studies; only the form's conveniences are rewritten here first.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pacsbox.db.match import PATIENT, STUDY, Condition, match
from pacsbox.db.models import Patient, Study
from pacsbox.errors import UsageError
from pacsbox.web import browse
from pacsbox.web import privileges as pv
from pacsbox.web.browse import cursor_in, cursor_out, patient_row, study_row
from pacsbox.web.core import Ctx, arg, url

if TYPE_CHECKING:
    from pacsbox.db.models import SelectOf

# The search form's fields and the DICOM key each one is: the matching is
# db/match.py's, the same as C-FIND's. Modality, series date and series
# time are series keys: a study matches when one of its series matches them all.
SEARCH_KEYS = {
    "patient_id": "PatientID",
    "patient_name": "PatientName",
    "study_id": "StudyID",
    "accession": "AccessionNumber",
    "description": "StudyDescription",
    "study_uid": "StudyInstanceUID",
    "study_date": "StudyDate",
    "study_time": "StudyTime",
    "modality": "Modality",
    "series_date": "SeriesDate",
    "series_time": "SeriesTime",
}
_LONGEST = {"patient_name": 324, "study_uid": 65 * 100}  # else 64 characters
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _dicom_value(name: str, value: str) -> str:
    """A form value as the DICOM value it stands for (the form's conveniences).

    An ISO date (2024-03-01) is the date 20240301; a time may end in ``*``
    (``08*``, the form's old hint), which is the time ``08``: hour 8, as the
    range rule reads a time of that precision; modalities are upper case (CS).
    """
    if len(value) > _LONGEST.get(name, 64):
        raise UsageError(f"{name}: longer than {_LONGEST.get(name, 64)} characters")
    if name.endswith("_date") or name.startswith("date_"):
        return value.replace("-", "") if _ISO_DATE.fullmatch(value) else value
    if name.endswith("_time"):
        return value.rstrip("*")
    if name == "modality":
        return value.upper()
    return value


def search_keys(params: dict[str, str]) -> list[Condition]:
    """The DICOM keys of a study search; date_from/date_to are one more StudyDate range."""
    keys = [
        Condition(kw, _dicom_value(name, params[name]))
        for name, kw in SEARCH_KEYS.items()
        if params.get(name)
    ]
    lo, hi = params.get("date_from", ""), params.get("date_to", "")
    if lo or hi:
        lo, hi = _dicom_value("date_from", lo), _dicom_value("date_to", hi)
        keys.append(Condition("StudyDate", f"{lo}-{hi}"))
    return keys


def study_query(
    p: pv.Principal, params: dict[str, str], *, pn_case_insensitive: bool = False
) -> SelectOf[Study]:
    """Studies visible to ``p`` matching the search form.

    Raises UsageError or UnableToProcess (both HTTP 400) on bad input.
    """
    q = Study.select(Study, Patient).join(Patient).where(pv.study_filter(p))
    found = match(search_keys(params), STUDY, pn_case_insensitive=pn_case_insensitive)
    for c in found.conditions:
        q = q.where(c)
    read = params.get("read", "")
    if read in ("yes", "no"):
        q = q.where(Study.read == (read == "yes"))
    elif read:
        raise UsageError("read: yes, no or empty")
    return q


def page_studies(
    p: pv.Principal,
    params: dict[str, str],
    limit: int | None = None,
    *,
    pn_case_insensitive: bool = False,
) -> dict[str, Any]:
    limit = limit or browse.PAGE
    desc = params.get("sort", "date_desc") != "date_asc"
    q = study_query(p, params, pn_case_insensitive=pn_case_insensitive)
    cur = cursor_in(params.get("after", ""))
    if cur is not None:
        d, i = str(cur[0]), cur[1]
        if desc:
            q = q.where((Study.study_date < d) | ((Study.study_date == d) & (Study.id < i)))
        else:
            q = q.where((Study.study_date > d) | ((Study.study_date == d) & (Study.id > i)))
    order = (Study.study_date.desc(), Study.id.desc()) if desc else (Study.study_date, Study.id)
    rows = list(q.order_by(*order).limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = cursor_out([rows[-1].study_date, rows[-1].id]) if more and rows else ""
    return {"studies": [study_row(s) for s in rows], "next": nxt}


def register(ctx: Ctx) -> None:
    pn_ci = bool(ctx.cfg.PersonNameCaseInsensitive)

    def params_from_query() -> dict[str, str]:
        keys = [*SEARCH_KEYS, "date_from", "date_to", "read", "sort", "after"]
        return {k: arg(k) for k in keys if arg(k)}

    @ctx.page("/studies", template="studies.tpl")
    def studies(ident):
        params = params_from_query()
        data = page_studies(ident.principal, params, pn_case_insensitive=pn_ci)
        data.update(title="Studies", params=params)
        data["next_url"] = (
            url("/studies", **{**params, "after": data["next"]}) if data["next"] else ""
        )
        return data

    @ctx.page("/patients", template="patients.tpl")
    def patients(ident):
        p = ident.principal
        q = Patient.select().where(pv.patient_filter(p))
        pid, name = arg("patient_id"), arg("patient_name")
        keys = {"PatientID": _dicom_value("patient_id", pid)}
        keys["PatientName"] = _dicom_value("patient_name", name)
        for c in match(keys, PATIENT, pn_case_insensitive=pn_ci).conditions:
            q = q.where(c)
        cur = cursor_in(arg("after"))
        if cur is not None:
            n, i = str(cur[0]), cur[1]
            q = q.where(
                (Patient.patient_name_ci > n) | ((Patient.patient_name_ci == n) & (Patient.id > i))
            )
        rows = list(q.order_by(Patient.patient_name_ci, Patient.id).limit(browse.PAGE + 1))
        more = len(rows) > browse.PAGE
        rows = rows[: browse.PAGE]
        nxt = cursor_out([rows[-1].patient_name_ci, rows[-1].id]) if more else ""
        return {
            "title": "Patients",
            "patients": [patient_row(r) for r in rows],
            "next": nxt,
            "next_url": url("/patients", patient_id=pid, patient_name=name, after=nxt)
            if nxt
            else "",
        }
