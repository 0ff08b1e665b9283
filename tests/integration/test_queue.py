"""The durable work queue (db/queue.py) on a real index, in SQLite and in a real PostgreSQL.

Clocks are injected: every ``now`` is a naive UTC time at or after the real
one (``submit`` stamps jobs with the real clock).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter

import pytest

from pacsbox.db import close_database, open_database
from pacsbox.db import queue as q
from pacsbox.db.models import QueueSent, database, utcnow
from pacsbox.errors import UsageError
from tests.postgres import DATABASES

S = dt.timedelta(seconds=1)
H = dt.timedelta(hours=1)


@pytest.fixture(params=DATABASES)
def url(request, tmp_path):
    """An index URL: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres").new_database()
    return f"sqlite:///{tmp_path / 'index.db'}"


@pytest.fixture
def index(url):
    open_database(url)
    yield url
    close_database()


def _utc(view_time: str | None) -> dt.datetime:
    """A JobView time (ISO, UTC) as the naive UTC the queue takes."""
    assert view_time is not None
    return dt.datetime.fromisoformat(view_time).astimezone(dt.UTC).replace(tzinfo=None)


def _local_to_utc(day: dt.date, hour: int) -> dt.datetime:
    """Naive UTC of ``hour``:00 on the box's wall clock."""
    return dt.datetime.combine(day, dt.time(hour)).astimezone(dt.UTC).replace(tzinfo=None)


def _state(job_id: int) -> str:
    view = q.get(job_id)
    assert view is not None
    return view.state


def _claim_all(runner: str, now: dt.datetime, limit: int = 100) -> list[q.JobView]:
    claimed = []
    while (job := q.claim(runner, now, limit)) is not None:
        claimed.append(job)
    return claimed


def test_submit_claim_succeed(index):
    job_id = q.submit("forward", "AE1", {"study": "1.2.3"}, owner="ann", label="CT", total=4)
    queued = q.get(job_id)
    assert queued is not None and queued.state == "queued" and queued.payload == {"study": "1.2.3"}
    now = utcnow()
    job = q.claim("runner-1", now)
    assert job is not None and (job.id, job.state, job.attempts) == (job_id, "running", 1)
    assert _utc(job.started) == now
    assert q.claim("runner-2", now) is None  # AE1 is busy (limit 1), nothing else queued
    q.progress(job_id, 2, 4, bytes_done=1000)
    q.succeed(job_id, "B007 data set coerced\nsecond line")
    done = q.get(job_id)
    assert done is not None
    assert (done.state, done.done, done.total, done.bytes_done) == ("done", 2, 4, 1000)
    assert done.last_error == "B007 data set coerced" and done.finished is not None
    assert (done.owner, done.label, done.next_attempt) == ("ann", "CT", None)
    as_dict = done.as_dict()
    assert list(as_dict) == [
        "id", "kind", "destination", "state", "attempts", "failures", "next_attempt",
        "last_error", "done", "total", "bytes_done", "created", "started", "finished",
        "owner", "label", "payload",
    ]  # fmt: skip
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert q.get(job_id + 100) is None


def test_submit_refuses_what_cannot_run(index):
    for window in ("25:00-01:00", "22:00", "10:00-10:00", "9:00-10:00"):
        with pytest.raises(UsageError):
            q.submit("forward", "AE1", {}, window=window)
    with pytest.raises(UsageError):
        q.submit("teleport", "AE1", {})
    with pytest.raises(UsageError):
        q.submit("forward", "AE1", {}, retries=-1)
    assert q.jobs() == []


def test_claim_respects_the_limit_per_destination(index):
    first, second = q.submit("forward", "AE1", {}), q.submit("forward", "AE1", {})
    other = q.submit("route", "AE2", {})
    now = utcnow()
    assert q.claim("r", now).id == first
    assert q.claim("r", now).id == other  # AE1 is at its limit; AE2 is not held back
    assert q.claim("r", now) is None
    q.succeed(first)
    assert q.claim("r", now).id == second
    # A limit per destination: AE3 takes two at once.
    a, b = q.submit("forward", "AE3", {}), q.submit("forward", "AE3", {})
    limits = {"AE3": 2}.get
    assert [j.id for j in _claim_all("r", utcnow(), lambda d: limits(d, 1))] == [a, b]


def test_unreachable_backs_off_doubling_capped_jittered_then_gives_up(index, monkeypatch):
    job_id = q.submit("forward", "AE1", {})
    now = utcnow()
    delays = []
    for _ in range(9):
        assert q.claim("r", now) is not None
        assert q.unreachable(job_id, "connection refused\nat ...", now) == "retrying"
        view = q.get(job_id)
        assert view is not None and view.last_error == "connection refused"
        assert q.claim("r", now) is None  # not due yet
        nxt = _utc(view.next_attempt)
        delays.append((nxt - now).total_seconds())
        now = nxt
    bases = [5, 10, 20, 40, 80, 160, 300, 300, 300]
    assert all(0.5 * b <= d <= b for d, b in zip(delays, bases, strict=True)), delays
    # Without jitter, exactly the doubling and its cap.
    monkeypatch.setattr(q.random, "uniform", lambda lo, hi: hi)
    assert [q.backoff(n) for n in range(1, 9)] == [5, 10, 20, 40, 80, 160, 300, 300]
    monkeypatch.setattr(q.random, "uniform", lambda lo, hi: lo)
    assert q.backoff(1) == 2.5
    # An unreachable destination never counts against retries...
    assert q.get(job_id).failures == 0
    # ...but after DeliveryGiveUpHours of trying, the job fails.
    later = utcnow() + 24 * H + S
    assert q.claim("r", later) is not None
    assert q.unreachable(job_id, "association rejected", later, give_up_hours=24) == "failed"
    failed = q.get(job_id)
    assert failed is not None and failed.next_attempt is None and failed.finished is not None
    assert q.claim("r", later + H) is None  # a failed job stays until retried


def test_refused_counts_against_retries_then_fails(index):
    job_id = q.submit("forward", "AE1", {}, retries=2)
    now = utcnow()
    states = []
    for _ in range(3):
        assert q.claim("r", now) is not None
        states.append(q.refused(job_id, "A700 out of resources " + "x" * 500, now))
        now += 301 * S
    assert states == ["retrying", "retrying", "failed"]
    view = q.get(job_id)
    assert view is not None and (view.failures, view.attempts) == (3, 3)
    assert view.last_error.startswith("A700") and len(view.last_error) == 300
    assert q.jobs(["failed"]) == [view]


def test_cancel_and_retry(index):
    job_id = q.submit("forward", "AE1", {}, retries=0)
    now = utcnow()
    assert q.cancel(job_id) and _state(job_id) == "cancelled" and q.is_cancelled(job_id)
    assert not q.cancel(job_id)  # nothing left to cancel
    assert q.claim("r", now) is None
    assert q.retry(job_id, now) and _state(job_id) == "queued"
    assert not q.retry(job_id, now)  # only failed or cancelled jobs
    assert q.claim("r", now) is not None
    assert q.refused(job_id, "A900", now) == "failed"
    assert q.retry(job_id, now)
    view = q.get(job_id)
    assert view is not None and (view.state, view.failures, view.attempts) == ("queued", 0, 1)
    # A running job is marked; its runner sees it, and its outcome no longer counts.
    assert q.claim("r", now) is not None
    assert q.cancel(job_id) and q.is_cancelled(job_id)
    q.succeed(job_id)
    assert q.unreachable(job_id, "timeout", now) == "cancelled"
    assert _state(job_id) == "cancelled"
    # Done is done.
    done = q.submit("export", "", {})
    assert q.claim("r", utcnow()).id == done
    q.succeed(done)
    assert not q.cancel(done) and _state(done) == "done"


def test_recover_requeues_the_jobs_of_dead_runners_and_keeps_what_was_sent(index):
    a, b = q.submit("forward", "AE1", {}), q.submit("forward", "AE2", {})
    now = utcnow()
    assert q.claim("pid-1", now).id == a and q.claim("pid-2", now).id == b
    q.sent(a, [11, 12])
    q.sent(a, [12, 13])  # acknowledged twice (a resend): recorded once
    assert q.already_sent(a) == {11, 12, 13} and q.already_sent(b) == set()
    assert q.recover(lambda runner: runner == "pid-2") == 1
    assert (_state(a), _state(b)) == ("queued", "running")
    assert q.already_sent(a) == {11, 12, 13}
    assert q.recover() == 1 and _state(b) == "queued"
    assert q.recover() == 0
    again = q.claim("pid-3", utcnow())
    assert again is not None and (again.id, again.attempts) == (a, 2)


def test_a_window_holds_a_job_until_it_opens(index):
    tomorrow = dt.datetime.now().date() + dt.timedelta(days=1)
    job_id = q.submit("route", "AE1", {}, window="22:00-06:00")
    assert q.claim("r", _local_to_utc(tomorrow, 12)) is None
    held = q.get(job_id)
    assert held is not None and held.state == "waiting"
    assert _utc(held.next_attempt) == _local_to_utc(tomorrow, 22)
    job = q.claim("r", _local_to_utc(tomorrow, 23))
    assert job is not None and job.id == job_id


def test_not_before_holds_a_job(index):
    now = utcnow()
    job_id = q.submit("sync", "AE1", {}, not_before=now + H)
    assert _state(job_id) == "waiting"
    assert q.claim("r", now) is None
    assert q.claim("r", now + H).id == job_id


def test_jobs_newest_first_by_state_and_kind(index):
    ids = [q.submit(kind, "AE1", {"n": n}) for n, kind in enumerate(("forward", "burn", "forward"))]
    assert [j.id for j in q.jobs()] == ids[::-1]
    assert [j.id for j in q.jobs(kind="forward")] == [ids[2], ids[0]]
    assert [j.id for j in q.jobs(["queued"], limit=1)] == [ids[2]]
    assert q.jobs(["done"]) == []


def test_purge_finished_removes_done_and_cancelled_with_their_sent_rows(index):
    done, cancelled, failed, queued = (
        q.submit("forward", f"AE{n}", {}, retries=0) for n in range(4)
    )
    now = utcnow()
    assert q.claim("r", now).id == done
    q.sent(done, [1, 2])
    q.succeed(done)
    q.cancel(cancelled)
    assert q.claim("r", now).id == failed
    assert q.refused(failed, "A700", now) == "failed"
    assert q.purge_finished(now - H) == 0
    assert q.purge_finished(utcnow() + S) == 2
    assert [j.id for j in q.jobs()] == [queued, failed]
    assert QueueSent.select().count() == 0


def test_a_job_survives_closing_and_reopening_the_index(index):
    job_id = q.submit("forward", "AE1", {"series": ["1.2", "1.3"]}, owner="bob", total=2)
    assert q.claim("pid-1", utcnow()) is not None
    q.sent(job_id, [5])
    before = q.get(job_id)
    close_database()
    open_database(index)
    assert q.get(job_id) == before and q.already_sent(job_id) == {5}
    assert q.recover() == 1
    again = q.claim("pid-2", utcnow())
    assert again is not None and again.id == job_id and again.payload == before.payload


def _in_threads(n: int, work) -> list:
    """Run ``work()`` in ``n`` threads at once (each on its own connection); their results."""
    results: list = [None] * n
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = work()
        except BaseException as exc:  # noqa: BLE001 - raised in the test's thread below
            errors.append(exc)
        finally:
            database.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results


def test_threads_claiming_at_once_never_share_a_job(index):
    ids = {q.submit("forward", f"AE{n % 7}", {}) for n in range(50)}
    now = utcnow()

    def worker() -> list[int]:
        taken = []
        while (job := q.claim(threading.current_thread().name, now, 1)) is not None:
            taken.append(job.id)
            q.succeed(job.id)
        return taken

    taken = [job_id for ids_of_one in _in_threads(4, worker) for job_id in ids_of_one]
    assert len(taken) == len(set(taken)) and set(taken) == ids


def test_threads_claiming_at_once_keep_each_destination_to_its_limit(index):
    for n in range(20):
        q.submit("forward", f"AE{n % 5}", {})
    now = utcnow()
    _in_threads(4, lambda: _claim_all(threading.current_thread().name, now, 1))
    running = Counter(j.destination for j in q.jobs(["running"]))
    assert running == {f"AE{n}": 1 for n in range(5)}


def test_a_waiting_job_frees_its_slot_and_an_answer_makes_it_due(index):
    """wait (a commit job waiting for its report): no attempt counted, the destination's
    slot free, due at ``until``; look_now makes it due at once, also when the answer
    came while the job was still deciding to wait."""
    job = q.submit("commit", "PACS", {})
    other = q.submit("forward", "PACS", {})
    now = utcnow()
    assert q.claim("r1", now, 1).id == job
    assert q.wait(job, "waiting for the commitment report", now + H) == "waiting"
    view = q.get(job)
    assert (view.attempts, view.failures, _utc(view.next_attempt)) == (0, 0, now + H)
    assert q.claim("r1", now + S, 1).id == other  # the slot is free for the next job
    assert q.claim("r1", now + S, 1, only=job) is None  # not due yet
    q.look_now([job])
    assert q.claim("r1", utcnow(), 2, only=job).id == job
    q.look_now([job])  # the report came while it ran
    q.wait(job, "waiting for the commitment report", utcnow() + H)
    assert _utc(q.get(job).next_attempt) <= utcnow()
