"""Instance Availability Notification jobs (SCU-9): tell a subscribed AE a study is here.

A route with ``--notify`` makes these instead of forwards, when the study is
stable and again for a follow-up; each notification lists every instance the
study holds then, so the receiver's view is whole whichever one it reads last.
"""

from __future__ import annotations

from pacsbox.db import lookup
from pacsbox.errors import NotFound, UsageError
from pacsbox.outbound.deliver import peer_of
from pacsbox.outbound.runner import Control, Outcome, done, refused, unreachable
from pacsbox.scu.ian import Available, notify


def handle(ctl: Control) -> Outcome:
    job = ctl.job
    (study_uid,) = job.payload["studies"]
    instances = [Available(*row) for row in lookup.study_inventory(study_uid)]
    if not instances:
        return refused(f"study {study_uid} is no longer stored")
    try:
        peer = peer_of(job.destination)
    except (NotFound, UsageError) as exc:
        return refused(str(exc))
    ctl.progress(0, len(instances))
    answer = notify(ctl.cfg.ApplicationEntityTitle, peer, study_uid, instances,
                    timeout=float(ctl.cfg.DimseTimeout))  # fmt: skip
    if answer.status is None:
        return unreachable(answer.message)
    if answer.status != 0 and (answer.status & 0xF000) != 0xB000:
        return refused(answer.message)
    ctl.progress(len(instances), len(instances))
    return done(answer.message)
