"""Storage commitment jobs of the durable queue, both roles (SCU-5, NET-7).

A "commit" job either asks (it follows a delivered forward: N-ACTION for
what the destination acknowledged, then waits ``CommitmentTimeout`` minutes
for the report, which comes on our association or a new one to our
listener) or answers (a peer's N-ACTION the listener queued: check each
instance against the index and its file, then send the N-EVENT-REPORT on a
new association). While it waits the job is "waiting" and holds no runner
thread or destination slot; the report, wherever it comes in, makes it due.
A report that does not come within ``CommitmentTimeout`` is "unreachable":
the N-ACTION is sent again with backoff until DeliveryGiveUpHours. A failed
list is "refused" with no automatic retry: the job fails at once, visible
in the queue, and a retry by hand asks again for what is not committed.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from pydicom.uid import generate_uid

from pacsbox import storage
from pacsbox.db import commitments, journal
from pacsbox.db.models import utcnow
from pacsbox.errors import NotFound, UsageError
from pacsbox.outbound.deliver import peer_of
from pacsbox.outbound.runner import Control, Outcome, done, later, refused, unreachable, wake
from pacsbox.scu import commitment as wire_sc

log = logging.getLogger("pacsbox.outbound")

UID_ROOT = "1.2.826.0.1.3680043.10.1395.2."  # pacsbox's root, .2: transactions


def after_forward(forward_job: int, destination: str, refs: Sequence[tuple[str, str]],
                  owner: str) -> int:  # fmt: skip
    """Queue the commitment of what a forward delivered; returns the commit job's id."""
    job_id = commitments.submit_after(forward_job, destination, refs, owner)
    journal.record("commitment", owner, target=destination,
                   detail=f"job {job_id}: after forward job {forward_job}: {len(refs)} "
                   "instances")  # fmt: skip
    wake()
    return job_id


def handle(ctl: Control) -> Outcome:
    """Run one attempt of a commit job: answer a peer's request, or ask for ours."""
    if "transaction" in ctl.job.payload:
        return _answer(ctl)
    return _ask(ctl)


# --- as SCU: ask, then wait for the report ------------------------------------------


def _ask(ctl: Control) -> Outcome:
    job = ctl.job
    timeout = float(ctl.cfg.CommitmentTimeout) * 60.0
    asked = commitments.outstanding(job.id)
    if asked is not None:  # a look while waiting: the report came, or the time is up
        return _after_request(ctl, asked[0], asked[1], timeout)
    todo = commitments.still_open(job.id)
    if not todo:
        return _finish(ctl, "")
    try:
        peer = peer_of(job.destination)
    except (NotFound, UsageError) as exc:
        return refused(str(exc))
    transaction = generate_uid(prefix=UID_ROOT)
    commitments.asked(job.id, transaction, [uid for _, uid in todo])
    since = utcnow()
    log.info("commitment request from %s to %s: transaction %s, %d instances (job %d)",
             ctl.cfg.ApplicationEntityTitle, job.destination, transaction, len(todo),
             job.id)  # fmt: skip
    sent = wire_sc.request(
        ctl.cfg.ApplicationEntityTitle, peer, transaction, todo,
        lambda by, r: commitments.record_report(by, r.transaction_uid, r.committed, r.failed),
        answered=lambda: commitments.waiting(transaction) == 0,
        timeout=float(ctl.cfg.DimseTimeout), hold=min(wire_sc.HOLD_SECONDS, timeout / 4),
    )  # fmt: skip
    if sent.unreachable:
        commitments.expire(job.id)
        return unreachable(sent.unreachable)
    if sent.status != 0:
        commitments.expire(job.id)
        return refused(f"{job.destination} refused the commitment request "
                       f"(status {sent.status:04X})")  # fmt: skip
    return _after_request(ctl, transaction, since, timeout)


def _after_request(ctl: Control, transaction: str, since: dt.datetime, timeout: float) -> Outcome:
    """Done when the report has come; else wait (freeing the runner: the report makes
    the job due again) until the timeout, after which the request is sent again."""
    destination = ctl.job.destination
    if not commitments.waiting(transaction):
        return _finish(ctl, transaction)
    left = timeout - (utcnow() - since).total_seconds()
    if left > 0:
        return later(f"waiting for the commitment report from {destination} "
                     f"(transaction {transaction})", left)  # fmt: skip
    commitments.expire(ctl.job.id)
    return unreachable(f"no commitment report from {destination} within "
                       f"{ctl.cfg.CommitmentTimeout:g} min (transaction {transaction})")  # fmt: skip


def _finish(ctl: Control, transaction: str) -> Outcome:
    job = ctl.job
    tally = commitments.tally(job.id)
    ctl.progress(tally.committed, tally.committed + tally.pending + sum(tally.failed.values()))
    line = tally.line(job.destination)
    if transaction:
        journal.record("commitment-result", job.owner, target=job.destination,
                       detail=f"job {job.id}: transaction {transaction}: {line}")  # fmt: skip
    return refused(line) if tally.failed else done(line)


# --- as SCP: check what we hold, then report ----------------------------------------


def check(refs: Sequence[tuple[str, str]]) -> dict[str, int]:
    """SOP Instance UID -> Failure Reason of each instance we cannot commit.

    0112: not in the index; 0119: held under another SOP class; 0110: its file
    is missing or its bytes no longer match the index's digest.
    """
    have = commitments.held([uid for _, uid in refs])
    failed: dict[str, int] = {}
    for cls, uid in refs:
        row = have.get(uid)
        if row is None:
            failed[uid] = 0x0112
        elif row.sop_class_uid != cls:
            failed[uid] = 0x0119
        elif not _intact(row):
            failed[uid] = 0x0110
    return failed


def _intact(row: commitments.Held) -> bool:
    try:
        with open(row.path, "rb") as fh:
            if not row.digest.startswith(storage.DIGEST_PREFIX):
                return True  # a digest of another form: the file's presence is all we know
            return storage.digest(iter(lambda: fh.read(1 << 20), b"")) == row.digest
    except OSError:
        return False


def _answer(ctl: Control) -> Outcome:
    job = ctl.job
    transaction = str(job.payload["transaction"])
    refs = [(str(c), str(u)) for c, u in job.payload["refs"]]
    failed = check(refs)
    ok = [r for r in refs if r[1] not in failed]
    bad = [r for r in refs if r[1] in failed]
    try:
        peer = peer_of(job.destination)
    except (NotFound, UsageError) as exc:
        return refused(str(exc))
    sent = wire_sc.report(
        ctl.cfg.ApplicationEntityTitle, peer, transaction, ok, bad, failed,
        timeout=float(ctl.cfg.DimseTimeout),
    )  # fmt: skip
    line = f"{len(ok)} committed, {len(bad)} failed"
    if bad:
        codes = sorted(set(failed.values()))
        line += " (" + ", ".join(commitments.reason_text(c) for c in codes) + ")"
    if sent.unreachable:
        return unreachable(f"report not sent: {sent.unreachable}")
    if sent.status != 0:
        return refused(f"{job.destination} refused the commitment report "
                       f"(status {sent.status:04X}); {line}")  # fmt: skip
    log.info("commitment report from %s to %s: transaction %s: %s",
             ctl.cfg.ApplicationEntityTitle, job.destination, transaction, line)  # fmt: skip
    journal.record("commitment-report", job.owner, target=job.destination,
                   detail=f"job {job.id}: transaction {transaction}: {line}")  # fmt: skip
    ctl.progress(len(refs), len(refs))
    return done(f"report sent: {line}")
