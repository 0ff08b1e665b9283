"""How much of what a remote AE lists is stored here (the "local" column of SCU-2).

A remote query's answers are compared with the index by their keys, so the
user sees at a glance which studies need retrieving; the counts come from
the index's own Number Of ... Related columns, one query per page of results.
"""

from __future__ import annotations

from collections.abc import Iterable

from pacsbox.db.models import Patient, Series, Study

_CHUNK = 500  # keys per IN (...): under every SQLite's bound-parameter limit


def local_counts(level: str, keys: Iterable[str]) -> dict[str, int]:
    """Key -> what is stored of it: instances of a study or series (by UID),
    studies of a patient (by Patient ID). Keys stored nowhere are absent."""
    column, key, count = {
        "patient": (Patient, Patient.patient_id, Patient.num_studies),
        "study": (Study, Study.study_instance_uid, Study.num_instances),
        "series": (Series, Series.series_instance_uid, Series.num_instances),
    }[level]
    wanted = sorted({k for k in keys if k})
    out: dict[str, int] = {}
    for start in range(0, len(wanted), _CHUNK):
        rows = column.select(key, count).where(key.in_(wanted[start : start + _CHUNK])).tuples()
        for k, n in rows:
            out[k] = out.get(k, 0) + int(n or 0)  # a Patient ID under two issuers adds up
    return out
