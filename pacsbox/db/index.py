"""Writes to the index: one transaction per stored instance, counters kept exact.

``record_instance`` is the only way an instance enters the index. It runs in
one IMMEDIATE transaction (the SQLite writer lock is taken up front, so two
senders of the same SOP Instance UID serialise here and never create two
rows) and applies the duplicate policy inside it (``rows``), joining the
group commit (``commit``) when given one.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from pathlib import Path

from pacsbox.db.commit import GroupCommitter, together, write_transaction
from pacsbox.db.lookup import (
    instance_path,
)
from pacsbox.db.models import Instance, Patient, Series, Study
from pacsbox.db.rows import (
    Recorded,
    StoredFile,
    delete_instance_row,
    record_in_transaction,
)
from pacsbox.meta import InstanceAttrs


def record_instance(
    attrs: InstanceAttrs,
    f: StoredFile,
    *,
    calling_ae: str = "",
    policy: str = "replace",
    private: bool = False,
    committer: GroupCommitter | None = None,
    meanwhile: Callable[[], None] | None = None,
    same: Callable[[str, Path], bool] | None = None,
) -> Recorded:
    """Index a stored file in one transaction, applying the duplicate policy.

    With a ``committer`` the record joins the next group commit; it returns
    only after that commit. ``meanwhile`` (the file's folder fsync) runs
    while the record is made, and the call returns only once both are done
    (see ``GroupCommitter.run``); without a committer it runs first.
    ``same(digest, path)`` tells whether the object already stored under this
    UID holds the new bytes (digests are only a filter); without it, equal
    digests decide.
    Raises DuplicateRejected (policy "reject"), LocationChanged (the study
    lives in another folder), and peewee errors when the database fails.
    """
    record = _recorder(attrs, f, calling_ae, policy, private, same)
    if committer is not None:
        return committer.run(record, meanwhile)
    if meanwhile is not None:
        meanwhile()
    recorded: Recorded = together([record])[0]
    return recorded


def record_many(
    records: list[tuple[InstanceAttrs, StoredFile, str, Callable[[str, Path], bool] | None]],
    committer: GroupCommitter,
    *,
    policy: str = "replace",
    private: bool = False,
) -> list[Future]:
    """``record_instance`` for (attrs, file, calling AE, same) each, committed
    together in the caller's thread (a worker process's records, which the
    worker makes durable meanwhile): each Future holds its Recorded or its
    exception."""
    return committer.run_batch(
        [_recorder(attrs, f, ae, policy, private, same) for attrs, f, ae, same in records]
    )


def _recorder(
    attrs: InstanceAttrs,
    f: StoredFile,
    calling_ae: str,
    policy: str,
    private: bool,
    same: Callable[[str, Path], bool] | None,
) -> Callable[[], Recorded]:
    """One record as a call the group commit runs inside its transaction."""
    return partial(record_in_transaction, attrs, f, calling_ae, policy, private, same)


def delete_instance(inst: Instance) -> Path:
    """Remove an instance from the index; returns its file path for the caller to delete."""
    with write_transaction():
        path = instance_path(inst)
        delete_instance_row(inst)
    return path


def delete_everything() -> None:
    """Every patient, study, series and instance row (a rebuild); the AE table stays."""
    with write_transaction():
        Instance.delete().execute()
        Series.delete().execute()
        Study.delete().execute()
        Patient.delete().execute()
