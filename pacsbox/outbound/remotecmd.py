"""``pacsbox query`` and ``pacsbox retrieve``: a remote AE from a shell (SCU-2).

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
from pacsbox.outbound import query, retrieve
from pacsbox.outbound.commands import JobFailed, _poke_daemon, wait_for


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
    _poke_daemon(cfg)
    return wait_for(cfg, job_id, out) if wait else 0
