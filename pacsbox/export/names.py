"""Names on the medium: ISO 9660 level-1 components, File-set IDs, media sizes.

Why a module of its own: the exporter, the ISO builder and the tests must agree
on exactly one definition of "level-1 name", or a disc that the exporter
thinks is fine gets its names silently mangled by xorriso.

PS3.10 8.5 / PS3.12: File IDs are at most 8 components of 1 to 8 characters
from A-Z 0-9 and underscore, without extension. Non-DICOM files (a viewer)
may use the ISO 9660 level-1 form NAME.EXT (8.3) and directories 8 characters.
"""

from __future__ import annotations

import re

# PS3.10 8.5: DICOM File ID components (no extension).
_FILE_ID_RE = re.compile(r"^[A-Z0-9_]{1,8}$")
# ISO 9660 level 1 (ECMA-119 7.5 d-characters): 8.3 file names, 8-char dirs.
_LEVEL1_FILE_RE = re.compile(r"^[A-Z0-9_]{1,8}(\.[A-Z0-9_]{0,3})?$")
_LEVEL1_DIR_RE = _FILE_ID_RE
ISO_MAX_DEPTH = 8  # ECMA-119 6.8.2.1: directory hierarchy at most 8 levels

# Usable bytes per medium: the smallest common sector count of each family
# (CD-R 74 min = 333,000 sectors; DVD+R 2,295,104; DVD+R DL 4,173,824) so a
# volume fits whichever blank the operator puts in.
SECTOR = 2048
MEDIA_BYTES = {
    "cd": 650 * 1024 * 1024,
    "dvd": 2_295_104 * SECTOR,
    "dvd-dl": 4_171_712 * SECTOR,
}

FILESET_ID_MAX = 16  # (0004,1130) File-set ID is CS, 16 characters


def is_file_id_component(name: str) -> bool:
    """True if ``name`` may be one component of a DICOM File ID (PS3.10 8.5)."""
    return bool(_FILE_ID_RE.match(name))


def is_level1_name(name: str, *, is_dir: bool) -> bool:
    """True if ``name`` is an ISO 9660 level-1 file (8.3) or directory (8) name."""
    return bool((_LEVEL1_DIR_RE if is_dir else _LEVEL1_FILE_RE).match(name))


def iso_name(identifier: str) -> str:
    """Strip the ';1' version and the mandatory trailing dot of an ISO 9660 identifier.

    xorriso writes 'IM000001' as 'IM000001.;1' (ECMA-119 7.5.1); readers show
    'IM000001'. Comparisons between a folder and a disc use this form.
    """
    name = identifier.split(";", 1)[0]
    return name[:-1] if name.endswith(".") else name


def sanitize_label(label: str) -> str:
    """Upper-case a media label into File-set ID characters (A-Z 0-9 _).

    Space is legal in CS but not in an ISO 9660 volume identifier
    (d-characters), and the label serves as both, so it becomes '_'.
    """
    text = re.sub(r"[^A-Z0-9_]", "_", label.strip().upper())
    return text[:FILESET_ID_MAX] or "PACSBOX"


def volume_label(label: str, number: int, count: int) -> str:
    """File-set ID of volume ``number`` of ``count``: 'PACSBOX' or 'PACSBOX_2'.

    The base is shortened so the suffix always fits the 16 characters.
    """
    base = sanitize_label(label)
    if count <= 1:
        return base
    suffix = f"_{number}"
    return base[: FILESET_ID_MAX - len(suffix)] + suffix
