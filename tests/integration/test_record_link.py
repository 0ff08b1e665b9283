"""A worker process's stores, recorded by the daemon's index writer over a real socket pair.

The daemon's end and the worker's end run in this process, each with its own
Archive on the same SQLite file and folders, exactly as the two processes do.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import threading
from concurrent.futures import Future
from pathlib import Path

import pytest

from pacsbox import recovery, storage
from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db import lookup
from pacsbox.db.models import Instance, Series, Study
from pacsbox.errors import DatabaseError, DuplicateRejected, OutcomeUnknown
from pacsbox.record_link import RecordClient, RecordServer
from pacsbox.scu import decompressed
from tests.helpers import cli, write_config
from tests.synth import make_instance

SAME = {"study_uid": "1.2.3", "series_uid": "1.2.3.1", "sop_uid": "1.2.3.1.1"}


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _linked(tmp_path: Path, record_many=None, **settings):
    ini = write_config(tmp_path / "box", **settings)
    daemon = Archive(load(ini))
    worker = Archive(load(ini), migrate=False)
    ours, theirs = socket.socketpair()
    server = RecordServer(ours, record_many or daemon.record_many, decompressed, "1")
    worker.remote_record = RecordClient(theirs).record
    return ini, daemon, worker, server


@pytest.fixture
def linked(tmp_path):
    ini, daemon, worker, server = _linked(tmp_path)
    yield ini, daemon, worker, server
    server.close()
    worker.close()
    daemon.close()


def test_worker_stores_join_the_daemons_commits(linked):
    _, daemon, worker, _ = linked
    errors = []

    def send(archive: Archive, n: int) -> None:
        try:
            for i in range(20):
                data = make_instance(
                    patient_id="P1",
                    study_uid="1.2.3",
                    series_uid=f"1.2.3.{n}",
                    sop_uid=f"1.2.3.{n}.{i}",
                    instance_number=i + 1,
                )
                assert archive.store(data).outcome == "stored"
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    senders = [functools.partial(send, worker, n) for n in range(3)]
    senders.append(functools.partial(send, daemon, 3))
    threads = [threading.Thread(target=s) for s in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    st = Study.get()
    assert (st.num_series, st.num_instances) == (4, 80)
    assert all(se.num_instances == 20 for se in Series.select())
    assert len(_files(daemon.cfg.archive_dir)) == 80
    assert all(lookup.instance_path(i).is_file() for i in Instance.select())


def test_worker_duplicates_follow_the_policy(linked):
    _, daemon, worker, _ = linked
    first = make_instance(**SAME)
    assert worker.store(first).outcome == "stored"
    assert worker.store(first).outcome == "duplicate"
    second = make_instance(**SAME, description="CORRECTED")
    assert worker.store(second).outcome == "replaced"
    assert lookup.instance_path(Instance.get()).read_bytes() == second
    assert [p.read_bytes() for p in _files(daemon.cfg.holding_dir)] == [first]
    assert len(_files(daemon.cfg.archive_dir)) == 1


def test_worker_reject_policy_fails_that_store_only(tmp_path):
    _, daemon, worker, server = _linked(tmp_path, DuplicatePolicy="reject")
    try:
        first = make_instance(**SAME)
        worker.store(first)
        with pytest.raises(DuplicateRejected):
            worker.store(make_instance(**SAME, description="OTHER"))
        assert [p.read_bytes() for p in _files(daemon.cfg.archive_dir)] == [first]
    finally:
        server.close()
        worker.close()
        daemon.close()


def test_worker_follows_a_study_that_lives_in_another_archive(linked):
    ini, daemon, worker, _ = linked
    other = daemon.cfg.data_dir.parent / "mr-archive"
    cli(ini, "ae", "add", "MR1", "--archivedir", str(other))
    daemon.store(make_instance(study_uid="1.2.3", sop_uid="1.2.3.1"), calling_ae="MR1")
    assert worker.store(make_instance(study_uid="1.2.3", sop_uid="1.2.3.2")).outcome == "stored"
    assert len(_files(other)) == 2 and _files(daemon.cfg.archive_dir) == []
    assert Study.get().num_instances == 2


def test_a_failed_folder_fsync_while_the_daemon_records_keeps_file_and_row(linked, monkeypatch):
    """The worker fsyncs the folder while the daemon records; if that fails
    after the row committed, the sender gets A701 and its resend succeeds."""
    _, daemon, worker, _ = linked
    kept = make_instance(study_uid="1.2.3")
    worker.store(kept)  # the study folder exists: only the rename's folder fsync is left
    again = make_instance(study_uid="1.2.3")

    def broken(path):
        raise OSError(errno.EIO, "Input/output error")

    with monkeypatch.context() as m:
        m.setattr(storage, "fsync_dir", broken)
        with pytest.raises(OutcomeUnknown) as exc:
            worker.store(again)
    assert exc.value.dimse_status == 0xA701 and "Input/output error" in str(exc.value)
    assert sorted(p.read_bytes() for p in _files(daemon.cfg.archive_dir)) == sorted([kept, again])
    assert Instance.select().count() == 2
    assert worker.store(again).outcome == "duplicate"


def test_daemon_gone_before_the_record_removes_the_file(linked):
    _, daemon, worker, server = linked
    server.close()
    with pytest.raises(DatabaseError):
        worker.store(make_instance())
    assert _files(daemon.cfg.archive_dir) == [] and Instance.select().count() == 0


def test_daemon_gone_during_the_record_keeps_the_file(tmp_path):
    """The row may have been committed: A701, and the file stays for the start-up check."""
    started = threading.Event()

    def stuck(records) -> list[Future]:
        started.set()
        return [Future() for _ in records]  # the daemon dies before it commits or answers

    _, daemon, worker, server = _linked(tmp_path, record_many=stuck)
    try:
        threading.Timer(0.2, lambda: started.wait() and server.close()).start()
        with pytest.raises(OutcomeUnknown) as exc:
            worker.store(make_instance())
        assert exc.value.dimse_status == 0xA701
        assert len(_files(daemon.cfg.archive_dir)) == 1
        report = recovery.startup_check(daemon.cfg)
        assert report.indexed == 1 and Instance.select().count() == 1
    finally:
        worker.close()
        daemon.close()


def test_replies_reach_their_own_callers_in_any_order_and_a_dying_daemon_answers_all(tmp_path):
    """Waiting callers read the link themselves: each gets its own reply, whichever
    comes first, and when the daemon dies every caller still waiting is told."""
    held: list[tuple[Future, Future | None]] = []  # (what the worker waits on, the commit)
    all_in = threading.Event()
    commit: list = []

    def late(records) -> list[Future]:
        for record in records:
            held.append((Future(), commit[0]([record])[0] if len(held) < 3 else None))
        if len(held) == 4:
            all_in.set()
        return [answer for answer, _ in held[-len(records) :]]

    _, daemon, worker, server = _linked(tmp_path, record_many=late)
    commit.append(daemon.record_many)
    outcomes: dict[int, object] = {}

    def send(n: int) -> None:
        try:
            outcomes[n] = worker.store(make_instance(sop_uid=f"1.2.3.9.{n}")).sop_instance_uid
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            outcomes[n] = exc

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    try:
        for t in threads:
            t.start()
        assert all_in.wait(10)
        for answer, done in reversed(held[:3]):  # the first three, last in first out
            answer.set_result(done.result(10))
        for _ in range(200):
            if len(outcomes) == 3:
                break
            threading.Event().wait(0.05)
        assert len(outcomes) == 3  # the fourth still waits for its reply
        server.close()  # and then the daemon is gone
        for t in threads:
            t.join(10)
            assert not t.is_alive()
    finally:
        worker.close()
        daemon.close()
    stored = sorted(v for v in outcomes.values() if isinstance(v, str))
    lost = [v for v in outcomes.values() if isinstance(v, OutcomeUnknown)]
    assert len(stored) == 3 and len(lost) == 1
    assert stored == sorted(i.sop_instance_uid for i in Instance.select())


def test_a_replace_the_daemon_cannot_make_durable_keeps_both_files(linked, monkeypatch):
    """The replacing row is committed but not known to be on disk: the worker
    answers A701 and moves nothing, so whichever row survives finds its file."""
    _, daemon, worker, _ = linked
    first = make_instance(**SAME)
    worker.store(first)
    second = make_instance(**SAME, patient_name="DOE^JANE")

    def broken(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken)
    with pytest.raises(OutcomeUnknown) as exc:
        worker.store(second)
    assert exc.value.dimse_status == 0xA701 and "not synced" in str(exc.value)
    assert sorted(p.read_bytes() for p in _files(daemon.cfg.archive_dir)) == sorted([first, second])
    assert _files(daemon.cfg.holding_dir) == []
