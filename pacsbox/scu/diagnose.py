"""Connectivity diagnostics: what the AE page shows and `pacsbox ae diagnose` prints.

The association log says what happened; this module turns it into the
answer to a support call: the rejections of the last days with the fix in
words (and, where one exists, the one-click fix the AE page offers), then
for the CLI a C-ECHO out to the AE and one into our own listener with the
AE's title, so the access control itself says whether it would admit it.
"""

from __future__ import annotations

import datetime as dt
import logging
import shlex
from dataclasses import dataclass
from typing import Any, TextIO

from pacsbox import status
from pacsbox.config import Config
from pacsbox.db import aes, assocbuffer, assoclog
from pacsbox.db.models import ApplicationEntity, utcnow
from pacsbox.errors import NotFound, PacsboxError
from pacsbox.scu.associate import Peer
from pacsbox.scu.echo import echo

LOOPBACK = ("127.0.0.1", "::1")


class DiagnosisFailed(PacsboxError):
    """A direction that could be tested does not work (exit 1, the reason in one line)."""


def _add_command(title: str, ae: ApplicationEntity | None, **change: str) -> str:
    """The `pacsbox ae add` line that makes the change and keeps the rest of the entry
    (``ae add`` sets host and port to what it is given)."""
    args = ["pacsbox", "ae", "add", title]
    host = change.get("host", ae.hostname if ae is not None else "")
    port = ae.port if ae is not None else None
    ip = change.get("ip", ae.ipaddr if ae is not None else "")
    if host:
        args += ["--host", host]
    if port:
        args += ["--port", str(port)]
    if ip:
        args += ["--ip", ip]
    if change.get("allow"):
        args.append("--allow")
    return shlex.join(args)


def fix_for(rejection: dict[str, Any], our_title: str) -> dict[str, str]:
    """The fix for one group of rejections: ``kind`` names the AE page's one-click fix
    (add, allow, enable; "" when there is none), ``words`` says it for a person."""
    title, address, reason = rejection["calling_ae"], rejection["address"], rejection["reason"]
    ae = aes.ae_get(title) if title else None
    if reason == "unknown-calling-ae" and ae is None:
        cmd = _add_command(title, None, ip=address)
        return {"kind": "add", "words": f"add it with {cmd}"}
    if reason == "address-mismatch" and ae is not None:
        cmd = _add_command(title, ae, ip=address)
        return {"kind": "allow", "words": f"allow this address with {cmd}"}
    if reason == "disabled-ae" and ae is not None and not ae.allowaccess:
        cmd = _add_command(title, ae, allow="yes")
        return {"kind": "enable", "words": f"enable it with {cmd}"}
    if reason == "wrong-called-ae":
        return {
            "kind": "",
            "words": f"the peer calls {rejection['called_ae']!r}: set the called AE title "
            f"on {title or 'the peer'} to {our_title}",
        }
    if reason in ("no-context", "no-transfer-syntax"):
        return {
            "kind": "",
            "words": "the peer proposed nothing pacsbox accepts: have it propose a storage "
            "SOP class (or Verification) in an uncompressed or standard transfer syntax",
        }
    if reason == "busy":
        return {
            "kind": "",
            "words": "too many associations at once: raise MaxAssociations, or have "
            "the peer use fewer",
        }
    return {"kind": "", "words": "fixed already (the AE table has changed since)"}


def rejected(cfg: Config, now: dt.datetime | None = None, title: str | None = None) -> list[dict]:
    """The rejected associations of the last AssociationLogDays, each with its fix."""
    since = (now or utcnow()) - dt.timedelta(days=cfg.AssociationLogDays)
    return [
        r | {"fix": fix_for(r, cfg.ApplicationEntityTitle)}
        for r in assoclog.rejections(since, title)
    ]


@dataclass
class Direction:
    """One way tested: ok, not tested (None) with why, or failed with why."""

    ok: bool | None
    text: str


def way_out(cfg: Config, ae: ApplicationEntity | None, title: str) -> Direction:
    """C-ECHO from our AE title to the AE, with the round-trip time."""
    host = ae.hostname or ae.ipaddr if ae is not None else ""
    if ae is None or not host or not ae.port:
        return Direction(None, f"not tested: the AE table has no host and port for {title}")
    res = echo(cfg.ApplicationEntityTitle, Peer(title, host, int(ae.port)), timeout=10)
    where = f"C-ECHO {cfg.ApplicationEntityTitle} -> {title} at {host}:{ae.port}"
    if res.ok:
        return Direction(True, f"{where}: success in {res.elapsed_ms:.0f} ms")
    return Direction(False, f"{where}: {res.message} ({res.elapsed_ms:.0f} ms)")


def way_in(cfg: Config, ae: ApplicationEntity | None, title: str) -> Direction:
    """C-ECHO into our own listener from this box with calling AE ``title``: what the
    running access control says. The address check can only be passed from here
    when the AE table does not pin the AE to another address."""
    snap = status.current(cfg)  # the running daemon's port (serve --port may differ)
    port = int(snap.get("port") or cfg.ServerPortNumber)
    res = echo(title, Peer(cfg.ApplicationEntityTitle, "127.0.0.1", port), timeout=10, probe=True)
    where = f"C-ECHO {title} -> {cfg.ApplicationEntityTitle} at 127.0.0.1:{port}"
    pinned = ae is not None and ae.ipaddr and ae.ipaddr not in LOOPBACK
    if res.ok:
        return Direction(True, f"{where}: admitted ({res.elapsed_ms:.0f} ms)")
    if pinned and "calling AE title not recognised" in res.message and ae is not None:
        if ae.allowaccess:
            return Direction(
                None,
                f"{where}: {res.message}, as expected from here: the AE table admits "
                f"{title} only from {ae.ipaddr}, which cannot be exercised from this box",
            )
    if ae is None:
        why = f" ({title} is not in the AE table)"
    elif not ae.allowaccess:
        why = f" ({title} is disabled in the AE table)"
    elif snap.get("state") == "not-running":
        why = " (pacsbox is not running)"
    else:
        why = ""
    return Direction(False, f"{where}: {res.message}{why}")


def _line(r: dict[str, Any]) -> str:
    """One logged association (or one day's count of a failure) for a terminal."""
    count = f" (x{r['count']})" if r["count"] > 1 else ""
    what = r["result"] + (f": {r['detail']}" if r["detail"] else "")
    if r["direction"] == "in":
        who = f"{r['calling_ae']} -> {r['called_ae']} from {r['address']}"
    else:
        who = f"{r['service']} {r['calling_ae']} -> {r['called_ae']} at {r['address']}"
    return f"  {r['last']}{count} {who}: {what}"


def report(cfg: Config, title: str) -> dict[str, Any]:
    """Everything the log knows about one AE, for the page's JSON and the CLI.
    Raises NotFound when the AE is neither in the table nor in the log's rejections."""
    assocbuffer.recorder.flush()  # this process's own entries first
    ae = aes.ae_get(title)
    rejections = rejected(cfg, title=title)
    if ae is None and not rejections and not assoclog.recent(title, "in", 1):
        raise NotFound(f"AE {title} is not in the AE table and has no associations in the log")
    return {
        "title": title,
        "entry": None
        if ae is None
        else {
            "hostname": ae.hostname,
            "ipaddr": ae.ipaddr,
            "port": ae.port,
            "allowaccess": ae.allowaccess,
            "description": ae.description,
        },
        "in": assoclog.recent(title, "in"),
        "out": assoclog.recent(title, "out"),
        "rejections": rejections,
    }


def diagnose(cfg: Config, title: str, out: TextIO) -> int:
    """`pacsbox ae diagnose TITLE`: the report, then C-ECHO both ways where it can.
    0 when every direction that could be tested works; DiagnosisFailed otherwise."""
    data = report(cfg, title)
    ae = aes.ae_get(title)
    # pynetdicom would repeat each failure below in its own lines; ours say it.
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    entry = data["entry"]
    if entry is None:
        n = sum(r["count"] for r in data["rejections"])
        addresses = ", ".join(sorted({r["address"] for r in data["rejections"]}))
        fix = next((r["fix"]["words"] for r in data["rejections"] if r["fix"]["kind"]), "")
        print(
            f"{title}: not in the AE table; {n} associations rejected from {addresses}"
            + (f": {fix}" if fix else ""),
            file=out,
        )
    else:
        access = "allowed" if entry["allowaccess"] else "disabled"
        print(
            f"{title}: host {entry['hostname'] or '-'}, IP {entry['ipaddr'] or 'any'}, "
            f"port {entry['port'] or '-'}, access {access}",
            file=out,
        )
    for direction, label in (("in", "Last associations in"), ("out", "Last associations out")):
        print(f"{label}:", file=out)
        for r in data[direction]:
            print(_line(r), file=out)
        if not data[direction]:
            print("  none logged", file=out)
    print(f"Rejected in the last {cfg.AssociationLogDays} days:", file=out)
    for r in data["rejections"]:
        print(
            f"  {r['count']} from {r['calling_ae']} at {r['address']} to {r['called_ae']}, "
            f"last {r['last']}: {r['words']}"
            + (f" ({r['detail']})" if r["detail"] else "")
            + f"; fix: {r['fix']['words']}",
            file=out,
        )
    if not data["rejections"]:
        print("  none", file=out)
    out_result, in_result = way_out(cfg, ae, title), way_in(cfg, ae, title)
    print(f"Way out: {out_result.text}", file=out)
    print(f"Way in: {in_result.text}", file=out)
    failed = [
        (name, d) for name, d in (("way out", out_result), ("way in", in_result)) if d.ok is False
    ]
    if failed:
        name, d = failed[0]
        raise DiagnosisFailed(f"{title}: {name} fails: {d.text.split(': ', 1)[-1]}")
    return 0
