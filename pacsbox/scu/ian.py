"""Instance Availability Notification (SCU-9): N-CREATE telling a RIS or a workstation
which instances of a study the box now holds and where to retrieve them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.sop_class import InstanceAvailabilityNotification  # type: ignore[attr-defined]  # made at import

from pacsbox.scu.echo import Peer, make_ae

log = logging.getLogger("pacsbox.scu")


@dataclass(frozen=True)
class Available:
    """One instance of the notification: its series, class and instance UIDs."""

    series_uid: str
    sop_class_uid: str
    sop_instance_uid: str


@dataclass
class Notified:
    """What the peer answered: a status, or why it could not be reached."""

    status: int | None
    message: str


def notification(study_uid: str, instances: Sequence[Available], retrieve_ae: str) -> Dataset:
    """The IAN data set (PS3.3 C.4.23): every instance ONLINE, retrievable from us."""
    ds = Dataset()
    ds.ReferencedPerformedProcedureStepSequence = []
    ds.StudyInstanceUID = study_uid
    by_series: dict[str, list[Available]] = {}
    for item in instances:
        by_series.setdefault(item.series_uid, []).append(item)
    series = []
    for series_uid, items in by_series.items():
        s = Dataset()
        s.SeriesInstanceUID = series_uid
        refs = []
        for item in items:
            r = Dataset()
            r.ReferencedSOPClassUID = item.sop_class_uid
            r.ReferencedSOPInstanceUID = item.sop_instance_uid
            r.InstanceAvailability = "ONLINE"
            r.RetrieveAETitle = retrieve_ae
            refs.append(r)
        s.ReferencedSOPSequence = refs
        series.append(s)
    ds.ReferencedSeriesSequence = series
    return ds


def notify(
    calling_ae: str, peer: Peer, study_uid: str, instances: Sequence[Available],
    timeout: float = 30.0,
) -> Notified:  # fmt: skip
    """Send one IAN; never raises for the peer's sake."""
    ae = make_ae(calling_ae, timeout)
    ae.add_requested_context(InstanceAvailabilityNotification)
    try:
        assoc = ae.associate(peer.host, peer.port, ae_title=peer.title)
    except (OSError, RuntimeError) as exc:
        return Notified(None, f"{peer.title} ({peer.host}:{peer.port}): {exc}")
    if not assoc.is_established:
        why = "association rejected" if assoc.is_rejected else "no answer"
        return Notified(None, f"{peer.title} ({peer.host}:{peer.port}): {why}")
    try:
        accepted = any(
            c.abstract_syntax == InstanceAvailabilityNotification for c in assoc.accepted_contexts
        )
        if not accepted:
            return Notified(
                0x0122, f"{peer.title} does not accept Instance Availability Notification"
            )
        rsp, _ = assoc.send_n_create(
            notification(study_uid, instances, calling_ae),
            InstanceAvailabilityNotification,
            generate_uid(),
        )
    finally:
        if assoc.is_established:
            assoc.release()
    status = int(rsp.Status) if "Status" in rsp else None
    if status is None:
        return Notified(None, f"{peer.title} sent no answer to the N-CREATE")
    word = "accepted" if status == 0 else f"answered status {status:04X}"
    log.info("IAN for study %s (%d instances) to %s: %s", study_uid, len(instances), peer.title,
             word)  # fmt: skip
    return Notified(status, f"{len(instances)} instances notified, {peer.title} {word}")
