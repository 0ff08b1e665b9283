"""A database made by an earlier release opens, migrates, and keeps its rows."""

from __future__ import annotations

import sqlite3

import pytest

from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db import commitments, queue
from pacsbox.db.models import (
    COMMITMENT_MODELS,
    QUEUE_MODELS,
    Instance,
    Patient,
    SchemaVersion,
    Study,
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
    assert versions[-3:] == [13, 14, 16] and "study_edit_pending" in indexes


def _queue_schema(models=QUEUE_MODELS) -> dict[str, tuple]:
    """The queue tables (or ``models``'), as the database describes them: columns and
    indexes."""
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
        fresh = _queue_schema()
        archive.store(make_instance(patient_id="OLD1"), source="test")
        # Take the database back to what release 13 made: no queue.
        database.obj.drop_tables(QUEUE_MODELS)
        SchemaVersion.delete().where(SchemaVersion.version >= 14).execute()
    finally:
        archive.close()
    archive = Archive(cfg)
    try:
        assert max(v.version for v in SchemaVersion.select()) == 16
        assert _queue_schema() == fresh and len(fresh["queue_job"][1]) >= 2
        assert Instance.select().count() == 1
        job_id = queue.submit("forward", "AE1", {"study": "1"})
        assert queue.get(job_id) is not None
    finally:
        archive.close()


@pytest.mark.parametrize("db", DATABASES)
def test_a_database_of_version_14_gains_the_commitment_table_as_a_fresh_one_has_it(
    request, tmp_path, db
):
    cfg = load(write_config(tmp_path / "box", SyncWrites="no", **index_settings(request, db)))
    archive = Archive(cfg)
    try:
        fresh = _queue_schema(COMMITMENT_MODELS)
        archive.store(make_instance(patient_id="OLD1"), source="test")
        # Take the database back to what release 14 made: no commitment table.
        database.obj.drop_tables(COMMITMENT_MODELS)
        SchemaVersion.delete().where(SchemaVersion.version == 16).execute()
    finally:
        archive.close()
    archive = Archive(cfg)
    try:
        assert max(v.version for v in SchemaVersion.select()) == 16
        assert _queue_schema(COMMITMENT_MODELS) == fresh
        assert len(fresh["commitment"][1]) >= 3  # the pair is unique; by job; by study
        (sop,) = [i.sop_instance_uid for i in Instance.select()]
        job_id = commitments.submit_after(1, "AE1", [("1.2.840.10008.5.1.4.1.1.2", sop)], "test")
        assert commitments.still_open(job_id) == [("1.2.840.10008.5.1.4.1.1.2", sop)]
        assert commitments.pending_studies() == {Study.get().study_instance_uid: "AE1"}
    finally:
        archive.close()
