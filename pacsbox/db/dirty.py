"""Dirty folders: the study folders the start-up check must look at.

A folder is marked before the first file this process writes into it, by a
commit that waits for the disk, and cleared once quiet and its rows are
durable. The start-up check reads only these marks, so it stays fast at
millions of instances and still finds every file whose row a crash lost.
"""

from __future__ import annotations

import os

from pacsbox.db.commit import made_durable, write_transaction
from pacsbox.db.models import DirtyFolder


def _this_process() -> str:
    return str(os.getpid())


def mark_dirty(storage_root: str, folder: str) -> None:
    """Before the first file this process writes into a folder; the commit waits for the disk."""
    with write_transaction():
        DirtyFolder.insert(
            storage_root=storage_root, folder=folder, owner=_this_process()
        ).on_conflict_ignore().execute()


def dirty_folders() -> list[tuple[str, str]]:
    return list(
        DirtyFolder.select(DirtyFolder.storage_root, DirtyFolder.folder).distinct().tuples()
    )


def clear_dirty(folders: list[tuple[str, str]], *, every_process: bool = False) -> None:
    """Forget this process's marks (all marks: the start-up check, before any worker runs).

    The rows committed into those folders without waiting for the disk are
    made durable first, so no folder loses its mark while a row of it could
    still be lost.
    """
    made_durable()
    with write_transaction():
        for root, folder in folders:
            which = (DirtyFolder.storage_root == root) & (DirtyFolder.folder == folder)
            if not every_process:
                which &= DirtyFolder.owner == _this_process()
            DirtyFolder.delete().where(which).execute()
