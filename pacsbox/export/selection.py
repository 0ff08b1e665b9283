"""From an archive selection to DICOMDIR volumes: what `pacsbox export` and the web page share."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from pacsbox import attachments
from pacsbox.archive import Archive
from pacsbox.db import lookup
from pacsbox.errors import NotFound
from pacsbox.export.fileset import Volume, export_fileset


def export_selection(
    archive: Archive,
    out: Path,
    *,
    patients: list[str] | None = None,
    studies: list[str] | None = None,
    series: list[str] | None = None,
    media: str = "cd",
    zip_volumes: bool = False,
    label: str = "PACSBOX",
    viewer_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Volume]:
    """Export the union of the given patients, studies and series; each study's
    notes and attachments go beside its images (NOTES.TXT, ATT00001.PDF...).

    Raises NotFound when nothing matches; UsageError/MediaError from the
    File-set writer.
    """
    instances = lookup.select_instances(patients, studies, series)
    instances = [i for i in instances if i.series.study.purge_state != "purging"]
    if not instances:
        raise NotFound("nothing in the archive matches that selection")
    with tempfile.TemporaryDirectory(prefix="pacsbox-export-") as tmp:
        paths = []
        for n, inst in enumerate(instances):
            if inst.native:  # File-sets hold Part-10 files: give Native ones their header
                p = Path(tmp) / f"{n}.dcm"
                p.write_bytes(archive.read_part10(inst))
                paths.append(p)
            else:
                paths.append(lookup.instance_path(inst))
        return export_fileset(
            paths,
            out,
            media=media,
            zip_volumes=zip_volumes,
            label=label,
            viewer_dir=viewer_dir,
            progress=progress,
            extras=lambda study_uid: attachments.export_files(archive.cfg, study_uid),
        )
