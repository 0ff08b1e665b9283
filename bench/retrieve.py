"""Retrieve benchmark (issue 3): C-MOVE and C-GET of one 500-image study, pacsbox vs Orthanc.

``main() -> dict`` makes (or reuses, under ``bench/work/retrieve/``) 500 CT
images of 512x512x16 bits (0.5 MB each), stores them in a pacsbox and in an
Orthanc started with its own configuration, then times with the wall clock
(tool start included, median of ``RETRIEVE_RUNS``, default 11):

- ``movescu`` asking each server to C-MOVE the study to a DCMTK ``storescp``
  (``--ignore``: received, not written, so the sender is what is measured);
- ``getscu --ignore`` C-GETting the study from each server.

Also reports pacsbox's peak resident memory (VmHWM) after the runs, and
(``flat_memory``) how much a C-MOVE and a C-GET of one 10,000-image study
add to the daemon's resident size.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    DCMTK_ENV,
    WORK,
    Orthanc,
    Server,
    cli,
    env_int,
    free_port,
    median_ms,
    poll,
    timed,
    write_config,
)

IMAGES = 500
STUDY_UID = "1.2.826.0.1.3680043.10.4243.1"
SERIES_UID = "1.2.826.0.1.3680043.10.4243.2"


# The flat-memory check (issue 3): one study of 10,000 small images.
BIG_IMAGES = 10_000
BIG_STUDY_UID = "1.2.826.0.1.3680043.10.4244.1"
BIG_SERIES_UID = "1.2.826.0.1.3680043.10.4244.2"


def make_files(
    folder: Path, count: int = IMAGES, size: int = 512,
    study: str = STUDY_UID, series: str = SERIES_UID, root: str = "1.2.826.0.1.3680043.10.4243.3",
) -> list[Path]:  # fmt: skip
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    folder.mkdir(parents=True, exist_ok=True)
    files = sorted(folder.glob("*.dcm"))
    if len(files) == count:
        return files
    rng = np.random.default_rng(500)
    for k in range(count):
        uid = f"{root}.{k}"
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = uid
        ds.PatientName = "RETRIEVE^BENCH"
        ds.PatientID = "RB0001"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.StudyDate = ds.SeriesDate = "20240601"
        ds.StudyTime = ds.SeriesTime = "120000"
        ds.AccessionNumber = "RB0001"
        ds.Modality = "CT"
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = size
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.PixelData = rng.integers(0, 4096, (size, size), dtype=np.uint16).tobytes()
        ds.save_as(folder / f"img{k:04d}.dcm", enforce_file_format=True)
    return sorted(folder.glob("*.dcm"))


def storescu(port: int, aec: str, folder: Path) -> None:
    timed(["storescu", "-aet", "STORESCU", "-aec", aec, "127.0.0.1", str(port), "+sd", str(folder)])


class StoreSCP:
    def __init__(self, port: int) -> None:
        self.port = port
        self.proc = subprocess.Popen(
            ["storescp", "--ignore", "-pdu", "131072", "-aet", "STORESCP", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=DCMTK_ENV,
        )  # fmt: skip

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _keys(study: str = STUDY_UID) -> list[str]:
    return ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}"]


def _commands(port: int, aec: str, study: str = STUDY_UID) -> dict[str, list[str]]:
    """movescu to the benchmark's storescp and getscu --ignore, for one study."""
    where = ["127.0.0.1", str(port), *_keys(study)]
    return {
        "c_move": ["movescu", "-S", "-aet", "FINDSCU", "-aec", aec, "-aem", "STORESCP", *where],
        "c_get": ["getscu", "-S", "-aet", "FINDSCU", "-aec", aec, "--ignore", "-pdu", "131072",
                  *where],
    }  # fmt: skip


def measure(port: int, aec: str, runs: int) -> dict:
    out = {}
    for name, args in _commands(port, aec).items():
        _, text = timed(args + ["-v"])
        if "Success" not in text:
            raise RuntimeError(f"{name} against {aec} did not succeed:\n{text[-1500:]}")
        samples = [timed(args)[0] for _ in range(runs)]
        ms = median_ms(samples)
        out[name] = {"median_ms": ms, "images_per_s": round(IMAGES / (ms / 1000), 1)}
        print(
            f"  {aec:8} {name}: {ms:8.1f} ms  {out[name]['images_per_s']:7.1f} images/s", flush=True
        )
    return out


def _vm(pid: int, key: str = "VmHWM") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    return 0


def flat_memory(srv, work: Path) -> dict:
    """Peak RSS growth of the daemon while it C-MOVEs and C-GETs a 10,000-image study.

    The peak is reset before each retrieve (``/proc/PID/clear_refs`` 5), so
    each figure is what that retrieve alone added to the resting size.
    """
    files = make_files(work / "big", BIG_IMAGES, 32, BIG_STUDY_UID, BIG_SERIES_UID,
                       "1.2.826.0.1.3680043.10.4244.3")  # fmt: skip
    marker = work / "box" / "big.ok"
    if not marker.exists():
        t0 = time.perf_counter()
        storescu(srv.port, srv.ae_title, work / "big")
        print(
            f"retrieve bench: stored {len(files)} small images ({time.perf_counter() - t0:.0f} s)"
        )
        marker.write_text("ok\n")
    pid = srv.proc.pid
    out: dict = {"images": BIG_IMAGES}
    for name, args in _commands(srv.port, srv.ae_title, BIG_STUDY_UID).items():
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        rest = _vm(pid, "VmRSS")
        seconds, text = timed([*args, "-v"])
        if "Success" not in text:
            raise RuntimeError(f"{name} of the 10,000-image study did not succeed:\n{text[-1500:]}")
        peak = _vm(pid)
        out[name] = {
            "rss_before_MB": round(rest / 1e6, 1), "peak_MB": round(peak / 1e6, 1),
            "growth_MB": round((peak - rest) / 1e6, 1),
            "images_per_s": round(BIG_IMAGES / seconds, 1),
        }  # fmt: skip
        print(f"  10,000 images {name}: RSS {rest / 1e6:.0f} MB -> peak {peak / 1e6:.0f} MB "
              f"({BIG_IMAGES / seconds:.0f} images/s)", flush=True)  # fmt: skip
    return out


def study_box(work: Path, scp_port: int) -> tuple[Path, Server]:
    """The box holding the 500-image study (stored once, kept between runs), its AE
    table pointing STORESCP at ``scp_port``, its daemon started."""
    box = work / "box"
    marker = box / "stored.ok"
    ini = write_config(box, SyncWrites="no") if not marker.exists() else box / "pacsbox.ini"
    for ae in ("STORESCU", "FINDSCU"):
        cli(ini, "ae", "add", ae, "--host", "127.0.0.1")
    cli(ini, "ae", "add", "STORESCP", "--host", "127.0.0.1", "--port", str(scp_port))
    srv = Server(ini).start()
    if not marker.exists():
        t0 = time.perf_counter()
        storescu(srv.port, srv.ae_title, work / "files")
        print(
            f"retrieve bench: stored {IMAGES} images in pacsbox ({time.perf_counter() - t0:.0f} s)"
        )
        marker.write_text("ok\n")
    return ini, srv


def main() -> dict:
    runs = env_int("RETRIEVE_RUNS", 11)
    work = WORK / "retrieve"
    files = make_files(work / "files")
    scp_port = free_port()
    scp = StoreSCP(scp_port)
    result: dict = {"images": IMAGES, "image_bytes": files[0].stat().st_size, "runs": runs}
    _, srv = study_box(work, scp_port)
    try:
        print("retrieve bench: one study of 500 images of 0.5 MB")
        result["pacsbox"] = measure(srv.port, srv.ae_title, runs)
        result["pacsbox_peak_rss_bytes"] = _vm(srv.proc.pid)
        result["flat_memory"] = flat_memory(srv, work)
    finally:
        srv.stop()
    orthanc = Orthanc(
        work / "orthanc",
        {"STORESCP": ("127.0.0.1", scp_port), "FINDSCU": ("127.0.0.1", 104)},
    )
    try:
        if orthanc.count() < IMAGES:
            storescu(orthanc.dicom, orthanc.aet, work / "files")
            poll(lambda: orthanc.count() >= IMAGES, 120, what="Orthanc to hold the study")
        result["orthanc"] = measure(orthanc.dicom, orthanc.aet, runs)
    finally:
        orthanc.stop()
        scp.stop()
    for op in ("c_move", "c_get"):
        ratio = result["pacsbox"][op]["images_per_s"] / result["orthanc"][op]["images_per_s"]
        result[f"{op}_vs_orthanc"] = round(ratio, 2)
        print(f"  {op}: pacsbox / Orthanc = {ratio:.2f}x")
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=1))
