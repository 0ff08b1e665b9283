"""The Remote page: query a remote AE and retrieve from it (SCU-2, WEB-4).

Searching asks the remote (privilege Query); the Retrieve button queues the
same job as ``pacsbox retrieve`` (privilege Move) and leads to its job page. A remote that cannot be reached or refuses is said on the page,
with the form kept, so the user can pick another AE or change the keys.
"""

from __future__ import annotations

from typing import Any

from pacsbox.db.aes import ae_destinations
from pacsbox.errors import NotFound, PeerError, UsageError
from pacsbox.outbound import query, retrieve
from pacsbox.web.auth import Identity
from pacsbox.web.core import Ctx, arg, done, form, wants_json

FIELDS = ("ae", "level", "patient_name", "patient_id", "date_from", "date_to", "accession",
          "modality", "study")  # fmt: skip


def _date(text: str) -> str:
    """A date input's YYYY-MM-DD (or YYYYMMDD) as DICOM's YYYYMMDD."""
    digits = text.replace("-", "")
    if digits and (len(digits) != 8 or not digits.isdigit()):
        raise UsageError(f"date {text[:20]!r}: expected YYYY-MM-DD")
    return digits


def keys_of(values: dict[str, str]) -> dict[str, str]:
    """The form's fields as C-FIND keys for its level; raises UsageError on a bad date."""
    level = values["level"]
    keys: dict[str, str] = {}
    for field, keyword in (("patient_name", "PatientName"), ("patient_id", "PatientID")):
        if values[field]:
            keys[keyword] = values[field]
    if level == "study":
        start, end = _date(values["date_from"]), _date(values["date_to"])
        if start or end:
            keys["StudyDate"] = f"{start}-{end}" if start != end else start
        if values["accession"]:
            keys["AccessionNumber"] = values["accession"]
    if values["modality"] and level != "patient":
        keys["ModalitiesInStudy" if level == "study" else "Modality"] = values["modality"]
    if level == "series":
        keys["StudyInstanceUID"] = values["study"]
    return keys


def register(ctx: Ctx) -> None:
    @ctx.page("/remote", template="remote.tpl", privilege="query")
    def remote_page(ident: Identity) -> dict[str, Any]:
        values = {f: arg(f) for f in FIELDS}
        values["level"] = values["level"] if values["level"] in query.LEVELS else "study"
        data: dict[str, Any] = {"title": "Remote", "aes": ae_destinations(), "values": values,
                                "results": None, "error": ""}  # fmt: skip
        if not values["ae"]:
            return data
        try:
            data["results"] = query.query(ctx.cfg, values["ae"], values["level"], keys_of(values))
        except (NotFound, PeerError, UsageError) as exc:
            if wants_json():
                raise
            data["error"] = str(exc)
        return data

    @ctx.page("/remote/retrieve", method="POST", privilege="move")
    def remote_retrieve(ident: Identity) -> Any:
        job_id = retrieve.submit(form("ae"), form("study"), form("series"),
                                 owner=ident.principal.name, address=ctx.address())  # fmt: skip
        # /queue is behind Forward; /jobs shows every user the jobs they started.
        target = f"/{'queue' if ident.principal.has('forward') else 'jobs'}/{job_id}"
        return done(target, f"retrieve job {job_id} queued", job=job_id)
