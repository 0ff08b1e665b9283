"""``pacsbox query``, ``retrieve`` and ``sync``: remote AEs from a shell (SCU-2, SCU-8).

A query answers at once (a table, or JSON for scripts). A retrieve is a
queue row like one from the web page; the running daemon asks the remote
and receives what it sends. Without a daemon nothing could receive it, so
the job waits for ``pacsbox serve`` and the command says so (``--wait``
exits 1 at once instead of hanging).
"""

from __future__ import annotations

import json
from typing import TextIO

from pacsbox.config import Config
from pacsbox.db import journal
from pacsbox.db import sync as schedules
from pacsbox.errors import NotFound, UsageError
from pacsbox.outbound import query, retrieve, sync
from pacsbox.outbound.commands import JobFailed, poke_daemon, wait_for
from pacsbox.outbound.deliver import peer_of


def query_command(
    cfg: Config, title: str, level: str, pairs: list[str], as_json: bool, out: TextIO
) -> int:
    rows = query.query(cfg, title, level, query.parse_keys(pairs))
    if as_json:
        print(json.dumps(rows, indent=1), file=out)
        return 0
    for line in query.table(level, rows):
        print(line, file=out)
    print(f"{len(rows)} {'match' if len(rows) == 1 else 'matches'} on {title}", file=out)
    return 0


def retrieve_command(
    cfg: Config, title: str, study: str, series: str, wait: bool, owner: str, out: TextIO
) -> int:
    job_id = retrieve.submit(title, study, series, owner=owner)
    print(f"job {job_id}: retrieve of {retrieve.label(series, title)} queued", file=out)
    why = retrieve.receiver_missing(cfg)
    if why:
        if wait:
            raise JobFailed(f"job {job_id} waits: {why}")
        print(f"job {job_id} waits: {why}", file=out)
        return 0
    poke_daemon(cfg)
    return wait_for(cfg, job_id, out) if wait else 0


def sync_command(
    cfg: Config, action: str, title: str | None, hours: str | None, days: int | None,
    wait: bool, owner: str, out: TextIO,
) -> int:  # fmt: skip
    """``sync add|list|remove|run``: the schedules, and a run now."""
    if action == "list":
        print(f"{'AE':16} {'HOURS':24} {'STUDIES':18} LAST RUN (UTC)", file=out)
        for s in schedules.schedules():
            which = f"last {s.days} days" if s.days else "all"
            last = (s.last_slot or "")[:16]
            print(f"{s.ae_title:16} {','.join(map(str, s.hours)):24} {which:18} {last}", file=out)
        return 0
    if not title:
        raise UsageError(f"sync {action} needs the remote AE's title")
    if action == "add":
        if not hours:
            raise UsageError("sync add needs --hours H[,H...] (local hours 0-23)")
        peer_of(title)
        s = schedules.put(title, schedules.parse_hours(hours), days or 0, owner=owner)
        which = f"studies of the last {s.days} days" if s.days else "every study"
        detail = f"hours {','.join(map(str, s.hours))}; {which}"
        journal.record("sync-add", owner, target=title, detail=detail)
        print(f"sync of {title} at {detail} not stored here", file=out)
        return 0
    if action == "remove":
        if not schedules.remove(title):
            raise NotFound(f"no sync schedule for {title}")
        journal.record("sync-remove", owner, target=title)
        print(f"sync schedule of {title} removed", file=out)
        return 0
    scheduled = schedules.get(title)
    n = days if days is not None else (scheduled.days if scheduled else 0)
    job_id = sync.submit(title, n, owner=owner)
    print(f"job {job_id}: {sync.label(title, n)} queued", file=out)
    why = retrieve.receiver_missing(cfg)
    if why:
        print(f"the retrieves it queues wait: {why}", file=out)
    else:
        poke_daemon(cfg)
    return wait_for(cfg, job_id, out) if wait else 0
