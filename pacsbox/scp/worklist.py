"""Modality Worklist SCP: C-FIND of the worklist items (NET-6, 1.2.840.10008.5.1.4.31).

The identifier is read and answered by ``db/worklist_query`` (the archive's
one matcher, every table-40 key in each answer); the exchange, statuses,
cancel and the one log line per query are the archive C-FIND's own
(``qr.run_find``), so both answer a workstation the same way.
"""

from __future__ import annotations

from collections.abc import Iterator

from pynetdicom import evt
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]

from pacsbox.config import Config
from pacsbox.db import worklist_query
from pacsbox.scp.qr import QR_SYNTAXES, run_find
from pacsbox.scp.server import Service

SOP_CLASS = str(ModalityWorklistInformationFind)  # 1.2.840.10008.5.1.4.31


def make_service(cfg: Config) -> Service:
    pn_ci = bool(getattr(cfg, "PersonNameCaseInsensitive", False))

    def on_find(event: evt.Event) -> Iterator:
        yield from run_find(
            event,
            "worklist",
            lambda ident: worklist_query.parse(ident, pn_case_insensitive=pn_ci),
            worklist_query.find,
        )

    return Service(
        contexts=[build_context(SOP_CLASS, QR_SYNTAXES)], handlers=[(evt.EVT_C_FIND, on_find)]
    )
