"""The AE table page: list, add/edit, delete, and Ping through C-ECHO (WEB-4, SCU-1).

Everyone logged in may see the table and ping (both harmless); changing it
decides who may store into the box, so it needs System Administration.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pacsbox import config
from pacsbox.db import index as idx
from pacsbox.errors import NotFound, UsageError
from pacsbox.web.core import Ctx, done, form, json_response, wants_json

log = logging.getLogger("pacsbox.web")


def ping(ae, calling_ae: str) -> tuple[bool, str]:
    """C-ECHO through the SCU module (SCU-1); (success, one-line result)."""
    from pacsbox.scu import Peer, echo

    host = ae.ipaddr or ae.hostname
    if not host or not ae.port:
        return False, "no host or port in the AE table"
    try:
        res = echo(calling_ae, Peer(ae.title, host, int(ae.port)))
    except (OSError, ValueError) as exc:
        return False, f"cannot connect to {host}:{ae.port}: {exc}"
    word = "succeeded" if res.ok else f"failed: {res.message}"
    return res.ok, f"C-ECHO to {ae.title} at {host}:{ae.port} {word} ({res.elapsed_ms:.0f} ms)"


def ae_row(ae) -> dict:
    return {
        "title": ae.title,
        "hostname": ae.hostname,
        "ipaddr": ae.ipaddr,
        "port": ae.port,
        "allowaccess": ae.allowaccess,
        "archivedir": ae.archivedir,
        "description": ae.description,
    }


def register(ctx: Ctx) -> None:
    @ctx.page("/aes", template="aes.tpl")
    def aes(ident):
        return {"title": "AE table", "aes": [ae_row(a) for a in idx.ae_list()], "ping": None}

    @ctx.page("/aes", method="POST", privilege="admin")
    def ae_save(ident):
        try:
            title = config.parse_ae_title(form("title"))
        except ValueError as exc:
            raise UsageError(f"AE title: {exc}") from None
        port_text = form("port")
        try:
            port = int(port_text) if port_text else None
        except ValueError:
            raise UsageError("port: a whole number") from None
        if port is not None and not 1 <= port <= 65535:
            raise UsageError("port: 1 to 65535")
        archivedir = form("archivedir")
        if archivedir and not Path(archivedir).is_absolute():
            raise UsageError("archive folder: an absolute path")
        idx.ae_upsert(
            title,
            hostname=form("hostname"),
            ipaddr=form("ipaddr"),
            port=port,
            allowaccess=bool(form("allowaccess")),
            archivedir=archivedir,
            description=form("description")[:255],
        )
        ctx.journal("ae-save", title)
        return done("/aes", f"AE {title} saved", title=title)

    @ctx.page("/aes/<title>/delete", method="POST", privilege="admin")
    def ae_delete(ident, title):
        if not idx.ae_remove(title):
            raise NotFound(f"AE {title} is not in the AE table")
        ctx.journal("ae-delete", title)
        return done("/aes", f"AE {title} removed")

    @ctx.page("/aes/<title>/ping", method="POST", template="aes.tpl")
    def ae_ping(ident, title):
        ae = idx.ae_get(title)
        if ae is None:
            raise NotFound(f"AE {title} is not in the AE table")
        ok, message = ping(ae, ctx.cfg.ApplicationEntityTitle)
        ctx.journal("ping", title, message)
        log.info("ping %s: %s", title, message)
        result = {"title": title, "ok": ok, "message": message}
        if wants_json():
            return json_response(result)
        return {"title": "AE table", "aes": [ae_row(a) for a in idx.ae_list()], "ping": result}
