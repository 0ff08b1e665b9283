"""DICOMweb authentication against the real threaded server on a free loopback port.

View on every route, STOW's Upload or Import, the session's CSRF token, API
tokens made on the users page and used by the real ``dicomweb-client``,
the anonymous read-only mode and CORS, each setting read from an INI file.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import bottle
import pydicom
import pytest
import requests

from pacsbox import config
from pacsbox.archive import Archive
from pacsbox.db.auth_models import Journal
from pacsbox.db.models import Patient, Study
from pacsbox.web import privileges as pv
from pacsbox.web import tokens, users
from pacsbox.web.app import create_app
from pacsbox.web.server import start_web
from tests.helpers import cli, write_config
from tests.integration.web.conftest import PASSWORD, csrf_of, make_dicom
from tests.integration.web.test_dicomweb import multipart
from tests.integration.web.test_privileges import _fill

dicomweb_client = pytest.importorskip("dicomweb_client", reason="pip install dicomweb-client")
from dicomweb_client.api import DICOMwebClient  # noqa: E402

MULTI = 'multipart/related; type="application/dicom"; boundary=XYZ'
VIEWER = "http://viewer.test:3000"


@dataclass
class Box:
    url: str
    archive: Archive
    app: bottle.Bottle  # the app the server runs: its routes are the ones served
    public: object  # the StoreResult of a public study
    private: object  # ... and of a private one

    def dw(self, path: str = "") -> str:
        return self.url + "/dicom-web" + path

    def stow(self, **kw) -> requests.Response:
        body = multipart(("application/dicom", make_dicom()))
        headers = {"Content-Type": MULTI, **kw.pop("headers", {})}
        session = kw.pop("session", requests)
        return session.post(self.dw("/studies"), data=body, headers=headers, timeout=30, **kw)


@pytest.fixture
def serve(tmp_path) -> Iterator:
    """``serve(**settings)``: a box configured by an INI file, serving on a free port."""
    opened: list = []

    def start(**settings: str) -> Box:
        ini = write_config(tmp_path / "box", SyncWrites="no", **settings)
        cfg = config.load(ini)
        archive = Archive(cfg)
        opened.append(archive)
        app = create_app(cfg, archive)
        handle = start_web(cfg, archive, port=0, app=app)
        opened.append(handle)
        public = archive.store(make_dicom(patient_id="PUB"), source="test")
        private = archive.store(make_dicom(patient_id="PRIV"), source="test")
        Study.update(private=True).execute()
        Patient.update(private=True).execute()
        Study.update(private=False).where(
            Study.study_instance_uid == public.study_instance_uid
        ).execute()
        return Box(f"http://127.0.0.1:{handle.port}", archive, app, public, private)

    yield start
    for thing in reversed(opened):
        thing.stop() if hasattr(thing, "stop") else thing.close()


def session_of(box: Box, name: str) -> tuple[requests.Session, str]:
    """A logged-in browser-like session and its CSRF token."""
    if name == "root":
        users.set_password("root", PASSWORD)
    s = requests.Session()
    r = s.post(box.url + "/login.json", data={"name": name, "password": PASSWORD}, timeout=30)
    assert r.status_code == 200, r.text
    return s, r.json()["csrf"]


def study_uids(answer: list) -> set[str]:
    return {str(pydicom.Dataset.from_json(a).StudyInstanceUID) for a in answer}


def test_without_view_every_dicomweb_route_is_403_and_with_view_200(serve):
    box = serve()
    routes = [(r.method, r.rule) for r in box.app.routes
              if r.rule.startswith("/dicom-web/") and r.method != "OPTIONS"]  # fmt: skip
    assert len(routes) >= 21  # QIDO 6, WADO-RS 10, metadata 3, STOW 2: a new one is walked too
    guarded = {(s.method, s.path) for s in box.app.config["pacsbox.ctx"].routes}
    assert set(routes) <= guarded  # each declared through the guard, none straight on bottle
    users.add_user("noview", [k for k in pv.KEYS if k != "view"], PASSWORD)
    users.add_user("viewer", ["view"], PASSWORD)
    for method, rule in routes:
        url = box.url + _fill(rule, box.public, 0)
        body = multipart(("application/dicom", make_dicom()))
        kw = {"data": body, "headers": {"Content-Type": MULTI}} if method == "POST" else {}
        r = requests.request(method, url, auth=("noview", PASSWORD), timeout=30, **kw)
        assert r.status_code == 403, (method, rule, r.status_code)
        assert r.json()["error"].startswith("this needs the View") and "\n" not in r.text
        r = requests.request(method, url, auth=("viewer", PASSWORD), timeout=30, **kw)
        if method == "GET":
            assert r.status_code == 200, (rule, r.text[:200])
        else:  # View alone does not store
            assert r.status_code == 403 and "Upload or Import" in r.json()["error"]


def test_stow_takes_upload_or_import_and_a_session_needs_the_csrf_header(serve):
    box = serve()
    for name, privileges, status in (
        ("uploader", ["view", "upload"], 200),
        ("importer", ["view", "import"], 200),
        ("neither", ["view", "download"], 403),
        ("noview", ["upload", "import"], 403),
    ):
        users.add_user(name, privileges, PASSWORD)
        r = box.stow(auth=(name, PASSWORD))
        assert r.status_code == status, (name, r.text)
        if status == 403:
            assert r.json()["error"] == "this needs the View and Upload or Import privilege"
    page, csrf = session_of(box, "uploader")  # the web page's session cookie
    r = box.stow(session=page)
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    assert box.stow(session=page, headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert box.stow(session=page, headers={"X-CSRF-Token": csrf}).status_code == 200


def test_anonymous_is_refused_by_default(serve):
    box = serve()
    r = requests.get(box.dw("/studies"), timeout=30)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert box.stow().status_code == 401


def test_anonymous_read_only_mode_sees_public_studies_only(serve):
    box = serve(DicomWebAnonymous="yes")  # read from the INI file
    client = DICOMwebClient(box.dw())  # no credentials at all
    assert study_uids(client.search_for_studies()) == {box.public.study_instance_uid}
    assert client.search_for_instances(search_filters={"PatientID": "PRIV"}) == []
    assert len(client.retrieve_study(box.public.study_instance_uid)) == 1
    assert requests.head(box.dw("/studies"), timeout=30).status_code == 200
    s = box.private
    for tail in ("", "/metadata", f"/series/{s.series_instance_uid}/instances/"
                 f"{s.sop_instance_uid}/rendered"):  # fmt: skip
        r = requests.get(box.dw(f"/studies/{s.study_instance_uid}{tail}"), timeout=30)
        assert r.status_code == 404, tail  # like an unknown study
    r = box.stow()
    assert r.status_code == 401 and r.json()["error"] == "log in first"
    # Anonymous reaches nothing but DICOMweb reads; wrong credentials are not anonymous.
    assert requests.get(box.url + "/studies.json", timeout=30).status_code == 401
    wado = (f"/wado?requestType=WADO&studyUID={box.public.study_instance_uid}&seriesUID="
            f"{box.public.series_instance_uid}&objectUID={box.public.sop_instance_uid}")  # fmt: skip
    assert requests.get(box.url + wado, timeout=30).status_code == 401
    r = requests.get(box.dw("/studies"), auth=("nobody", "wrong"), timeout=30)
    assert r.status_code == 401
    who = {
        (j.user, j.detail) for j in Journal.select().where(Journal.action.startswith("dicomweb"))
    }
    assert who == {("anonymous", "anonymous")}


def _new_token(session: requests.Session, page: str, action: str, **form: str) -> str:
    """A token made through the form of ``page`` (with the CSRF token it holds)."""
    html = session.get(page, timeout=30).text
    r = session.post(action, data={"csrf_token": csrf_of(html), **form}, timeout=30)
    assert r.status_code == 200, r.text
    return re.search(r'<code id="new-token">([^<]+)</code>', r.text).group(1)


def test_api_tokens_made_on_the_users_page_and_used_by_dicomweb_client(serve, caplog):
    box = serve()
    users.add_user("tool", ["view", "import"], PASSWORD)
    users.add_user("blind", ["import"], PASSWORD)
    root, csrf = session_of(box, "root")
    token = _new_token(root, box.url + "/users", box.url + "/users/tool/tokens",
                       label="gateway", days="0")  # fmt: skip
    assert token.startswith("pbx_") and len(token) > 40
    page = root.get(box.url + "/users", timeout=30).text
    assert token not in page and "gateway" in page  # shown once, then listed without it
    listed = root.get(box.url + "/users.json", timeout=30)
    (tool,) = [u for u in listed.json()["users"] if u["name"] == "tool"]
    (row,) = tool["tokens"]
    assert (row["label"], row["state"]) == ("gateway", "valid") and token not in listed.text

    bearer = {"Authorization": f"Bearer {token}"}
    client = DICOMwebClient(box.dw(), headers=bearer)
    found = study_uids(client.search_for_studies())
    assert found == {box.public.study_instance_uid, box.private.study_instance_uid}  # View
    (ds,) = client.retrieve_study(box.private.study_instance_uid)
    assert ds.PatientID == "PRIV"
    client.store_instances([pydicom.dcmread(io.BytesIO(make_dicom()))])  # no CSRF token
    p = box.public
    wado = (f"/wado?requestType=WADO&studyUID={p.study_instance_uid}&seriesUID="
            f"{p.series_instance_uid}&objectUID={p.sop_instance_uid}")  # fmt: skip
    assert requests.get(box.url + wado, headers=bearer, timeout=30).status_code == 200
    reads = Journal.select().where(Journal.action == "dicomweb-retrieve")
    assert [(j.user, j.target, j.detail) for j in reads] == [
        ("tool", box.private.study_instance_uid, "token gateway")
    ]
    (stored,) = Journal.select().where(Journal.action == "dicomweb-store")
    assert (stored.user, stored.detail) == ("tool", "token gateway")
    (used,) = tokens.listing("tool")
    assert used["last_used"] > 0

    # Revoked on the page: 401 with a one-line reason.
    r = root.post(box.url + "/users/tool/tokens/revoke",
                  data={"csrf_token": csrf, "token": row["id"]}, timeout=30)  # fmt: skip
    assert r.status_code == 200 and "revoked" in r.text
    r = requests.get(box.dw("/studies"), headers=bearer, timeout=30)
    assert r.status_code == 401 and r.json()["error"] == "this API token was revoked"
    with pytest.raises(requests.HTTPError):
        client.search_for_studies()
    r = requests.get(box.dw("/studies"), headers={"Authorization": "Bearer pbx_nope"}, timeout=30)
    assert r.status_code == 401 and r.json()["error"] == "unknown API token"
    old = tokens.create("tool", "old", 1, clock=lambda: time.time() - 2 * 86400)
    r = requests.get(box.dw("/studies"), headers={"Authorization": f"Bearer {old}"}, timeout=30)
    assert r.status_code == 401 and "expired" in r.json()["error"]

    # A token is its user: without View, 403.
    blind = _new_token(root, box.url + "/users", box.url + "/users/blind/tokens", label="x")
    r = requests.get(box.dw("/studies"), headers={"Authorization": f"Bearer {blind}"}, timeout=30)
    assert r.status_code == 403 and "View" in r.json()["error"]
    assert token not in caplog.text and blind not in caplog.text  # never logged


def test_a_user_makes_and_revokes_their_own_tokens_on_the_password_page(serve):
    box = serve()
    users.add_user("tool", ["view"], PASSWORD)
    me, csrf = session_of(box, "tool")
    token = _new_token(me, box.url + "/password", box.url + "/password/tokens", label="my script")
    ok = requests.get(box.dw("/studies"), headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert ok.status_code == 200
    page = me.get(box.url + "/password", timeout=30).text
    assert "my script" in page and token not in page
    (row,) = tokens.listing("tool")
    assert me.post(box.url + "/users/tool/tokens/revoke", data={"csrf_token": csrf,
                   "token": row["id"]}, timeout=30).status_code == 403  # root's page  # fmt: skip
    r = me.post(box.url + "/password/tokens/revoke",
                data={"csrf_token": csrf, "token": row["id"]}, timeout=30)  # fmt: skip
    assert r.status_code == 200
    r = requests.get(box.dw("/studies"), headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 401


def test_cors_answers_the_listed_origin_only(serve):
    box = serve(DicomWebCorsOrigins=f"{VIEWER}, https://other.test")
    users.add_user("tool", ["view", "import"], PASSWORD)
    pre = {"Access-Control-Request-Method": "GET",
           "Access-Control-Request-Headers": "authorization"}  # fmt: skip
    r = requests.options(box.dw("/studies"), headers={"Origin": VIEWER, **pre}, timeout=30)
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == VIEWER
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
    assert "X-CSRF-Token" in r.headers["Access-Control-Allow-Headers"]
    assert int(r.headers["Access-Control-Max-Age"]) > 0
    r = requests.get(box.dw("/studies"), headers={"Origin": VIEWER}, auth=("tool", PASSWORD),
                     timeout=30)  # fmt: skip
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == VIEWER
    assert r.headers["Vary"] == "Origin" and "Access-Control-Allow-Credentials" not in r.headers
    assert "Content-Location" in r.headers["Access-Control-Expose-Headers"]
    r = box.stow(auth=("tool", PASSWORD), headers={"Origin": VIEWER})
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == VIEWER
    evil = "http://evil.test"
    r = requests.options(box.dw("/studies"), headers={"Origin": evil, **pre}, timeout=30)
    assert r.status_code == 403 and "Access-Control-Allow-Origin" not in r.headers
    r = requests.get(box.dw("/studies"), headers={"Origin": evil}, auth=("tool", PASSWORD),
                     timeout=30)  # fmt: skip
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers
    r = requests.get(box.url + "/studies.json", headers={"Origin": VIEWER}, timeout=30)
    assert "Access-Control-Allow-Origin" not in r.headers  # only /dicom-web


def test_cors_is_off_by_default(serve):
    box = serve()
    users.add_user("tool", ["view"], PASSWORD)
    r = requests.options(box.dw("/studies"), timeout=30,
                         headers={"Origin": VIEWER, "Access-Control-Request-Method": "GET"})  # fmt: skip
    assert r.status_code == 403 and "Access-Control-Allow-Origin" not in r.headers
    r = requests.get(box.dw("/studies"), headers={"Origin": VIEWER}, auth=("tool", PASSWORD),
                     timeout=30)  # fmt: skip
    assert r.status_code == 200
    assert not {h for h in r.headers if h.lower().startswith("access-control")}
    assert "Vary" not in r.headers


def test_tokens_from_the_command_line(tmp_path):
    ini = write_config(tmp_path / "box", SyncWrites="no")
    cli(ini, "user", "add", "tool", "--privilege=view")
    token = cli(ini, "user", "token", "tool", "--label", "ai", "--days", "30").stdout.strip()
    assert token.startswith("pbx_")
    listed = cli(ini, "user", "tokens", "tool").stdout
    assert "ai" in listed and "valid" in listed and token not in listed
    number = listed.split()[0]
    assert "revoked" in cli(ini, "user", "revoke-token", "tool", number).stdout
    assert "revoked" in cli(ini, "user", "tokens", "tool").stdout
    bad = cli(ini, "user", "revoke-token", "tool", "999", check=False)
    assert bad.returncode != 0 and "no token 999" in bad.stderr
