"""Build an ISO 9660 level-1 image of one volume with xorriso (MEDIA-5).

PS3.12 (120 mm CD-R/DVD media) wants ISO 9660 level 1 names; we add no Rock
Ridge and no Joliet so every reader, including the DICOM File-set Readers of
old workstations, sees the same upper-case names the DICOMDIR references.
xorriso would shorten a long name to level 1 without complaint, which breaks
the reference to it, so the tree is checked first and a bad name refused.

The image is written to a temporary name beside the target and renamed:
xorriso appends a new session to an existing image instead of replacing it,
and a half-written image must never look finished.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from pacsbox.errors import MediaError, UsageError
from pacsbox.export.names import ISO_MAX_DEPTH, is_level1_name

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
XORRISO = "xorriso"
_VOLID_RE = re.compile(r"^[A-Z0-9_]{1,32}$")
_BUILD_RE = re.compile(r"Writing:\s+\d+s\s+([\d.]+)%")


def run_xorriso(
    args: list[str], on_line: Callable[[str], None] | None = None
) -> tuple[int, list[str]]:
    """Run xorriso, feeding each output line to ``on_line``; return (rc, lines)."""
    cmd = [XORRISO, "-no_rc", *args]
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
    except FileNotFoundError:
        raise MediaError("xorriso is not installed (Debian package xorriso)") from None
    lines: list[str] = []
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.rstrip("\r\n")
        lines.append(line)
        if on_line:
            on_line(line)
    return proc.wait(), lines


def check_level1_tree(root: Path) -> None:
    """Raise MediaError naming the first entry that is not ISO 9660 level 1."""
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        if len(rel.parts) + 1 > ISO_MAX_DEPTH and (dirnames or filenames):
            raise MediaError(f"{rel} is deeper than the {ISO_MAX_DEPTH} levels of ISO 9660")
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                raise MediaError(f"{rel / name} is not a plain file or folder")
            if not is_level1_name(name, is_dir=path.is_dir()):
                raise MediaError(f"{rel / name} is not an ISO 9660 level-1 name (8.3, upper case)")


def build_iso(
    volume_dir: Path, iso_path: Path, volume_id: str, progress: Progress | None = None
) -> Path:
    """Make ``iso_path`` from ``volume_dir``: level 1, no Rock Ridge/Joliet, volume id set.

    ``progress(done, 1000)`` follows xorriso's write percentage.
    """
    volume_dir, iso_path = Path(volume_dir), Path(iso_path)
    if not _VOLID_RE.match(volume_id):
        raise UsageError(f"volume id {volume_id!r} must be 1-32 characters A-Z 0-9 _")
    if not volume_dir.is_dir():
        raise UsageError(f"{volume_dir} is not a folder")
    check_level1_tree(volume_dir)
    tmp = iso_path.with_name(f".{iso_path.name}.part")
    tmp.unlink(missing_ok=True)

    def on_line(line: str) -> None:
        m = _BUILD_RE.search(line)
        if m and progress:
            progress(min(999, int(float(m.group(1)) * 10)), 1000)

    rc, lines = run_xorriso(
        [
            "-outdev", f"stdio:{tmp}",
            "-volid", volume_id,
            "-rockridge", "off",
            "-joliet", "off",
            "-hfsplus", "off",
            "-compliance", "iso_9660_level=1",
            "-pacifier", "xorriso",
            "-map", str(volume_dir), "/",
            "-commit",
        ],
        on_line,
    )  # fmt: skip
    if rc != 0:
        tmp.unlink(missing_ok=True)
        reason = next((ln for ln in reversed(lines) if "FAILURE" in ln or "SORRY" in ln), "")
        raise MediaError(f"cannot build ISO image {iso_path}: {reason or f'xorriso exit {rc}'}")
    os.replace(tmp, iso_path)
    if progress:
        progress(1000, 1000)
    log.info("iso: built %s (%s, %d bytes)", iso_path, volume_id, iso_path.stat().st_size)
    return iso_path
