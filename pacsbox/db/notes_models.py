"""Study and image notes with their attachments (DATA-6).

One row per note: its text, author and time, and at most one attached file.
The file lives under the data folder's ``attachments/`` with a server-made
name (``stored``); the uploader's file name is kept only as display text.
Notes name their study and image by UID, not by row id, so a study deleted
and received again does not inherit another study's notes by accident: the
deleting paths remove them (``pacsbox.attachments.forget_study``). Made by
migration 23.
"""

from __future__ import annotations

from peewee import AutoField, CharField, DateTimeField, IntegerField, TextField

from pacsbox.db.models import BaseModel, utcnow


class StudyNote(BaseModel):
    """A note on a study, or on one of its images when ``sop_instance_uid`` is set."""

    id: AutoField[int]
    study_instance_uid = CharField(max_length=64, index=True)
    sop_instance_uid = CharField(max_length=64, default="")
    author = CharField(max_length=64)
    created = DateTimeField(default=utcnow)
    text = TextField(default="")
    # The attachment, when there is one: the server's file name, the
    # sanitised display name, the type found by its content, its size.
    stored = CharField(max_length=64, default="")
    file_name = CharField(max_length=128, default="")
    content_type = CharField(max_length=32, default="")
    size = IntegerField(default=0)


NOTE_MODELS = [StudyNote]
