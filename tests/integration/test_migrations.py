"""A database made by an earlier release opens, migrates, and keeps its rows."""

from __future__ import annotations

import sqlite3

import pytest

from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db import assoclog, queue, sync
from pacsbox.db.migrations import MIGRATIONS
from pacsbox.db.models import (
    ASSOCLOG_MODELS,
    QUEUE_MODELS,
    ROUTE_MODELS,
    SYNC_MODELS,
    Instance,
    Patient,
    SchemaVersion,
    Series,
    Study,
    SyncSchedule,
    database,
)
from tests.helpers import write_config
from tests.postgres import DATABASES, index_settings
from tests.synth import make_instance

LATER = [n for n, _, _ in MIGRATIONS if n >= 13]  # what a version-12 database gains
LATEST = MIGRATIONS[-1][0]


def test_a_database_of_version_12_gains_the_edit_marks(tmp_path):
    cfg = load(write_config(tmp_path / "box", SyncWrites="no"))
    archive = Archive(cfg)
    archive.store(make_instance(patient_id="OLD1"), source="test")
    archive.close()
    # Take the database back to what release 12 made: no edit marks.
    path = str(cfg.data_dir / "pacsbox.db")
    with sqlite3.connect(path) as con:
        con.execute("DROP INDEX study_edit_pending")
        for table, column in (("patient", "edited"), ("study", "edited"), ("study", "edit_from")):
            con.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        con.execute("DELETE FROM schema_version WHERE version >= 13")
    archive = Archive(cfg)
    try:
        pt = Patient.get(Patient.patient_id == "OLD1")
        assert (pt.edited, pt.num_instances) == ("", 1)
        assert [(s.edited, s.edit_from) for s in Study.select()] == [("", 0)]
        archive.store(make_instance(patient_id="OLD1"), source="test")
        assert Patient.get(Patient.patient_id == "OLD1").num_instances == 2
    finally:
        archive.close()
    with sqlite3.connect(path) as con:
        versions = [v for (v,) in con.execute("SELECT version FROM schema_version")]
        indexes = [n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type='index'")]
    assert versions[-len(LATER) :] == LATER and "study_edit_pending" in indexes


def _schema(models: list) -> dict[str, tuple]:
    """Tables as the database describes them: columns and indexes."""
    db = database.obj
    return {
        m._meta.table_name: (
            sorted((c.name, c.data_type, c.null) for c in db.get_columns(m._meta.table_name)),
            sorted(
                (i.name, tuple(i.columns), i.unique) for i in db.get_indexes(m._meta.table_name)
            ),
        )
        for m in models
    }


@pytest.mark.parametrize("db", DATABASES)
def test_a_database_of_version_13_gains_the_queue_as_a_fresh_one_has_it(request, tmp_path, db):
    cfg = load(write_config(tmp_path / "box", SyncWrites="no", **index_settings(request, db)))
    archive = Archive(cfg)
    try:
        fresh = _schema(QUEUE_MODELS)
        archive.store(make_instance(patient_id="OLD1"), source="test")
        # Take the database back to what release 13 made: no queue (nor routes).
        database.obj.drop_tables(ROUTE_MODELS + QUEUE_MODELS)
        SchemaVersion.delete().where(SchemaVersion.version >= 14).execute()
    finally:
        archive.close()
    archive = Archive(cfg)
    try:
        assert max(v.version for v in SchemaVersion.select()) == LATEST
        assert _schema(QUEUE_MODELS) == fresh and len(fresh["queue_job"][1]) >= 2
        assert Instance.select().count() == 1
        job_id = queue.submit("forward", "AE1", {"study": "1"})
        assert queue.get(job_id) is not None
    finally:
        archive.close()


@pytest.mark.parametrize("db", DATABASES)
def test_a_database_of_version_14_gains_the_routing_table_and_station_names(request, tmp_path, db):
    cfg = load(write_config(tmp_path / "box", SyncWrites="no", **index_settings(request, db)))
    archive = Archive(cfg)
    try:
        fresh = _schema([*ROUTE_MODELS, Series])
        archive.store(make_instance(patient_id="OLD1"), source="test")
        # Back to release 14: no routing tables, no series.station_name.
        database.obj.drop_tables(ROUTE_MODELS)
        database.obj.execute_sql("ALTER TABLE series DROP COLUMN station_name")
        SchemaVersion.delete().where(SchemaVersion.version >= 15).execute()
    finally:
        archive.close()
    archive = Archive(cfg)
    try:
        assert max(v.version for v in SchemaVersion.select()) == LATEST
        assert _schema([*ROUTE_MODELS, Series]) == fresh
        assert [s.station_name for s in Series.select()] == [""]
        archive.store(make_instance(patient_id="OLD1", extra={"StationName": "CT-EAST"}),
                      source="test")  # fmt: skip
        assert sorted(s.station_name for s in Series.select()) == ["", "CT-EAST"]
    finally:
        archive.close()


@pytest.mark.parametrize("db", DATABASES)
def test_a_database_of_version_16_gains_the_association_log_as_a_fresh_one_has_it(
    request, tmp_path, db
):
    cfg = load(write_config(tmp_path / "box", SyncWrites="no", **index_settings(request, db)))
    archive = Archive(cfg)
    try:
        fresh = _schema(ASSOCLOG_MODELS)
        archive.store(make_instance(patient_id="OLD1"), source="test")
        # Take the database back to what came before 17: no association log.
        database.obj.drop_tables(ASSOCLOG_MODELS)
        SchemaVersion.delete().where(SchemaVersion.version >= 17).execute()
    finally:
        archive.close()
    archive = Archive(cfg)
    try:
        assert 17 in {v.version for v in SchemaVersion.select()}
        assert _schema(ASSOCLOG_MODELS) == fresh and len(fresh["association_log"][1]) >= 2
        assert Instance.select().count() == 1
        assoclog.write([assoclog.Entry("in", "CT1", "CT1", "PACSBOX", "10.0.0.5")])
        assert [r["remote_ae"] for r in assoclog.recent("CT1", "in")] == ["CT1"]
    finally:
        archive.close()


@pytest.mark.parametrize("db", DATABASES)
def test_a_database_of_version_17_gains_the_sync_schedules(request, tmp_path, db):
    """Migration 18 (SCU-8) on SQLite and PostgreSQL: the table, and the queue kept."""
    cfg = load(write_config(tmp_path / "box", SyncWrites="no", **index_settings(request, db)))
    archive = Archive(cfg)
    try:
        fresh = _schema(SYNC_MODELS)
        job_id = queue.submit("forward", "AE1", {"studies": ["1"]})
        database.obj.drop_tables(SYNC_MODELS)
        SchemaVersion.delete().where(SchemaVersion.version >= 18).execute()
    finally:
        archive.close()
    archive = Archive(cfg)
    try:
        assert max(v.version for v in SchemaVersion.select()) == LATEST
        assert _schema(SYNC_MODELS) == fresh
        assert database.obj.table_exists(SyncSchedule._meta.table_name)
        assert queue.get(job_id) is not None
        sync.put("PACS2", [2, 14], 30)
        assert [s.hours for s in sync.schedules()] == [[2, 14]]
    finally:
        archive.close()
