"""Write an ISO image to a burner with xorriso, then read it back and verify (MEDIA-5).

A burn is reported good only after every file on the written medium has been
read back and its SHA-256 compared with the source (the volume folder, or the
ISO image when that is what was given). Reading uses pycdlib on the device or
file directly: loop-mounting is not available on the appliance's build hosts
and needs privileges the daemon does not have.

Devices are what xorriso accepts: a drive such as ``/dev/sr0``, or
``stdio:/path/file`` for a file standing in for one (tests, disc images).
Every failure is a MediaError whose one-line message starts with the cause:
``no drive``, ``no disc``, ``disc too small``, ``write error``,
``verification failed``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pycdlib
from pydicom import dcmread

from pacsbox.errors import MediaError, UsageError
from pacsbox.export.iso import build_iso, run_xorriso
from pacsbox.export.names import SECTOR, iso_name, sanitize_label

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
_SPACE_RE = re.compile(r"Media space\s*:\s*(\d+)s")
_WRITE_RE = re.compile(r"(\d+)\s+of\s+(\d+)\s+MB written")
_PAD_SECTORS = 160  # xorriso -as cdrecord pads every track by 300 KiB (+ rounding)
_CHUNK = 1 << 20
WRITE_SHARE = 800  # per-mille of the progress bar spent writing; the rest verifies


@dataclass
class BurnResult:
    """What a successful burn wrote and checked."""

    device: str
    iso_path: Path
    volume_id: str
    bytes_written: int
    files_verified: int
    seconds: float


def _device_path(device: str) -> Path:
    return Path(device[len("stdio:") :] if device.startswith("stdio:") else device)


def _classify(lines: list[str], device: str) -> str:
    """One-line reason from xorriso's messages, starting with the cause."""
    text = "\n".join(lines)
    detail = next(
        (ln.split(":", 2)[-1].strip() for ln in lines if "SORRY" in ln or "FAILURE" in ln), ""
    )
    lowered = text.lower()
    if any(k in lowered for k in ("rejected because", "cannot acquire drive", "neither stdio-path",
                                  "no such file or directory", "not existing")):  # fmt: skip
        return f"no drive at {device}: {detail}"
    if any(k in lowered for k in ("no media", "not present", "media current: is not")):
        return f"no disc in {device}: {detail}"
    if any(k in lowered for k in ("exceeds", "not enough", "too small", "too large")):
        return f"disc too small in {device}: {detail}"
    if "is closed" in lowered or "not blank" in lowered:
        return f"no disc in {device}: the disc is closed (already written), insert a blank one"
    return f"write error on {device}: {detail or 'xorriso failed'}"


def _human(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size // 1024} KiB"


def _check_device(iso_path: Path, device: str) -> None:
    """Fail before writing: missing drive, no disc, or a disc smaller than the image."""
    path = _device_path(device)
    if not device.startswith("stdio:") and not path.exists():
        raise MediaError(f"no drive at {device}: device does not exist")
    if device.startswith("stdio:") and not path.parent.is_dir():
        raise MediaError(f"no drive at {device}: folder {path.parent} does not exist")
    rc, lines = run_xorriso(["-outdev", device, "-tell_media_space"])
    if rc != 0:
        raise MediaError(_classify(lines, device))
    space = next((int(m.group(1)) for ln in lines if (m := _SPACE_RE.search(ln))), None)
    if space is None:
        raise MediaError(_classify(lines, device))
    need = -(-iso_path.stat().st_size // SECTOR) + _PAD_SECTORS
    if need > space:
        raise MediaError(
            f"disc too small in {device}: image needs {_human(need * SECTOR)}, "
            f"disc has {_human(space * SECTOR)} free"
        )


def write_image(iso_path: Path, device: str, progress: Progress | None = None) -> int:
    """Write ``iso_path`` to ``device`` (``xorriso -as cdrecord``); return bytes written.

    ``progress(done, total)`` in MB as xorriso reports it.
    """
    iso_path = Path(iso_path)
    if not iso_path.is_file():
        raise UsageError(f"{iso_path} is not an ISO image file")
    _check_device(iso_path, device)

    def on_line(line: str) -> None:
        m = _WRITE_RE.search(line)
        if m and progress:
            progress(int(m.group(1)), max(1, int(m.group(2))))

    rc, lines = run_xorriso(
        ["-as", "cdrecord", "-v", f"dev={device}", "blank=as_needed", str(iso_path)], on_line
    )
    if rc != 0 or not any("completed successfully" in ln for ln in lines):
        reason = _classify(lines, device)
        log.error("burn: %s", reason)
        raise MediaError(reason)
    size = iso_path.stat().st_size
    log.info("burn: wrote %s to %s (%d bytes)", iso_path.name, device, size)
    return size


def _iso_files(iso: pycdlib.PyCdlib) -> Iterator[tuple[str, str]]:
    """(normalised relative name, ISO path) for every file of an ISO 9660 tree."""
    for dirname, _dirs, files in iso.walk(iso_path="/"):
        for name in files:
            raw = f"{dirname.rstrip('/')}/{name}"
            parts = [iso_name(p) for p in raw.strip("/").split("/")]
            yield "/".join(parts), raw


def _hash_iso_file(iso: pycdlib.PyCdlib, raw: str) -> str:
    digest = hashlib.sha256()
    with iso.open_file_from_iso(iso_path=raw) as fp:
        while chunk := fp.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fp:
        while chunk := fp.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _source_files(source: Path) -> dict[str, Callable[[], str]]:
    """Name -> hasher for every file of a volume folder or an ISO image."""
    if source.is_dir():
        return {
            p.relative_to(source).as_posix().upper(): partial(_hash_file, p)
            for p in sorted(source.rglob("*"))
            if p.is_file()
        }
    iso = pycdlib.PyCdlib()
    try:
        iso.open(str(source))
    except (pycdlib.pycdlibexception.PyCdlibException, OSError) as exc:
        raise MediaError(f"verification failed: cannot read source image {source}: {exc}") from None
    return {name: partial(_hash_iso_file, iso, raw) for name, raw in _iso_files(iso)}


def verify_disc(device: str, source: Path, progress: Progress | None = None) -> int:
    """Read every file back from ``device`` and compare its SHA-256 with ``source``.

    ``source`` is the volume folder or the ISO image that was written. Returns
    the number of files verified; raises MediaError naming the first file
    that is missing or differs.
    """
    wanted = _source_files(Path(source))
    disc = pycdlib.PyCdlib()
    try:
        disc.open(str(_device_path(device)))
    except (pycdlib.pycdlibexception.PyCdlibException, OSError) as exc:
        raise MediaError(f"verification failed: cannot read back {device}: {exc}") from None
    try:
        on_disc = dict(_iso_files(disc))
        for n, (name, source_hash) in enumerate(sorted(wanted.items()), 1):
            raw = on_disc.get(name)
            if raw is None:
                raise MediaError(f"verification failed: {name} is missing on {device}")
            try:
                got = _hash_iso_file(disc, raw)
            except (pycdlib.pycdlibexception.PyCdlibException, OSError) as exc:
                raise MediaError(
                    f"verification failed: {name} unreadable on {device}: {exc}"
                ) from None
            if got != source_hash():
                raise MediaError(f"verification failed: {name} on {device} differs from the source")
            if progress:
                progress(n, len(wanted))
    finally:
        disc.close()
    log.info("burn: verified %d files on %s", len(wanted), device)
    return len(wanted)


def _volume_id(iso_path: Path) -> str:
    iso = pycdlib.PyCdlib()
    try:
        iso.open(str(iso_path))
        volume_identifier: bytes = iso.pvd.volume_identifier
        return volume_identifier.decode("ascii", "replace").strip()
    except (pycdlib.pycdlibexception.PyCdlibException, OSError):
        return ""
    finally:
        try:
            iso.close()
        except Exception:  # noqa: BLE001 - close after a failed open
            pass


def _scaled(progress: Progress | None, start: int, span: int) -> Progress | None:
    """Map a phase's (done, total) onto [start, start+span] of a 1000 bar."""
    if progress is None:
        return None
    return lambda done, total: progress(start + span * done // max(1, total), 1000)


def burn(
    iso_path: Path, device: str, progress: Progress | None = None, *, source: Path | None = None
) -> BurnResult:
    """Write ``iso_path`` to ``device`` and verify it against ``source`` (default: the image).

    ``progress(done, 1000)``: writing fills the first 80 %, verification the rest.
    """
    started = time.monotonic()
    iso_path = Path(iso_path)
    written = write_image(iso_path, device, _scaled(progress, 0, WRITE_SHARE))
    files = verify_disc(
        device, source or iso_path, _scaled(progress, WRITE_SHARE, 1000 - WRITE_SHARE)
    )
    return BurnResult(device, iso_path, _volume_id(iso_path), written, files,
                      time.monotonic() - started)  # fmt: skip


def _fileset_id(volume_dir: Path) -> str:
    """Volume id for a folder: its DICOMDIR File-set ID, else the folder name."""
    dicomdir = volume_dir / "DICOMDIR"
    if dicomdir.is_file():
        try:
            fsid = str(dcmread(dicomdir, specific_tags=["FileSetID"]).get("FileSetID", ""))
        except Exception:  # noqa: BLE001 - a bad DICOMDIR falls back to the name
            fsid = ""
        if fsid.strip():
            return sanitize_label(fsid)
    return sanitize_label(volume_dir.name)


def burn_path(
    path: Path, device: str, progress: Progress | None = None, *, work_dir: Path | None = None
) -> BurnResult:
    """``pacsbox burn DIR|ISO``: a volume folder is imaged first (DIR.iso beside it
    or in ``work_dir``) and verified against the folder; an ISO is burned as is.
    ``progress(done, 1000)`` covers both steps."""
    path = Path(path)
    if path.is_dir():
        iso = Path(work_dir or path.parent) / f"{path.name}.iso"
        build_iso(path, iso, _fileset_id(path), _scaled(progress, 0, 200))
        step = _scaled(progress, 200, 800)
        return burn(iso, device, step, source=path)
    if path.is_file():
        return burn(path, device, progress)
    raise UsageError(f"{path} is neither a volume folder nor an ISO image")
