"""The index database: one deferred peewee database, opened once at start-up.

SQLite runs in WAL mode with synchronous=FULL (an acknowledged image must
survive power loss), foreign keys on and a busy timeout so concurrent writers
wait instead of failing. The same models run on PostgreSQL by giving a
``postgresql://`` URL in the Database setting.
"""

from __future__ import annotations

from peewee import Database, SqliteDatabase
from playhouse.db_url import connect

from pacsbox.db import auth_models  # noqa: F401 - registers its migration
from pacsbox.db.migrations import migrate
from pacsbox.db.models import database

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": 2,  # FULL: fsync the WAL at every commit
    "foreign_keys": 1,
    "busy_timeout": 30000,
    "cache_size": -32768,  # 32 MB page cache
    "temp_store": 2,
    "mmap_size": 256 * 1024 * 1024,
}


def open_database(url: str, *, run_migrations: bool = True) -> Database:
    """Open (and migrate) the index. Raises peewee errors on an unusable database."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        db: Database = SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, check_same_thread=False)
    else:
        db = connect(url)
    database.initialize(db)
    db.connect(reuse_if_open=True)
    if run_migrations:
        migrate(db)
    return db


def close_database() -> None:
    db = database.obj
    if db is not None and not db.is_closed():
        db.close()


def ping() -> bool:
    """True when the database answers; the watchdog withholds its ping otherwise."""
    try:
        database.execute_sql("SELECT 1").fetchone()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not answering"
        return False
