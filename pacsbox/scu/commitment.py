"""Storage Commitment Push Model on the wire (PS3.4 Annex J), both directions.

``request`` sends the N-ACTION (Request Storage Commitment) and takes a report
the peer sends back on the same association; ``report`` opens an association
as the SCP role and sends the N-EVENT-REPORT. The datasets are built and read
here (``report_of``) so the listener's handler reads a report the same way.
Neither knows the index: callers hand in the instances and a callback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # names made at import
    StorageCommitmentPushModel,
    StorageCommitmentPushModelInstance,
)

from pacsbox.scu.echo import Peer, make_ae

log = logging.getLogger("pacsbox.scu")

SOP_CLASS = str(StorageCommitmentPushModel)  # 1.2.840.10008.1.20.1
WELL_KNOWN_INSTANCE = str(StorageCommitmentPushModelInstance)  # 1.2.840.10008.1.20.1.1
SYNTAXES: list[str | UID] = [ImplicitVRLittleEndian, ExplicitVRLittleEndian]
REQUEST_ACTION = 1  # Action Type ID: Request Storage Commitment
ALL_COMMITTED, SOME_FAILED = 1, 2  # Event Type ID of the report
HOLD_SECONDS = 10.0  # how long our association stays open for a report on it

Refs = Sequence[tuple[str, str]]  # (SOP Class UID, SOP Instance UID)


def _items(refs: Refs, reasons: dict[str, int] | None = None) -> DicomSequence:
    out = []
    for cls, uid in refs:
        item = Dataset()
        item.ReferencedSOPClassUID = cls  # (0008,1150)
        item.ReferencedSOPInstanceUID = uid  # (0008,1155)
        if reasons is not None:
            item.FailureReason = reasons[uid]  # (0008,1197)
        out.append(item)
    return DicomSequence(out)


def action_dataset(transaction_uid: str, refs: Refs) -> Dataset:
    """The N-ACTION's Action Information (PS3.4 J.3.2.1.1)."""
    ds = Dataset()
    ds.TransactionUID = transaction_uid  # (0008,1195)
    ds.ReferencedSOPSequence = _items(refs)  # (0008,1199)
    return ds


def refs_of_action(ds: Dataset | None) -> tuple[str, list[tuple[str, str]]]:
    """(Transaction UID, referenced instances) of an N-ACTION; ValueError names what is
    missing (the handler answers 0120)."""
    if ds is None or not str(ds.get("TransactionUID", "") or ""):
        raise ValueError("no Transaction UID (0008,1195)")
    seq = ds.get("ReferencedSOPSequence")
    if not seq:
        raise ValueError("no Referenced SOP Sequence (0008,1199)")
    refs = []
    for item in seq:
        cls = str(item.get("ReferencedSOPClassUID", "") or "")
        uid = str(item.get("ReferencedSOPInstanceUID", "") or "")
        if not cls or not uid:
            raise ValueError("a Referenced SOP Sequence item without its class or instance UID")
        refs.append((cls, uid))
    return str(ds.TransactionUID), refs


@dataclass
class Report:
    """What an N-EVENT-REPORT says."""

    transaction_uid: str
    committed: list[str] = field(default_factory=list)
    failed: dict[str, int] = field(default_factory=dict)  # SOP Instance UID -> Failure Reason


def report_of(ds: Dataset | None) -> Report:
    """Read a report's Event Information; ValueError when it has no Transaction UID."""
    if ds is None or not str(ds.get("TransactionUID", "") or ""):
        raise ValueError("no Transaction UID (0008,1195)")
    out = Report(str(ds.TransactionUID))
    for item in ds.get("ReferencedSOPSequence") or []:
        out.committed.append(str(item.ReferencedSOPInstanceUID))
    for item in ds.get("FailedSOPSequence") or []:
        out.failed[str(item.ReferencedSOPInstanceUID)] = int(item.get("FailureReason", 0x0110))
    return out


def report_dataset(
    transaction_uid: str, committed: Refs, failed: Refs, reasons: dict[str, int]
) -> Dataset:
    """The N-EVENT-REPORT's Event Information (PS3.4 J.3.3.1.1)."""
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    if committed:
        ds.ReferencedSOPSequence = _items(committed)  # (0008,1199)
    if failed:
        ds.FailedSOPSequence = _items(failed, reasons)  # (0008,1198)
    return ds


@dataclass
class Asked:
    """How an N-ACTION went: the peer's status, or why it could not be asked."""

    status: int | None = None
    unreachable: str = ""


def _status(rsp: Dataset | None) -> int | None:
    return int(rsp.Status) if rsp is not None and "Status" in rsp else None


def request(
    calling_ae: str,
    peer: Peer,
    transaction_uid: str,
    refs: Refs,
    on_report: Callable[[str, Report], object],
    *,
    answered: Callable[[], bool],
    timeout: float = 30.0,
    hold: float = HOLD_SECONDS,
) -> Asked:
    """Ask ``peer`` to commit ``refs``; never raises for the peer's sake.

    With the default roles the peer, as SCP, may send its report on this
    association: ``on_report(calling AE, report)`` records it. It stays open for up to
    ``hold`` seconds after the N-ACTION's answer, or until ``answered()``.
    """
    ae = make_ae(calling_ae, timeout)
    ae.add_requested_context(SOP_CLASS, SYNTAXES)
    got = threading.Event()

    def on_event_report(event: evt.Event) -> tuple[int, None]:
        try:
            report = report_of(event.event_information)
        except ValueError as exc:
            log.warning("commitment report from %s on our association: %s", peer.title, exc)
            return 0x0110, None
        on_report(peer.title, report)
        got.set()
        return 0x0000, None

    try:
        assoc = ae.associate(
            peer.host, peer.port, ae_title=peer.title,
            evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_event_report)],
        )  # fmt: skip
    except (OSError, RuntimeError) as exc:
        return Asked(unreachable=f"{peer.title} ({peer.host}:{peer.port}): {exc}")
    if not assoc.is_established:
        why = "association rejected" if assoc.is_rejected else "association not answered"
        return Asked(unreachable=f"{peer.title} ({peer.host}:{peer.port}): {why}")
    try:
        rsp, _reply = assoc.send_n_action(
            action_dataset(transaction_uid, refs), REQUEST_ACTION, SOP_CLASS, WELL_KNOWN_INSTANCE
        )
        status = _status(rsp)
        if status is None:
            return Asked(unreachable=f"{peer.title} did not answer the commitment request")
        if status == 0:
            deadline = time.monotonic() + hold
            while assoc.is_established and not got.is_set() and time.monotonic() < deadline:
                if answered():
                    break
                got.wait(0.1)
        return Asked(status=status)
    finally:
        if assoc.is_established:
            assoc.release()


def report(
    calling_ae: str,
    peer: Peer,
    transaction_uid: str,
    committed: Refs,
    failed: Refs,
    reasons: dict[str, int],
    *,
    timeout: float = 30.0,
) -> Asked:
    """Send the N-EVENT-REPORT on a new association, proposing the SCP role for the
    SOP class (PS3.4 J.3.3: the report travels from SCP to SCU). Never raises."""
    ae = make_ae(calling_ae, timeout)
    ae.add_requested_context(SOP_CLASS, SYNTAXES)
    try:
        assoc = ae.associate(
            peer.host,
            peer.port,
            ae_title=peer.title,
            ext_neg=[build_role(SOP_CLASS, scp_role=True)],
        )
    except (OSError, RuntimeError) as exc:
        return Asked(unreachable=f"{peer.title} ({peer.host}:{peer.port}): {exc}")
    if not assoc.is_established:
        why = "association rejected" if assoc.is_rejected else "association not answered"
        return Asked(unreachable=f"{peer.title} ({peer.host}:{peer.port}): {why}")
    try:
        event = SOME_FAILED if failed else ALL_COMMITTED
        rsp, _ = assoc.send_n_event_report(
            report_dataset(transaction_uid, committed, failed, reasons),
            event,
            SOP_CLASS,
            WELL_KNOWN_INSTANCE,
        )
        status = _status(rsp)
        if status is None:
            return Asked(unreachable=f"{peer.title} did not answer the commitment report")
        return Asked(status=status)
    finally:
        if assoc.is_established:
            assoc.release()
