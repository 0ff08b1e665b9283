"""What a sender reads of a stored instance, apart from the query code: the CLI's
queue commands and the purge guard reach it without loading the DICOM libraries."""

from __future__ import annotations

from dataclasses import dataclass

from pacsbox.db.models import Instance, Study


@dataclass(frozen=True)
class StoredInstance:
    """What a retrieve or a forward needs to send one instance."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    path: str
    native: bool


STORED_COLUMNS = (
    Instance.id,
    Instance.sop_class_uid,
    Instance.sop_instance_uid,
    Instance.transfer_syntax_uid,
    Instance.native,
    Instance.file_name,
    Study.storage_root,
    Study.folder,
)


def stored_row(row: tuple) -> tuple[int, StoredInstance]:
    """(instance row id, StoredInstance) from a row of STORED_COLUMNS."""
    iid, cls, uid, ts, native, name, root, folder = row
    return iid, StoredInstance(cls, uid, ts, f"{root}/{folder}/{name}", bool(native))
