"""System pages: live status (Monitor), the journal and the configuration (System Administration).

The status page reads the snapshot the daemon writes every two seconds
(``pacsbox.status``), the same one the front panel shows, plus index totals.
"""

from __future__ import annotations

from pacsbox import status
from pacsbox.db import lookup
from pacsbox.db.auth_models import Journal
from pacsbox.errors import UsageError
from pacsbox.web.core import Ctx, arg, url, when

JOURNAL_PAGE = 100


def register(ctx: Ctx) -> None:
    @ctx.page("/status", template="status.tpl", privilege="monitor")
    def status_page(ident):
        snap = status.current(ctx.cfg)
        return {
            "title": "Status",
            "status": snap,
            "alerts": status.alerts(snap),
            "totals": lookup.totals(),
        }

    @ctx.page("/journal", template="journal.tpl", privilege="admin")
    def journal(ident):
        q = Journal.select()
        who, action = arg("user"), arg("action")
        if who:
            q = q.where(Journal.user == who)
        if action:
            q = q.where(Journal.action == action)
        before = arg("before")
        if before:
            try:
                q = q.where(Journal.id < int(before))
            except ValueError:
                raise UsageError("before: a journal entry number") from None
        rows = list(q.order_by(Journal.id.desc()).limit(JOURNAL_PAGE + 1))
        more = len(rows) > JOURNAL_PAGE
        rows = rows[:JOURNAL_PAGE]
        entries = [
            {
                "id": r.id,
                "time": when(r.time),
                "user": r.user,
                "address": r.address,
                "action": r.action,
                "target": r.target,
                "detail": r.detail,
            }
            for r in rows
        ]
        nxt = url("/journal", user=who, action=action, before=rows[-1].id) if more else ""
        return {"title": "System journal", "entries": entries, "next_url": nxt}

    @ctx.page("/config", template="config.tpl", privilege="admin")
    def configuration(ident):
        from pacsbox.config import SETTINGS

        values = ctx.cfg.as_dict()
        rows = [
            {"name": s.name, "section": s.section, "value": values.get(s.name), "help": s.help}
            for s in SETTINGS
        ]
        return {"title": "Configuration", "settings": rows, "source": str(ctx.cfg.source or "")}
