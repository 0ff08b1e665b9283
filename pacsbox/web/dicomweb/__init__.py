"""DICOMweb under ``/dicom-web`` (PS3.18): QIDO-RS, WADO-RS and STOW-RS (WEB-7, INT-3).

Each module registers one service on the web app's context, so every route
goes through the same guard (session, HTTP Basic or an API token, CSRF for
sessions, privileges, the optional anonymous reader) and the same privacy
rules as the web page; ``cors`` answers browsers of the listed origins.
"""

from __future__ import annotations

from pacsbox.web.core import Ctx
from pacsbox.web.dicomweb import cors, metadata, qido, stow, wado_rs


def register(ctx: Ctx) -> None:
    qido.register(ctx)
    wado_rs.register(ctx)
    metadata.register(ctx)
    stow.register(ctx)
    cors.register(ctx)
