"""Burning (MEDIA-5): xorriso writes an ISO to a file standing in for the burner,
then every file is read back and checked against the source.

Real drives are not available here; ``stdio:FILE`` is xorriso's own stand-in,
``stdio:/dev/full`` a drive whose writes fail, ``/dev/nonexistent-sr`` a
missing drive.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pycdlib
import pytest

from pacsbox.errors import MediaError
from pacsbox.export import build_iso, burn, burn_path, export_fileset, verify_disc, write_image
from tests.integration.test_export import make_corpus

pytestmark = pytest.mark.skipif(shutil.which("xorriso") is None, reason="needs xorriso")


@pytest.fixture
def volume(tmp_path: Path):
    files = make_corpus(tmp_path / "src")
    (vol,) = export_fileset(files, tmp_path / "out", label="BURNTEST")
    return vol


def test_burn_folder_to_file_standin_and_verify(volume, tmp_path: Path) -> None:
    disc = tmp_path / "disc.img"
    seen: list[tuple[int, int]] = []
    result = burn_path(volume.directory, f"stdio:{disc}", lambda d, t: seen.append((d, t)))
    assert result.volume_id == "BURNTEST"
    assert result.files_verified == volume.instances + 1  # + DICOMDIR
    assert result.iso_path == volume.directory.parent / "BURNTEST.iso"
    assert disc.stat().st_size >= result.bytes_written
    assert seen and seen[-1] == (1000, 1000)
    assert all(0 <= d <= t for d, t in seen) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_burn_iso_file(volume, tmp_path: Path) -> None:
    iso = build_iso(volume.directory, tmp_path / "v.iso", volume.label)
    result = burn_path(iso, f"stdio:{tmp_path / 'disc.img'}")
    assert result.files_verified == volume.instances + 1


def _corrupt(image: Path, iso_name: str) -> None:
    """Flip bytes inside one file's extent on the written image."""
    iso = pycdlib.PyCdlib()
    iso.open(str(image))
    rec = iso.get_record(iso_path=iso_name)
    offset = rec.extent_location() * 2048 + 200
    iso.close()
    with image.open("r+b") as fp:
        fp.seek(offset)
        data = fp.read(16)
        fp.seek(offset)
        fp.write(bytes(b ^ 0xFF for b in data))


def test_corrupted_write_is_a_verification_failure_naming_the_file(volume, tmp_path: Path) -> None:
    iso = build_iso(volume.directory, tmp_path / "v.iso", volume.label)
    disc = tmp_path / "disc.img"
    device = f"stdio:{disc}"
    write_image(iso, device)
    assert verify_disc(device, volume.directory) == volume.instances + 1
    _corrupt(disc, "/DICOM/PT000001/ST000001/SE000001/IM000002.;1")
    with pytest.raises(
        MediaError, match=r"verification failed: DICOM/PT000001/ST000001/SE000001/IM000002"
    ):
        verify_disc(device, volume.directory)
    with pytest.raises(MediaError, match="verification failed: DICOM/PT000001/.*IM000002"):
        verify_disc(device, iso)


def test_write_error_on_full_device(volume, tmp_path: Path) -> None:
    iso = build_iso(volume.directory, tmp_path / "v.iso", volume.label)
    with pytest.raises(MediaError, match=r"^write error on stdio:/dev/full"):
        burn(iso, "stdio:/dev/full")


def test_missing_drive(volume, tmp_path: Path) -> None:
    iso = build_iso(volume.directory, tmp_path / "v.iso", volume.label)
    with pytest.raises(MediaError, match=r"^no drive at /dev/nonexistent-sr"):
        burn(iso, "/dev/nonexistent-sr")
    with pytest.raises(MediaError, match=r"^no drive at stdio:/nonexistent-dir/x.img"):
        burn(iso, "stdio:/nonexistent-dir/x.img")


def test_burn_refuses_a_folder_with_non_level1_names(volume, tmp_path: Path) -> None:
    (volume.directory / "notes.txt").write_text("x")
    with pytest.raises(MediaError, match="notes.txt is not an ISO 9660 level-1 name"):
        burn_path(volume.directory, f"stdio:{tmp_path / 'disc.img'}")


def test_disc_too_small(volume, tmp_path: Path) -> None:
    """A 200 KiB tmpfs in a private mount namespace stands in for a too-small disc."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare")
    iso = build_iso(volume.directory, tmp_path / "v.iso", volume.label)
    small = tmp_path / "small"
    small.mkdir()
    code = (
        "import sys\n"
        "from pacsbox.export import burn\n"
        "from pacsbox.errors import MediaError\n"
        "try:\n"
        f"    burn({str(iso)!r}, 'stdio:{small}/disc.img')\n"
        "except MediaError as exc:\n"
        "    print(exc)\n"
    )
    script = f'mount -t tmpfs -o size=200k tmpfs {small} || exit 77; exec {sys.executable} -c "$0"'
    out = subprocess.run(["unshare", "-rm", "sh", "-c", script, code], capture_output=True,
                         text=True, timeout=120, cwd=Path(__file__).parents[2])  # fmt: skip
    if out.returncode == 77 or "unshare failed" in out.stderr:
        pytest.skip(f"cannot mount a private tmpfs here: {out.stderr.strip()}")
    assert out.stdout.startswith(f"disc too small in stdio:{small}/disc.img"), (
        out.stdout + out.stderr
    )
