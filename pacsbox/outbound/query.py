"""Query a remote AE (SCU-2): keys in, rows out, each marked with what is stored here.

The CLI (``pacsbox query``) and the web page's Remote search build the same
identifier here and read the same rows, so a script and a user see the same
answer. Study and series queries use the Study Root model, patient queries
the Patient Root model; the peer is called with our own AE title.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from pacsbox import scu
from pacsbox.config import Config
from pacsbox.db import holdings, match
from pacsbox.errors import UnableToProcess, UsageError
from pacsbox.outbound.deliver import peer_of
from pacsbox.scu import remote

LEVELS = ("patient", "study", "series")
_DATES = re.compile(r"^(|\d{8}|\d{8}-|-\d{8}|\d{8}-\d{8})$")  # PS3.4 C.2.2.2.5 range


@dataclass(frozen=True)
class Level:
    """What a level asks for, shows, and how its rows are matched with the index."""

    model: str  # "patient" (Patient Root) or "study" (Study Root)
    returned: tuple[str, ...]  # return keys asked for unless the user gave them
    key: str  # the keyword that names a row in the index
    count: str  # the peer's count to compare with what is stored
    unit: str  # what the counts count


LEVEL: dict[str, Level] = {
    "patient": Level(
        "patient",
        ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
         "NumberOfPatientRelatedStudies"),
        "PatientID", "NumberOfPatientRelatedStudies", "studies",
    ),
    "study": Level(
        "study",
        ("PatientName", "PatientID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
         "StudyDescription", "ModalitiesInStudy", "StudyInstanceUID",
         "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"),
        "StudyInstanceUID", "NumberOfStudyRelatedInstances", "instances",
    ),
    "series": Level(
        "study",
        ("StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber", "Modality", "SeriesDate",
         "SeriesDescription", "NumberOfSeriesRelatedInstances"),
        "SeriesInstanceUID", "NumberOfSeriesRelatedInstances", "instances",
    ),
}  # fmt: skip

# Columns of the terminal table: (keyword, heading, width); the last is unbounded.
COLUMNS: dict[str, tuple[tuple[str, str, int], ...]] = {
    "patient": (("PatientID", "PATIENT ID", 16), ("PatientName", "NAME", 24),
                ("PatientBirthDate", "BIRTH", 9), ("PatientSex", "SEX", 4)),
    "study": (("StudyDate", "DATE", 9), ("PatientID", "PATIENT ID", 14),
              ("PatientName", "NAME", 20), ("AccessionNumber", "ACCESSION", 12),
              ("ModalitiesInStudy", "MODS", 6), ("StudyDescription", "DESCRIPTION", 20),
              ("StudyInstanceUID", "STUDY UID", 0)),
    "series": (("SeriesNumber", "NO", 5), ("Modality", "MOD", 4),
               ("SeriesDescription", "DESCRIPTION", 24), ("SeriesInstanceUID", "SERIES UID", 0)),
}  # fmt: skip


def parse_keys(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs (keyword or tag) -> {keyword: value}; raises UsageError."""
    keys: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"-k {pair!r}: expected KEY=VALUE (e.g. PatientID=123)")
        try:
            keyword = match.resolve(name)
        except UnableToProcess as exc:
            raise UsageError(f"-k {pair!r}: {exc}") from None
        if "." in keyword:
            raise UsageError(f"-k {pair!r}: sequence keys are not supported")
        if dictionary_VR(keyword) == "DA" and not _DATES.match(value.strip()):
            raise UsageError(f"-k {pair!r}: a date YYYYMMDD or a range of them (D1-D2, D1-, -D2)")
        keys[keyword] = value.strip()
    return keys


def identifier(level: str, keys: dict[str, str]) -> Dataset:
    """The C-FIND identifier: the level's return keys, then the user's keys over them.

    Raises UsageError for an unknown level and for a series query without a
    Study Instance UID (PS3.4 C.4.1.2.1: the Study Root model's series level
    needs its study's unique key).
    """
    if level not in LEVEL:
        raise UsageError(f"level {level!r}: one of {', '.join(LEVELS)}")
    if level == "series" and not keys.get("StudyInstanceUID"):
        raise UsageError("a series query needs -k StudyInstanceUID=UID (the study to look in)")
    ds = Dataset()
    ds.QueryRetrieveLevel = level.upper()
    for kw in LEVEL[level].returned:
        setattr(ds, kw, "")
    for kw, value in keys.items():
        try:
            setattr(ds, kw, value)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"-k {kw}={value!r}: {exc}") from None
    return ds


def _plain(value: Any) -> Any:
    """A data element's value as JSON has it: text, number, or a list of them."""
    if isinstance(value, MultiValue | list):
        return [_plain(v) for v in value]
    if isinstance(value, int | float | str):
        return value
    return str(value)


def row_of(ds: Dataset) -> dict[str, Any]:
    """A match as {keyword: value} (sequences and binary values left out)."""
    out: dict[str, Any] = {}
    for elem in ds:
        if elem.keyword and elem.VR not in ("SQ", "OB", "OW", "UN"):
            out[elem.keyword] = "" if elem.value is None else _plain(elem.value)
    return out


def _number(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def mark_local(level: str, rows: list[dict[str, Any]]) -> None:
    """Add ``local`` ("all", "some", "none"), ``local_count`` and ``remote_count``.

    "all" needs the peer's count (a peer that leaves it out gets "some" for
    what is partly or wholly here: only the peer can tell it is complete).
    """
    spec = LEVEL[level]
    stored = holdings.local_counts(level, (str(r.get(spec.key, "")) for r in rows))
    for r in rows:
        have = stored.get(str(r.get(spec.key, "")), 0)
        theirs = _number(r.get(spec.count))
        if have == 0:
            state = "none"
        elif theirs is not None and have >= theirs:
            state = "all"
        else:
            state = "some"
        r.update(local=state, local_count=have, remote_count=theirs, count_of=spec.unit)


def query(cfg: Config, title: str, level: str, keys: dict[str, str]) -> list[dict[str, Any]]:
    """C-FIND ``title`` of the AE table; the matches as rows marked local.

    Raises NotFound (not in the AE table), UsageError (no address, bad keys)
    and PeerError (unreachable, or a failure status).
    """
    ds = identifier(level, keys)
    peer: scu.Peer = peer_of(title)
    found = remote.find(cfg.ApplicationEntityTitle, peer, ds, LEVEL[level].model,
                        timeout=float(cfg.DimseTimeout))  # fmt: skip
    rows = [row_of(m) for m in found]
    mark_local(level, rows)
    for r in rows:
        if r["local"] == "some" and r["remote_count"] is None:
            _count_below(cfg, peer, level, r)
    return rows


def _count_below(cfg: Config, peer: scu.Peer, level: str, row: dict[str, Any]) -> None:
    """A peer that leaves out its Number Of ... Related counts (dcmqrscp does) is asked
    the level below for what is partly here, so "all" is said only when it is true."""

    def below(down: str, **keys: str) -> list[Dataset]:
        ds = Dataset()
        ds.QueryRetrieveLevel = down
        for kw, value in keys.items():
            setattr(ds, kw, value)
        return remote.find(cfg.ApplicationEntityTitle, peer, ds, LEVEL[level].model,
                           timeout=float(cfg.DimseTimeout))  # fmt: skip

    study = str(row.get("StudyInstanceUID", ""))
    if level == "patient":
        theirs = len(below("STUDY", PatientID=str(row["PatientID"]), StudyInstanceUID=""))
    elif level == "study":
        series = below("SERIES", StudyInstanceUID=study, SeriesInstanceUID="")
        theirs = sum(len(below("IMAGE", StudyInstanceUID=study, SOPInstanceUID="",
                               SeriesInstanceUID=str(s.SeriesInstanceUID)))
                     for s in series)  # fmt: skip
    else:
        theirs = len(below("IMAGE", StudyInstanceUID=study, SOPInstanceUID="",
                           SeriesInstanceUID=str(row["SeriesInstanceUID"])))  # fmt: skip
    row["remote_count"] = theirs
    row["local"] = "all" if row["local_count"] >= theirs else "some"


def text(value: Any) -> str:
    """A row's value as one string (several values joined by a backslash, as DICOM does)."""
    return "\\".join(map(str, value)) if isinstance(value, list) else str(value)


def table(level: str, rows: list[dict[str, Any]]) -> list[str]:
    """The rows as a terminal table, the ``local`` column last."""
    cols = COLUMNS[level]

    def cell(value: Any, width: int) -> str:
        shown = text(value)
        return shown if not width else shown[: width - 1].ljust(width)

    head = "".join(cell(h, w) for _, h, w in cols)
    lines = [f"{head}  LOCAL"]
    for r in rows:
        theirs = "?" if r["remote_count"] is None else r["remote_count"]
        local = f"{r['local']} ({r['local_count']}/{theirs} {r['count_of']})"
        lines.append("".join(cell(r.get(kw, ""), w) for kw, _, w in cols) + "  " + local)
    return lines
