"""Every page and form of the web app, sent garbage with a valid session and CSRF
token: each answers with a status a user can act on (2xx, 3xx, 4xx), never a 500."""

from __future__ import annotations

import re

import pytest

from pacsbox.db.aes import ae_upsert
from pacsbox.db.models import Patient
from pacsbox.web import users
from pacsbox.web.core import PUBLIC
from pacsbox.web.wado import WADO_PARAMS
from tests.integration.web.conftest import login, store

GARBAGE = [
    "",
    " ",
    "0",
    "-1",
    "70000",
    "99999999999999999999999",
    "abc",
    "x" * 5000,
    "\\",
    "a\x00b",
    '<script>alert("x")</script>',
    "１２",
    "1e400",
    "nan",
    "2024-13-45",
    "*",
    "../../../etc/passwd",
    "%",
    "'; DROP TABLE study; --",
    "é" * 40,
]
# Path parts: the real object, and values no object has.
BAD_UIDS = ["9" * 64, "1..2", "0"]
BAD_PKS = ["99999999999999999999999", "-1", "0"]
BAD_NAMES = ["nobody", "x" * 300, "a b", "..", "%00"]
# Query parameters the code reads that no form on the pages carries.
EXTRA_PARAMS = {"after", "before", "offset", "size", "edit", "msg", "next", "frame", "wc", "ww"}


def _field_names(b, urls) -> set[str]:
    names = set(EXTRA_PARAMS) | set(WADO_PARAMS)
    for url in urls:
        r = b.get(url, expect_errors=True)
        if r.content_type == "text/html":
            names.update(re.findall(r'name="([A-Za-z_]+)"', r.text))
    names.discard("csrf_token")
    names.discard("viewport")
    return names


def _urls(path: str, real: dict[str, str]) -> list[str]:
    """The route with real objects, then with each kind of bad path part."""
    out = [path]
    for pattern, good, bad in (
        (r"<uid:[^>]+>", real["uid"], BAD_UIDS),
        (r"<pk:int>", real["pk"], BAD_PKS),
        (r"<name>", real["name"], BAD_NAMES),
        (r"<title:path>", real["title"], BAD_NAMES),
    ):
        if re.search(pattern, path):
            out = [re.sub(pattern, good, u) for u in out] + [
                re.sub(pattern, v, out[0]) for v in bad
            ]
    return [re.sub(r"<[^>]+>", "x", u) for u in out]


@pytest.fixture
def walked(app, archive):
    res = store(archive)
    Patient.update(private=False).execute()
    ae_upsert("NOWHERE")  # no host or port: Ping answers at once
    users.add_user("someone", ["view"], "a password long enough")
    users.add_group("ward", "General Hospital")
    b = login(app, "root")
    ctx = app.config["pacsbox.ctx"]
    real = {
        "study": res.study_instance_uid,
        "pk": str(Patient.select().first().id),
        "name": "someone",
        "title": "NOWHERE",
    }
    specs = list(ctx.routes)
    yield b, specs, real, res
    # What the walk queued (an edit, a burn) is only rows: no daemon runs them here.


def _real(spec_path: str, real: dict[str, str], res) -> dict[str, str]:
    kind = spec_path.split("/")[1]
    uid = {
        "studies": res.study_instance_uid,
        "series": res.series_instance_uid,
        "instances": res.sop_instance_uid,
    }.get(kind, real["study"])
    return {**real, "uid": uid}


def test_every_get_page_survives_garbage_parameters(walked):
    b, specs, real, res = walked
    gets = [s for s in specs if s.method == "GET"]
    names = _field_names(b, [u for s in gets for u in _urls(s.path, _real(s.path, real, res))[:1]])
    failures = []
    for spec in gets:
        for url in _urls(spec.path, _real(spec.path, real, res)):
            for value in GARBAGE:
                r = b.get(url, params={n: value for n in names}, expect_errors=True)
                if r.status_int >= 500:
                    failures.append((url, value[:20], r.status_int))
                if spec.json_twin and not url.endswith("/file"):
                    r = b.get(url + ".json", params={n: value for n in names}, expect_errors=True)
                    if r.status_int >= 500:
                        failures.append((url + ".json", value[:20], r.status_int))
    assert failures == [], "\n".join(map(str, sorted(set(failures))))


def test_every_form_survives_garbage_values(walked):
    b, specs, real, res = walked
    gets = [s for s in specs if s.method == "GET"]
    names = _field_names(b, [u for s in gets for u in _urls(s.path, _real(s.path, real, res))[:1]])
    names |= {"priv_" + k for k in ("view", "admin", "modify")}
    # Deleting what the other posts need, and logging in again, come last.
    posts = sorted(
        (s for s in specs if s.method == "POST"),
        key=lambda s: (s.privilege == PUBLIC, s.path.endswith("/delete")),
    )
    failures = []
    for spec in posts:
        if spec.path == "/logout":
            continue
        for url in _urls(spec.path, _real(spec.path, real, res)):
            for value in GARBAGE:
                r = b.post(url, {n: value for n in names}, expect_errors=True)
                if r.status_int >= 500:
                    failures.append((url, value[:20], r.status_int))
    assert failures == [], "\n".join(map(str, sorted(set(failures))))


def test_uploads_of_garbage_are_reported_not_500(walked):
    b, _specs, _real_, _res = walked
    for name, content in (
        ("x.dcm", b""),
        ("x.dcm", b"\x00" * 200),
        ("x.dcm", b"DICM" * 100),
        ("x.zip", b"PK\x03\x04garbage"),
        ("../../x", b"\xff" * 132 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff"),
    ):
        r = b.post("/upload", upload_files=[("files", name, content)], expect_errors=True)
        assert r.status_int < 500, (name, r.status_int)
    r = b.post("/upload", {}, expect_errors=True)
    assert r.status_int == 400
