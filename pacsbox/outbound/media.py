"""Exports and burns started from the web page, as queue jobs (MEDIA-4/5, issue 17 item 1).

A job is a row before the request returns, so a restart neither forgets it
nor its product: the ZIP of an export is kept under ``exports/<job>/`` in
the data directory until the job leaves the queue, and its download link
works after a restart. A job killed half-way is given back by
``queue.recover`` and runs again from the start (its half-made folder is
removed first). A burn's destination is its drive, so the runner's
one-at-a-time rule for ``LOCAL`` destinations keeps two burns of one drive
apart. The payload names its study under ``studies``, the key the purge
guard reads, so a study waiting to be exported is not purged meanwhile.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from pacsbox.config import Config
from pacsbox.db import queue
from pacsbox.errors import UsageError
from pacsbox.export import burn_path
from pacsbox.export.selection import export_selection
from pacsbox.outbound.runner import LOCAL, Control, Outcome, done, wake
from pacsbox.storage import fsync_dir

EXPORTS = LOCAL + "export"
ZIP_NAME = "study-dicomdir.zip"
MEDIA = ("cd", "dvd", "dvd-dl")
_LABEL = "PACSBOX"


def drive(device: str) -> str:
    """The queue destination of a burner: the drive itself (a long one hashed to fit)."""
    name = LOCAL + device
    if len(name) <= 64:
        return name
    return LOCAL + "drive-" + hashlib.sha256(device.encode()).hexdigest()[:16]


def submit_export(study_uid: str, label: str, owner: str) -> int:
    """Queue a study's DICOMDIR ZIP (one DVD-DL volume: what a browser download holds)."""
    job_id = queue.submit("export", EXPORTS, {"studies": [study_uid]}, owner=owner,
                          label=label, retries=0)  # fmt: skip
    wake()
    return job_id


def submit_burn(study_uid: str, media: str, device: str, label: str, owner: str) -> int:
    """Queue a burn of a study to ``device``; raises UsageError for unknown media.

    A failed burn is not tried again by itself (the disc may be spoilt): the
    user retries it from the queue page with a fresh disc.
    """
    if media not in MEDIA:
        raise UsageError("media is cd, dvd or dvd-dl")
    payload = {"studies": [study_uid], "media": media, "device": device}
    job_id = queue.submit("burn", drive(device), payload, owner=owner, label=label, retries=0)
    wake()
    return job_id


# -- the export's product ----------------------------------------------------------------


def _folder(cfg: Config, job_id: int) -> Path:
    return cfg.data_dir / "exports" / str(job_id)


def product(cfg: Config, job: queue.JobView) -> Path | None:
    """The ZIP a done export job made, or None (not an export, not done, or gone)."""
    if job.kind != "export" or job.state != "done":
        return None
    path = _folder(cfg, job.id) / ZIP_NAME
    return path if path.is_file() else None


def _tidy(cfg: Config) -> None:
    """Remove the products of export jobs no longer in the queue (purged or unknown)."""
    root = cfg.data_dir / "exports"
    if not root.is_dir():
        return
    kept = {str(j.id) for j in queue.jobs(kind="export", limit=100_000)}
    for folder in root.iterdir():
        if folder.name not in kept:
            shutil.rmtree(folder, ignore_errors=True)


# -- the handlers -------------------------------------------------------------------------


def handle_export(ctl: Control) -> Outcome:
    """Make the ZIP under exports/<job>/, written whole before it gets its name. The
    File-set is nine tenths of the bar; zipping it (no progress of its own) the rest."""
    archive = ctl.the_archive()
    _tidy(ctl.cfg)
    folder = _folder(ctl.cfg, ctl.job.id)
    shutil.rmtree(folder, ignore_errors=True)  # a re-run after a crash starts again
    volumes = export_selection(
        archive,
        folder / "work",
        studies=ctl.job.payload["studies"],
        media="dvd-dl",
        zip_volumes=True,
        label=_LABEL,
        progress=lambda d, t: ctl.progress(min(d * 900 // max(t, 1), 900), 1000),
    )
    made = volumes[0].zip_path
    assert made is not None  # zip_volumes=True
    with open(made, "rb") as fh:
        os.fsync(fh.fileno())
    target = folder / ZIP_NAME
    os.replace(made, target)
    fsync_dir(folder)
    shutil.rmtree(folder / "work", ignore_errors=True)
    ctl.progress(1000, 1000)
    images = sum(v.instances for v in volumes)
    return done(f"{images} images, {target.stat().st_size} bytes, ready to download")


def handle_burn(ctl: Control) -> Outcome:
    """Export to a work folder, then burn and verify each volume; the bar is one tenth
    exporting, the rest burning and reading back."""
    archive = ctl.the_archive()
    payload = ctl.job.payload
    device = payload["device"]
    work_dir = ctl.cfg.data_dir / "burn" / f"job{ctl.job.id}"
    shutil.rmtree(work_dir, ignore_errors=True)
    try:
        volumes = export_selection(
            archive,
            work_dir / "volumes",
            studies=payload["studies"],
            media=payload["media"],
            label=_LABEL,
            progress=lambda d, t: ctl.progress(d * 100 // max(t, 1), 1000),
        )
        share = 900 // len(volumes)
        for n, v in enumerate(volumes):
            base = 100 + n * share

            def progress(d: int, t: int, b: int = base) -> None:
                ctl.progress(b + d * share // max(t, 1), 1000)

            burn_path(v.directory, device, work_dir=work_dir, progress=progress)
        ctl.progress(1000, 1000)
        return done(f"{len(volumes)} volume(s) burned to {device} and verified")
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
