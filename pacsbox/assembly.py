"""How a DICOM-serving process is put together: the daemon and each worker the same way.

The differences are arguments: a worker migrates nothing, has the daemon
record its stores and decompress for it (``link``), and its watermark only
answers the A700 rule (the purge runs in the daemon, with its heartbeats).
"""

from __future__ import annotations

from dataclasses import dataclass

from pacsbox.archive import Archive
from pacsbox.config import Config
from pacsbox.notify import Heartbeats
from pacsbox.record_link import RecordClient
from pacsbox.scp.server import Listener
from pacsbox.scp.services import make_services
from pacsbox.watermark.monitor import Watermark
from pacsbox.wire import compat


@dataclass
class Parts:
    """What a DICOM-serving process runs: the write path, its disk rule, its listener."""

    archive: Archive
    watermark: Watermark
    listener: Listener


def assemble(
    cfg: Config, *, link: RecordClient | None = None, heartbeats: Heartbeats | None = None
) -> Parts:
    """The archive, its disk watermark and the DICOM listener (not started yet).

    ``link`` makes this a worker process's assembly. Raises what opening the
    index raises (DbError).
    """
    # A worker finds what its daemon found (and logged) already.
    compat.check(announce=link is None)
    archive = Archive(
        cfg, migrate=link is None, remote_record=link.record if link is not None else None
    )
    watermark = Watermark(cfg, archive, heartbeats)
    archive.space_check = watermark.check  # set after: the watermark is built on the archive
    services = make_services(cfg, archive, link.decompress if link is not None else None)
    return Parts(archive, watermark, Listener(cfg, archive, services))
