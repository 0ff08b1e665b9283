"""The metadata warmer: a series that arrived is cached before any viewer asks, once the box is quiet."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import webtest

from pacsbox.db.lookup import instance_path
from pacsbox.db.models import Instance, Study
from pacsbox.web import users
from pacsbox.web.dicomweb import metacache
from pacsbox.web.dicomweb.metacache import CHECK_EVERY, FOLDER, Warmer
from tests.integration.web.conftest import PASSWORD, Clock, store


@pytest.fixture
def tool(app):
    users.add_user("tool", ["view"], PASSWORD)
    auth = "Basic " + base64.b64encode(f"tool:{PASSWORD}".encode()).decode()
    return webtest.TestApp(app, extra_environ={"HTTP_AUTHORIZATION": auth})


def cached(cfg) -> list[Path]:
    return sorted((Path(cfg.data_dir) / FOLDER).glob("*.json"))


def hide_files(uids: list[str]) -> None:
    """Move the series' files away: an answer now can only come from the cache."""
    for uid in uids:
        path = instance_path(Instance.get(Instance.sop_instance_uid == uid))
        path.rename(path.with_suffix(".away"))


def test_a_new_series_is_cached_after_a_quiet_spell_and_served_without_its_files(
    tool, archive, cfg
):
    old = store(archive, patient_id="OLD")  # before the warmer first ran: left to the first request
    clock = Clock()
    warmer = Warmer(cfg.data_dir, clock=clock, quiet_seconds=5)
    assert warmer.turn() == 0
    first = store(archive)
    second = store(
        archive, study_uid=first.study_instance_uid, series_uid=first.series_instance_uid
    )
    Study.update(private=False).execute()
    assert warmer.turn() == 0  # instances just arrived
    clock.advance(2)
    assert warmer.turn() == 0 and cached(cfg) == []  # not quiet long enough
    clock.advance(4)
    assert warmer.turn() == 1
    assert len(cached(cfg)) == 1
    assert warmer.turn() == 0  # nothing new
    hide_files([first.sop_instance_uid, second.sop_instance_uid])
    url = f"/dicom-web/studies/{first.study_instance_uid}/metadata"
    answer = tool.get(url).json
    assert sorted(i["00080018"]["Value"][0] for i in answer) == sorted(
        [first.sop_instance_uid, second.sop_instance_uid]
    )
    assert old.series_instance_uid not in {p.stem for p in cached(cfg)}


def test_where_it_got_to_survives_a_restart(tool, archive, cfg):
    clock = Clock()
    Warmer(cfg.data_dir, clock=clock, quiet_seconds=5).turn()
    res = store(archive)
    Study.update(private=False).execute()
    # The daemon stopped before the series was quiet; the next one builds it.
    again = Warmer(cfg.data_dir, clock=clock, quiet_seconds=5)
    assert again.turn() == 0
    clock.advance(6)
    assert again.turn() == 1
    hide_files([res.sop_instance_uid])
    url = f"/dicom-web/studies/{res.study_instance_uid}/series/{res.series_instance_uid}/metadata"
    assert tool.get(url).json[0]["00080018"]["Value"] == [res.sop_instance_uid]
    assert Warmer(cfg.data_dir, clock=clock, quiet_seconds=5).turn() == 0  # nothing left


def test_an_ingest_that_starts_stops_the_warmer_midway(archive, cfg, monkeypatch):
    clock = Clock()
    warmer = Warmer(cfg.data_dir, clock=clock, quiet_seconds=5)
    warmer.turn()
    first = store(archive)
    for _ in range(CHECK_EVERY):  # a series long enough to be looked at midway
        store(archive, study_uid=first.study_instance_uid, series_uid=first.series_instance_uid)
    store(archive)  # and a second series
    warmer.turn()
    clock.advance(6)
    real = metacache._instance_json
    made: list[str] = []

    def build_then_receive(inst):
        made.append(inst.sop_instance_uid)
        if len(made) == 1:
            store(archive)  # a new image arrives while the first series is built
        return real(inst)

    monkeypatch.setattr(metacache, "_instance_json", build_then_receive)
    assert warmer.turn() == 0  # it gave up on the series it was on, leaving no file
    assert cached(cfg) == [] and len(made) == CHECK_EVERY
    assert not list((Path(cfg.data_dir) / FOLDER).glob(".tmp-*"))
    assert warmer.turn() == 0  # busy again: it waits
    clock.advance(6)
    assert warmer.turn() == 3  # that series, the second and the one that came
    assert len(cached(cfg)) == 3
