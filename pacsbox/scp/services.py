"""The DICOM services one listener offers, the same in every process."""

from __future__ import annotations

from pacsbox import scu
from pacsbox.archive import Archive
from pacsbox.config import Config
from pacsbox.scp import commitment, detached, mpps, qr, worklist
from pacsbox.scp.server import Service
from pacsbox.scp.store import make_store_service


def make_services(
    cfg: Config, archive: Archive, decompress: scu.Decompress | None = None
) -> list[Service]:
    """C-STORE, Q/R, Storage Commitment and MPPS; ``decompress`` converts for peers that take
    only uncompressed images, where this process has no pixel libraries (a worker)."""
    store = make_store_service(archive, fast=cfg.FastStoreReceive, max_pdu=cfg.MaxPDULength)
    return [
        store,
        *qr.make_services(cfg, archive, decompress),
        commitment.make_service(),
        mpps.make_service(),
        # Modality workflow (issue 18): worklist C-FIND, Detached Study notifications.
        worklist.make_service(cfg),
        detached.make_service(),
    ]
