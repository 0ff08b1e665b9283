"""The 14 privileges of the seed and the private patient/study rules (WEB-2, DATA-6).

One place decides who may see and do what; routes only name a privilege.
The rules, from the PacsOne Premium "User Access Control" section:

- ``root`` has every privilege and is the only one who manages users/groups.
- DICOMweb answers only users with View (issue 19): a tool reading the
  archive reads all of it. The anonymous reader (``ANONYMOUS``, when the
  administrator enables it) has no privilege at all, so it sees public
  studies only.
- Public patients/studies are visible to every user; private ones to users
  with View, or whose first+last name match the study's Referring or Reading
  Physician, or whose group description matches its Institution Name.
- Only Modify changes private/public. A patient change carries to all of its
  studies; a study change carries to its patient only when it is the
  patient's only study.

The visibility test exists twice, in Python (one object) and as an SQL
expression (lists, so paging stays in the database); both follow the same
matching: a person name value matches when its family and given components
equal the user's last and first name, case-insensitively, for any value of a
multi-valued field.
"""

from __future__ import annotations

from dataclasses import dataclass

from pacsbox.db import webquery as wq
from pacsbox.db.auth_models import User
from pacsbox.db.models import Patient, Study, utcnow
from pacsbox.db.transaction import write_transaction

# (key, label, what it gates) in the seed's order.
PRIVILEGES: tuple[tuple[str, str, str], ...] = (
    ("view", "View", "see private patients and studies; use DICOMweb"),
    ("modify", "Modify", "edit, delete, make private/public"),
    ("forward", "Forward", "forward images to a remote AE"),
    ("query", "Query", "query remote AEs"),
    ("move", "Move", "retrieve from remote AEs"),
    ("download", "Download", "download DICOM files"),
    ("export", "Export", "export to DICOMDIR media"),
    ("import", "Import", "import and upload DICOM files, also by DICOMweb STOW-RS"),
    ("print", "Print", "print to DICOM printers"),
    ("upload", "Upload", "attach files to study notes; store by DICOMweb STOW-RS"),
    ("monitor", "Monitor", "live status and logs"),
    ("mark", "Mark Study", "mark studies read/unread"),
    ("storage", "Change Storage", "move studies between storage locations"),
    ("admin", "System Administration", "configuration, journal, AE table, jobs"),
)
KEYS: tuple[str, ...] = tuple(k for k, _, _ in PRIVILEGES)
# Privileges whose feature has not landed: nothing checks them yet, and the
# users page says so. They stay assignable, so the feature that needs one
# finds it already granted (no migration). Upload is the seed's attachments to
# study/image notes; uploading DICOM files from the browser is an import.
NO_FEATURE_YET: frozenset[str] = frozenset({"storage"})
LABELS: dict[str, str] = {k: label for k, label, _ in PRIVILEGES}
ROOT = "root"
ANONYMOUS = "anonymous"  # the journal's name for DICOMweb's anonymous reader


@dataclass(frozen=True)
class Need:
    """A route's privileges when one key is not enough: all of ``every``, one of ``one_of``.

    STOW-RS needs View (as every DICOMweb route) and either Upload (the
    issue's word) or Import (the privilege of the browser upload).
    """

    every: tuple[str, ...] = ()
    one_of: tuple[str, ...] = ()

    def keys(self) -> set[str]:
        return {*self.every, *self.one_of}

    def describe(self) -> str:
        parts = [LABELS[k] for k in self.every]
        if self.one_of:
            parts.append(" or ".join(LABELS[k] for k in self.one_of))
        return " and ".join(parts)


Requirement = str | Need | None  # None: any logged-in user; "root"; a key; a Need


def describe(need: Requirement) -> str:
    """The privilege a refusal names: "root", "View", "View and Upload or Import"."""
    if isinstance(need, Need):
        return need.describe()
    return ROOT if need == ROOT else LABELS.get(need or "", need or "")


def parse(values: list[str] | str) -> list[str]:
    """Privilege keys from keys or labels ("Mark Study", "mark", "admin"); raises ValueError."""
    if isinstance(values, str):
        values = [v for v in values.split(",") if v.strip()]
    by_label = {label.lower(): k for k, label, _ in PRIVILEGES}
    out: list[str] = []
    for v in values:
        name = v.strip().lower()
        key = name if name in KEYS else by_label.get(name, by_label.get(name.replace("-", " ")))
        if key is None:
            raise ValueError(f"unknown privilege {v!r}; known: " + ", ".join(KEYS))
        if key not in out:
            out.append(key)
    return [k for k in KEYS if k in out]


@dataclass(frozen=True)
class Principal:
    """The logged-in user as the rules see it (a plain value, safe to pass around)."""

    name: str
    privileges: frozenset[str]
    first_name: str = ""
    last_name: str = ""
    group_description: str = ""
    wado_only: bool = False

    @property
    def is_root(self) -> bool:
        return self.name == ROOT

    def has(self, privilege: Requirement) -> bool:
        if privilege is None:
            return True
        if isinstance(privilege, Need):
            return all(self.has(k) for k in privilege.every) and (
                not privilege.one_of or any(self.has(k) for k in privilege.one_of)
            )
        if privilege == ROOT:
            return self.is_root
        return self.is_root or privilege in self.privileges

    @classmethod
    def anonymous(cls) -> Principal:
        """DICOMweb's anonymous reader: no privilege, no name or group a private study matches."""
        return cls(name=ANONYMOUS, privileges=frozenset())

    @classmethod
    def of(cls, user: User) -> Principal:
        group = user.group
        return cls(
            name=user.name,
            privileges=frozenset(k for k in user.privileges.split(",") if k),
            first_name=user.first_name.strip(),
            last_name=user.last_name.strip(),
            group_description=(group.description.strip() if group else ""),
            wado_only=user.wado_only,
        )


# -- visibility -----------------------------------------------------------------


def _pn_matches(value: str, last: str, first: str) -> bool:
    for v in (value or "").split("\\"):
        comps = v.upper().split("^")
        if len(comps) >= 2 and comps[0].strip() == last and comps[1].strip() == first:
            return True
    return False


def can_see_study(p: Principal, study: Study) -> bool:
    if not study.private or p.has("view"):
        return True
    if p.last_name and p.first_name:
        last, first = p.last_name.upper(), p.first_name.upper()
        if _pn_matches(study.referring_physician, last, first) or _pn_matches(
            study.reading_physician, last, first
        ):
            return True
    desc = p.group_description.upper()
    return bool(desc) and (study.institution_name or "").strip().upper() == desc


def can_see_patient(p: Principal, patient: Patient) -> bool:
    """A private patient is visible through View or through a study the user may see."""
    if not patient.private or p.has("view"):
        return True
    return Study.select().where((Study.patient == patient.id) & study_filter(p)).exists()


def _pn_expr(col: wq.SqlCondition, last: str, first: str) -> wq.SqlCondition:
    v = wq.escape_like(f"{last}^{first}")
    # One value of a backslash-separated list, with or without further components.
    pats = [v, v + "^%", v + "\\%", "%\\" + v, "%\\" + v + "^%", "%\\" + v + "\\%"]
    expr: wq.SqlCondition = wq.like(col, pats[0])
    for pat in pats[1:]:
        expr = expr | wq.like(col, pat)
    return expr


def study_filter(p: Principal) -> wq.SqlCondition:
    """SQL condition on Study: the studies ``p`` may see."""
    if p.has("view"):
        return wq.TRUE
    expr = Study.private == False  # noqa: E712 - peewee expression
    if p.last_name and p.first_name:
        last, first = p.last_name.upper(), p.first_name.upper()
        expr = (
            expr
            | _pn_expr(Study.referring_physician, last, first)
            | _pn_expr(Study.reading_physician, last, first)
        )
    if p.group_description:
        expr = expr | wq.upper_trim_eq(Study.institution_name, p.group_description)
    return expr


def patient_filter(p: Principal) -> wq.SqlCondition:
    """SQL condition on Patient: the patients ``p`` may see."""
    if p.has("view"):
        return wq.TRUE
    visible = Study.select(Study.patient).where(study_filter(p))
    return (Patient.private == False) | (Patient.id.in_(visible))  # noqa: E712


# -- private/public with the seed's propagation rules -------------------------------


def set_patient_private(patient_id: int, private: bool) -> int:
    """Patient and every one of its studies take the new setting; returns studies changed."""
    with write_transaction():
        Patient.update(private=private).where(Patient.id == patient_id).execute()
        changed: int = (
            Study.update(private=private, updated=utcnow())
            .where(Study.patient == patient_id)
            .execute()
        )
        return changed


def set_study_private(study_id: int, private: bool) -> bool:
    """The study takes the setting; its patient too only when it is the patient's only study.

    Returns True when the patient changed as well.
    """
    with write_transaction():
        study = Study.get_by_id(study_id)
        Study.update(private=private, updated=utcnow()).where(Study.id == study_id).execute()
        others = (
            Study.select()
            .where((Study.patient == study.patient_id) & (Study.id != study_id))
            .exists()
        )
        if not others:
            Patient.update(private=private).where(Patient.id == study.patient_id).execute()
            return True
        return False
