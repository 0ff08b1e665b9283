"""The DICOM services one listener offers, assembled in one place for every process."""

from __future__ import annotations

from pacsbox.archive import Archive
from pacsbox.config import Config
from pacsbox.scp import qr
from pacsbox.scp.server import Service
from pacsbox.scp.store import make_store_service


def make_services(cfg: Config, archive: Archive) -> list[Service]:
    store = make_store_service(archive, fast=cfg.FastStoreReceive, max_pdu=cfg.MaxPDULength)
    return [store, *qr.make_services(cfg, archive)]
