"""C-STORE SCP: a thin handler that hands received bytes to the archive.

The data set is taken as the peer encoded it, never decoded and re-encoded:
``wire.receive`` gathers it from the socket for the common case, pynetdicom's
``encoded_dataset`` for anything it leaves to the library. Both end in
``store_status``, where every archive error maps to its status from the
conformance statement. The response goes out only after ``Archive.store``
returned, i.e. after the file and the index row are durable.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass, field
from typing import cast

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE

from pacsbox.archive import Archive
from pacsbox.errors import PacsboxError
from pacsbox.scp.server import Service
from pacsbox.wire import listen, receive

log = logging.getLogger("pacsbox.scp.store")


@dataclass
class AssociationStats:
    """Per-association counts for the one log line at release."""

    outcomes: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, key: str) -> None:
        with self.lock:
            self.outcomes[key] = self.outcomes.get(key, 0) + 1

    def summary(self) -> str:
        parts = [f"{n} {k}" for k, n in sorted(self.outcomes.items())]
        if self.failed:
            parts.append(f"{self.failed} failed")
        return ", ".join(parts) if parts else "nothing stored"


_stats: weakref.WeakKeyDictionary[object, AssociationStats] = weakref.WeakKeyDictionary()
_stats_lock = threading.Lock()


def stats_of(assoc: Association) -> AssociationStats:
    """This association's counts, made on its first C-STORE."""
    with _stats_lock:
        stats = _stats.get(assoc)
        if stats is None:
            stats = _stats[assoc] = AssociationStats()
        return stats


def summary(assoc: Association) -> str | None:
    """What was stored on this association, for the line logged when it ends."""
    stats = _stats.get(assoc)
    return stats.summary() if stats is not None else None


def store_status(
    archive: Archive,
    assoc: Association,
    stats: AssociationStats,
    data: bytes,
    transfer_syntax: str,
    sop_class: str,
    sop_instance: str,
) -> int:
    """Store one received data set; the C-STORE status for the response.

    Shared by pynetdicom's handler and ``wire.receive``: one place maps every
    archive error to its status from the conformance statement.
    """
    calling = assoc.requestor.ae_title.strip()
    try:
        result = archive.store(
            data,
            calling_ae=calling,
            source="dicom",
            transfer_syntax=transfer_syntax,
            expect_sop_class=sop_class,
            expect_sop_instance=sop_instance,
        )
    except PacsboxError as exc:
        stats.failed += 1
        log.warning(
            "C-STORE from %s of SOP Instance %s failed (0x%04X): %s",
            calling,
            sop_instance,
            exc.dimse_status,
            exc,
        )
        return exc.dimse_status
    except Exception as exc:  # noqa: BLE001 - an unexpected failure still answers
        stats.failed += 1
        log.exception("C-STORE from %s: unexpected error: %s", calling, exc)
        return 0xA701
    stats.count(result.outcome)
    if result.outcome != "stored":
        log.info(
            "C-STORE from %s: SOP Instance %s %s",
            calling,
            result.sop_instance_uid,
            result.outcome,
        )
    return 0x0000


def make_store_service(archive: Archive, *, fast: bool = True, max_pdu: int = 0) -> Service:
    """The C-STORE SCP; with ``fast`` (FastStoreReceive) ``wire.receive`` takes the
    requests it can off the socket and pynetdicom's handler gets the rest."""

    def on_store(event: evt.Event) -> int:
        req = cast(C_STORE, event.request)  # the event of the C-STORE handler
        return store_status(
            archive, event.assoc, stats_of(event.assoc), event.encoded_dataset(include_meta=False),
            str(event.context.transfer_syntax), str(req.AffectedSOPClassUID),
            str(req.AffectedSOPInstanceUID),
        )  # fmt: skip

    def on_conn_open(event: evt.Event) -> None:
        assoc = event.assoc
        stats = None

        def store(data: bytes, ts: str, sop_class: str, sop_instance: str) -> int:
            nonlocal stats
            if stats is None:
                stats = stats_of(assoc)
            return store_status(archive, assoc, stats, data, ts, sop_class, sop_instance)

        receive.attach(assoc, store, max_pdu, listen.is_storage_like)

    handlers: list[tuple] = [(evt.EVT_C_STORE, on_store)]
    if fast:
        handlers.append((evt.EVT_CONN_OPEN, on_conn_open))
    return Service(handlers=handlers, summary=summary)
