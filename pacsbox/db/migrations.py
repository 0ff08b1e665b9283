"""Numbered schema migrations, applied in order at start-up.

A migration is never edited once released; a schema change is a new number.
Later features (users and sessions, jobs, routes, worklist) add their own
numbers here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from peewee import Database
from playhouse import migrate as schema

from pacsbox.db.models import (
    ASSOCLOG_MODELS,
    COMMITMENT_MODELS,
    CORE_MODELS,
    QUEUE_MODELS,
    ROUTE_MODELS,
    SYNC_MODELS,
    ApplicationEntity,
    SchemaVersion,
)
from pacsbox.db.notes_models import NOTE_MODELS
from pacsbox.db.worklist_models import WORKLIST_MODELS

log = logging.getLogger("pacsbox.db")


def _m0001_core(db: Database) -> None:
    db.create_tables(CORE_MODELS)


def _m0002_query_indexes(db: Database) -> None:
    # Composite indexes for the common C-FIND and web searches: studies by
    # patient and date, series and instances in their natural order.
    for sql in (
        "CREATE INDEX IF NOT EXISTS study_patient_date ON study (patient_id, study_date)",
        "CREATE INDEX IF NOT EXISTS series_study_number ON series (study_id, series_number)",
        "CREATE INDEX IF NOT EXISTS instance_series_number ON instance (series_id, instance_number)",
        "CREATE INDEX IF NOT EXISTS study_received ON study (received)",
    ):
        db.execute_sql(sql)


def _m0011_drop_instance_series_id(db: Database) -> None:
    # instance_series_number (series_id, instance_number) serves every lookup
    # by series; the index on series_id alone only cost one more page write
    # in every store's transaction. Numbered after the users' 10 because
    # migrate() applies only numbers above the highest one a database has.
    db.execute_sql("DROP INDEX IF EXISTS instance_series_id")


def _m0012_dirty_folder_owner(db: Database) -> None:
    # Each process marks its own dirty folders, so one going quiet no longer
    # clears a folder that another still writes. A database made by 0001
    # after this change has the column already.
    if "owner" not in {c.name for c in db.get_columns("dirty_folder")}:
        db.execute_sql("ALTER TABLE dirty_folder ADD COLUMN owner VARCHAR(32) NOT NULL DEFAULT ''")
    db.execute_sql("DROP INDEX IF EXISTS dirty_folder_storage_root_folder")
    db.execute_sql(
        "CREATE UNIQUE INDEX IF NOT EXISTS dirty_folder_storage_root_folder_owner "
        "ON dirty_folder (storage_root, folder, owner)"
    )


def _m0013_edit_marks(db: Database) -> None:
    # Edits outlive the edit job: the columns they set, and the later images
    # that still have to take them. A database made by 0001 after this change
    # has the columns already.
    for table, columns in (
        ("patient", ("edited VARCHAR(256) NOT NULL DEFAULT ''",)),
        (
            "study",
            ("edited VARCHAR(256) NOT NULL DEFAULT ''", "edit_from INTEGER NOT NULL DEFAULT 0"),
        ),
    ):
        have = {c.name for c in db.get_columns(table)}
        for column in columns:
            if column.split()[0] not in have:
                db.execute_sql(f"ALTER TABLE {table} ADD COLUMN {column}")
    db.execute_sql(
        "CREATE INDEX IF NOT EXISTS study_edit_pending ON study (edit_from) WHERE edit_from > 0"
    )


def _m0014_queue(db: Database) -> None:
    # Every outbound or long job is a row, so it survives a restart. New
    # tables only (0001 does not make them): fresh and upgraded databases
    # both get them here; ``safe`` lets a rerun (a schema version deleted
    # by hand) pass.
    db.create_tables(QUEUE_MODELS, safe=True)


def _m0015_routes(db: Database) -> None:
    # The routing table and what it has matched; and the series' Station Name,
    # a key routes match on. A database made by 0001 after this change has it.
    if "station_name" not in {c.name for c in db.get_columns("series")}:
        db.execute_sql("ALTER TABLE series ADD COLUMN station_name VARCHAR(16) NOT NULL DEFAULT ''")
    db.create_tables(ROUTE_MODELS, safe=True)


def _m0016_commitment(db: Database) -> None:
    # Storage commitment per instance and destination (SCU-5): what the study
    # page shows and the purge guard reads. New table only, as 14.
    db.create_tables(COMMITMENT_MODELS, safe=True)


def _m0017_association_log(db: Database) -> None:
    # Connectivity diagnostics: the last associations in and out per AE and
    # the recent rejections. A new table only, as 0014.
    db.create_tables(ASSOCLOG_MODELS, safe=True)


def _m0018_sync_schedules(db: Database) -> None:
    # Synchronisation schedules (SCU-8): a new table, as migration 14's.
    db.create_tables(SYNC_MODELS, safe=True)


def _m0019_worklist(db: Database) -> None:
    # Worklist items and performed procedure steps (NET-6, NET-8): new tables, as 14.
    db.create_tables(WORKLIST_MODELS, safe=True)


def _m0023_notes(db: Database) -> None:
    # Study and image notes with their attachments (DATA-6): a new table, as 14.
    db.create_tables(NOTE_MODELS, safe=True)


def _m0024_ae_worklist(db: Database) -> None:
    # The AE table's worklist flag (SCU-6): AEs the box polls for worklist items.
    # A database made by 0001 after this change has the column.
    if "worklist" not in {c.name for c in db.get_columns("application_entity")}:
        field = ApplicationEntity._meta.fields["worklist"]
        schema.migrate(schema.SchemaMigrator.from_database(db).add_column(
            "application_entity", "worklist", field))  # fmt: skip


MIGRATIONS: list[tuple[int, str, Callable[[Database], None]]] = [
    (1, "core tables: patient, study, series, instance, AE table", _m0001_core),
    (2, "composite indexes for queries", _m0002_query_indexes),
    (11, "drop the index on instance.series_id alone", _m0011_drop_instance_series_id),
    (12, "dirty folders marked per process", _m0012_dirty_folder_owner),
    (13, "edited columns, and later images still to take an edit", _m0013_edit_marks),
    (14, "the durable work queue", _m0014_queue),
    (15, "the routing table", _m0015_routes),
    (16, "storage commitment per instance and destination", _m0016_commitment),
    (17, "the association log", _m0017_association_log),
    (18, "synchronisation schedules", _m0018_sync_schedules),
    (19, "worklist items and performed procedure steps", _m0019_worklist),
    (23, "study and image notes with attachments", _m0023_notes),
    (24, "the AE table's worklist flag", _m0024_ae_worklist),
]


def register(number: int, name: str, fn: Callable[[Database], None]) -> None:
    """Add a feature's migration; numbers must be unique and are applied in order."""
    if any(n == number for n, _, _ in MIGRATIONS):
        raise ValueError(f"migration {number} already registered")
    MIGRATIONS.append((number, name, fn))
    MIGRATIONS.sort(key=lambda m: m[0])


def current_version(db: Database) -> int:
    if not db.table_exists(SchemaVersion._meta.table_name):
        return 0
    row = SchemaVersion.select().order_by(SchemaVersion.version.desc()).first()
    return row.version if row else 0


def migrate(db: Database) -> list[int]:
    """Apply pending migrations; returns the numbers applied.

    Pending means not recorded, not only above the newest: features built side
    by side take numbers out of order, and a box that took 23 must still get 20.
    """
    applied: list[int] = []
    with db.atomic():
        db.create_tables([SchemaVersion], safe=True)
    have = {row.version for row in SchemaVersion.select(SchemaVersion.version)}
    for number, name, fn in MIGRATIONS:
        if number in have:
            continue
        with db.atomic():
            fn(db)
            SchemaVersion.create(version=number, name=name)
        log.info("database migrated to version %d (%s)", number, name)
        applied.append(number)
    return applied
