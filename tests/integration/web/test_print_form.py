"""The Print forms of the series and study pages (issue 18 item 7): the Print privilege,
a CSRF token, a checked film, ticked images of that series; each print is one queue job."""

from __future__ import annotations

import pytest

from pacsbox.db import aes, queue
from tests.integration.web.conftest import login, store


@pytest.fixture
def printer():
    aes.ae_upsert("LASER", hostname="127.0.0.1", port=10405)
    return "LASER"


def test_ticked_images_become_one_print_job(app, archive, printer):
    first = store(archive)
    second = store(archive, study_uid=first.study_instance_uid,
                   series_uid=first.series_instance_uid)  # fmt: skip
    b = login(app, "printer", privileges=("print", "view"))
    html = b.get(f"/series/{first.series_instance_uid}").text
    assert "Print ticked images" in html and 'value="LASER"' in html
    r = b.post(f"/series/{first.series_instance_uid}/print.json",
               {"to": printer, "image": [second.sop_instance_uid], "layout": "2x2",
                "film_size": "11INX14IN", "copies": "3"})  # fmt: skip
    job = queue.get(r.json["job"])
    assert (job.kind, job.destination, job.total) == ("print", "LASER", 1)
    assert job.payload["instances"] == [second.sop_instance_uid]
    assert job.payload["film"] == {"layout": "STANDARD\\2,2", "film_size": "11INX14IN",
                                   "orientation": "PORTRAIT", "copies": 3}  # fmt: skip
    r = b.post(f"/studies/{first.study_instance_uid}/print.json", {"to": printer})
    assert queue.get(r.json["job"]).total == 2
    assert "Print study" in b.get(f"/studies/{first.study_instance_uid}").text


@pytest.mark.parametrize(
    "fields, status, words",
    [({"layout": "99x1"}, 400, "layout"), ({"copies": "many"}, 400, "copies"),
     ({"film_size": "POSTER"}, 400, "film size"), ({"to": "NOSUCH"}, 404, "AE table"),
     ({"image": "1.2.3.4"}, 400, "not in this series")],
)  # fmt: skip
def test_a_bad_print_is_refused_and_queues_nothing(app, archive, printer, fields, status, words):
    res = store(archive)
    b = login(app, "printer", privileges=("print", "view"))
    r = b.post(f"/series/{res.series_instance_uid}/print.json", {"to": printer, **fields},
               expect_errors=True)  # fmt: skip
    assert r.status_int == status and words in r.json["error"]
    assert queue.jobs(kind="print") == []


def test_without_print_or_without_csrf_nothing_is_queued(app, archive, printer):
    res = store(archive)
    b = login(app, "viewer", privileges=("view", "forward", "export"))
    r = b.post(f"/series/{res.series_instance_uid}/print.json", {"to": printer},
               expect_errors=True)  # fmt: skip
    assert r.status_int == 403
    assert "Print ticked" not in b.get(f"/series/{res.series_instance_uid}").text
    p = login(app, "printer", privileges=("print", "view"))
    r = p.t.post(f"/series/{res.series_instance_uid}/print.json", {"to": printer},
                 expect_errors=True)  # fmt: skip
    assert r.status_int == 403 and queue.jobs(kind="print") == []
