"""The files of study notes (DATA-6): checked, stored under server names, removed with the study.

An upload is trusted for nothing: its type is read from its first bytes
(PDF, PNG, JPEG; never from its name or the browser's Content-Type), its
size is capped by ``AttachmentMaxMB``, and it is written durably under
``<data>/attachments/`` with a name the server makes (``storage.write_file``).
The uploader's file name survives only as display text, stripped of paths,
control characters and excess length. The note row is written after the
file; if that fails, the file goes again, so no row names a missing file.

A PDF attachment becomes a DICOM Encapsulated PDF instance of its study only
when the user asks (``encapsulated_pdf``); the caller stores it through
``Archive.store``, the one write path.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
import unicodedata
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from pacsbox import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, storage
from pacsbox.config import Config
from pacsbox.db import notes
from pacsbox.db.notes_models import StudyNote
from pacsbox.errors import CannotUnderstand, PacsboxError, UsageError

log = logging.getLogger("pacsbox.attachments")

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
MAX_TEXT = 10_000
MAX_NAME = 100
# Type by content: (magic at offset 0, what we call it, MIME type, extension).
_MAGIC = (
    (b"%PDF-", "pdf", "application/pdf", ".pdf"),
    (b"\x89PNG\r\n\x1a\n", "png", "image/png", ".png"),
    (b"\xff\xd8\xff", "jpeg", "image/jpeg", ".jpg"),
)
# The patient and study attributes an Encapsulated PDF takes from its study.
_COPIED = (
    "SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID",
    "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription",
)  # fmt: skip


class TooLarge(PacsboxError):
    """An attachment over ``AttachmentMaxMB`` (HTTP 413)."""

    http_status = 413


def folder(cfg: Config) -> Path:
    return cfg.data_dir / "attachments"


def path_of(cfg: Config, note: StudyNote) -> Path:
    """Where a note's file is; the stored name is the server's own (checked anyway)."""
    name = note.stored
    if not re.fullmatch(r"[0-9A-Za-z._-]+", name) or name.startswith("."):
        raise CannotUnderstand(f"note {note.id}: bad stored file name")
    return folder(cfg) / name


def sniff(head: bytes) -> tuple[str, str, str] | None:
    """(kind, MIME type, extension) by the file's first bytes; None when not allowed."""
    for magic, kind, mime, ext in _MAGIC:
        if head.startswith(magic):
            return kind, mime, ext
    return None


def display_name(raw: str, ext: str) -> str:
    """The uploader's name as harmless display text: last path part only, no control
    or format characters, at most MAX_NAME characters, ending with the real extension."""
    base = re.split(r"[\\/]", raw or "")[-1]
    base = "".join(
        ch for ch in unicodedata.normalize("NFC", base) if unicodedata.category(ch)[0] != "C"
    )
    base = base.strip().lstrip(".").strip()
    stem = base.rsplit(".", 1)[0] if "." in base else base
    stem = stem[: MAX_NAME - len(ext)].strip() or "attachment"
    return stem + ext


def limit_bytes(cfg: Config) -> int:
    return int(cfg.AttachmentMaxMB * 1024 * 1024)


def too_large(cfg: Config) -> TooLarge:
    return TooLarge(f"the attachment is larger than AttachmentMaxMB ({cfg.AttachmentMaxMB:g} MB)")


def read_limited(cfg: Config, stream: BinaryIO) -> bytes:
    """An upload's bytes, reading no more than one byte past the limit; raises TooLarge."""
    limit = limit_bytes(cfg)
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise too_large(cfg)
    return data


def add_note(
    cfg: Config,
    study_uid: str,
    author: str,
    text: str,
    *,
    sop_instance_uid: str = "",
    upload: tuple[str, bytes] | None = None,
) -> int:
    """Check and store a note and its optional (raw file name, bytes); returns the note id.

    Raises UsageError (empty note, text too long, a type not allowed) and
    TooLarge before anything is written.
    """
    text = text.strip()
    if len(text) > MAX_TEXT:
        raise UsageError(f"a note holds at most {MAX_TEXT} characters")
    if not text and upload is None:
        raise UsageError("write a note or choose a file to attach")
    if upload is None:
        return notes.add(study_uid, author, text, sop_instance_uid=sop_instance_uid)
    raw_name, data = upload
    if len(data) > limit_bytes(cfg):
        raise too_large(cfg)
    if not data:
        raise UsageError("the attached file is empty")
    found = sniff(data[:16])
    if found is None:
        raise UsageError("only PDF, PNG and JPEG files can be attached (checked by content)")
    kind, mime, ext = found
    written = storage.write_file(folder(cfg), [data], sync=bool(cfg.SyncWrites))
    try:
        return notes.add(
            study_uid, author, text, sop_instance_uid=sop_instance_uid,
            stored=written.path.name, file_name=display_name(raw_name, ext),
            content_type=mime, size=written.size,
        )  # fmt: skip
    except Exception:
        storage.remove_file(written.path, sync=bool(cfg.SyncWrites))
        raise


def delete_note(cfg: Config, note: StudyNote) -> None:
    """The row first, then its file: no row ever names a missing file."""
    notes.remove(note.id)
    if note.stored:
        _remove(cfg, note.stored)


def _remove(cfg: Config, name: str) -> None:
    try:
        storage.remove_file(folder(cfg) / Path(name).name, sync=bool(cfg.SyncWrites))
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("removed a note but not its file %s: %s", name, exc)


def forget_study(cfg: Config, study_uid: str) -> int:
    """Remove a deleted study's notes and their files; returns the notes' file count."""
    names = notes.remove_study(study_uid)
    for name in names:
        _remove(cfg, name)
    return len(names)


def sweep(cfg: Config) -> int:
    """Forget the notes of every study no longer in the index (a purge, a deletion
    elsewhere); returns the number of studies swept."""
    gone = notes.orphaned_studies()
    for uid in gone:
        forget_study(cfg, uid)
    return len(gone)


def export_files(cfg: Config, study_uid: str) -> list[tuple[str, bytes]]:
    """A study's notes as files for an export: NOTES.TXT and each attachment under
    a level-1 name (ATT00001.PDF...), the text file saying which is which."""
    rows = notes.of_study(study_uid)
    if not rows:
        return []
    out: list[tuple[str, bytes]] = []
    lines = [f"Notes of study {study_uid}", ""]
    for note in rows:
        when = note.created.isoformat(timespec="seconds") if note.created else ""
        where = f" (image {note.sop_instance_uid})" if note.sop_instance_uid else ""
        lines.append(f"{when} {note.author}{where}:")
        lines.extend("  " + line for line in (note.text or "").splitlines())
        if note.stored:
            ext = next((e for _, _, m, e in _MAGIC if m == note.content_type), ".bin")
            name = f"ATT{len(out) + 1:05d}{ext.upper()[:4]}"
            try:
                out.append((name, path_of(cfg, note).read_bytes()))
            except OSError as exc:
                log.warning("export: note %d's file is unreadable: %s", note.id, exc)
                continue
            lines.append(f"  attachment {name}: {note.file_name}")
        lines.append("")
    return [("NOTES.TXT", "\r\n".join(lines).encode("utf-8")), *out]


def encapsulated_pdf(cfg: Config, note: StudyNote, study_header: bytes) -> bytes:
    """A Part-10 Encapsulated PDF instance (PS3.3 A.45.1) of a note's PDF, in its study:
    patient and study attributes from ``study_header`` (one of the study's objects),
    a new series. Raises UsageError when the note has no PDF."""
    if note.content_type != "application/pdf" or not note.stored:
        raise UsageError("only a PDF attachment can be added to the study as DICOM")
    pdf = path_of(cfg, note).read_bytes()
    study = dcmread(io.BytesIO(study_header), stop_before_pixels=True, force=True)
    ds = Dataset()
    for keyword in _COPIED:
        if keyword in study:
            setattr(ds, keyword, study[keyword].value)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                    "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
                    "AccessionNumber"):  # fmt: skip
        if keyword not in ds:
            setattr(ds, keyword, "")
    now = dt.datetime.now()
    uid = generate_uid()
    ds.SOPClassUID = ENCAPSULATED_PDF
    ds.SOPInstanceUID = uid
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "DOC"
    ds.SeriesNumber = 9000 + note.id % 1000
    ds.InstanceNumber = 1
    ds.Manufacturer = "pacsbox"
    ds.ConversionType = "WSD"
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = note.file_name[:64]
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(ENCAPSULATED_PDF)
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    ds.file_meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
