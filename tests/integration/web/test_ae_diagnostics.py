"""The AE page's association log and the fixes of its rejections, in-process: who
sees the fixes, what the forms refuse, and what their JSON twins answer."""

from __future__ import annotations

import datetime as dt

from pacsbox.db import aes as db_aes
from pacsbox.db import assoclog
from pacsbox.db.models import utcnow
from tests.integration.web.conftest import login


def _rejected(calling: str, address: str, reason: str, at: dt.datetime | None = None):
    return assoclog.Entry(
        "in", calling, calling, "PACSBOX", address, result="rejected", reason=reason,
        at=at or utcnow(),
    )  # fmt: skip


def _seed() -> None:
    db_aes.ae_upsert("PINNED", ipaddr="10.0.0.9", hostname="10.0.0.9", port=104)
    db_aes.ae_upsert("BLOCKED", allowaccess=False)
    assoclog.write([
        _rejected("CT9", "10.1.2.3", "unknown-calling-ae"),
        _rejected("CT9", "10.1.2.3", "unknown-calling-ae"),
        _rejected("PINNED", "10.0.0.7", "address-mismatch"),
        _rejected("BLOCKED", "10.0.0.8", "disabled-ae"),
        _rejected("OLD", "10.0.0.1", "unknown-calling-ae", utcnow() - dt.timedelta(days=8)),
        assoclog.Entry("out", "PINNED", "PACSBOX", "PINNED", "10.0.0.9:104", "echo"),
    ])  # fmt: skip


def test_the_page_lists_the_last_days_rejections_with_their_fix(app):
    _seed()
    root = login(app, "root")
    data = root.get("/aes.json").json
    fixes = {r["calling_ae"]: (r["count"], r["words"], r["fix"]["kind"]) for r in data["rejected"]}
    assert fixes == {  # OLD is older than AssociationLogDays (7)
        "CT9": (2, "unknown calling AE", "add"),
        "PINNED": (1, "address mismatch", "allow"),
        "BLOCKED": (1, "disabled AE", "enable"),
    }
    (out,) = data["associations"]["PINNED"]["out"]
    assert (out["service"], out["result"], out["address"]) == ("echo", "accepted", "10.0.0.9:104")
    html = root.get("/aes").text
    assert "Add this AE" in html and "Allow this address" in html and ">Enable<" in html
    assert 'href="/aes?add=CT9&amp;ipaddr=10.1.2.3#ae-form"' in html

    # Someone without System Administration sees the fixes in words, not the buttons.
    viewer = login(app, "viewer", ["monitor"])
    html = viewer.get("/aes").text
    assert (
        "Rejected associations" in html and "add it with pacsbox ae add CT9 --ip 10.1.2.3" in html
    )
    assert "Add this AE" not in html and "Allow this address" not in html
    assert (
        viewer.post("/aes/PINNED/allow", {"address": "10.0.0.7"}, expect_errors=True).status_int
        == 403
    )


def test_add_this_ae_fills_the_form_and_saving_it_fixes_the_rejection(app):
    _seed()
    root = login(app, "root")
    page = root.get("/aes?add=CT9&ipaddr=10.1.2.3")
    form = next(f for f in page.forms.values() if f.action == "/aes")
    assert (form["title"].value, form["ipaddr"].value) == ("CT9", "10.1.2.3")
    assert db_aes.ae_get("CT9") is None  # only filled in, not saved
    assert form.submit().status_int == 303
    assert db_aes.ae_get("CT9").ipaddr == "10.1.2.3"
    (ct9,) = [r for r in root.get("/aes.json").json["rejected"] if r["calling_ae"] == "CT9"]
    assert ct9["fix"]["kind"] == ""


def test_allow_this_address_and_enable_change_the_entry_and_refuse_bad_input(app):
    _seed()
    root = login(app, "root")
    r = root.post("/aes/PINNED/allow.json", {"address": "10.0.0.7"})
    assert r.json["ok"] and r.json["message"] == "AE PINNED now accepted from 10.0.0.7"
    pinned = db_aes.ae_get("PINNED")
    # The host name that was the old address goes with it; the port stays.
    assert (pinned.ipaddr, pinned.hostname, pinned.port) == ("10.0.0.7", "10.0.0.7", 104)
    r = root.post("/aes/PINNED/allow.json", {"address": "ten.0.0.7"}, expect_errors=True)
    assert r.status_int == 400 and "IP address" in r.json["error"]
    r = root.post("/aes/PINNED/allow.json", {"address": ""}, expect_errors=True)
    assert r.status_int == 400 and r.json["error"].startswith("address:")
    r = root.post("/aes/NOSUCH/allow.json", {"address": "10.0.0.7"}, expect_errors=True)
    assert r.status_int == 404

    r = root.post("/aes/BLOCKED/enable")
    assert r.status_int == 303 and "AE BLOCKED enabled" in r.follow().text
    assert db_aes.ae_get("BLOCKED").allowaccess
    assert root.post("/aes/NOSUCH/enable", expect_errors=True).status_int == 404
    journal = root.get("/journal.json").json
    actions = {e["action"] for e in journal["entries"]}
    assert {"ae-allow", "ae-enable"} <= actions
