"""The index database: one deferred peewee database, opened once at start-up.

SQLite runs in WAL mode with synchronous=FULL, foreign keys on and a busy
timeout so concurrent writers wait instead of failing. Only the store path's
records commit without waiting for the disk; their images are kept safe by
the folder marks the start-up check reads (``commit.together``). The same
models run on PostgreSQL by giving a ``postgresql://`` URL in the Database
setting.
"""

from __future__ import annotations

import fcntl
import os
import threading

from peewee import Database, OperationalError, PeeweeException, SqliteDatabase
from playhouse.db_url import connect

from pacsbox.db import auth_models  # noqa: F401 - registers its migration
from pacsbox.db.migrations import migrate
from pacsbox.db.models import database

# What callers outside db/ catch when the index fails (they never import peewee).
DbError = PeeweeException
DbUnavailable = OperationalError  # locked, disk I/O error, cannot open

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": 2,  # FULL: fsync the WAL at every commit (records: see commit.together)
    "foreign_keys": 1,
    "busy_timeout": 30000,
    "cache_size": -32768,  # 32 MB page cache
    "temp_store": 2,
    "mmap_size": 256 * 1024 * 1024,
}


class WriterLock:
    """One writer at a time across threads and processes, woken by the kernel.

    SQLite's own busy handler retries with growing sleeps (1, 2, 5, 10 ms ...)
    when writers collide, which costs more than the write itself. A thread
    lock plus flock() on a file beside the database queue writers instead.
    """

    def __init__(self, path: str) -> None:
        self._thread_lock = threading.Lock()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()

    def close(self) -> None:
        os.close(self._fd)


writer_lock: WriterLock | None = None


def open_database(url: str, *, run_migrations: bool = True) -> Database:
    """Open (and migrate) the index. Raises peewee errors on an unusable database."""
    global writer_lock
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        db: Database = SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, check_same_thread=False)
        if writer_lock is not None:
            writer_lock.close()
        writer_lock = WriterLock(path + ".writer-lock")
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
