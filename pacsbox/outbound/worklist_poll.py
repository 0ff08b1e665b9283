"""Worklist SCU (SCU-6): copy remote worklists into the box, which brokers them.

A poll is a queue job of kind "worklist": a Modality Worklist C-FIND to an AE
marked as a worklist SCP, with the keys of the statement's table 12, whose
answers become worklist items (``db.worklist.mirror``) that modalities asking
the box then see. The daemon queues a poll of every such AE each
``WorklistPollInterval`` minutes; "Get worklist" on the AE page, ``pacsbox
worklist poll`` and a Detached Study Management "study scheduled" event queue
one at once (the last for one study only, so it removes nothing).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from pydicom.dataset import Dataset

from pacsbox import scu
from pacsbox.db import aes, journal, queue, worklist, worklist_query
from pacsbox.errors import NotFound, PeerError, UsageError
from pacsbox.outbound.deliver import peer_of
from pacsbox.outbound.runner import Control, Outcome, done, refused, unreachable, wake
from pacsbox.scu import remote

log = logging.getLogger("pacsbox.outbound")

KIND = "worklist"
PENDING = ("queued", "running", "waiting", "retrying")
POLL_OWNER = "worklist poll"

# Table 40's keys and the columns that hold them, as the worklist SCP answers
# them: top level, then the one item of the Scheduled Procedure Step Sequence.
TOP = {kw: col.name for kw, (col, _) in worklist_query.TOP.items()} | {
    kw: col.name for kw, col in worklist_query.TOP_SEQUENCES if col is not None}  # fmt: skip
STEP = {kw: col.name for kw, (col, _) in worklist_query.STEP.items()} | {
    kw: col.name for kw, col in worklist_query.STEP_SEQUENCES if col is not None}  # fmt: skip
# Asked for and kept as they come (in ``extra``): no column of ours holds them.
ALSO = tuple(kw for kw, col in worklist_query.TOP_SEQUENCES if col is None)
_LIMITS = {"station_ae": 16, "modality": 16, "accession_number": 16, "sps_id": 16,
           "requested_procedure_id": 16, "station_name": 16, "sps_location": 16}  # fmt: skip


def since(today: dt.date | None = None) -> str:
    """The first start date a poll asks for: yesterday, so a night's steps stay listed."""
    return f"{(today or dt.date.today()) - dt.timedelta(days=1):%Y%m%d}"


def identifier(*, start: str = "", study_uid: str = "", accession: str = "") -> Dataset:
    """The C-FIND identifier of table 12: every table-40 key asked for, matching on
    the step's start date from ``start`` on (or one study, or one order)."""
    ds = Dataset()
    for kw in TOP:
        setattr(ds, kw, [] if kw.endswith("Sequence") else "")
    step = Dataset()
    for kw in STEP:
        setattr(step, kw, [] if kw.endswith("Sequence") else "")
    step.ScheduledProcedureStepStartDate = f"{start}-" if start else ""
    ds.ScheduledProcedureStepSequence = [step]
    for kw in ALSO:
        setattr(ds, kw, [])
    ds.StudyInstanceUID = study_uid
    ds.AccessionNumber = accession
    return ds


def _value(ds: Dataset, kw: str) -> str:
    value = ds.get(kw)
    if value is None:
        return ""
    if kw.endswith("Sequence"):
        return json.dumps([item.to_json_dict() for item in value]) if len(value) else ""
    return str(value).strip()


def row_of(ds: Dataset) -> dict[str, Any]:
    """A worklist item's columns from one C-FIND response; what is not a column
    of ours goes to ``extra`` as DICOM JSON, returned to our own SCUs as it came."""
    row = {col: _value(ds, kw) for kw, col in TOP.items()}
    steps = ds.get("ScheduledProcedureStepSequence") or [Dataset()]
    row.update({col: _value(steps[0], kw) for kw, col in STEP.items()})
    for col, limit in _LIMITS.items():
        row[col] = row[col][:limit]
    rest = Dataset()
    for elem in ds:
        if elem.keyword not in TOP and elem.keyword not in (
            "ScheduledProcedureStepSequence", "SpecificCharacterSet", "QueryRetrieveLevel"):  # fmt: skip
            rest.add(elem)
    row["extra"] = json.dumps(rest.to_json_dict()) if len(rest) else ""
    return row


def submit(title: str, *, study_uid: str = "", accession: str = "", owner: str = "",
           address: str = "") -> int:  # fmt: skip
    """Queue a poll of ``title`` (all its steps from yesterday on, or one study or
    order) and journal who asked; returns the job id. Raises NotFound (unknown AE),
    UsageError (no address, or an AE not marked as a worklist SCP)."""
    peer_of(title)
    ae = aes.ae_get(title)
    if ae is not None and not ae.worklist:
        raise UsageError(f"AE {title} is not marked as a worklist SCP in the AE table")
    one = study_uid or accession
    what = f"worklist of {title}" + (f", study {one}" if one else "")
    payload = {"study_uid": study_uid, "accession": accession}
    job_id = queue.submit(KIND, title, payload, owner=owner, label=what, retries=1)
    journal.record("worklist-poll", owner, address, target=title, detail=f"job {job_id}: {what}")
    wake()
    return job_id


def polled_aes() -> list[str]:
    """The AEs marked as worklist SCPs that have an address to call."""
    return [
        ae.title for ae in aes.ae_list() if ae.worklist and ae.port and (ae.hostname or ae.ipaddr)
    ]


def queue_all(*, owner: str = POLL_OWNER, study_uid: str = "", accession: str = "") -> list[int]:
    """Queue a poll of every worklist SCP whose last one has ended; the job ids."""
    busy = {j.destination for j in queue.jobs(PENDING, kind=KIND, limit=10000)}
    ids = []
    for title in polled_aes():
        if title in busy and not (study_uid or accession):
            log.info("worklist poll of %s: the last one has not ended; this one is skipped", title)
            continue
        try:
            ids.append(submit(title, study_uid=study_uid, accession=accession, owner=owner))
        except (NotFound, UsageError) as exc:
            log.warning("worklist poll of %s not queued: %s", title, exc)
    return ids


def handle_study_scheduled(ctl: Control) -> Outcome:
    """A Detached Study Management "study scheduled" event (``scp/detached.py`` queues it):
    a poll of every worklist SCP for that study."""
    study_uid = str(ctl.job.payload.get("study_uid") or "")
    if not study_uid:
        return refused("the study scheduled event named no study")
    ids = queue_all(owner=ctl.job.owner or POLL_OWNER, study_uid=study_uid)
    return done(f"{len(ids)} worklist polls queued for study {study_uid}")


def handle(ctl: Control) -> Outcome:
    """Run one poll: C-FIND the remote's worklist and mirror it into ours."""
    job = ctl.job
    study_uid = str(job.payload.get("study_uid") or "")
    accession = str(job.payload.get("accession") or "")
    whole = not (study_uid or accession)
    start = since() if whole else ""
    try:
        peer: scu.Peer = peer_of(job.destination)
        found = remote.find(ctl.cfg.ApplicationEntityTitle, peer,
                            identifier(start=start, study_uid=study_uid, accession=accession),
                            "worklist", timeout=float(ctl.cfg.DimseTimeout))  # fmt: skip
    except PeerError as exc:
        return unreachable(str(exc))
    except (NotFound, UsageError) as exc:
        return refused(str(exc))
    rows = [row_of(ds) for ds in found]
    # Study Instance UID is a return key, not a matching one, for many SCPs (table 12;
    # wlmscpfs ignores it): the one study asked for is picked here.
    if study_uid:
        rows = [r for r in rows if r["study_instance_uid"] == study_uid]
    if accession:
        rows = [r for r in rows if r["accession_number"] == accession]
    added, updated, removed, skipped = worklist.mirror(job.destination, rows, since=start,
                                                       complete=whole)  # fmt: skip
    ctl.progress(len(rows), len(rows))
    text = f"{len(rows)} steps from {job.destination}: {added} new, {updated} updated"
    if whole:
        text += f", {removed} no longer listed removed"
    if skipped:
        text += f", {skipped} skipped (bad values, see the log)"
    log.info("worklist poll of %s: %s", job.destination, text)
    return done(text)
