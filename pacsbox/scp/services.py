"""The DICOM services one listener offers, assembled in one place for every process."""

from __future__ import annotations

from pacsbox.archive import Archive
from pacsbox.config import Config
from pacsbox.scp.server import Service
from pacsbox.scp.store import make_store_service


def make_services(cfg: Config, archive: Archive) -> list[Service]:
    services = [make_store_service(archive)]
    try:
        from pacsbox.scp import qr
    except ImportError:  # the Q/R module is optional while it is being built
        return services
    services.extend(qr.make_services(cfg, archive))
    return services
