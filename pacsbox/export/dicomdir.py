"""Write a DICOMDIR (Basic Directory IOD, PS3.3 F.3) from a tree of records.

We write it ourselves instead of through ``pydicom.fileset.FileSet.write``
because FileSet re-saves every instance into its own PTxxxxxx layout at the
root (two extra copies of every image, whole data sets in memory), while an
export must copy stored files as they are, into the DICOM/ folder, with names
we choose. The encoding is small: records are encoded once to learn their
lengths (every offset is a 4-byte UL, so lengths do not depend on offsets),
offsets are then the running sum, and the file is written once.

Offsets count from the first byte of the file (preamble included), PS3.3
F.3.2.2; items have defined lengths, Explicit VR Little Endian (PS3.10 8.6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import dcmwrite, write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
    generate_uid,
)

IMPLEMENTATION_VERSION = "PACSBOX"


@dataclass
class Node:
    """One directory record and the records of its lower-level entity."""

    record: Dataset
    children: list[Node] = field(default_factory=list)


def encoded_length(record: Dataset) -> int:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, record)
    return len(fp.getvalue())


def _new_dicomdir(fileset_id: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MediaStorageDirectoryStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    ds.FileSetID = fileset_id
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.FileSetConsistencyFlag = 0
    ds.DirectoryRecordSequence = Sequence()
    return ds


def _file_length(ds: Dataset) -> int:
    fp = DicomBytesIO()
    dcmwrite(fp, ds, enforce_file_format=True)
    return len(fp.getvalue())


def write_dicomdir(path: Path, fileset_id: str, roots: list[Node]) -> int:
    """Write ``path`` (a DICOMDIR) for the PATIENT ``roots``; return its size in bytes."""
    ds = _new_dicomdir(fileset_id)
    order: list[Node] = []

    def flatten(nodes: list[Node]) -> None:
        for node in nodes:
            order.append(node)
            flatten(node.children)

    flatten(roots)
    for node in order:
        rec = node.record
        rec.OffsetOfTheNextDirectoryRecord = 0
        rec.RecordInUseFlag = 0xFFFF
        rec.OffsetOfReferencedLowerLevelDirectoryEntity = 0

    # First item starts right after the (empty) Directory Record Sequence header,
    # which is the last element of the data set.
    offset = _file_length(ds)
    where: dict[int, int] = {}
    for node in order:
        where[id(node)] = offset
        offset += 8 + encoded_length(node.record)  # item tag + length, then record

    def link(nodes: list[Node]) -> None:
        for i, node in enumerate(nodes):
            if i + 1 < len(nodes):
                node.record.OffsetOfTheNextDirectoryRecord = where[id(nodes[i + 1])]
            if node.children:
                node.record.OffsetOfReferencedLowerLevelDirectoryEntity = where[
                    id(node.children[0])
                ]
                link(node.children)

    link(roots)
    if roots:
        ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = where[id(roots[0])]
        ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = where[id(roots[-1])]
    ds.DirectoryRecordSequence = Sequence([node.record for node in order])
    dcmwrite(path, ds, enforce_file_format=True)
    size = path.stat().st_size
    if size != offset:  # the offsets above would point into the wrong bytes
        raise RuntimeError(f"DICOMDIR encoding drifted: {size} != {offset}")
    return size
