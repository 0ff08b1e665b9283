"""Media benchmark (issue 6): import a 2,000-image medium; export + ISO of 2,000 images.

The medium is a folder with a DICOMDIR made by DCMTK's dcmmkdir over the
small-image corpus (what a patient CD looks like). The export step is
compared with dcmmkdir building a DICOMDIR over the same files (which copies
nothing, so it is a floor, not a like-for-like).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from functools import partial
from pathlib import Path

from bench.common import DCMTK_ENV, WORK, env_int, write_config
from bench.ingest import corpus
from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db import lookup
from pacsbox.export import build_iso, export_fileset
from pacsbox.media.importer import run_import

N = env_int("BENCH_MEDIA_N", 2000)


def _medium(files: list[Path]) -> Path:
    """A CD-like folder: level-1 names and a DICOMDIR by dcmmkdir."""
    medium = WORK / "media" / "medium"
    shutil.rmtree(medium, ignore_errors=True)
    (medium / "DICOM").mkdir(parents=True)
    for i, f in enumerate(files):
        shutil.copyfile(f, medium / "DICOM" / f"IM{i:06d}")
    subprocess.run(
        ["dcmmkdir", "--recurse", "--invent", "+id", str(medium), "DICOM"],
        cwd=medium,
        check=True,
        env=DCMTK_ENV,
        capture_output=True,
    )
    return medium


def main() -> dict:
    files = corpus("small", N, 64)
    size = sum(f.stat().st_size for f in files)
    medium = _medium(files)
    box = WORK / "media" / "box"
    shutil.rmtree(box, ignore_errors=True)
    archive = Archive(load(write_config(box)))
    try:
        t0 = time.perf_counter()
        report = run_import(medium, partial(archive.store, source="import"))
        t_import = time.perf_counter() - t0
        assert len(report.imported) == N, report.summary()
        stored = [
            lookup.instance_path(i) for i in lookup.select_instances(patient_ids=["BENCH-small"])
        ]
        out = WORK / "media" / "export"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        volumes = export_fileset(stored, out, media="cd", label="BENCH")
        t_export = time.perf_counter() - t0
        t0 = time.perf_counter()
        build_iso(volumes[0].directory, out / "bench.iso", volumes[0].label)
        t_iso = time.perf_counter() - t0
    finally:
        archive.close()
    ref = WORK / "media" / "dcmmkdir"
    shutil.rmtree(ref, ignore_errors=True)
    shutil.copytree(medium / "DICOM", ref / "DICOM")
    t0 = time.perf_counter()
    subprocess.run(
        ["dcmmkdir", "--recurse", "--invent", "+id", str(ref), "DICOM"],
        cwd=ref,
        check=True,
        env=DCMTK_ENV,
        capture_output=True,
    )
    t_ref = time.perf_counter() - t0
    shutil.rmtree(WORK / "media", ignore_errors=True)
    mb = size / 1e6
    return {
        "images": N,
        "MB": round(mb, 1),
        "import_images_per_s": round(N / t_import, 1),
        "import_MB_per_s": round(mb / t_import, 1),
        "export_images_per_s": round(N / t_export, 1),
        "export_MB_per_s": round(mb / t_export, 1),
        "iso_seconds": round(t_iso, 2),
        "export_plus_iso_images_per_s": round(N / (t_export + t_iso), 1),
        "dcmmkdir_reference_seconds": round(t_ref, 2),
        "dcmmkdir_images_per_s": round(N / t_ref, 1),
    }
