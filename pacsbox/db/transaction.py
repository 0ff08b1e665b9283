"""Every multi-row write's transaction, apart from the group commit of the store path
(``commit.py``), so modules that only write rows load none of the DICOM code."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from peewee import SqliteDatabase

from pacsbox import db as dbpkg
from pacsbox.db.models import database


@contextlib.contextmanager
def write_transaction() -> Iterator[None]:
    """A transaction that takes the writer lock at once (SQLite IMMEDIATE)."""
    db = database.obj
    if isinstance(db, SqliteDatabase):
        lock = dbpkg.writer_lock
        if lock is None or db.in_transaction():
            with db.atomic("IMMEDIATE"):
                yield
            return
        with lock, db.atomic("IMMEDIATE"):
            yield
    else:
        with db.atomic():
            yield
