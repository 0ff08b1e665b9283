"""The one durable work queue: every outbound or long job is a row of the index.

Forwards, routed deliveries, commitment requests, retrieves, syncs,
notifications, burns, exports and edits must survive kill -9 and power loss and
must never be retried forever or dropped, so their state lives in the
database, not in a thread. A dead destination is retried with capped,
jittered backoff until a give-up time; one that answers with a failure
counts against the job's retries; and one slow destination never holds back
the others (a per-destination limit on running jobs).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from peewee import fn

from pacsbox.db import lookup
from pacsbox.db.models import QueueJob, QueueSent, database, utcnow
from pacsbox.db.transaction import write_transaction
from pacsbox.errors import UsageError

KINDS = (
    "forward", "route", "commit", "retrieve", "sync", "ian", "burn", "export", "edit", "print",
    "worklist",  # a poll of a remote worklist SCP (outbound/worklist_poll.py)
    "worklist-query",  # a Detached Study "study scheduled" event (scp/detached.py)
)  # fmt: skip
STATES = ("queued", "running", "waiting", "retrying", "done", "failed", "cancelled")

DUE = ("queued", "retrying", "waiting")  # states a claim may take once next_attempt has come
FINISHED = ("done", "cancelled")  # what purge_finished removes; failed stays until acted on

BACKOFF_FIRST = 5.0  # seconds before the second try
BACKOFF_CAP = 300.0  # never longer between tries
ERROR_CHARS = 300
_CLAIM_BATCH = 50  # due rows read at a time while looking for one to take
_SENT_CHUNK = 500  # rows per INSERT: under every SQLite's bound-parameter limit
_CLAIM_LOCK = 0x70616373  # PostgreSQL advisory lock key ("pacs"): claims one at a time

_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


@dataclass
class JobView:
    """A job as callers outside db/ see it: plain values, times as ISO strings (UTC)."""

    id: int
    kind: str
    destination: str
    state: str
    attempts: int
    failures: int
    next_attempt: str | None
    last_error: str
    done: int
    total: int
    bytes_done: int
    created: str | None
    started: str | None
    finished: str | None
    owner: str
    label: str
    payload: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """The JSON twin of the queue page and ``pacsbox queue --json``."""
        return asdict(self)


# --- times and windows ---------------------------------------------------------


def _utc(moment: dt.datetime) -> dt.datetime:
    """Naive UTC, as the index stores times; an aware time is converted."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.replace(tzinfo=dt.UTC).isoformat()


def _parse_window(window: str) -> tuple[dt.time, dt.time] | None:
    """(start, end) of a daily "HH:MM-HH:MM" window, or None for "any time".

    Raises UsageError on anything else, and on an empty window (start = end).
    """
    if window == "":
        return None
    found = _WINDOW.match(window)
    if found is None:
        raise UsageError(f"time window {window!r}: expected HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(g) for g in found.groups())
    start, end = dt.time(h1, m1), dt.time(h2, m2)
    if start == end:
        raise UsageError(f"time window {window!r} is empty")
    return start, end


def check_window(window: str) -> None:
    """Raise UsageError unless ``window`` is "" or a daily "HH:MM-HH:MM"."""
    _parse_window(window)


def _local(moment: dt.datetime) -> dt.datetime:
    """The box's wall clock at a naive UTC time: windows are local ("at night")."""
    return moment.replace(tzinfo=dt.UTC).astimezone().replace(tzinfo=None)


def _inside(window: str, moment: dt.datetime) -> bool:
    bounds = _parse_window(window)
    if bounds is None:
        return True
    start, end = bounds
    t = _local(moment).time()
    return start <= t < end if start < end else (t >= start or t < end)


def _window_opens(window: str, moment: dt.datetime) -> dt.datetime:
    """The first time at or after ``moment`` (naive UTC) inside the window."""
    bounds = _parse_window(window)
    if bounds is None or _inside(window, moment):
        return moment
    local = _local(moment)
    opens = dt.datetime.combine(local.date(), bounds[0])
    if opens <= local:
        opens += dt.timedelta(days=1)
    return _utc(opens.astimezone())  # naive local -> aware -> naive UTC


def backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` tries: doubling from 5 s,
    capped at 5 minutes, jittered so jobs to one destination spread out."""
    base = min(BACKOFF_CAP, BACKOFF_FIRST * 2.0 ** min(max(attempts - 1, 0), 16))
    return base * random.uniform(0.5, 1.0)


# --- rows ------------------------------------------------------------------------


def _view(row: QueueJob) -> JobView:
    return JobView(
        id=row.id,
        kind=row.kind,
        destination=row.destination,
        state=row.state,
        attempts=row.attempts,
        failures=row.failures,
        next_attempt=_iso(row.next_attempt),
        last_error=row.last_error,
        done=row.done,
        total=row.total,
        bytes_done=row.bytes_done,
        created=_iso(row.created),
        started=_iso(row.started),
        finished=_iso(row.finished),
        owner=row.owner,
        label=row.label,
        payload=json.loads(row.payload or "{}"),
    )


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:ERROR_CHARS] if lines else ""


def _set(job_id: int, states: Iterable[str], **values: Any) -> bool:
    """Update one job if it is in one of ``states``; True when it was."""
    query = QueueJob.update(**values).where(
        (QueueJob.id == job_id) & QueueJob.state.in_(list(states))
    )
    return int(query.execute()) == 1


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(message)


# --- submitting ------------------------------------------------------------------


def submit(
    kind: str,
    destination: str,
    payload: dict[str, Any],
    *,
    owner: str = "",
    label: str = "",
    total: int = 0,
    retries: int = 3,
    not_before: dt.datetime | None = None,
    window: str = "",
) -> int:
    """Queue a job; it is a row before this returns, so it outlives the process.

    It waits (state ``waiting``) until ``not_before`` and, with a daily
    ``window``, until the window opens. Raises UsageError on an unknown
    kind, a bad window or retries below 0. Returns the job's id.
    """
    _check(kind in KINDS, f"unknown job kind {kind!r}")
    _check(len(destination) <= 64, f"destination {destination[:20]!r}... is too long")
    _check(retries >= 0, "retries must be 0 or more")
    _parse_window(window)
    now = utcnow()
    due = _window_opens(window, max(now, _utc(not_before)) if not_before else now)
    with write_transaction():
        row = QueueJob.create(
            kind=kind, destination=destination, payload=json.dumps(payload, sort_keys=True),
            state="waiting" if due > now else "queued", next_attempt=due, window=window,
            owner=owner[:64], label=label[:255], total=total, retries=retries,
            created=now, since=now,
        )  # fmt: skip
    return row.id


# --- claiming --------------------------------------------------------------------


def _limit_of(busy_limit: Callable[[str], int] | int) -> Callable[[str], int]:
    if callable(busy_limit):
        return busy_limit
    return lambda _destination: busy_limit


def _serialise_claims() -> None:
    """One claim at a time, so two cannot both see a destination below its limit.

    SQLite's IMMEDIATE transaction already holds the one writer lock; on
    PostgreSQL a transaction-scoped advisory lock does the same for claims only.
    """
    if database.obj.param != "?":
        database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_CLAIM_LOCK,))


def _running_counts() -> dict[str, int]:
    rows = (
        QueueJob.select(QueueJob.destination, fn.COUNT(QueueJob.id))
        .where(QueueJob.state == "running")
        .group_by(QueueJob.destination)
        .tuples()
    )
    return {destination: int(n) for destination, n in rows}


def _due(now: dt.datetime, blocked: set[str], only: int | None) -> Iterator[QueueJob]:
    """Due jobs, oldest first, skipping destinations already at their limit."""
    after = 0
    while True:
        query = QueueJob.select().where(
            QueueJob.state.in_(list(DUE)) & (QueueJob.next_attempt <= now) & (QueueJob.id > after)
        )
        if only is not None:
            query = query.where(QueueJob.id == only)
        if blocked:
            query = query.where(QueueJob.destination.not_in(sorted(blocked)))
        batch = list(query.order_by(QueueJob.id).limit(_CLAIM_BATCH))
        yield from batch
        if len(batch) < _CLAIM_BATCH:
            return
        after = batch[-1].id


def _hold_for_window(row: QueueJob, now: dt.datetime) -> None:
    """A due job whose window is closed waits for it to open."""
    _set(row.id, DUE, state="waiting", next_attempt=_window_opens(row.window, now))


def claim(
    runner: str,
    now: dt.datetime,
    busy_limit: Callable[[str], int] | int = 1,
    *,
    only: int | None = None,
) -> JobView | None:
    """Take the oldest due job whose destination is below its limit of running jobs.

    Safe with several threads or processes claiming at once: the state change
    is one conditional UPDATE whose row count says who won, inside one write
    transaction. ``busy_limit`` is a number or a function of the destination.
    Returns the job, now running for ``runner``, or None when nothing may run.
    ``only`` claims that job or none (the CLI running its own job).
    """
    now = _utc(now)
    limit = _limit_of(busy_limit)
    with write_transaction():
        _serialise_claims()
        running = _running_counts()
        blocked = {d for d, n in running.items() if n >= limit(d)}
        for row in _due(now, blocked, only):
            if row.destination in blocked:
                continue
            if not _inside(row.window, now):
                _hold_for_window(row, now)
            elif running.get(row.destination, 0) >= limit(row.destination):
                blocked.add(row.destination)
            elif _take(row, runner, now):
                return get(row.id)
    return None


def _take(row: QueueJob, runner: str, now: dt.datetime) -> bool:
    return _set(
        row.id, DUE, state="running", runner=runner[:64], started=now, finished=None,
        attempts=QueueJob.attempts + 1,
    )  # fmt: skip


# --- while running ---------------------------------------------------------------


def progress(job_id: int, done: int, total: int, bytes_done: int = 0) -> None:
    """Record how far a running job is, for the queue page and ``--wait``."""
    with write_transaction():
        QueueJob.update(done=done, total=total, bytes_done=bytes_done).where(
            QueueJob.id == job_id
        ).execute()


def sent(job_id: int, instance_ids: list[int]) -> None:
    """Remember instances the destination acknowledged, so a resumed job skips them."""
    rows = [{"job": job_id, "instance_id": i} for i in dict.fromkeys(instance_ids)]
    with write_transaction():
        for start in range(0, len(rows), _SENT_CHUNK):
            QueueSent.insert_many(rows[start : start + _SENT_CHUNK]).on_conflict_ignore().execute()


def already_sent(job_id: int) -> set[int]:
    """Instances of a job the destination has acknowledged (on any earlier run)."""
    query = QueueSent.select(QueueSent.instance_id).where(QueueSent.job == job_id).tuples()
    return {int(i) for (i,) in query}


def is_cancelled(job_id: int) -> bool:
    """Asked by a runner between batches: stop when someone cancelled the job."""
    row = QueueJob.get_or_none(QueueJob.id == job_id)
    return row is not None and row.state == "cancelled"


# --- outcomes ----------------------------------------------------------------------


def succeed(job_id: int, message: str = "") -> None:
    """The job is done; ``message`` (warnings such as B000) replaces the last error.

    A job cancelled while it ran stays cancelled.
    """
    with write_transaction():
        _set(job_id, ("running",), state="done", finished=utcnow(), next_attempt=None,
             last_error=_one_line(message), runner="")  # fmt: skip


def unreachable(job_id: int, error: str, now: dt.datetime, give_up_hours: float = 24.0) -> str:
    """The destination could not be reached (refused, rejected, aborted, timed out).

    Retried with backoff, without counting against retries, so a workstation
    off overnight still gets everything; failed once the job has been trying
    for more than ``give_up_hours``. Returns the job's new state.
    """
    now = _utc(now)
    with write_transaction():
        row = _running(job_id)
        if row is None:
            return _state_of(job_id)
        give_up = now - row.since > dt.timedelta(hours=give_up_hours)
        return _after_failure(row, error, now, give_up, failures=row.failures)


def refused(job_id: int, error: str, now: dt.datetime) -> str:
    """The destination answered with a failure status: that counts against retries.

    Failed once the failures exceed the job's retries; retried with backoff
    before that. Returns the job's new state.
    """
    now = _utc(now)
    with write_transaction():
        row = _running(job_id)
        if row is None:
            return _state_of(job_id)
        failures = row.failures + 1
        return _after_failure(row, error, now, failures > row.retries, failures=failures)


def wait(job_id: int, message: str, until: dt.datetime) -> str:
    """The job waits for an answer that comes by itself (a commitment report): it
    looks again at ``until``, or sooner when ``look_now`` is called. The look was
    not an attempt, so attempts and failures stay. Returns the job's new state."""
    with write_transaction():
        row = _running(job_id)
        if row is None:
            return _state_of(job_id)
        # An answer that came while the job was deciding to wait (look_now on a running
        # job) leaves it due now, not at ``until``.
        poked = (
            row.started is not None
            and row.next_attempt is not None
            and (row.next_attempt > row.started)
        )
        _set(job_id, ("running",), state="waiting",
             next_attempt=row.next_attempt if poked else _utc(until),
             last_error=_one_line(message), runner="",
             attempts=QueueJob.attempts - 1)  # fmt: skip
        return _state_of(job_id)


def look_now(job_ids: Iterable[int]) -> None:
    """The answer waiting jobs wait for has come: due now (the runner's next poll); a
    job running meanwhile that then waits is due at once (``wait``)."""
    ids = sorted(set(job_ids))
    if ids:
        with write_transaction():
            QueueJob.update(next_attempt=utcnow()).where(
                QueueJob.id.in_(ids) & QueueJob.state.in_(["waiting", "running"])
            ).execute()


def _running(job_id: int) -> QueueJob | None:
    return QueueJob.get_or_none((QueueJob.id == job_id) & (QueueJob.state == "running"))


def _state_of(job_id: int) -> str:
    """The state of a job an outcome no longer applies to (cancelled meanwhile)."""
    row = QueueJob.get_or_none(QueueJob.id == job_id)
    return row.state if row is not None else ""


def _after_failure(
    row: QueueJob, error: str, now: dt.datetime, give_up: bool, failures: int
) -> str:
    if give_up:
        values: dict[str, Any] = {"state": "failed", "finished": now, "next_attempt": None}
    else:
        later = now + dt.timedelta(seconds=backoff(row.attempts))
        values = {"state": "retrying", "next_attempt": _window_opens(row.window, later)}
    _set(row.id, ("running",), last_error=_one_line(error), failures=failures, runner="", **values)
    return str(values["state"])


# --- by hand -----------------------------------------------------------------------


def cancel(job_id: int) -> bool:
    """Cancel a job that is not done; a running one stops when its runner next
    asks ``is_cancelled``. False when there was nothing to cancel."""
    states = [s for s in STATES if s not in ("done", "cancelled")]
    with write_transaction():
        return _set(job_id, states, state="cancelled", finished=utcnow(), next_attempt=None)


def retry(job_id: int, now: dt.datetime) -> bool:
    """Queue a failed or cancelled job again, with a fresh count of failures and
    a fresh give-up clock (its attempts stay). False when it was neither."""
    now = _utc(now)
    with write_transaction():
        return _set(job_id, ("failed", "cancelled"), state="queued", next_attempt=now,
                    failures=0, since=now, finished=None, runner="")  # fmt: skip


def recover(runner_alive: Callable[[str], bool] | None = None) -> int:
    """At start-up: jobs left running by a dead runner (all of them, without
    ``runner_alive``) are queued again; what they had sent stays recorded, so
    they resume where they were. Returns how many."""
    with write_transaction():
        rows = QueueJob.select(QueueJob.id, QueueJob.runner).where(QueueJob.state == "running")
        dead = [r.id for r in rows if runner_alive is None or not runner_alive(r.runner)]
        if not dead:
            return 0
        query = QueueJob.update(state="queued", next_attempt=utcnow(), runner="").where(
            QueueJob.id.in_(dead) & (QueueJob.state == "running")
        )
        return int(query.execute())


# --- reading and tidying -------------------------------------------------------------


def get(job_id: int) -> JobView | None:
    """One job, or None."""
    row = QueueJob.get_or_none(QueueJob.id == job_id)
    return None if row is None else _view(row)


def jobs(
    states: Iterable[str] | None = None, kind: str | None = None, limit: int = 500
) -> list[JobView]:
    """Jobs newest first, optionally of some states and one kind (the queue page)."""
    query = QueueJob.select()
    if isinstance(states, str):  # jobs("failed") means the state, not its letters
        states = [states]
    if states is not None:
        query = query.where(QueueJob.state.in_(list(states)))
    if kind is not None:
        query = query.where(QueueJob.kind == kind)
    return [_view(row) for row in query.order_by(QueueJob.id.desc()).limit(limit)]


def unfinished_ids() -> set[int]:
    """Jobs that may still run (not done, not cancelled)."""
    query = QueueJob.select(QueueJob.id).where(QueueJob.state.not_in(list(FINISHED))).tuples()
    return {int(i) for (i,) in query}


def purge_finished(older_than: dt.datetime) -> int:
    """Delete done and cancelled jobs finished before ``older_than``, so a queue of
    years stays small; failed jobs stay until retried or cancelled. Returns how many."""
    old = QueueJob.state.in_(list(FINISHED)) & (QueueJob.finished < _utc(older_than))
    with write_transaction():
        QueueSent.delete().where(
            QueueSent.job.in_(QueueJob.select(QueueJob.id).where(old))
        ).execute()
        return int(QueueJob.delete().where(old).execute())


# --- what the purge must leave ------------------------------------------------------------

SELECTION_KEYS = ("patients", "studies", "series", "instances")  # a sending job's payload


def pending_studies() -> dict[str, JobView]:
    """Study Instance UID -> a job not ended yet that has still to send it.

    A job that sends stored images names them with SELECTION_KEYS in its
    payload (a forward does); the disk watermark keeps those studies, or the
    job would find them gone.
    """
    out: dict[str, JobView] = {}
    # A failed job counts: it waits for a retry or a cancel, and a retry needs the study.
    rows = QueueJob.select().where(QueueJob.state.not_in(list(FINISHED)))
    for row in rows.order_by(QueueJob.id):
        payload = json.loads(row.payload or "{}")
        selection = [payload.get(k) or [] for k in SELECTION_KEYS]
        if not any(selection[:1] + selection[2:]):
            uids: Iterable[str] = selection[1]  # studies only (every route job): no query
        else:
            uids = lookup.study_uids_of(*selection)
        for uid in uids:
            if uid not in out:
                out[uid] = _view(row)
    return out
