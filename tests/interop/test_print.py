"""Print SCU (issue 18 item 7, SCU-7) against DCMTK dcmprscp, the IHE Full print SCP of
the stock /etc/dcmtk/dcmpstat.cfg (a copy with our port and folders): what it stores
of each film (Stored Print objects, one per film; Hardcopy Grayscale images, one per
image box) is what we sent. Prints are queue jobs of the running daemon, from the CLI
and from the web page; a printer that is wrong or not there fails or retries its job
with a one-line reason."""

from __future__ import annotations

import json
import shutil
import urllib.parse

import pytest

from pacsbox.archive import Archive
from pacsbox.config import load
from tests.helpers import Server, cli, free_port, poll, write_config
from tests.integration.web.conftest import PASSWORD, make_dicom
from tests.interop.test_web_jobs import Page
from tests.peers import PrintSCP
from tests.synth import make_instance

pytestmark = pytest.mark.skipif(not shutil.which("dcmprscp"), reason="needs DCMTK dcmprscp")

STORED_PRINT = "1.2.840.10008.5.1.1.27"
HARDCOPY_GRAYSCALE = "1.2.840.10008.5.1.1.29"
STUDY = "1.2.826.0.1.3680043.8.498.181807.1"
SERIES = STUDY + ".1"
COLOR = STUDY + ".2"


@pytest.fixture
def box(tmp_path):
    port = free_port()
    ini = write_config(tmp_path / "box", SyncWrites="no", WebPort=port)
    archive = Archive(load(ini))
    try:
        for n in range(6):
            archive.store(make_instance(study_uid=STUDY, series_uid=SERIES, rows=96, columns=80,
                                        instance_number=n + 1, pixel_seed=n), source="test")  # fmt: skip
        archive.store(make_dicom(study_uid=STUDY, series_uid=COLOR, photometric="RGB", rows=40,
                                 columns=50), source="test")  # fmt: skip
    finally:
        archive.close()
    cli(ini, "user", "passwd", "root", input=PASSWORD + "\n")
    printer = PrintSCP(tmp_path / "printer", ini=ini)
    server = Server(ini).start()
    yield ini, printer, f"http://127.0.0.1:{port}"
    server.stop()
    printer.stop()


def _job(ini, job_id: int) -> dict:
    (job,) = [j for j in json.loads(cli(ini, "queue", "--json").stdout) if j["id"] == job_id]
    return job


def test_a_series_printed_from_the_cli_arrives_as_films_of_its_layout(box):
    ini, printer, _ = box
    r = cli(ini, "print", "IHEFULL", "--series", SERIES, "--layout", "2x2",
            "--film-size", "14INX17IN", "--copies", "2", "--wait")  # fmt: skip
    job_id = int(r.stdout.split()[1].rstrip(":"))
    job = _job(ini, job_id)
    assert (job["kind"], job["state"]) == ("print", "done")
    assert "6 images on 2 grayscale film(s)" in job["last_error"]
    films = printer.objects(STORED_PRINT)
    assert len(films) == 2  # 4 + 2 image boxes
    for sp in films:
        (box,) = sp.FilmBoxContentSequence
        assert box.ImageDisplayFormat == "STANDARD\\2,2"
        assert box.FilmSizeID == "14INX17IN" and box.FilmOrientation == "PORTRAIT"
    assert sorted(len(sp.ImageBoxContentSequence) for sp in films) == [2, 4]
    images = printer.objects(HARDCOPY_GRAYSCALE)
    assert len(images) == 6
    for hg in images:
        assert (hg.Rows, hg.Columns, hg.BitsStored) == (96, 80, 8)
        assert len(hg.PixelData) == 96 * 80 and any(hg.PixelData)


def test_ticked_images_printed_from_the_web_page_show_on_the_job_page(box):
    ini, printer, url = box
    page = Page(url)
    series = json.loads(page.get(f"/series/{SERIES}.json"))
    ticked = [i["sop_uid"] for i in series["instances"][:3]]
    html = page.get(f"/series/{SERIES}").decode()
    assert f'action="/series/{SERIES}/print"' in html and 'form="print-form"' in html
    fields = [("image", u) for u in ticked] + [
        ("to", "IHEFULL"), ("layout", "1x1"), ("film_size", "8INX10IN"), ("copies", "1"),
        ("csrf_token", page.csrf),
    ]  # fmt: skip
    body = urllib.parse.urlencode(fields).encode()
    with page.opener.open(f"{url}/series/{SERIES}/print.json", body, timeout=30) as r:
        job_id = json.load(r)["job"]
    job = poll(lambda: (j := page.job(job_id))["state"] in ("done", "failed") and j, 60,
               what="the print job to end")  # fmt: skip
    assert job["state"] == "done", job["last_error"]
    assert job["done"] == job["total"]
    assert "3 images on 3 grayscale film(s)" in job["last_error"]
    films = printer.objects(STORED_PRINT)
    assert len(films) == 3
    assert {sp.FilmBoxContentSequence[0].FilmSizeID for sp in films} == {"8INX10IN"}
    assert len(printer.objects(HARDCOPY_GRAYSCALE)) == 3


def test_a_wrong_or_dead_printer_fails_or_retries_with_a_reason(box):
    ini, printer, _ = box
    # Not in the AE table: refused before any job exists.
    r = cli(ini, "print", "NOSUCH", "--series", SERIES, check=False)
    assert r.returncode != 0 and "NOSUCH is not in the AE table" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    # The printer refuses the film (IHEFULL has no A4): failed at once, with its status.
    r = cli(ini, "print", "IHEFULL", "--series", SERIES, "--film-size", "A4", "--wait",
            check=False)  # fmt: skip
    assert r.returncode == 1
    job_id = int(r.stdout.split()[1].rstrip(":"))
    job = _job(ini, job_id)
    assert job["state"] == "failed" and job["attempts"] == 1
    assert "N-CREATE Film Box: status" in job["last_error"] and "\n" not in job["last_error"]
    # Nothing listens: the job is kept and retried, saying why.
    cli(ini, "ae", "add", "DEADPRN", "--host", "127.0.0.1", "--port", str(free_port()))
    r = cli(ini, "print", "DEADPRN", "--series", SERIES)
    job_id = int(r.stdout.split()[1].rstrip(":"))
    job = poll(lambda: (j := _job(ini, job_id))["state"] == "retrying" and j, 30,
               what="the dead printer's job to be retrying")  # fmt: skip
    assert "connection refused" in job["last_error"] and "\n" not in job["last_error"]
    assert printer.objects(STORED_PRINT) == []


def test_a_colour_image_prints_as_grayscale_on_a_grayscale_printer(box):
    """dcmprscp takes Basic Grayscale only: the colour context offered is refused and
    the image goes as its luminance."""
    ini, printer, _ = box
    r = cli(ini, "print", "IHEFULL", "--series", COLOR, "--wait")
    job = _job(ini, int(r.stdout.split()[1].rstrip(":")))
    assert job["state"] == "done" and "1 images on 1 grayscale film(s)" in job["last_error"]
    (hg,) = printer.objects(HARDCOPY_GRAYSCALE)
    assert (hg.Rows, hg.Columns, hg.SamplesPerPixel) == (40, 50, 1)
    assert set(hg.PixelData) == {round(0.299 * 200)}  # the conftest's pure red, 200
