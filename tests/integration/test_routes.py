"""The routing table on a real index: what a route matches, when a routed study is
released, the follow-up round, windows and fixed hours, the purge guard and
purge after route, the CLI and the routing page. Sending for real is in
tests/interop/test_routes.py."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db import queue, routes
from pacsbox.db.auth_models import Journal
from pacsbox.db.models import Study, utcnow
from pacsbox.outbound.forward import Selection
from pacsbox.outbound.routing import Router, next_at
from pacsbox.watermark.monitor import Watermark
from tests.helpers import cli, write_config
from tests.synth import make_instance

STUDY = "1.2.826.0.1.3680043.8.498.616161.1"
OTHER = "1.2.826.0.1.3680043.8.498.616161.2"


@pytest.fixture
def box(tmp_path):
    ini = write_config(tmp_path / "box", StableStudySeconds=60)
    for title in ("WS", "TELE"):
        cli(ini, "ae", "add", title, "--host", "127.0.0.1", "--port", "11112")
    archive = Archive(load(ini))
    yield ini, archive
    archive.close()


def _store(archive: Archive, n: int, *, study: str = STUDY, ae: str = "CT1", **kw) -> None:
    for _ in range(n):
        archive.store(make_instance(study_uid=study, **kw), calling_ae=ae, source="test")


def _route(name: str, *to: str, **kw) -> None:
    from pacsbox.outbound.route_commands import add_route

    add_route(routes.RouteView(name=name, destinations=list(to), **kw), user="test")


def _jobs(kind: str = "route") -> list[queue.JobView]:
    return sorted(queue.jobs(kind=kind), key=lambda j: j.id)


def _later(seconds: float) -> dt.datetime:
    return utcnow() + dt.timedelta(seconds=seconds)


def test_a_route_matches_by_calling_ae_and_by_keys_and_only_images_stored_after_it(box):
    ini, archive = box
    _store(archive, 1, study=OTHER)  # before any route: never routed
    _route("FROMCT", "WS", from_ae="CT?")
    _route("NORTH", "TELE", match={"InstitutionName": "north*", "Modality": "CT\\MR"})
    _store(archive, 2, extra={"InstitutionName": "North Clinic"})  # both routes
    _store(archive, 1, study=OTHER, ae="US1", extra={"InstitutionName": "SOUTH"})  # neither
    router = Router(load(ini))
    assert router.turn() == 0  # not stable yet
    router.clock = lambda: _later(61)
    assert router.turn() == 2
    made = {(j.destination, j.owner, tuple(j.payload["studies"])) for j in _jobs()}
    assert made == {("WS", "route FROMCT", (STUDY,)), ("TELE", "route NORTH", (STUDY,))}
    assert router.turn() == 0  # released once


def test_a_study_in_two_associations_is_one_job_and_later_images_a_follow_up(box):
    ini, archive = box
    _route("ALL", "WS")
    router = Router(load(ini))
    _store(archive, 3)
    router.clock = lambda: _later(30)
    router.turn()
    _store(archive, 2)  # a second association 30 s later: the study is not stable yet
    assert router.turn() == 0
    router.clock = lambda: _later(61)
    assert router.turn() == 1
    (first,) = _jobs()
    assert len(Selection.of(first.payload).items()) == 5
    assert first.label == "study by route ALL to WS"
    _store(archive, 2)  # after release: a follow-up with only these two
    router.clock = lambda: _later(61)
    assert router.turn() == 1
    follow = _jobs()[1]
    assert follow.label == "follow-up of study by route ALL to WS"
    rows = [row for row, _ in Selection.of(follow.payload).items()]
    assert len(rows) == 2 and min(rows) > max(r for r, _ in Selection.of(first.payload).items())


def test_stable_study_seconds_decides_when_a_study_is_released(tmp_path):
    ini = write_config(tmp_path / "box", StableStudySeconds=5)
    cli(ini, "ae", "add", "WS", "--host", "127.0.0.1", "--port", "11112")
    archive = Archive(load(ini))
    try:
        _route("ALL", "WS")
        _store(archive, 1)
        router = Router(load(ini), clock=lambda: _later(3))
        assert router.turn() == 0
        router.clock = lambda: _later(6)
        assert router.turn() == 1
    finally:
        archive.close()


def test_a_window_or_a_fixed_hour_holds_the_job(box):
    ini, archive = box
    local = dt.datetime.now().astimezone()
    opens = (local + dt.timedelta(hours=2)).strftime("%H:%M")
    closes = (local + dt.timedelta(hours=3)).strftime("%H:%M")
    _route("NIGHT", "WS", window=f"{opens}-{closes}")
    _route("TWO", "TELE", at=opens)
    _store(archive, 1)
    Router(load(ini), clock=lambda: _later(61)).turn()
    night, two = _jobs()
    assert night.state == two.state == "waiting"
    for job in (night, two):
        due = dt.datetime.fromisoformat(job.next_attempt).astimezone()
        assert due.strftime("%H:%M") == opens and due > local
    # Nothing may claim them before the hour; at the hour both run.
    assert queue.claim("t", utcnow(), 5) is None
    at_hour = dt.datetime.fromisoformat(night.next_attempt).replace(tzinfo=None)
    assert {queue.claim("t", at_hour, 5).id, queue.claim("t", at_hour, 5).id} == {night.id, two.id}


def test_next_at_is_the_next_local_hour():
    now = dt.datetime(2026, 12, 4, 10, 0)  # naive UTC
    local = now.replace(tzinfo=dt.UTC).astimezone()
    later = (local + dt.timedelta(minutes=30)).strftime("%H:%M")
    earlier = (local - dt.timedelta(minutes=30)).strftime("%H:%M")
    assert next_at(later, now) - now == dt.timedelta(minutes=30)
    assert next_at(earlier, now) - now == dt.timedelta(hours=23, minutes=30)
    assert next_at("", now) is None


def test_the_purge_keeps_a_routed_study_until_its_route_delivered_then_purge_after_deletes_it(box):
    ini, archive = box
    cfg = load(ini)
    _route("OFFSITE", "WS", "TELE", from_ae="CT1", purge_after=True)
    _store(archive, 2)
    _store(archive, 1, study=OTHER, ae="ELSEWHERE")
    wm = Watermark(cfg, archive)
    router = Router(cfg, wm.purge_now)
    router.turn()  # matched, not stable: the purge must keep it
    study = Study.get(Study.study_instance_uid == STUDY)
    assert wm.keep_reason(study, None) == (
        "route OFFSITE has still to send it (waiting for the study to be stable)"
    )
    router.clock = lambda: _later(61)
    router.turn()
    ws, tele = _jobs()
    wm._pending = None
    assert f"queue job {ws.id} (route to WS, queued) has still to send it" == wm.keep_reason(
        study, None
    )
    folder = Path(study.storage_root) / study.folder
    assert len(list(folder.iterdir())) == 2
    for job in (ws, tele):  # stands for a delivery (sending is tests/interop's)
        queue.claim("t", utcnow(), 5, only=job.id)
        queue.succeed(job.id, "2 delivered")
        router.turn()
        if job is ws:  # one destination of two: the copy stays
            assert Study.get_or_none(Study.study_instance_uid == STUDY) is not None
    assert Study.get_or_none(Study.study_instance_uid == STUDY) is None
    assert Study.get_or_none(Study.study_instance_uid == OTHER) is not None
    assert not folder.exists() or not any(folder.iterdir())  # the files went too
    (entry,) = Journal.select().where(Journal.action == "purge")
    assert entry.user == "route OFFSITE" and entry.target == STUDY


def test_purge_after_leaves_a_protected_study(box):
    ini, archive = box
    cfg = load(ini)
    _route("OFFSITE", "WS", purge_after=True)
    _store(archive, 1)
    Study.update(protected=True).execute()
    wm = Watermark(cfg, archive)
    router = Router(cfg, wm.purge_now, clock=lambda: _later(61))
    router.turn()
    (job,) = _jobs()
    queue.claim("t", utcnow(), 5, only=job.id)
    queue.succeed(job.id, "1 delivered")
    router.turn()
    router.turn()
    assert Study.get_or_none(Study.study_instance_uid == STUDY) is not None
    assert routes.purge_candidates() == []  # settled: not asked every turn


def test_purge_dry_run_names_the_route_that_keeps_a_study(tmp_path):
    ini = write_config(tmp_path / "box", SyncWrites="no", HighWaterMark=2, LowWaterMark=1,
                       PurgeMinAgeHours=0)  # fmt: skip
    cli(ini, "ae", "add", "WS", "--host", "127.0.0.1", "--port", "11112")
    archive = Archive(load(ini))
    try:
        _route("OFFSITE", "WS")
        _store(archive, 1)
        Router(load(ini)).turn()
    finally:
        archive.close()
    r = cli(ini, "purge", "--dry-run", check=False)
    assert r.returncode == 1  # above the mark with nothing that may go
    assert "route OFFSITE has still to send it" in r.stdout, r.stdout


def test_route_cli(box):
    ini, _ = box
    r = cli(ini, "route", "add", "CT", "--to", "WS", "--to", "TELE", "--from-ae", "CT1",
            "--match", "Modality=CT", "--window", "22:00-06:00", "--retries", "5",
            "--purge-after")  # fmt: skip
    assert r.stdout.strip() == (
        "route CT to WS, TELE: from CT1 and Modality=CT, 22:00-06:00, 5 retries, purge after"
    )
    (listed,) = json.loads(cli(ini, "route", "list", "--json").stdout)
    assert listed["destinations"] == ["WS", "TELE"] and listed["window"] == "22:00-06:00"
    assert listed["match"] == {"Modality": "CT"} and listed["purge_after"] is True
    assert "CT               to WS,TELE" in cli(ini, "route", "list").stdout
    bad = {
        ("--to", "NOWHERE"): "AE NOWHERE is not in the AE table",
        ("--to", "WS", "--match", "PatientName=X*"): "cannot route on 'PatientName'",
        ("--to", "WS", "--match", "Modality"): "expected KEY=PATTERN",
        ("--to", "WS", "--window", "25:00-06:00"): "expected HH:MM-HH:MM",
        ("--to", "WS", "--at", "7"): "expected HH:MM",
        ("--to", "WS", "--retries", "-1"): "--retries must be 0 or more",
        ("--to", "WS", "--notify", "--purge-after"): "a notification route sends no images",
    }
    for args, reason in bad.items():
        r = cli(ini, "route", "add", "X", *args, check=False)
        assert r.returncode != 0 and reason in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
    r = cli(ini, "route", "add", "X", "--to", "WS", "--window", "22:00-06:00", "--at", "02:00",
            check=False)  # fmt: skip
    assert r.returncode == 2
    assert cli(ini, "route", "remove", "CT").stdout.strip() == "route CT removed"
    r = cli(ini, "route", "remove", "CT", check=False)
    assert r.returncode != 0 and "no route named CT" in r.stderr
    assert json.loads(cli(ini, "route", "list", "--json").stdout) == []


def test_purge_after_a_commit_route_waits_for_every_destination_to_commit(box):
    from pacsbox.db import commitments
    from pacsbox.db.models import Instance

    ini, archive = box
    cfg = load(ini)
    _route("BACKUP", "WS", "TELE", commit=True, purge_after=True)
    _store(archive, 2)
    wm = Watermark(cfg, archive)
    router = Router(cfg, wm.purge_now, clock=lambda: _later(61))
    router.turn()
    refs = [(i.sop_class_uid, i.sop_instance_uid) for i in Instance.select()]
    for job in _jobs():  # delivered (sending is tests/interop's), then asked to commit
        assert job.payload["commit"] is True
        queue.claim("t", utcnow(), 5, only=job.id)
        queue.succeed(job.id, "2 delivered")
        commit_job = commitments.submit_after(job.id, job.destination, refs, "route BACKUP")
        commitments.asked(commit_job, f"1.2.3.{commit_job}", [uid for _, uid in refs])
    router.turn()
    assert Study.get_or_none(Study.study_instance_uid == STUDY) is not None  # none committed
    commit_jobs = sorted(j.id for j in queue.jobs(kind="commit"))
    commitments.answer(f"1.2.3.{commit_jobs[0]}", "WS", [uid for _, uid in refs], {})
    router.turn()
    assert Study.get_or_none(Study.study_instance_uid == STUDY) is not None  # WS only
    commitments.answer(f"1.2.3.{commit_jobs[1]}", "TELE", [uid for _, uid in refs], {})
    for job_id in commit_jobs:  # the commit jobs end once their reports are in
        queue.claim("t", utcnow(), 5, only=job_id)
        queue.succeed(job_id, "2 committed")
    router.turn()
    assert Study.get_or_none(Study.study_instance_uid == STUDY) is None
    (entry,) = Journal.select().where(Journal.action == "purge")
    assert entry.detail == "route BACKUP delivered it and every destination committed it"
