"""A database made by an earlier release opens, migrates, and keeps its rows."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import pytest

from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db import aes, assoclog, commitments, notes, queue, sync, worklist
from pacsbox.db.auth_models import TOKEN_MODELS
from pacsbox.db.migrations import MIGRATIONS
from pacsbox.db.models import (
    ASSOCLOG_MODELS,
    COMMITMENT_MODELS,
    QUEUE_MODELS,
    ROUTE_MODELS,
    SYNC_MODELS,
    ApplicationEntity,
    Instance,
    Patient,
    SchemaVersion,
    Series,
    Study,
    SyncSchedule,
    database,
)
from pacsbox.db.notes_models import NOTE_MODELS
from pacsbox.db.worklist_models import WORKLIST_MODELS
from pacsbox.web import tokens, users
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


def _back_before(
    request,
    tmp_path,
    db,
    number: int,
    models: list,
    undo: Callable[[], None] | None = None,
    also: tuple = (),
) -> tuple[Archive, dict]:
    """A box whose database is taken back to before migration ``number`` (its
    ``models`` dropped, ``undo`` run, the versions from ``number`` on forgotten) and
    opened again; returns the archive and the fresh schema of ``models`` (and of the
    tables ``also`` names, changed by ``undo``), which the migrated one matches."""
    cfg = load(write_config(tmp_path / "box", SyncWrites="no", **index_settings(request, db)))
    archive = Archive(cfg)
    try:
        fresh = _schema([*models, *also])
        archive.store(make_instance(patient_id="OLD1"), source="test")
        database.obj.drop_tables(models)
        if undo is not None:
            undo()
        SchemaVersion.delete().where(SchemaVersion.version >= number).execute()
    finally:
        archive.close()
    archive = Archive(cfg)
    assert max(v.version for v in SchemaVersion.select()) == LATEST
    assert _schema([*models, *also]) == fresh
    assert Instance.select().count() == 1
    return archive, fresh


@pytest.mark.parametrize("db", DATABASES)
def test_a_database_of_version_13_gains_the_queue_as_a_fresh_one_has_it(request, tmp_path, db):
    # Routes, commitments and later tables are dropped too: they came after 13.
    later = ROUTE_MODELS + COMMITMENT_MODELS + ASSOCLOG_MODELS + SYNC_MODELS + WORKLIST_MODELS
    later += NOTE_MODELS
    archive, fresh = _back_before(request, tmp_path, db, 14, later + QUEUE_MODELS)
    try:
        assert len(fresh["queue_job"][1]) >= 2
        job_id = queue.submit("forward", "AE1", {"study": "1"})
        assert queue.get(job_id) is not None
    finally:
        archive.close()


@pytest.mark.parametrize("db", DATABASES)
def test_a_database_of_version_14_gains_the_routing_table_and_station_names(request, tmp_path, db):
    def undo() -> None:
        database.obj.execute_sql("ALTER TABLE series DROP COLUMN station_name")

    archive, _ = _back_before(request, tmp_path, db, 15, ROUTE_MODELS, undo, also=(Series,))
    try:
        assert [s.station_name for s in Series.select()] == [""]
        archive.store(make_instance(patient_id="OLD1", extra={"StationName": "CT-EAST"}),
                      source="test")  # fmt: skip
        assert sorted(s.station_name for s in Series.select()) == ["", "CT-EAST"]
    finally:
        archive.close()


@pytest.mark.parametrize("db", DATABASES)
def test_a_database_of_version_15_gains_the_commitment_table(request, tmp_path, db):
    archive, fresh = _back_before(request, tmp_path, db, 16, COMMITMENT_MODELS)
    try:
        assert len(fresh["commitment"][1]) >= 3  # the pair is unique; by job; by study
        (sop,) = [i.sop_instance_uid for i in Instance.select()]
        job_id = commitments.submit_after(1, "AE1", [("1.2.840.10008.5.1.4.1.1.2", sop)], "test")
        assert commitments.still_open(job_id) == [("1.2.840.10008.5.1.4.1.1.2", sop)]
        assert commitments.pending_studies() == {Study.get().study_instance_uid: "AE1"}
    finally:
        archive.close()


@pytest.mark.parametrize("db", DATABASES)
def test_a_database_of_version_16_gains_the_association_log(request, tmp_path, db):
    archive, fresh = _back_before(request, tmp_path, db, 17, ASSOCLOG_MODELS)
    try:
        assert len(fresh["association_log"][1]) >= 2
        assoclog.write([assoclog.Entry("in", "CT1", "CT1", "PACSBOX", "10.0.0.5")])
        assert [r["remote_ae"] for r in assoclog.recent("CT1", "in")] == ["CT1"]
    finally:
        archive.close()


@pytest.mark.parametrize("db", DATABASES)
def test_a_database_of_version_17_gains_the_sync_schedules(request, tmp_path, db):
    archive, _ = _back_before(request, tmp_path, db, 18, SYNC_MODELS)
    try:
        assert database.obj.table_exists(SyncSchedule._meta.table_name)
        sync.put("PACS2", [2, 14], 30)
        assert [s.hours for s in sync.schedules()] == [[2, 14]]
    finally:
        archive.close()


@pytest.mark.parametrize("db", DATABASES)
def test_a_database_of_version_18_gains_the_worklist(request, tmp_path, db):
    archive, fresh = _back_before(request, tmp_path, db, 19, WORKLIST_MODELS)
    try:
        assert "worklist_item_station_ae_start_date" in {i[0] for i in fresh["worklist_item"][1]}
        item = worklist.add({"patient_id": "P1", "modality": "CT", "start_date": "20261204"})
        assert worklist.get(item).study_instance_uid.startswith("2.25.")
    finally:
        archive.close()


@pytest.mark.parametrize("db", DATABASES)
def test_a_database_from_before_23_gains_the_study_notes(request, tmp_path, db):
    archive, fresh = _back_before(request, tmp_path, db, 23, NOTE_MODELS)
    try:
        assert "study_note_study_instance_uid" in {i[0] for i in fresh["study_note"][1]}
        uid = Study.get().study_instance_uid
        pk = notes.add(uid, "clerk", "seen before", stored="abc.1", content_type="image/png")
        assert [n.id for n in notes.of_study(uid)] == [pk]
        assert notes.remove_study(uid) == ["abc.1"] and notes.of_study(uid) == []
    finally:
        archive.close()


@pytest.mark.parametrize("db", DATABASES)
def test_a_database_from_before_24_gains_the_ae_worklist_flag(request, tmp_path, db):
    def undo() -> None:
        database.obj.execute_sql("ALTER TABLE application_entity DROP COLUMN worklist")

    archive, _ = _back_before(request, tmp_path, db, 24, [], undo, also=(ApplicationEntity,))
    try:
        aes.ae_upsert("RIS1", hostname="127.0.0.1", port=104)
        assert aes.ae_get("RIS1").worklist is False
        aes.ae_upsert("RIS1", worklist=True)
        assert [a.title for a in aes.ae_list() if a.worklist] == ["RIS1"]
    finally:
        archive.close()


@pytest.mark.parametrize("db", DATABASES)
def test_a_database_from_before_25_gains_the_api_tokens(request, tmp_path, db):
    archive, fresh = _back_before(request, tmp_path, db, 25, TOKEN_MODELS)
    try:
        assert "api_token_token_hash" in {i[0] for i in fresh["api_token"][1]}
        users.add_user("tool", ["view"], "long enough password")
        token = tokens.create("tool", "gateway")
        row, why = tokens.check(token, 0.0)
        assert (row.user.name, why) == ("tool", "")
        assert [t["label"] for t in tokens.listing("tool")] == ["gateway"]
    finally:
        archive.close()


def test_a_migration_numbered_below_the_newest_is_still_applied(tmp_path):
    # Features built side by side take numbers out of order: a box that has 23
    # and not 19 (19 landed after it) must still get the worklist tables.
    cfg = load(write_config(tmp_path / "box", SyncWrites="no"))
    archive = Archive(cfg)
    try:
        database.obj.drop_tables(WORKLIST_MODELS)
        SchemaVersion.delete().where(SchemaVersion.version == 19).execute()
    finally:
        archive.close()
    archive = Archive(cfg)
    try:
        assert 19 in {v.version for v in SchemaVersion.select()}
        assert worklist.add({"patient_id": "P1", "modality": "CT"}) > 0
    finally:
        archive.close()
