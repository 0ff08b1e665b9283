"""Export a selection as DICOM File-sets, one per volume (File-set Creator, MEDIA-4).

Layout of each volume (every name ISO 9660 level 1, PS3.10 8.5 File IDs)::

    DICOMDIR
    DICOM/PT000001/ST000001/SE000001/IM000001   (SR000001, KO.., PR.., ED..)
    DICOM/PT000001/ST000001/NOTES.TXT, ATT00001.PDF...  (the study's notes, if any:
                                                not in the DICOMDIR, which names DICOM files)
    VIEWER/...                                  (optional, copied as given)

Transfer syntaxes. The statement claims STD-GEN-CD and STD-GEN-DVD-RAM, whose
File-set Creators write Explicit VR Little Endian only (PS3.11 Annex D).
Stored files in Explicit VR LE are copied byte for byte; Implicit VR LE and
Deflated files are re-encoded to Explicit VR LE with pydicom (lossless: the
values, pixel data included, are unchanged). Compressed files are copied as
stored: decompressing would need codecs we do not ship, re-inflate lossy
images and multiply the size. On DVD a volume whose compressed files are all
JPEG (or all JPEG 2000) then conforms to STD-GEN-DVD-JPEG (or -J2K); other
mixes, compressed files on CD, and the retired Explicit VR Big Endian (which
pydicom cannot re-encode safely) are a documented deviation: the volume's
``profile`` names the base profile and ``deviations`` lists what is outside
it. Each IMAGE record names the file's real syntax in (0004,1512), so readers
know what they get.

The viewer folder is copied under VIEWER/ with its own names, which must
already be level-1 (8.3, upper case): renaming a viewer's files would break
the viewer, and letting xorriso mangle long names would do the same silently,
so a non-conformant viewer is refused before anything is written.
"""

from __future__ import annotations

import copy
import logging
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from pacsbox.errors import MediaError, UsageError
from pacsbox.export.dicomdir import Node, encoded_length, write_dicomdir
from pacsbox.export.names import (
    ISO_MAX_DEPTH,
    MEDIA_BYTES,
    is_level1_name,
    sanitize_label,
    volume_label,
)
from pacsbox.export.records import LEAF_PREFIX, InstanceRecords, make_records
from pacsbox.export.volumes import DIR_BYTES, ENTRY_BYTES, Item, plan_volumes, sectors

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
# Files that travel beside a study's images (its notes): study UID -> (name, bytes).
Extras = Callable[[str], list[tuple[str, bytes]]]

_REENCODE = {str(ImplicitVRLittleEndian), str(DeflatedExplicitVRLittleEndian)}
_JPEG = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
         "1.2.840.10008.1.2.4.70"}  # fmt: skip
_J2K = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"}


@dataclass
class Volume:
    """One exported volume: a directory holding a File-set, optionally zipped."""

    number: int
    directory: Path
    label: str  # File-set ID (0004,1130), also the ISO volume id
    instances: int
    bytes: int  # bytes of files in the directory
    zip_path: Path | None = None
    profile: str = "STD-GEN-CD"
    deviations: list[str] = field(default_factory=list)


def _profile(media: str, syntaxes: set[str]) -> tuple[str, list[str]]:
    """Application profile the volume conforms to, and what lies outside it."""
    base = "STD-GEN-CD" if media == "cd" else "STD-GEN-DVD-RAM"
    other = syntaxes - {str(ExplicitVRLittleEndian)}
    if not other:
        return base, []
    if media != "cd" and other <= _JPEG:
        return "STD-GEN-DVD-JPEG", []
    if media != "cd" and other <= _J2K:
        return "STD-GEN-DVD-J2K", []
    names = ", ".join(sorted(UID(ts).name for ts in other))
    return base, [f"instances kept in {names}, outside {base} (Explicit VR Little Endian only)"]


def _check_viewer(viewer_dir: Path) -> int:
    """Refuse a viewer with non level-1 names; return the bytes it takes on a volume."""
    if not viewer_dir.is_dir():
        raise UsageError(f"viewer folder {viewer_dir} is not a directory")
    total = DIR_BYTES
    for path in sorted(viewer_dir.rglob("*")):
        rel = path.relative_to(viewer_dir)
        if path.is_symlink() or not (path.is_dir() or path.is_file()):
            raise UsageError(f"viewer entry VIEWER/{rel} is not a plain file or folder")
        if (
            not is_level1_name(path.name, is_dir=path.is_dir())
            or len(rel.parts) + 1 > ISO_MAX_DEPTH
        ):
            raise UsageError(
                f"viewer name VIEWER/{rel} is not ISO 9660 level 1 (8.3 upper case A-Z 0-9 _, "
                f"at most {ISO_MAX_DEPTH} levels): rename it in the viewer folder"
            )
        total += DIR_BYTES if path.is_dir() else sectors(path.stat().st_size) + ENTRY_BYTES
    return total


def _scan(
    files: Sequence[Path], staging: Path, progress: Progress | None, total: int
) -> list[Item]:
    """Read each header, make its records, re-encode where the profile needs it."""
    items: list[Item] = []
    seen: set[str] = set()
    counters: dict[str, int] = {}
    cache: dict[tuple[str, ...], Dataset] = {}
    lengths: dict[int, int] = {}  # id(shared record) -> encoded length
    for n, path in enumerate(files, 1):
        path = Path(path)
        try:
            ds = dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
            raise MediaError(
                f"cannot export {path}: not a readable DICOM Part-10 file ({exc})"
            ) from None
        meta = getattr(ds, "file_meta", None)
        ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
        if not ts:
            raise MediaError(f"cannot export {path}: no Transfer Syntax UID in its file meta")
        records = make_records(ds, str(path), counters, cache)
        if records.sop_instance_uid in seen:
            log.info("export: %s selected twice, kept once", records.sop_instance_uid)
            continue
        seen.add(records.sop_instance_uid)
        source = path
        if ts in _REENCODE:
            source = staging / f"{len(items):08d}"
            full = dcmread(path)
            full.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            full.save_as(source, implicit_vr=False, little_endian=True, enforce_file_format=True)
            ts = str(ExplicitVRLittleEndian)
        _set_leaf_references(records, ts)
        for rec in (records.patient, records.study, records.series):
            if id(rec) not in lengths:
                lengths[id(rec)] = encoded_length(rec)
        record_bytes = {
            "PATIENT": lengths[id(records.patient)],
            "STUDY": lengths[id(records.study)],
            "SERIES": lengths[id(records.series)],
            "LEAF": encoded_length(records.leaf),
        }
        items.append(Item(records, source, source.stat().st_size, ts, record_bytes))
        if progress:
            progress(n, total)
    return items


def _write_volume(
    items: list[Item],
    directory: Path,
    label: str,
    progress: Progress | None,
    done: int,
    total: int,
    extras: Extras | None = None,
) -> int:
    """Copy the instances under DICOM/ and write the DICOMDIR; return files bytes.
    ``extras(study_uid)`` gives files (level-1 names) to put beside each study's
    images, once per volume holding the study."""
    patients: dict[str, Node] = {}
    studies: dict[tuple[str, str], Node] = {}
    series: dict[tuple[str, str, str], Node] = {}
    names: dict[int, list[str]] = {}
    size = 0
    for it in items:
        r = it.records
        pkey, skey, ekey = (r.patient_key,), (r.patient_key, r.study_key), (
            r.patient_key, r.study_key, r.series_key)  # fmt: skip
        if pkey[0] not in patients:
            patients[pkey[0]] = Node(copy.deepcopy(r.patient))
            names[id(patients[pkey[0]])] = ["DICOM", f"PT{len(patients):06d}"]
        pnode = patients[pkey[0]]
        if skey not in studies:
            studies[skey] = Node(copy.deepcopy(r.study))
            pnode.children.append(studies[skey])
            names[id(studies[skey])] = names[id(pnode)] + [f"ST{len(pnode.children):06d}"]
            for name, content in extras(r.study_key) if extras else ():
                side = directory.joinpath(*names[id(studies[skey])], name)
                side.parent.mkdir(parents=True, exist_ok=True)
                side.write_bytes(content)
                size += len(content)
        snode = studies[skey]
        if ekey not in series:
            series[ekey] = Node(copy.deepcopy(r.series))
            snode.children.append(series[ekey])
            names[id(series[ekey])] = names[id(snode)] + [f"SE{len(snode.children):06d}"]
        enode = series[ekey]
        leaf = r.leaf  # one per instance, in one volume: no copy needed
        count = len(enode.children) + 1
        if count > 999_999:
            raise MediaError(f"series {r.series_key} has more than 999999 instances in one volume")
        file_id = names[id(enode)] + [f"{LEAF_PREFIX.get(r.leaf_type, 'IM')}{count:06d}"]
        leaf.ReferencedFileID = file_id
        enode.children.append(Node(leaf))
        dst = directory.joinpath(*file_id)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(it.source, dst)
        size += dst.stat().st_size
        done += 1
        if progress:
            progress(done, total)
    size += write_dicomdir(directory / "DICOMDIR", label, list(patients.values()))
    return size


def _set_leaf_references(records: InstanceRecords, ts: str) -> None:
    """Fill the Referenced File/SOP/transfer syntax keys of a leaf record (PS3.3 F.5).

    The File ID is a placeholder of the final shape (same encoded length) so
    the planner counts the record's exact size; each volume sets the real one.
    """
    leaf = records.leaf
    leaf.DirectoryRecordType = records.leaf_type
    leaf.ReferencedFileID = ["DICOM", "PT000000", "ST000000", "SE000000", "IM000000"]
    leaf.ReferencedSOPClassUIDInFile = records.sop_class_uid
    leaf.ReferencedSOPInstanceUIDInFile = records.sop_instance_uid
    leaf.ReferencedTransferSyntaxUIDInFile = ts


def _zip(directory: Path, zip_path: Path) -> None:
    """One ZIP per volume for download; DICOMDIR at its root like on the disc."""
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(directory).as_posix())


def export_fileset(
    files: Sequence[Path],
    out_dir: Path,
    *,
    media: str = "cd",
    volume_bytes: int | None = None,
    label: str = "PACSBOX",
    zip_volumes: bool = False,
    viewer_dir: Path | None = None,
    progress: Progress | None = None,
    extras: Extras | None = None,
) -> list[Volume]:
    """Write ``files`` (Part-10) as one File-set per volume under ``out_dir``.

    Volume directories are ``out_dir/<label>`` (one volume) or
    ``out_dir/<label>_<n>``; ZIPs are ``out_dir/<label>[_n].zip``.
    ``volume_bytes`` overrides the medium size (tests). ``progress(done,
    total)`` counts header reads then file copies (total = 2 x files).
    Raises UsageError for bad arguments and MediaError for a file that cannot
    be exported, before any volume is written.
    """
    if media not in MEDIA_BYTES:
        raise UsageError(f"unknown media {media!r}: use one of {', '.join(MEDIA_BYTES)}")
    if not files:
        raise UsageError("nothing selected to export")
    capacity = volume_bytes if volume_bytes is not None else MEDIA_BYTES[media]
    base = sanitize_label(label)
    viewer_bytes = _check_viewer(Path(viewer_dir)) if viewer_dir is not None else 0
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    total = 2 * len(files)
    with tempfile.TemporaryDirectory(prefix=".pacsbox-export-", dir=out_dir) as tmp:
        items = _scan(files, Path(tmp), progress, total)
        plans = plan_volumes(items, capacity, viewer_bytes)
        labels = [volume_label(base, n, len(plans)) for n in range(1, len(plans) + 1)]
        for lab in labels:
            target = out_dir / lab
            if target.exists() and any(target.iterdir()):
                raise UsageError(f"{target} already exists and is not empty")
        volumes = []
        done = len(files)
        for n, (plan, lab) in enumerate(zip(plans, labels, strict=True), 1):
            directory = out_dir / lab
            directory.mkdir(exist_ok=True)
            size = _write_volume(plan.items, directory, lab, progress, done, total, extras)
            done += len(plan.items)
            if viewer_dir is not None:
                shutil.copytree(viewer_dir, directory / "VIEWER")
                size += sum(
                    p.stat().st_size for p in (directory / "VIEWER").rglob("*") if p.is_file()
                )
            profile, deviations = _profile(media, {it.transfer_syntax for it in plan.items})
            zip_path = None
            if zip_volumes:
                zip_path = out_dir / f"{lab}.zip"
                _zip(directory, zip_path)
            volumes.append(
                Volume(n, directory, lab, len(plan.items), size, zip_path, profile, deviations)
            )
            log.info(
                "export: volume %d/%d %s: %d instances, %d bytes, %s%s",
                n, len(plans), lab, len(plan.items), size, profile,
                f" (deviation: {'; '.join(deviations)})" if deviations else "",
            )  # fmt: skip
    if progress:
        progress(total, total)
    return volumes
