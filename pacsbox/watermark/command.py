"""``pacsbox purge [--dry-run]``: what a purge would remove and why, then the purge.

For every archive disk: its usage against the marks, the studies that
would go (oldest received first) and why each of the others must stay.
"""

from __future__ import annotations

from typing import IO

from pacsbox.archive import Archive
from pacsbox.config import Config
from pacsbox.db import purge as pdb
from pacsbox.watermark.monitor import Watermark, percent_used
from pacsbox.watermark.report import human, local_time


def purge_command(cfg: Config, dry_run: bool, out: IO[str]) -> int:
    """List what a purge would remove and why (and why the others stay); purge unless dry run.

    Returns 0, or 1 when a disk is (or, in a dry run, would stay) above the
    high-water mark with nothing left that may be purged, or a purge failed.
    """
    archive = Archive(cfg)
    try:
        wm = Watermark(cfg, archive)
        return purge_listing(wm, dry_run, out)
    finally:
        archive.close()


def _n(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def purge_listing(wm: Watermark, dry_run: bool, out: IO[str]) -> int:
    """``purge_command`` with an open archive's watermark (its disk usage may be a test's)."""
    cutoff = wm.cutoff()
    would = "would purge" if dry_run else "purging"
    stuck = False
    leftovers = pdb.purging_studies()
    if leftovers:
        verb = "would finish" if dry_run else "finishing"
        out.write(f"{verb} {len(leftovers)} interrupted purges first\n")
    for disk in wm.disks():
        out.write(
            f"{disk.path}: {disk.percent:.1f}% used, {human(disk.free)} free of "
            f"{human(disk.used + disk.free)} (high-water {wm.high:g}%, low-water {wm.low:g}%)\n"
        )
        plan = wm.plan_disk(disk)
        if disk.percent < wm.high:
            out.write("  under the high-water mark: nothing to purge\n")
            continue
        chosen = {s.id for s, _ in plan}
        planned = sum(s.size_bytes for s, _ in plan)
        out.write(
            f"  {_n(len(plan), 'study', 'studies')}, {human(planned)} estimated, to reach "
            f"{wm.low:g}% ({human(wm.bytes_to_free(disk))} to free)\n"
        )
        recent = 0
        for study in pdb.iter_studies(list(disk.roots)):
            if study.id in chosen:
                why = wm.go_reason(study)
                out.write(
                    f"  {would:>12}  {study.study_instance_uid}  received "
                    f"{local_time(study.received)}  {human(study.size_bytes):>9}  {why}\n"
                )
                continue
            reason = wm.keep_reason(study, cutoff)
            if reason is None:
                continue  # may go, but not needed to reach the low-water mark
            if study.received >= cutoff and not study.protected:
                recent += 1
                continue
            out.write(
                f"  {'keep':>12}  {study.study_instance_uid}  received "
                f"{local_time(study.received)}  {human(study.size_bytes):>9}  {reason}\n"
            )
        if recent:
            out.write(
                f"  {'keep':>12}  {_n(recent, 'study', 'studies')} received within the last "
                f"{wm.cfg.PurgeMinAgeHours} h\n"
            )
        if planned < wm.bytes_to_free(disk):
            out.write("  not enough can be purged to reach the low-water mark\n")
            if percent_used(disk.used - planned, disk.free + planned) >= wm.high:
                stuck = True
                out.write(
                    "  the disk would stay above the high-water mark: C-STORE answers A700 "
                    "until space is freed\n"
                )
    if dry_run:
        return 1 if stuck else 0
    report = wm.purge()
    for item in report.purged:
        out.write(item.line() + "\n")
    for err in report.errors:
        out.write(f"error: {err}\n")
    out.write(report.summary() + "\n")
    return 1 if report.still_full or report.errors else 0
