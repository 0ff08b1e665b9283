"""The routing page: add a route with the form, see it listed, a bad form comes back
with the reason, Remove; and only System Administration may see or change it."""

from __future__ import annotations

from pacsbox.db import aes, routes
from pacsbox.db.auth_models import Journal
from tests.integration.web.conftest import login


def test_add_list_and_remove_a_route_with_the_form(app):
    aes.ae_upsert("WS", hostname="127.0.0.1", port=11112)
    aes.ae_upsert("TELE", hostname="127.0.0.1", port=11113)
    root = login(app, "root")
    page = root.get("/routes")
    assert "No routes: nothing leaves the box by itself." in page.text
    form = page.forms[1]  # [0] is the log-out button
    assert [o[0] for o in form["to"].options] == ["TELE", "WS"]
    form["name"] = "NIGHT"
    form["to"] = ["WS", "TELE"]
    form["from_ae"] = "CT1"
    form["match"] = "Modality=CT\nInstitutionName=north*"
    form["when"] = "window"
    form["window"] = "22:00-06:00"
    form["retries"] = "5"
    form["commit"] = True
    answer = form.submit().follow()
    assert "route NIGHT saved" in answer.text
    assert "from CT1 and InstitutionName=north* and Modality=CT, 22:00-06:00, 5 retries, commit" \
        in answer.text  # fmt: skip
    saved = routes.get("NIGHT")
    assert sorted(saved.destinations) == ["TELE", "WS"] and saved.commit and not saved.purge_after
    (entry,) = Journal.select().where(Journal.action == "route")
    assert entry.user == "root" and entry.target == "NIGHT"

    form = root.get("/routes").forms[2]
    form["name"] = "BAD"
    form["to"] = ["WS"]
    form["when"] = "at"
    form["at"] = "7 o'clock"
    bad = form.submit(expect_errors=True)
    assert bad.status_int == 400
    assert '--at "7 o\'clock": expected HH:MM' in bad.text or "expected HH:MM" in bad.text
    assert 'value="BAD"' in bad.text  # the form comes back filled in
    assert routes.get("BAD") is None

    r = root.post("/routes/NIGHT/delete.json")
    assert r.json["message"] == "route NIGHT removed"
    assert routes.all_routes() == []
    assert root.post("/routes/NIGHT/delete.json", expect_errors=True).status_int == 404


def test_only_administrators_see_or_change_routes(app):
    aes.ae_upsert("WS", hostname="127.0.0.1", port=11112)
    clerk = login(app, "clerk", ["view", "forward"])
    assert clerk.get("/routes", expect_errors=True).status_int == 403
    r = clerk.post("/routes.json", {"name": "X", "to": "WS"}, expect_errors=True)
    assert r.status_int == 403 and routes.all_routes() == []
    assert 'href="/routes"' not in clerk.get("/studies").text
    admin = login(app, "admin", ["admin"])
    assert 'href="/routes"' in admin.get("/studies").text
    assert admin.post("/routes.json", {"name": "X", "to": "WS"}).json["route"] == "X"
