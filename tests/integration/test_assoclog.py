"""The association log stays bounded, counts repeated failures on one row, and never
lets a failing index reach an association (its entries wait in the buffer)."""

from __future__ import annotations

import datetime as dt

import pytest

from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db import assocbuffer, assoclog
from pacsbox.db.models import AssociationLog, database, utcnow
from tests.helpers import write_config
from tests.postgres import DATABASES, index_settings

# Noon today (UTC): a day's entries below stay on one day, and real time prunes none.
NOW = dt.datetime.combine(utcnow().date(), dt.time(12))


def _entry(ae: str, at: dt.datetime, result: str = "accepted", **kw) -> assoclog.Entry:
    return assoclog.Entry(
        kw.pop("direction", "in"), ae, ae, "PACSBOX", kw.pop("address", "10.0.0.5"),
        result=result, at=at, **kw,
    )  # fmt: skip


@pytest.fixture(params=DATABASES)
def archive(request, tmp_path):
    """A box whose log keeps 3 days and the last 5 accepted per AE and direction."""
    ini = write_config(
        tmp_path / "box",
        SyncWrites="no",
        AssociationLogDays="3",
        AssociationLogKeep="5",
        **index_settings(request, request.param),
    )
    a = Archive(load(ini))
    yield a
    a.close()


def test_the_log_stays_bounded_by_days_and_per_ae_count(archive):
    old = NOW - dt.timedelta(days=4)
    entries = [_entry("CT1", NOW - dt.timedelta(minutes=i)) for i in range(30)]
    entries += [_entry("CT1", NOW - dt.timedelta(minutes=i), direction="out") for i in range(8)]
    entries += [_entry("MR1", NOW - dt.timedelta(minutes=i)) for i in range(2)]
    # Rejections: one kind a day for the last six days.
    entries += [
        _entry("CT9", NOW - dt.timedelta(days=d, hours=1), "rejected", reason="unknown-calling-ae")
        for d in range(6)
    ]
    entries.append(_entry("MR1", old))  # accepted, but older than the days
    assoclog.write(entries)
    assert AssociationLog.select().count() == len(entries)

    # The archive gave the process's recorder AssociationLogDays 3, AssociationLogKeep 5.
    removed = assocbuffer.recorder.prune(NOW)

    assert removed == 25 + 3 + 3 + 1
    assert len(assoclog.recent("CT1", "in", 100)) == 5  # the newest five
    assert assoclog.recent("CT1", "in", 1)[0]["last"] == NOW.isoformat()
    assert len(assoclog.recent("CT1", "out", 100)) == 5
    assert len(assoclog.recent("MR1", "in", 100)) == 2  # the recent two; the old one went
    kept = assoclog.rejections(NOW - dt.timedelta(days=30), "CT9")
    assert len(kept) == 1 and kept[0]["count"] == 3  # the rejections of the last three days
    # Pruning again removes nothing.
    assert assocbuffer.recorder.prune(NOW) == 0


def test_repeated_failures_are_one_row_a_day_with_their_count(archive):
    day1 = [
        _entry("CT9", NOW - dt.timedelta(seconds=i), "rejected", reason="unknown-calling-ae")
        for i in reversed(range(500))
    ]  # fmt: skip  (oldest first, as they come)
    day2 = [_entry("CT9", NOW + dt.timedelta(days=1, seconds=i), "rejected",
                   reason="unknown-calling-ae") for i in range(7)]  # fmt: skip
    out = [_entry("WS1", NOW, "refused", direction="out", address="127.0.0.1:9",
                  service="forward", detail="connection refused") for _ in range(40)]  # fmt: skip
    assoclog.write(day1[:200])
    assoclog.write(day1[200:] + out)  # a later batch joins the day's row
    assoclog.write(day2)
    rows = list(AssociationLog.select().order_by(AssociationLog.first))
    assert [(r.remote_ae, r.count) for r in rows] == [("CT9", 500), ("WS1", 40), ("CT9", 7)]
    assert rows[0].first == NOW - dt.timedelta(seconds=499) and rows[0].last == NOW
    (grouped,) = assoclog.rejections(NOW - dt.timedelta(days=1))
    assert grouped["count"] == 507 and grouped["words"] == "unknown calling AE"
    (refused,) = assoclog.recent("WS1", "out")
    assert (refused["result"], refused["count"], refused["service"]) == ("refused", 40, "forward")


def test_a_hard_ceiling_holds_whatever_the_settings(archive, monkeypatch):
    monkeypatch.setattr(assoclog, "MAX_ROWS", 10)
    assoclog.write([_entry(f"AE{i}", NOW - dt.timedelta(seconds=i)) for i in range(25)])
    assert assocbuffer.recorder.prune(NOW) == 15
    titles = {r.remote_ae for r in AssociationLog.select()}
    assert titles == {f"AE{i}" for i in range(10)}  # the newest ten


def test_a_failing_index_never_reaches_the_caller_and_its_entries_wait(archive):
    rec = assocbuffer.Recorder(capacity=4)
    database.obj.drop_tables([AssociationLog])  # the index fails every write now
    try:
        for i in range(6):
            rec.record(_entry("CT1", utcnow() - dt.timedelta(seconds=i)))  # never raises
        assert rec.flush() is False
        assert rec.pending() == 4 and rec.dropped == 2  # bounded: the newest were dropped
    finally:
        database.obj.create_tables([AssociationLog])
    assert rec.flush() is True  # the index is back: what waited is written
    assert rec.pending() == 0 and AssociationLog.select().count() == 4
