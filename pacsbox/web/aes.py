"""The AE table page: list, add/edit, delete, and Ping through C-ECHO (WEB-4, SCU-1),
with each AE's last associations and the recent rejections (connectivity diagnostics).

Everyone logged in may see the table and ping (both harmless); changing it
decides who may store into the box, so it needs System Administration, and so
do the one-click fixes of a rejection (add this AE, allow this address,
enable). A rejected form comes back filled in, with the reason, so it can be fixed.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bottle

from pacsbox import config
from pacsbox.db import aes as db_aes
from pacsbox.db import assoclog
from pacsbox.errors import NotFound, UsageError
from pacsbox.web.core import Ctx, done, form, json_response, wants_json

if TYPE_CHECKING:
    from pacsbox.db.models import ApplicationEntity

log = logging.getLogger("pacsbox.web")

# Any title the standard allows, "/" included, is one path segment of these routes.
TITLE = "<title:path>"
FIELDS = ("title", "hostname", "ipaddr", "port", "allowaccess", "archivedir", "description",
          "worklist")  # fmt: skip


def ping(ae: ApplicationEntity, calling_ae: str) -> tuple[bool, str]:
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


def ae_row(ae: ApplicationEntity) -> dict:
    return {
        "title": ae.title,
        "hostname": ae.hostname,
        "ipaddr": ae.ipaddr,
        "port": ae.port,
        "allowaccess": ae.allowaccess,
        "archivedir": ae.archivedir,
        "description": ae.description,
        "worklist": ae.worklist,
    }


def parse_form(values: dict[str, str]) -> dict[str, Any]:
    """The AE table fields from the form's text; raises UsageError naming the field."""
    try:
        title = config.parse_ae_title(values.get("title", ""))
    except ValueError as exc:
        raise UsageError(f"AE title: {exc}") from None
    port_text = values.get("port", "")
    try:
        port = int(port_text) if port_text else None
    except ValueError:
        raise UsageError("port: a whole number") from None
    if port is not None and not 1 <= port <= 65535:
        raise UsageError("port: 1 to 65535")
    hostname = values.get("hostname", "")
    if len(hostname) > 255 or any(c.isspace() for c in hostname):
        raise UsageError("host name: at most 255 characters, no spaces")
    ipaddr = values.get("ipaddr", "")
    if ipaddr:
        try:
            ipaddr = str(ipaddress.ip_address(ipaddr))
        except ValueError:
            raise UsageError(f"IP address {ipaddr[:64]!r}: an IPv4 or IPv6 address") from None
    archivedir = values.get("archivedir", "")
    if archivedir and not Path(archivedir).is_absolute():
        raise UsageError("archive folder: an absolute path")
    return {
        "title": title,
        "hostname": hostname,
        "ipaddr": ipaddr,
        "port": port,
        "allowaccess": bool(values.get("allowaccess")),
        "archivedir": archivedir,
        "description": values.get("description", "")[:255],
        "worklist": bool(values.get("worklist")),
    }


def _blank() -> dict[str, Any]:
    return {"title": "", "hostname": "", "ipaddr": "", "port": "", "allowaccess": True,
            "worklist": False}  # fmt: skip


def register(ctx: Ctx) -> None:
    def page(**extra: Any) -> dict[str, Any]:
        from pacsbox.scu.diagnose import rejected

        rows = [ae_row(a) for a in db_aes.ae_list()]
        data: dict[str, Any] = {
            "title": "AE table",
            "aes": rows,
            "associations": assoclog.recent_by_ae([r["title"] for r in rows]),
            "rejected": rejected(ctx.cfg),
            "log_days": ctx.cfg.AssociationLogDays,
            "ping": None,
            "error": "",
            "values": _blank() | {"archivedir": "", "description": ""},
        }
        data.update(extra)
        return data

    def existing(title: str) -> ApplicationEntity:
        ae = db_aes.ae_get(title)
        if ae is None:
            raise NotFound(f"AE {title} is not in the AE table")
        return ae

    @ctx.page("/aes", template="aes.tpl")
    def aes(ident):
        edit = bottle.request.query.getunicode("edit") or ""
        add = bottle.request.query.getunicode("add") or ""
        if add:  # "Add this AE" of a rejection: the form, filled in, still to be saved
            address = bottle.request.query.getunicode("ipaddr") or ""
            return page(values=page()["values"] | {"title": add[:16], "ipaddr": address[:64]})
        if not edit:
            return page()
        ae = db_aes.ae_get(edit)
        if ae is None:
            raise NotFound(f"AE {edit} is not in the AE table")
        row = ae_row(ae)
        row["port"] = row["port"] or ""
        return page(values=row)

    @ctx.page("/aes", method="POST", template="aes.tpl", privilege="admin")
    def ae_save(ident):
        typed = {name: form(name) for name in FIELDS}
        try:
            fields = parse_form(typed)
        except UsageError as exc:
            if wants_json():
                raise
            bottle.response.status = exc.http_status
            flags = {k: bool(typed[k]) for k in ("allowaccess", "worklist")}
            return page(error=str(exc), values=typed | flags)
        title = fields.pop("title")
        db_aes.ae_upsert(title, **fields)
        ctx.journal("ae-save", title)
        return done("/aes", f"AE {title} saved", title=title)

    @ctx.page(f"/aes/{TITLE}/delete", method="POST", privilege="admin")
    def ae_delete(ident, title):
        if not db_aes.ae_remove(title):
            raise NotFound(f"AE {title} is not in the AE table")
        ctx.journal("ae-delete", title)
        return done("/aes", f"AE {title} removed")

    @ctx.page(f"/aes/{TITLE}/allow", method="POST", privilege="admin")
    def ae_allow(ident, title):
        # "Allow this address" of a rejection for an address mismatch.
        ae = existing(title)
        address = parse_form({"title": title, "ipaddr": form("address")})["ipaddr"]
        if not address:
            raise UsageError("address: the IP address to allow")
        if ae.hostname == ae.ipaddr:  # a host name that was the old address goes with it
            ae.hostname = address
        ae.ipaddr = address
        db_aes.ae_upsert(title, ipaddr=ae.ipaddr, hostname=ae.hostname)
        ctx.journal("ae-allow", title, address)
        return done("/aes", f"AE {title} now accepted from {address}", title=title)

    @ctx.page(f"/aes/{TITLE}/enable", method="POST", privilege="admin")
    def ae_enable(ident, title):
        existing(title)
        db_aes.ae_upsert(title, allowaccess=True)
        ctx.journal("ae-enable", title)
        return done("/aes", f"AE {title} enabled", title=title)

    @ctx.page(f"/aes/{TITLE}/worklist", method="POST", privilege="modify")
    def ae_get_worklist(ident, title):
        # "Get worklist": a poll of this worklist SCP now, followed on its job page.
        from pacsbox.outbound import worklist_poll

        existing(title)
        job_id = worklist_poll.submit(title, owner=ident.principal.name,
                                      address=bottle.request.remote_addr or "")  # fmt: skip
        return done(f"/jobs/{job_id}", f"worklist of {title} asked for (job {job_id})",
                    job=job_id)  # fmt: skip

    @ctx.page(f"/aes/{TITLE}/ping", method="POST", template="aes.tpl")
    def ae_ping(ident, title):
        ae = db_aes.ae_get(title)
        if ae is None:
            raise NotFound(f"AE {title} is not in the AE table")
        ok, message = ping(ae, ctx.cfg.ApplicationEntityTitle)
        ctx.journal("ping", title, message)
        log.info("ping %s: %s", title, message)
        result = {"title": title, "ok": ok, "message": message}
        if wants_json():
            return json_response(result)
        return page(ping=result)
