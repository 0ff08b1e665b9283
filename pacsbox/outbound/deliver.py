"""Stored instances sent to an AE of the AE table: the one delivery forwards, routes and
backups share (SCU-3, SCU-4, DATA-7).

It is the C-MOVE sender (``scu.Sender``: stored syntax byte for byte, else
converted to one the peer accepted) on an association of our own. What it
returns is what the durable queue decides on: the instances the destination
acknowledged (a resumed job skips them), those it refused with their status
(they count against the job's retries), and why the destination could not be
reached or went away (retried with backoff).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pacsbox import scu
from pacsbox.db import aes
from pacsbox.db.query import StoredInstance
from pacsbox.errors import NotFound, UsageError

log = logging.getLogger("pacsbox.outbound")


@dataclass
class Delivery:
    """What one attempt achieved."""

    acknowledged: list[int] = field(default_factory=list)  # instance row ids (0000 or Bxxx)
    warnings: dict[str, int] = field(default_factory=dict)  # SOP Instance UID -> Bxxx status
    refused: dict[str, int] = field(default_factory=dict)  # SOP Instance UID -> failure status
    unreachable: str = ""  # why the destination could not be reached or went away
    converted: int = 0

    def summary(self) -> str:
        """One line for the job and the log."""
        text = f"{len(self.acknowledged)} delivered"
        if self.warnings:
            codes = ", ".join(sorted({f"{s:04X}" for s in self.warnings.values()}))
            text += f" ({len(self.warnings)} with warning {codes})"
        if self.converted:
            text += f", {self.converted} converted"
        if self.refused:
            codes = ", ".join(sorted({f"{s:04X}" for s in self.refused.values()}))
            text += f", {len(self.refused)} refused (status {codes})"
        if self.unreachable:
            text += f"; {self.unreachable}"
        return text


def peer_of(title: str) -> scu.Peer:
    """The AE table's entry for ``title``; raises NotFound or UsageError (no address)."""
    ae = aes.ae_get(title)
    if ae is None:
        raise NotFound(f"AE {title} is not in the AE table")
    host = ae.hostname or ae.ipaddr
    if not host or not ae.port:
        raise UsageError(f"AE {title} has no host and port in the AE table")
    return scu.Peer(ae.title, host, int(ae.port))


def deliver(
    calling_ae: str,
    peer: scu.Peer,
    items: Sequence[tuple[int, StoredInstance]],
    *,
    decompress: scu.Decompress | None = None,
    timeout: float = 60.0,
    max_pdu: int = 0,
    cancelled: Callable[[], bool] = lambda: False,
    acknowledged: Callable[[list[int]], None] | None = None,
    noted: Callable[[int], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch: int = 50,
) -> Delivery:
    """Send ``items`` (instance row id, instance) on one association.

    ``acknowledged`` receives the row ids the peer acknowledged, ``batch`` at
    a time and at the end, so a job killed half-way knows what arrived;
    ``noted`` each one as its answer comes (the job's ack log).
    Never raises for the peer's sake: the Delivery says what happened.
    """
    out = Delivery()
    if not items:
        return out
    syntaxes: dict[str, set[str]] = {}
    for _, item in items:
        syntaxes.setdefault(item.sop_class_uid, set()).add(item.transfer_syntax_uid)
    try:
        assoc = scu.open_store_association(
            calling_ae, peer, syntaxes, timeout=timeout, max_pdu=max_pdu
        )
    except (OSError, RuntimeError) as exc:
        assoc, why = None, str(exc)
    else:
        why = "association rejected or not answered"
    if assoc is None:
        out.unreachable = f"{peer.title} ({peer.host}:{peer.port}): {why}"
        return out
    pending: list[int] = []

    def flush() -> None:
        if pending and acknowledged is not None:
            acknowledged(list(pending))
        pending.clear()

    sender = scu.Sender(assoc, decompress=decompress)
    try:
        with sender.burst():
            for n, (row_id, item) in enumerate(items, 1):
                if cancelled():
                    break
                status = sender.send(item) if assoc.is_established else None
                if status is None or status == scu.NO_RESPONSE or not assoc.is_established:
                    out.unreachable = (
                        f"{peer.title} went away after {len(out.acknowledged)} instances"
                    )
                    break
                if status == 0 or (status & 0xF000) == 0xB000:
                    out.acknowledged.append(row_id)
                    if noted is not None:
                        noted(row_id)
                    pending.append(row_id)
                    if status:
                        out.warnings[item.sop_instance_uid] = status
                else:
                    out.refused[item.sop_instance_uid] = status
                if len(pending) >= batch:
                    flush()
                if progress is not None:
                    progress(n, len(items))
    finally:
        flush()
        out.converted = sender.converted
        if assoc.is_established:
            assoc.release()
    return out
