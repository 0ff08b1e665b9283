"""C-STORE SCP: a thin handler that hands received bytes to the archive.

The data set is taken as the peer encoded it (``encoded_dataset``), never
decoded and re-encoded, and every archive error maps to its status from the
conformance statement. The response goes out only after ``Archive.store``
returned, i.e. after the file and the index row are durable.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from pynetdicom import evt

from pacsbox.archive import Archive
from pacsbox.errors import PacsboxError
from pacsbox.scp.server import Service

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


def _stats(assoc) -> AssociationStats:
    stats = getattr(assoc, "pacsbox_stats", None)
    if stats is None:
        stats = AssociationStats()
        assoc.pacsbox_stats = stats
    return stats


def make_store_service(archive: Archive) -> Service:
    def on_store(event) -> int:
        assoc = event.assoc
        calling = assoc.requestor.ae_title.strip()
        req = event.request
        stats = _stats(assoc)
        try:
            result = archive.store(
                event.encoded_dataset(include_meta=False),
                calling_ae=calling,
                source="dicom",
                transfer_syntax=str(event.context.transfer_syntax),
                expect_sop_class=str(req.AffectedSOPClassUID),
                expect_sop_instance=str(req.AffectedSOPInstanceUID),
            )
        except PacsboxError as exc:
            stats.failed += 1
            log.warning(
                "C-STORE from %s of SOP Instance %s failed (0x%04X): %s",
                calling, req.AffectedSOPInstanceUID, exc.dimse_status, exc,
            )
            return exc.dimse_status
        except Exception as exc:  # noqa: BLE001 - an unexpected failure still answers
            stats.failed += 1
            log.exception("C-STORE from %s: unexpected error: %s", calling, exc)
            return 0xA701
        stats.count(result.outcome)
        if result.outcome != "stored":
            log.info(
                "C-STORE from %s: SOP Instance %s %s", calling, result.sop_instance_uid,
                result.outcome,
            )
        return 0x0000

    return Service(handlers=[(evt.EVT_C_STORE, on_store)])
