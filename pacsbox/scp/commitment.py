"""Storage Commitment Push Model SCP and the reports we asked for (NET-7, SCU-5).

N-ACTION (Request Storage Commitment): the request becomes a queue job of kind
"commit" before 0000 is answered, so an accepted request is answered even
after a restart; ``outbound.commitment`` checks the instances and sends the
N-EVENT-REPORT on a new association to the requester's AE table entry. A
requester the report could not reach (no AE table entry, or one without a
port) is refused at once with 0110 and a comment saying so, never accepted
and dropped.

N-EVENT-REPORT: the answer to a request of ours, on an association the peer
opened (the context accepts the SCP/SCU role selection a reporting peer
proposes); it is recorded against the transaction it names.
"""

from __future__ import annotations

import logging

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.dimse_primitives import N_ACTION
from pynetdicom.presentation import build_context

from pacsbox.db import DbError, aes, commitments, journal, queue
from pacsbox.scp.server import Service
from pacsbox.scu import commitment as wire_sc

log = logging.getLogger("pacsbox.scp.commitment")

NO_SUCH_ACTION = 0x0123
MISSING_ATTRIBUTE = 0x0120
PROCESSING_FAILURE = 0x0110


def make_service() -> Service:
    cx = build_context(wire_sc.SOP_CLASS, wire_sc.SYNTAXES)
    cx.scu_role = cx.scp_role = True  # accept a reporting peer's role selection
    return Service(
        contexts=[cx],
        handlers=[(evt.EVT_N_ACTION, on_action), (evt.EVT_N_EVENT_REPORT, on_event_report)],
    )


def failure(status: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment[:64]  # (0000,0902) LO
    return ds


def _no_report_address(calling: str) -> str | None:
    ae = aes.ae_get(calling)
    if ae is None:
        return f"{calling} is not in the AE table: no address for the report"
    if not (ae.hostname or ae.ipaddr) or not ae.port:
        return f"{calling} has no host and port in the AE table for the report"
    return None


def on_action(event: evt.Event) -> tuple[int | Dataset, None]:
    """Accept a commitment request as a durable job, or refuse it with its reason."""
    calling = event.assoc.requestor.ae_title.strip()
    request = event.request
    assert isinstance(request, N_ACTION)  # EVT_N_ACTION's primitive
    action = int(request.ActionTypeID or 0)
    if action != wire_sc.REQUEST_ACTION:
        log.warning("commitment N-ACTION from %s: action type %d is not 1", calling, action)
        return failure(NO_SUCH_ACTION, f"action type {action} unknown"), None
    try:
        transaction, refs = wire_sc.refs_of_action(event.action_information)
    except ValueError as exc:
        log.warning("commitment request from %s refused: %s", calling, exc)
        return failure(MISSING_ATTRIBUTE, str(exc)), None
    why = _no_report_address(calling)
    if why:
        log.warning("commitment request from %s (transaction %s, %d instances) refused: %s",
                    calling, transaction, len(refs), why)  # fmt: skip
        return failure(PROCESSING_FAILURE, why), None
    try:
        job_id = queue.submit(
            "commit", calling, {"transaction": transaction, "refs": [list(r) for r in refs]},
            owner=f"dicom:{calling}", total=len(refs),
            label=f"commitment report for {len(refs)} images to {calling}",
        )  # fmt: skip
    except DbError as exc:
        log.error("commitment request from %s: cannot queue it: %s", calling, exc)
        return failure(PROCESSING_FAILURE, "the index cannot take the request now"), None
    log.info("commitment request from %s: transaction %s, %d instances: report job %d",
             calling, transaction, len(refs), job_id)  # fmt: skip
    journal.record("commitment-asked", f"dicom:{calling}", event.assoc.requestor.address,
                   target=calling, detail=f"job {job_id}: transaction {transaction}: "
                   f"{len(refs)} instances")  # fmt: skip
    return 0x0000, None


def on_event_report(event: evt.Event) -> tuple[int | Dataset, None]:
    """Record the report of a commitment we asked for (on a new association)."""
    calling = event.assoc.requestor.ae_title.strip()
    try:
        report = wire_sc.report_of(event.event_information)
    except ValueError as exc:
        log.warning("commitment report from %s ignored: %s", calling, exc)
        return failure(MISSING_ATTRIBUTE, str(exc)), None
    if commitments.record_report(calling, report.transaction_uid, report.committed,
                                 report.failed):  # fmt: skip
        return 0x0000, None
    return failure(PROCESSING_FAILURE, "unknown Transaction UID"), None
