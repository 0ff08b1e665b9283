"""Import a medium the moment it is inserted (BOX-3).

udev (``udev/61-pacsbox-media.rules``) only asks systemd for
``pacsbox-import@<kernel name>.service``; that oneshot unit runs
``pacsbox import --device /dev/<name>``, which lands here:

1. respect ``AutoImport`` (off: do nothing and say so);
2. refuse what is not an inserted data medium: no disc, no filesystem (a
   blank disc put in for burning, an audio CD), or a device that is already
   mounted (the box's own disks);
3. mount it read-only with ``ro,nosuid,nodev,noexec`` under
   ``MediaMountDirectory``, import through the usual importer, unmount, and
   eject an optical disc so the technician sees it is done.

The mount/unmount/eject commands go through ``runner`` so a test can stand
in for them (mounting does not work in the test machines).
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pacsbox.errors import MediaError
from pacsbox.media.importer import ImportProgress, ImportReport, StoreFn, run_import
from pacsbox.media.safety import DEFAULT_LIMITS, Limits

log = logging.getLogger("pacsbox.media.device")

Runner = Callable[[list[str]], None]
MOUNT_OPTIONS = "ro,nosuid,nodev,noexec"


def run_command(argv: list[str]) -> None:
    """Run mount/umount/eject; raise MediaError with the tool's own last line on failure."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise MediaError(f"{argv[0]}: {e}") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise MediaError(f"{argv[0]} failed: {lines[-1] if lines else f'exit {done.returncode}'}")


def device_properties(devname: str) -> dict[str, str]:
    """The udev properties of a device (what the rules matched on), or {} if udev cannot say."""
    try:
        import pyudev

        dev = pyudev.Devices.from_device_file(pyudev.Context(), devname)
        return {k: dev.properties[k] for k in dev.properties}
    except Exception as e:  # no udev database (containers), unknown device
        log.debug("no udev properties for %s: %s", devname, e)
        return {}


def is_optical(devname: str, props: dict[str, str]) -> bool:
    return props.get("ID_CDROM") == "1" or Path(devname).name.startswith("sr")


def refusal(devname: str, props: dict[str, str]) -> str | None:
    """Why this device is not imported, or None when it is an inserted data medium."""
    label = props.get("ID_FS_LABEL", "") + props.get("ID_PART_ENTRY_NAME", "")
    if label.lower().startswith("pacsbox"):
        return f"{devname} is one of the box's own partitions ({label})"
    if is_optical(devname, props) and props and props.get("ID_CDROM_MEDIA") != "1":
        return f"no disc in {devname}"
    if props and not props.get("ID_FS_TYPE"):
        return f"no filesystem on {devname} (blank or audio disc?)"
    usage = props.get("ID_FS_USAGE")
    if usage and usage != "filesystem":
        return f"{devname} holds {props.get('ID_FS_TYPE')} ({usage}), not a filesystem"
    return None


def mounted_at(devname: str, mountinfo: Path = Path("/proc/self/mountinfo")) -> str | None:
    """Where ``devname`` is mounted already, if anywhere (matched by name and by device number)."""
    try:
        rdev = os.stat(devname).st_rdev
        want = f"{os.major(rdev)}:{os.minor(rdev)}"
    except OSError:
        want = None
    real = os.path.realpath(devname)
    try:
        text = mountinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        source = line.split(" - ", 1)[1].split()[1:2]
        if (want and fields[2] == want) or (source and os.path.realpath(source[0]) == real):
            return fields[4].replace("\\040", " ")
    return None


def import_device(
    devname: str,
    cfg: Any,
    store: StoreFn,
    props: dict[str, str] | None = None,
    *,
    runner: Runner | None = None,
    progress: Callable[[ImportProgress], None] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    mountinfo: Path = Path("/proc/self/mountinfo"),
) -> ImportReport:
    """Mount ``devname`` read-only, import it, unmount it, eject a disc.

    Never raises for a bad medium: the report's ``aborted`` says why nothing
    (or not everything) was imported, ``notes`` what was done.
    """
    report = ImportReport(source=devname, kind="device")
    if not cfg.AutoImport:
        report.notes.append(f"automatic import is off (AutoImport = no): {devname} not imported")
        log.info("%s inserted; AutoImport is off", devname)
        return report
    props = device_properties(devname) if props is None else props
    why = refusal(devname, props)
    where = None if why else mounted_at(devname, mountinfo)
    if where:
        why = f"{devname} is already mounted at {where}: not treated as an inserted medium"
    if why:
        report.aborted = why
        log.info("not importing %s: %s", devname, why)
        return report
    runner = runner or run_command
    optical = is_optical(devname, props)
    label = props.get("ID_FS_LABEL", "")
    fstype = props.get("ID_FS_TYPE", "")
    mnt = Path(cfg.MediaMountDirectory) / Path(devname).name
    mnt.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        runner(["mount", "-o", MOUNT_OPTIONS, devname, str(mnt)])
    except MediaError as e:
        report.aborted = f"cannot mount {devname}: {e}"
        log.error("%s", report.aborted)
        _rmdir(mnt)
        return report
    log.info("importing %s (%s %s) from %s", devname, fstype, label, mnt)
    unmounted = False
    try:
        inner = run_import(mnt, store, progress=progress, limits=limits)
    finally:
        try:
            runner(["umount", str(mnt)])
            unmounted = True
        except MediaError as e:
            report.notes.append(f"could not unmount {mnt}: {e}")
    named = f" {label!r}" if label else ""
    report.notes.append(f"{devname}: {fstype or 'filesystem'}{named} read as {inner.kind}")
    inner.notes, notes = [], inner.notes
    report.merge(inner)
    report.notes += notes
    report.seconds = inner.seconds
    if unmounted:
        _rmdir(mnt)
        if optical:
            try:
                runner(["eject", devname])
                report.notes.append(f"{devname} ejected")
            except MediaError as e:
                report.notes.append(f"could not eject {devname}: {e}")
    log.info("import %s", report.summary())
    return report


def _rmdir(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass
