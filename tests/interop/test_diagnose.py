"""Connectivity diagnostics with real peers (issue 17 item 8): DCMTK tools calling a
running pacsbox with an unknown calling AE, a wrong called AE and a pinned address,
and pynetdicom proposing an abstract syntax it does not take; each rejection is on the AE page and in
`pacsbox ae diagnose` with its reason, and the page's one-click fixes let the next
association in. Out: a dead port and a live storescp, by C-ECHO and by a forward."""

from __future__ import annotations

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    BasicFilmSession,
    Verification,
)

from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.web.app import create_app
from tests.helpers import Server, cli, dcmtk, free_port, poll, write_config
from tests.integration.web.conftest import Clock, login
from tests.peers import StoreSCP
from tests.synth import make_instance

STUDY = "1.2.826.0.1.3680043.8.498.717171.1"


def _echo(server, calling: str, called: str | None = None):
    return dcmtk(
        "echoscu", "-aet", calling, "-aec", called or server.ae_title, "127.0.0.1", str(server.port)
    )


def _storescu(server, calling: str, path):
    return dcmtk(
        "storescu",
        "-aet",
        calling,
        "-aec",
        server.ae_title,
        "127.0.0.1",
        str(server.port),
        str(path),
    )


@pytest.fixture
def web(ini, server):
    """The AE page of the running box (the web app in-process, on the same index)."""
    cfg = load(ini)
    archive = Archive(cfg)
    root = login(create_app(cfg, archive, clock=Clock()), "root")
    yield root
    archive.close()


def _rejected(web, n: int) -> dict[tuple[str, str], dict]:
    """The page's rejected associations once there are ``n``: (calling, called) -> entry."""

    def listed():
        rows = web.get("/aes.json").json["rejected"]
        return rows if len(rows) >= n else None

    rows = poll(listed, what=f"{n} rejected associations on the AE page")
    return {(r["calling_ae"], r["called_ae"]): r for r in rows}


def test_each_rejection_is_listed_with_its_reason_on_the_page_and_by_diagnose(ini, server, web):
    cli(ini, "ae", "add", "PINNED", "--ip", "127.0.0.2")
    for _ in range(8):  # the daemon and its worker process share the port: both log
        assert _echo(server, "INTRUDER").returncode != 0
    assert _echo(server, "STORESCU", "NOTPACSBOX").returncode != 0
    assert _echo(server, "PINNED").returncode != 0
    # Basic Film Session: pacsbox is no print SCP, so no context is accepted (pynetdicom
    # as the peer: DCMTK's tools propose their own lists, storage or Q/R, all taken now).
    ae = AE(ae_title="FINDSCU")
    ae.add_requested_context(BasicFilmSession)
    assoc = ae.associate("127.0.0.1", server.port, ae_title=server.ae_title)
    assert not assoc.accepted_contexts
    if assoc.is_established:
        assoc.abort()

    got = _rejected(web, 4)
    want = {
        ("INTRUDER", "PACSBOX"): ("unknown calling AE", "add", 8),
        ("STORESCU", "NOTPACSBOX"): ("wrong called AE title", "", 1),
        ("PINNED", "PACSBOX"): ("address mismatch", "allow", 1),
        ("FINDSCU", "PACSBOX"): ("no common presentation context", "", 1),
    }
    assert {k: (r["words"], r["fix"]["kind"], r["count"]) for k, r in got.items()} == want
    assert all(r["address"] == "127.0.0.1" for r in got.values())
    assert "Basic Film Session" in got[("FINDSCU", "PACSBOX")]["detail"]
    page = web.get("/aes").text
    section = page[page.index('id="rejected"') :]
    assert "Add this AE" in section and "Allow this address" in section
    assert "wrong called AE title" in section and "unknown calling AE" in section

    # The CLI says the same, with the fix in words, and tries the way in itself.
    r = cli(ini, "ae", "diagnose", "INTRUDER", check=False)
    assert r.returncode == 1, r.stderr
    assert r.stdout.splitlines()[0] == (
        "INTRUDER: not in the AE table; 8 associations rejected from 127.0.0.1: "
        "add it with pacsbox ae add INTRUDER --ip 127.0.0.1"
    )
    assert (
        r.stderr.startswith("pacsbox: INTRUDER: way in fails:") and len(r.stderr.splitlines()) == 1
    )
    r = cli(ini, "ae", "diagnose", "PINNED")  # admitted but for the address: exit 0
    assert "address mismatch" in r.stdout and "allow this address with" in r.stdout
    assert "only from 127.0.0.2, which cannot be exercised from this box" in r.stdout
    r = cli(ini, "ae", "diagnose", "STORESCU")
    assert "wrong called AE title" in r.stdout
    assert "set the called AE title on STORESCU to PACSBOX" in r.stdout
    assert "Way in: C-ECHO STORESCU -> PACSBOX" in r.stdout and "admitted" in r.stdout
    r = cli(ini, "ae", "diagnose", "FINDSCU")
    assert "no common presentation context" in r.stdout and "Basic Film Session" in r.stdout
    # The diagnosis's own associations into the box are not logged as the AE's.
    assert _rejected(web, 4)[("INTRUDER", "PACSBOX")]["count"] == 8
    r = cli(ini, "ae", "diagnose", "NOBODY", check=False)
    assert r.returncode == 3 and "not in the AE table and has no associations" in r.stderr


def test_add_this_ae_opens_the_form_filled_in_and_the_next_storescu_succeeds(
    ini, server, web, tmp_path
):
    image = tmp_path / "ct.dcm"
    image.write_bytes(make_instance(study_uid=STUDY))
    assert _storescu(server, "NEWCT", image).returncode != 0
    assert _rejected(web, 1)[("NEWCT", "PACSBOX")]["fix"]["kind"] == "add"

    page = web.t.get("/aes")
    filled = page.click(description="Add this AE")
    form = next(f for f in filled.forms.values() if f.action == "/aes")
    assert (form["title"].value, form["ipaddr"].value) == ("NEWCT", "127.0.0.1")
    assert form.submit().status_int == 303

    assert _storescu(server, "NEWCT", image).returncode == 0
    (fixed,) = web.get("/aes.json").json["rejected"]
    assert fixed["fix"] == {"kind": "", "words": "fixed already (the AE table has changed since)"}

    def accepted():
        seen = web.get("/aes.json").json["associations"]["NEWCT"]["in"]
        return seen and seen[0]["result"] == "accepted"

    poll(accepted, what="NEWCT's accepted association on the page")


def test_allow_this_address_and_enable_let_the_next_association_in(ini, server, web):
    cli(ini, "ae", "add", "PINNED", "--ip", "127.0.0.2", "--port", "104")
    cli(ini, "ae", "add", "BLOCKED", "--deny")
    assert _echo(server, "PINNED").returncode != 0
    assert _echo(server, "BLOCKED").returncode != 0
    got = _rejected(web, 2)
    assert got[("BLOCKED", "PACSBOX")]["words"] == "disabled AE"
    assert got[("BLOCKED", "PACSBOX")]["fix"]["kind"] == "enable"

    page = web.t.get("/aes")
    allow = next(f for f in page.forms.values() if f.action == "/aes/PINNED/allow")
    assert allow["address"].value == "127.0.0.1"
    assert allow.submit().status_int == 303
    enable = next(f for f in page.forms.values() if f.action == "/aes/BLOCKED/enable")
    assert enable.submit().status_int == 303
    # Without the page's CSRF token the same post is refused.
    assert web.t.post("/aes/BLOCKED/enable", expect_errors=True).status_int == 403

    assert _echo(server, "PINNED").returncode == 0
    assert _echo(server, "BLOCKED").returncode == 0
    listing = cli(ini, "ae", "list").stdout
    assert "127.0.0.1" in next(ln for ln in listing.splitlines() if ln.startswith("PINNED"))
    assert "104" in next(ln for ln in listing.splitlines() if ln.startswith("PINNED"))  # kept
    assert "allow" in next(ln for ln in listing.splitlines() if ln.startswith("BLOCKED"))


def test_outgoing_a_live_storescp_and_a_dead_port_show_in_out(ini, server, web, tmp_path):
    image = tmp_path / "ct.dcm"
    image.write_bytes(make_instance(study_uid=STUDY))
    assert _storescu(server, "STORESCU", image).returncode == 0
    scp = StoreSCP(tmp_path / "ws", "WORKSTATION", ini=ini)
    cli(ini, "ae", "add", "DEADWS", "--host", "127.0.0.1", "--port", str(free_port()))
    try:
        r = cli(ini, "ae", "diagnose", "WORKSTATION")
        assert (
            f"Way out: C-ECHO PACSBOX -> WORKSTATION at 127.0.0.1:{scp.port}: success" in r.stdout
        )
        assert "Way in: C-ECHO WORKSTATION -> PACSBOX" in r.stdout and "admitted" in r.stdout
        r = cli(ini, "forward", "--study", STUDY, "--to", "WORKSTATION", "--wait")
        assert r.stdout.splitlines()[-1].endswith(": done: 1 delivered"), r.stdout
    finally:
        scp.stop()
    r = cli(ini, "ae", "diagnose", "DEADWS", check=False)
    assert r.returncode == 1
    assert r.stderr.startswith("pacsbox: DEADWS: way out fails: refused: connection refused")

    def out_of(title: str, n: int):
        rows = web.get("/aes.json").json["associations"][title]["out"]
        return rows if len(rows) >= n else None

    live = poll(lambda: out_of("WORKSTATION", 2), what="WORKSTATION's associations out")
    assert {(r["service"], r["result"]) for r in live} == {
        ("echo", "accepted"),
        ("forward", "accepted"),
    }
    (dead,) = out_of("DEADWS", 1)
    assert (dead["service"], dead["result"]) == ("echo", "refused")
    assert "connection refused" in dead["detail"]
    row = web.get("/aes").text
    row = row[row.index("<tr><td>DEADWS</td>") :]
    assert '<td class="assoc-out">refused ' in row[: row.index("</tr>")]


def test_a_worker_process_logs_the_associations_it_serves(ini, server, web):
    """While the daemon holds one association, scp.balance deals the next ones to the
    worker process (WorkerProcesses = 2 by default): they are logged all the same.
    The held one proposed a context pacsbox rejects, and its entry says which."""
    assert server.cfg.WorkerProcesses == 2
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context(Verification)
    ae.add_requested_context(BasicFilmSession)
    held = ae.associate("127.0.0.1", server.port, ae_title=server.ae_title)
    assert held.is_established
    try:
        for _ in range(3):
            assert _echo(server, "INTRUDER").returncode != 0
        assert _rejected(web, 1)[("INTRUDER", "PACSBOX")]["count"] == 3
    finally:
        held.release()
    (entry,) = web.get("/aes.json").json["associations"]["STORESCU"]["in"]
    assert entry["result"] == "accepted"
    assert entry["detail"] == (
        "rejected Basic Film Session SOP Class (abstract syntax not supported)"
    )


def test_too_many_associations_is_a_rejection_with_its_reason(tmp_path):
    ini = write_config(tmp_path / "box", MaxAssociations=1, WorkerProcesses=1)
    cli(ini, "ae", "add", "STORESCU")
    server = Server(ini).start()
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context(Verification)
    held = ae.associate("127.0.0.1", server.port, ae_title=server.ae_title)
    try:
        assert held.is_established
        r = _echo(server, "STORESCU")
        assert r.returncode != 0 and "Local Limit Exceeded" in r.stderr
    finally:
        held.release()
        server.stop()
    r = cli(ini, "ae", "diagnose", "STORESCU", check=False)  # the daemon is down now
    assert "too many associations" in r.stdout and "raise MaxAssociations" in r.stdout
    assert r.returncode == 1 and "pacsbox is not running" in r.stderr
