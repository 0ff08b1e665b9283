"""The rows of study and image notes (DATA-6); ``pacsbox.attachments`` owns their files.

Every note is written here, so the journal of who added or removed what is
kept by the callers in one place each (web page, study deletion).
"""

from __future__ import annotations

from typing import Any

from pacsbox.db.models import Study
from pacsbox.db.notes_models import StudyNote
from pacsbox.db.transaction import write_transaction


def add(
    study_uid: str,
    author: str,
    text: str,
    *,
    sop_instance_uid: str = "",
    stored: str = "",
    file_name: str = "",
    content_type: str = "",
    size: int = 0,
) -> int:
    """A new note; returns its id."""
    with write_transaction():
        note = StudyNote.create(
            study_instance_uid=study_uid,
            sop_instance_uid=sop_instance_uid,
            author=author[:64],
            text=text,
            stored=stored,
            file_name=file_name,
            content_type=content_type,
            size=size,
        )
    return int(note.id)


def get(note_id: int) -> StudyNote | None:
    return StudyNote.get_or_none(StudyNote.id == note_id)


def of_study(study_uid: str) -> list[StudyNote]:
    """The study's notes (its images' too), oldest first."""
    return list(
        StudyNote.select()
        .where(StudyNote.study_instance_uid == study_uid)
        .order_by(StudyNote.created, StudyNote.id)
    )


def remove(note_id: int) -> None:
    with write_transaction():
        StudyNote.delete().where(StudyNote.id == note_id).execute()


def remove_study(study_uid: str) -> list[str]:
    """Delete a study's notes; returns the stored names of their files, for the caller."""
    with write_transaction():
        names = [
            n
            for (n,) in StudyNote.select(StudyNote.stored)
            .where((StudyNote.study_instance_uid == study_uid) & (StudyNote.stored != ""))
            .tuples()
        ]
        StudyNote.delete().where(StudyNote.study_instance_uid == study_uid).execute()
    return names


def orphaned_studies() -> list[str]:
    """Study UIDs that have notes but no study any more (removed by a path that
    does not know about notes, or by a crash between the two)."""
    present = Study.select(Study.study_instance_uid)
    rows = (
        StudyNote.select(StudyNote.study_instance_uid)
        .where(StudyNote.study_instance_uid.not_in(present))
        .distinct()
        .tuples()
    )
    return [u for (u,) in rows]


def as_dict(note: StudyNote) -> dict[str, Any]:
    """What the study page and its JSON twin show of a note."""
    return {
        "id": note.id,
        "study_uid": note.study_instance_uid,
        "sop_instance_uid": note.sop_instance_uid,
        "author": note.author,
        "created": note.created.isoformat(timespec="seconds") if note.created else "",
        "text": note.text,
        "file_name": note.file_name,
        "content_type": note.content_type,
        "size": note.size,
        "file_url": f"/notes/{note.id}/file" if note.stored else "",
    }
