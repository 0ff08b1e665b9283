"""The outbound runner's rules with the real queue on a real index: ThreadPoolSize,
DeliveryConcurrency, DeliveryGiveUpHours, a handler's crash, and the start-up
recovery of jobs a dead process left running. The handlers stand for the
sending (tests/interop/test_forward.py sends for real)."""

from __future__ import annotations

import datetime as dt
import threading

from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db import queue
from pacsbox.db.models import QueueJob, utcnow
from pacsbox.outbound.runner import Control, Runner, done, unreachable
from tests.helpers import poll, write_config


def _runner(tmp_path, handlers, clock=utcnow, **settings) -> tuple[Archive, Runner]:
    cfg = load(write_config(tmp_path / "box", **settings))
    return Archive(cfg), Runner(cfg, handlers, clock=clock)


def _running() -> set[int]:
    return {j.id for j in queue.jobs("running")}


def test_thread_pool_and_per_destination_limits_hold(tmp_path):
    release = threading.Event()

    def slow(ctl: Control):
        release.wait(30)
        return done("sent")

    archive, runner = _runner(tmp_path, {"forward": slow}, ThreadPoolSize=2,
                              DeliveryConcurrency=1)  # fmt: skip
    try:
        a1, a2, b1, c1 = (queue.submit("forward", d, {}) for d in ("A", "A", "B", "C"))
        runner.start()
        poll(lambda: len(_running()) == 2, 10, what="two jobs running")
        # One per destination, two in all: A's second and C wait although C is free.
        assert _running() == {a1, b1}
        assert {queue.get(a2).state, queue.get(c1).state} == {"queued"}
        release.set()
        poll(lambda: all(queue.get(j).state == "done" for j in (a1, a2, b1, c1)), 20,
             what="every job done")  # fmt: skip
    finally:
        release.set()
        runner.stop()
        archive.close()


def test_an_unreachable_destination_is_given_up_after_the_hours(tmp_path):
    now = [utcnow()]
    archive, runner = _runner(tmp_path, {"forward": lambda ctl: unreachable("no answer")},
                              clock=lambda: now[0], DeliveryGiveUpHours="2")  # fmt: skip
    try:
        job = queue.submit("forward", "DEAD", {})
        start = utcnow()
        for hours, state in ((0, "retrying"), (1, "retrying"), (2.02, "failed")):
            now[0] = start + dt.timedelta(hours=hours)
            assert runner.run_one(queue.claim(runner.name, now[0])) == state, hours
        assert queue.get(job).last_error == "no answer"
    finally:
        archive.close()


def test_a_crashing_handler_fails_its_try_and_the_runner_goes_on(tmp_path, caplog):
    def broken(ctl: Control):
        raise KeyError("payload without studies")

    archive, runner = _runner(tmp_path, {"forward": broken})
    try:
        job = queue.submit("forward", "WS", {})
        assert runner.run_one(queue.claim(runner.name, utcnow())) == "retrying"
        view = queue.get(job)
        assert view.failures == 1 and "internal error" in view.last_error
        assert f"job {job} (forward) failed with an internal error" in caplog.text
        other = queue.submit("route", "WS", {})  # a kind with no handler yet
        assert runner.run_one(queue.claim(runner.name, utcnow(), only=other)) == "retrying"
        assert queue.get(other).last_error == "no handler for route jobs in this version"
    finally:
        archive.close()


def test_jobs_a_dead_process_left_running_are_queued_again_at_start(tmp_path):
    archive, runner = _runner(tmp_path, {"forward": lambda ctl: done("sent")})
    try:
        job = queue.submit("forward", "WS", {})
        claimed = queue.claim("999999-deadbeef-0000", utcnow())  # a pid that does not exist
        assert claimed is not None and claimed.id == job
        runner.start()
        poll(lambda: queue.get(job).state == "done", 10, what="the job resumed and done")
        assert QueueJob.get_by_id(job).attempts == 2
    finally:
        runner.stop()
        archive.close()


def test_queue_keep_days_removes_old_finished_jobs_and_keeps_failed_ones(tmp_path):
    from pacsbox.outbound.acks import AckLog

    archive, runner = _runner(tmp_path, {}, QueueKeepDays="30")
    try:
        now = utcnow()
        old, recent, failed, running = (queue.submit("forward", "WS", {}) for _ in range(4))
        for job, state, days in ((old, "done", 31), (recent, "done", 29), (failed, "failed", 90)):
            QueueJob.update(state=state, finished=now - dt.timedelta(days=days)).where(
                QueueJob.id == job
            ).execute()
        for job in (old, running):
            AckLog(runner.cfg.data_dir, job).note(7)
        assert runner.tidy() == 1
        assert queue.get(old) is None
        assert {queue.get(j).state for j in (recent, failed, running)} == {
            "done",
            "failed",
            "queued",
        }
        assert AckLog(runner.cfg.data_dir, old).read() == set()  # its ack log went with it
        assert AckLog(runner.cfg.data_dir, running).read() == {7}
    finally:
        archive.close()
