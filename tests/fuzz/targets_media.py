"""Fuzz targets for bytes that reach the box from outside on media and over WADO-URI.

- ``medium``: a CD/USB folder whose DICOMDIR is the input, beside two real
  instance files it references, imported by ``run_import`` (what ``pacsbox
  import``, the udev unit and the watch folder call);
- ``zip``: the input is a file handed to ``run_import_files`` (the web
  upload's entry point; a ZIP goes through ``open_source``'s ZIP reader);
- ``wado``: the input is the raw query string of a ``/wado`` request from a
  logged-in root session, against an archive holding the two instances.

Each runs against a real Archive in its own data folder, so a verdict covers
the index and the files, not only the answer.
"""

from __future__ import annotations

import functools
import io
import os
import tempfile
import time
import unicodedata
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import pydicom
import webtest
from pydicom.fileset import FileSet

from pacsbox import config
from pacsbox.archive import Archive
from pacsbox.db import open_database
from pacsbox.db.lookup import find_instance, instance_path
from pacsbox.db.models import Instance, database
from pacsbox.media.importer import ImportReport, run_import, run_import_files
from pacsbox.web import users
from pacsbox.web.app import create_app
from tests.fuzz.harness import Defect, OneInput, Target
from tests.helpers import write_config
from tests.synth import ROOT, make_instance

STUDY = ROOT + "77.1"
SERIES = ROOT + "77.1.1"
SOP_ONE = ROOT + "77.1.1.1"  # one frame
SOP_TWO = ROOT + "77.1.1.2"  # two frames, so frameNumber has something to choose
PASSWORD = "fuzzing horse battery"
WADO_STATUSES = {200, 400, 403, 404, 406, 501}  # what /wado answers a logged-in user (wado.py)
MAGIC = {"image/jpeg": (0, b"\xff\xd8"), "image/png": (0, b"\x89PNG"), "application/dicom": (128, b"DICM")}  # fmt: skip


# -- the instances every target's seeds name ------------------------------------------


@functools.cache
def instances() -> dict[str, bytes]:
    """Two 8x8 images of one series (SOP UID -> Part-10 bytes), the same on every run."""
    common = {"study_uid": STUDY, "series_uid": SERIES, "rows": 8, "columns": 8}
    return {
        SOP_ONE: make_instance(sop_uid=SOP_ONE, **common),
        SOP_TWO: make_instance(
            sop_uid=SOP_TWO,
            instance_number=2,
            extra={"NumberOfFrames": 2, "PixelData": bytes(range(256))},
            **common,
        ),
    }


def open_archive(work_dir: Path) -> Archive:
    """A real Archive in ``work_dir`` configured as tests configure it (no fsync: speed)."""
    return Archive(config.load(write_config(work_dir / "box", SyncWrites="no")))


def bind(archive: Archive) -> None:
    """Make ``archive``'s index the process's: the regression test sets up every target in
    one process, and the index is one global (the last Archive opened wins)."""
    if database.obj is not archive.db:
        archive.db = open_database(archive.cfg.database_url, run_migrations=False)


# -- the import contract ------------------------------------------------------------------


def one_line_printable(line: str) -> bool:
    """One line a UTF-8 terminal prints as is: no line break, control character or surrogate."""
    if len(line.splitlines()) > 1 or any(unicodedata.category(c) == "Cc" for c in line):
        return False
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_report(report: ImportReport, archive: Archive) -> None:
    """Every file has a one-line verdict, and what the report calls stored is whole.

    A rejection the importer labels ``internal error`` is its safety net
    catching a bug below it, so it is a defect here. Files in the archive
    folder that the index does not know are half-stored imports.
    """
    if report.aborted:
        raise Defect(f"import stopped: {report.aborted}")
    for line in report.lines():
        if not one_line_printable(line):
            raise Defect(f"a report line is not one printable line: {line!r}")
    for f in report.rejected:
        if not f.reason.strip() or f.reason.startswith("internal error"):
            raise Defect(f"rejected {f.name!r} with reason {f.reason!r}")
    for f in report.imported + report.already_present:
        inst = find_instance(f.sop_instance_uid)
        if inst is None or not instance_path(inst).is_file():
            raise Defect(
                f"{f.name!r} reported stored as {f.sop_instance_uid!r}, not in the archive"
            )
    files = sum(len(names) for _, _, names in os.walk(archive.cfg.archive_dir))
    if files != Instance.select().count():
        raise Defect(f"{files} files in the archive folder, {Instance.select().count()} indexed")


def import_target(
    work_dir: Path, place: Callable[[Path, bytes], Path], run: Callable[..., ImportReport]
) -> OneInput:
    """The shared shape of both import targets: put the input in place, import it, judge."""
    archive = open_archive(work_dir)
    store = functools.partial(archive.store, source="import")

    def one_input(data: bytes) -> None:
        bind(archive)
        check_report(run(place(work_dir, data), store), archive)

    return one_input


# -- medium: the DICOMDIR of a CD or USB stick ----------------------------------------------


@functools.cache
def file_set() -> dict[str, bytes]:
    """A File-set as pydicom writes one (relative path -> bytes), DICOMDIR included."""
    fs = FileSet()
    fs.ID = "FUZZ"
    fs.UID = ROOT + "77.9"
    for data in instances().values():
        fs.add(pydicom.dcmread(io.BytesIO(data)))
    with tempfile.TemporaryDirectory() as tmp:
        fs.write(tmp)
        root = Path(tmp)
        return {
            p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
        }


def dicomdir_with(file_ids: list[list[str]]) -> bytes:
    """The File-set's DICOMDIR with its image records pointing at ``file_ids`` instead."""
    ds = pydicom.dcmread(io.BytesIO(file_set()["DICOMDIR"]))
    images = [r for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hostile IDs are not valid CS values, on purpose
        for rec, fid in zip(images, file_ids, strict=True):
            rec.ReferencedFileID = fid
        out = io.BytesIO()
        ds.save_as(out)
    return out.getvalue()


def medium_seeds() -> dict[str, bytes]:
    files = file_set()
    real = [k.split("/") for k in sorted(files) if k != "DICOMDIR"]
    missing = [*real[0][:-1], "IM999999"]
    return {
        "dicomdir": files["DICOMDIR"],
        "dicomdir-lowercase-and-missing": dicomdir_with([[c.lower() for c in real[0]], missing]),
        "dicomdir-outside": dicomdir_with([["..", "..", "etc", "passwd"], ["", "tmp", "x"]]),
        "pydicom-dicomdirtests": Path(
            pydicom.data.get_testdata_file("DICOMDIR", download=False)
        ).read_bytes(),
    }


def medium_setup(work_dir: Path) -> OneInput:
    medium = work_dir / "medium"
    for rel, data in file_set().items():
        if rel != "DICOMDIR":
            (medium / rel).parent.mkdir(parents=True, exist_ok=True)
            (medium / rel).write_bytes(data)

    def place(_work: Path, data: bytes) -> Path:
        (medium / "DICOMDIR").write_bytes(data)
        return medium

    return import_target(work_dir, place, run_import)


# -- zip: an archive of instances uploaded or imported ------------------------------------


def zip_of(entries: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A ZIP with fixed dates, so the committed seeds are reproducible."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name, (2024, 1, 2, 3, 4, 6)), data, method)
    return out.getvalue()


def zip_seeds() -> dict[str, bytes]:
    one, two = instances().values()
    return {
        "two-instances.zip": zip_of({"study/IM1.dcm": one, "study/IM2.dcm": two}),
        "stored-with-dicomdir.zip": zip_of(
            {"DICOMDIR": file_set()["DICOMDIR"], "IM1": one, "README.TXT": b"viewer\n"},
            zipfile.ZIP_STORED,
        ),
        "outside.zip": zip_of({"../IM1": one, "/abs/IM2": two, "in.zip": zip_of({"x": one})}),
        "bare-instance.dcm": two,
    }


def zip_setup(work_dir: Path) -> OneInput:
    def place(work: Path, data: bytes) -> Path:
        path = work / "upload" / "0000.upload"  # the web upload's own file name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        return path

    return import_target(
        work_dir, place, lambda path, store: run_import_files([path], store, source="upload")
    )


# -- wado: WADO-URI query strings -----------------------------------------------------------


def wado_query(sop: str, **extra: str) -> str:
    q = {"requestType": "WADO", "studyUID": STUDY, "seriesUID": SERIES, "objectUID": sop, **extra}
    return "&".join(f"{k}={v}" for k, v in q.items())


def wado_seeds() -> dict[str, bytes]:
    queries = {
        "jpeg": wado_query(SOP_ONE),
        "png-window-rows": wado_query(
            SOP_ONE, contentType="image/png", windowCenter="1024", windowWidth="2048", rows="16"
        ),
        "dicom": wado_query(SOP_TWO, contentType="application/dicom", aetitle="PACSBOX"),
        "frame-2-columns": wado_query(
            SOP_TWO, frameNumber="2", columns="32", charset="ISO_IR%20100"
        ),
        "wrong-series": wado_query(SOP_TWO, seriesUID=STUDY, contentType="image/jpeg,image/png"),
    }
    return {name: q.encode() for name, q in queries.items()}


def wado_setup(work_dir: Path) -> OneInput:
    archive = open_archive(work_dir)
    for data in instances().values():
        archive.store(data, source="test")
    now = time.time()
    clock = lambda: now  # noqa: E731 - a frozen clock: the session never idles out
    app = create_app(archive.cfg, archive, clock=clock)
    app.config["catchall"] = False  # an exception escapes to the target instead of a 500 page
    users.set_password("root", PASSWORD, clock=clock)
    web = webtest.TestApp(app)
    web.post("/login.json", {"name": "root", "password": PASSWORD})

    def one_input(data: bytes) -> None:
        bind(archive)
        # wsgiref hands the app the request line's query as latin-1 text, undecoded;
        # web.get would strip a fragment and control characters from it first.
        req = webtest.TestRequest.blank("/wado", {"QUERY_STRING": data.decode("latin-1")})
        r = web.do_request(req, expect_errors=True)
        if r.status_int not in WADO_STATUSES:
            raise Defect(f"status {r.status_int}: {r.body[:300]!r}")
        if r.status_int == 200:
            at, magic = MAGIC.get(r.content_type, (0, b"?"))
            if r.body[at : at + len(magic)] != magic:
                raise Defect(f"200 with {r.content_type!r} but not such a body")

    return one_input


# bounded_runs: about 15 s each in make test (medium ~100 exec/s, zip and wado ~450).
TARGETS = [
    Target("medium", medium_setup, medium_seeds, bounded_runs=1000),
    Target("zip", zip_setup, zip_seeds, bounded_runs=6000),
    Target("wado", wado_setup, wado_seeds, bounded_runs=4000),
]
