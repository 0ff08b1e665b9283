"""The 14 privileges against every route and action, and the private-study rules of the seed."""

from __future__ import annotations

import re

import pytest

from pacsbox.db.aes import ae_upsert
from pacsbox.db.models import Patient, Study
from pacsbox.web import privileges as pv
from pacsbox.web import users
from pacsbox.web.core import PUBLIC
from tests.integration.web.conftest import PASSWORD, Browser, login, store


def test_the_fourteen_privileges_of_the_seed():
    assert [label for _, label, _ in pv.PRIVILEGES] == [
        "View", "Modify", "Forward", "Query", "Move", "Download", "Export", "Import", "Print",
        "Upload", "Monitor", "Mark Study", "Change Storage", "System Administration",
    ]  # fmt: skip
    assert pv.parse(["Mark Study", "admin", "VIEW"]) == ["view", "mark", "admin"]
    with pytest.raises(ValueError):
        pv.parse(["superuser"])


def _fill(path: str, res, patient_pk: int) -> str:
    """A concrete URL for a route pattern, on objects every user may see."""
    kind = path.split("/")[1]
    uid = {
        "studies": res.study_instance_uid,
        "series": res.series_instance_uid,
        "instances": res.sop_instance_uid,
    }.get(kind, "")
    path = re.sub(r"<uid:[^>]+>", uid, path)
    # DICOMweb names each level's UID (and frame numbers) in its path.
    path = re.sub(r"<study:[^>]+>", res.study_instance_uid, path)
    path = re.sub(r"<series:[^>]+>", res.series_instance_uid, path)
    path = re.sub(r"<instance:[^>]+>", res.sop_instance_uid, path)
    path = re.sub(r"<frames:[^>]+>", "1", path)
    path = path.replace("<pk:int>", str(patient_pk))
    path = path.replace("<title:path>", "NOWHERE")
    return path.replace("<name>", "nobody")


def expected(spec, who: str) -> bool:
    if who == "root" or spec.privilege is None:
        return True
    if isinstance(spec.privilege, pv.Need):  # several keys: no single-privilege user has them
        need = spec.privilege
        return set(need.every) <= {who} and (not need.one_of or who in need.one_of)
    return spec.privilege == who


def test_privilege_grid(app, archive):
    """Every (privilege, route) pair: allowed exactly when the route names that privilege."""
    res = store(archive)
    Study.update(private=False).execute()
    Patient.update(private=False).execute()
    patient_pk = Patient.select().first().id
    ae_upsert("NOWHERE")  # no host or port: Ping answers at once
    ctx = app.config["pacsbox.ctx"]
    specs = [s for s in ctx.routes if s.privilege != PUBLIC and s.path != "/logout"]
    gated = {k for s in specs if s.privilege
             for k in (s.privilege.keys() if isinstance(s.privilege, pv.Need) else {s.privilege})}  # fmt: skip
    # Every privilege a page needs exists, and the page-gating privileges are covered.
    assert gated <= set(pv.KEYS) | {"root"}
    assert {"modify", "mark", "download", "import", "monitor", "admin", "root"} <= gated
    assert {"query", "move"} <= gated  # the Remote page's search and its Retrieve button
    mismatches = []
    for who in (*pv.KEYS, "root"):
        b = login(app, who) if who == "root" else login(app, "u_" + who, [who])
        for spec in specs:
            url = _fill(spec.path, res, patient_pk)
            if spec.method == "GET":
                r = b.get(url, expect_errors=True)
            else:
                # No confirmation and no names: an allowed action answers 400, never 403,
                # and nothing is destroyed.
                r = b.post(url, {"private": "no", "read": "yes"}, expect_errors=True)
            allowed = r.status_int != 403
            if allowed != expected(spec, who):
                mismatches.append((who, spec.method, spec.path, r.status_int))
        # The pages a user is offered match what they may open.
        html = b.get("/studies").text
        assert ('href="/users"' in html) == (who == "root")
        assert ('href="/journal"' in html) == (who in ("admin", "root"))
        assert ('href="/status"' in html) == (who in ("monitor", "root"))
    assert mismatches == []


def _study(archive, **kw):
    res = store(archive, **kw)
    return Study.get(Study.study_instance_uid == res.study_instance_uid)


def visible(b: Browser) -> set[str]:
    return {s["study_uid"] for s in b.get("/studies.json").json["studies"]}


def test_private_study_rules(app, archive):
    a = _study(archive, patient_id="A", referring="WELBY^MARCUS^^DR", description="by name")
    r = _study(archive, patient_id="B", reading="HOUSE^GREGORY\\WELBY^MARCUS")
    g = _study(archive, patient_id="C", institution="General Hospital ")
    o = _study(archive, patient_id="D", referring="OTHER^DOC", institution="Elsewhere")
    pub = _study(archive, patient_id="E")
    Study.update(private=True).where(Study.id != pub.id).execute()
    Patient.update(private=True).execute()
    pv.set_patient_private(pub.patient_id, False)

    users.add_group("gh", "GENERAL HOSPITAL")
    viewer = login(app, "viewer", ["view"])
    welby = login(app, "welby", [], first_name="Marcus", last_name="Welby")
    nurse = login(app, "nurse", [], group="gh")
    nobody = login(app, "nobody", [])
    uids = {k: s.study_instance_uid for k, s in dict(a=a, r=r, g=g, o=o, pub=pub).items()}

    assert visible(viewer) == set(uids.values())
    assert visible(welby) == {uids["a"], uids["r"], uids["pub"]}
    assert visible(nurse) == {uids["g"], uids["pub"]}
    assert visible(nobody) == {uids["pub"]}
    # The same rule on every way in: study page, image, WADO, patient list.
    assert nobody.get(f"/studies/{uids['a']}", expect_errors=True).status_int == 404
    assert welby.get(f"/studies/{uids['a']}").status_int == 200
    assert nurse.get(f"/studies/{uids['a']}.json", expect_errors=True).status_int == 404
    names = {p["patient_id"] for p in nobody.get("/patients.json").json["patients"]}
    assert names == {"E"}
    names = {p["patient_id"] for p in welby.get("/patients.json").json["patients"]}
    assert names == {"A", "B", "E"}
    # A first name alone is not a match.
    users.add_user("marcus", [], PASSWORD, first_name="Marcus", last_name="Kildare")
    assert visible(Browser(app, "marcus")) == {uids["pub"]}
    # Viewing a private study is journaled.
    from pacsbox.db.auth_models import Journal

    assert (
        Journal.select()
        .where((Journal.action == "view-private") & (Journal.user == "welby"))
        .exists()
    )


def test_propagation_rules(app, archive):
    s1 = _study(archive, patient_id="P")
    s2 = _study(archive, patient_id="P")
    lone = _study(archive, patient_id="Q")
    Study.update(private=True).execute()
    Patient.update(private=True).execute()
    pid = s1.patient_id

    def priv(model, pk):
        return model.get_by_id(pk).private

    # Patient -> all its studies, both directions.
    pv.set_patient_private(pid, False)
    assert not priv(Study, s1.id) and not priv(Study, s2.id) and not priv(Patient, pid)
    pv.set_patient_private(pid, True)
    assert priv(Study, s1.id) and priv(Study, s2.id)
    # A study of a patient with other studies: the patient keeps its setting.
    pv.set_study_private(s1.id, False)
    assert not priv(Study, s1.id) and priv(Study, s2.id) and priv(Patient, pid)
    pv.set_study_private(s1.id, True)
    assert priv(Patient, pid)
    # The only study of a patient: the patient follows, both directions.
    pv.set_study_private(lone.id, False)
    assert not priv(Patient, lone.patient_id)
    pv.set_study_private(lone.id, True)
    assert priv(Patient, lone.patient_id)
    # Through the page (Modify) with a journal entry.
    b = login(app, "power", ["modify", "view"])
    r = b.post(f"/studies/{lone.study_instance_uid}/private.json", {"private": "no"}).json
    assert r["private"] is False and r["patient"] is True
    r = b.post(f"/patients/{pid}/private.json", {"private": "no"}).json
    assert "2 studies" in r["message"]
