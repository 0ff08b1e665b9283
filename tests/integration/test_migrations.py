"""A database made by an earlier release opens, migrates, and keeps its rows."""

from __future__ import annotations

import sqlite3

import pytest

from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db import queue, sync
from pacsbox.db.migrations import MIGRATIONS
from pacsbox.db.models import (
    QUEUE_MODELS,
    SYNC_MODELS,
    Instance,
    Patient,
    SchemaVersion,
    Study,
    SyncSchedule,
    database,
)
from tests.helpers import write_config
from tests.postgres import DATABASES, index_settings
from tests.synth import make_instance


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
    assert {13, 14} <= set(versions) and "study_edit_pending" in indexes


def _queue_schema() -> dict[str, tuple]:
    """The queue tables as the database describes them: columns and indexes."""
    db = database.obj
    return {
        m._meta.table_name: (
            sorted((c.name, c.data_type, c.null) for c in db.get_columns(m._meta.table_name)),
            sorted(
                (i.name, tuple(i.columns), i.unique) for i in db.get_indexes(m._meta.table_name)
            ),
        )
        for m in QUEUE_MODELS
    }


@pytest.mark.parametrize("db", DATABASES)
def test_a_database_of_version_13_gains_the_queue_as_a_fresh_one_has_it(request, tmp_path, db):
    cfg = load(write_config(tmp_path / "box", SyncWrites="no", **index_settings(request, db)))
    archive = Archive(cfg)
    try:
        fresh = _queue_schema()
        archive.store(make_instance(patient_id="OLD1"), source="test")
        # Take the database back to what release 13 made: no queue (and nothing later).
        database.obj.drop_tables(QUEUE_MODELS + SYNC_MODELS)
        SchemaVersion.delete().where(SchemaVersion.version >= 14).execute()
    finally:
        archive.close()
    archive = Archive(cfg)
    try:
        assert max(v.version for v in SchemaVersion.select()) == MIGRATIONS[-1][0]
        assert _queue_schema() == fresh and len(fresh["queue_job"][1]) >= 2
        assert Instance.select().count() == 1
        job_id = queue.submit("forward", "AE1", {"study": "1"})
        assert queue.get(job_id) is not None
    finally:
        archive.close()


@pytest.mark.parametrize("db", DATABASES)
def test_a_database_of_version_14_gains_the_sync_schedules(request, tmp_path, db):
    """Migration 18 (SCU-8) on SQLite and PostgreSQL: the table, and the queue kept."""
    cfg = load(write_config(tmp_path / "box", SyncWrites="no", **index_settings(request, db)))
    archive = Archive(cfg)
    try:
        job_id = queue.submit("forward", "AE1", {"studies": ["1"]})
        database.obj.drop_tables(SYNC_MODELS)
        SchemaVersion.delete().where(SchemaVersion.version >= 18).execute()
    finally:
        archive.close()
    archive = Archive(cfg)
    try:
        assert 18 in {v.version for v in SchemaVersion.select()}
        assert database.obj.table_exists(SyncSchedule._meta.table_name)
        assert queue.get(job_id) is not None
        sync.put("PACS2", [2, 14], 30)
        assert [s.hours for s in sync.schedules()] == [[2, 14]]
    finally:
        archive.close()
