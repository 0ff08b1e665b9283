"""Synchronisation schedules (SCU-8): ``pacsbox sync add/list/remove`` and which runs
are due at which hour (an injected clock on a real SQLite index)."""

from __future__ import annotations

import datetime as dt

import pytest

from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db import queue, sync
from pacsbox.db.auth_models import Journal
from pacsbox.db.models import SyncSchedule
from pacsbox.outbound import sync as outbound_sync
from tests.helpers import cli


def _utc(local: dt.datetime) -> dt.datetime:
    """A naive local wall-clock time as the naive UTC the index keeps."""
    return local.astimezone().astimezone(dt.UTC).replace(tzinfo=None)


@pytest.fixture
def index(ini):
    cli(ini, "ae", "add", "PACS2", "--host", "127.0.0.1", "--port", "11113")
    archive = Archive(load(ini))
    yield
    archive.close()


def test_sync_add_list_remove_from_the_cli(ini):
    cli(ini, "ae", "add", "PACS2", "--host", "127.0.0.1", "--port", "11113")
    r = cli(ini, "sync", "add", "PACS2", "--hours", "14,2,14", "--days", "30")
    assert (
        r.stdout.strip()
        == "sync of PACS2 at hours 2,14; studies of the last 30 days not stored here"
    )
    lines = cli(ini, "sync", "list").stdout.splitlines()
    assert lines[0].split() == ["AE", "HOURS", "STUDIES", "LAST", "RUN", "(UTC)"]
    assert lines[1].split()[:5] == ["PACS2", "2,14", "last", "30", "days"]
    assert len(lines) == 2
    # Replacing keeps one schedule per AE; every hour of the day is allowed.
    cli(ini, "sync", "add", "PACS2", "--hours", ",".join(map(str, range(24))))
    assert cli(ini, "sync", "list").stdout.splitlines()[1].split()[1:3] == [
        ",".join(map(str, range(24))), "all"]  # fmt: skip
    assert cli(ini, "sync", "remove", "PACS2").stdout.strip() == "sync schedule of PACS2 removed"
    assert len(cli(ini, "sync", "list").stdout.splitlines()) == 1
    archive = Archive(load(ini))
    try:
        actions = [j.action for j in Journal.select().where(Journal.target == "PACS2")]
        assert actions == ["sync-add", "sync-add", "sync-remove"]
    finally:
        archive.close()


def test_sync_mistakes_exit_non_zero_with_one_line(ini):
    cli(ini, "ae", "add", "PACS2", "--host", "127.0.0.1", "--port", "11113")
    for args, code, words in (
        (["add", "NOBODY", "--hours", "2"], 3, "AE NOBODY is not in the AE table"),
        (["add", "FINDSCU", "--hours", "2"], 2, "no host and port"),
        (["add", "PACS2", "--hours", "24"], 2, "whole hours 0-23"),
        (["add", "PACS2", "--hours", "2,x"], 2, "whole hours 0-23"),
        (["add", "PACS2", "--hours", "2", "--days", "0"], 2, "1 or more"),
        (["remove", "PACS2"], 3, "no sync schedule for PACS2"),
        (["run", "NOBODY"], 3, "AE NOBODY is not in the AE table"),
    ):
        r = cli(ini, "sync", *args, check=False)
        assert r.returncode == code and words in r.stderr, (args, r.returncode, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 or "usage:" in r.stderr


def test_a_schedule_runs_once_at_each_of_its_hours(index):
    today = dt.date.today()
    at = lambda h, m=0, day=0: _utc(  # noqa: E731
        dt.datetime.combine(today + dt.timedelta(days=day), dt.time(h, m))
    )
    # Set up at 10:30: the 2 o'clock of this morning is past and does not run.
    row = SyncSchedule.create(ae_title="PACS2", hours="2,14", days=7,
                              last_slot=sync.latest_slot([2, 14], at(10, 30)))  # fmt: skip
    assert sync.take_due(at(13, 59)) == []
    (due,) = sync.take_due(at(14, 0))
    assert (due.ae_title, due.hours, due.days) == ("PACS2", [2, 14], 7)
    assert sync.take_due(at(14, 30)) == [] and sync.take_due(at(23, 59)) == []
    # Off all night: at 09:00 the 2 o'clock run is due, once.
    assert len(sync.take_due(at(9, 0, day=1))) == 1
    assert sync.take_due(at(9, 1, day=1)) == []
    assert SyncSchedule.get_by_id(row.id).last_slot == at(2, 0, day=1)


def test_due_runs_become_sync_jobs_and_a_run_under_way_is_not_doubled(index):
    today = dt.date.today()
    morning = _utc(dt.datetime.combine(today, dt.time(8, 0)))
    SyncSchedule.create(ae_title="PACS2", hours="9,10", days=0,
                        last_slot=sync.latest_slot([9, 10], morning))  # fmt: skip
    (job_id,) = outbound_sync.queue_due(morning + dt.timedelta(hours=1))
    job = queue.get(job_id)
    assert job is not None and (job.kind, job.destination, job.owner, job.payload) == (
        "sync", "PACS2", "sync schedule", {"days": 0})  # fmt: skip
    assert job.label == "sync from PACS2"
    # At 10 the 9 o'clock run is still queued: no second one.
    assert outbound_sync.queue_due(morning + dt.timedelta(hours=2)) == []
    assert len(queue.jobs(kind="sync")) == 1
