"""NET-9: only AEs in the AE table with allowaccess may associate, and only to our title."""

from __future__ import annotations

from tests.helpers import cli, dcmtk, poll


def _echo(server, calling: str, called: str | None = None):
    return dcmtk(
        "echoscu", "-aet", calling, "-aec", called or server.ae_title, "127.0.0.1", str(server.port)
    )


def test_known_ae_is_accepted(server):
    assert _echo(server, "STORESCU").returncode == 0


def test_unknown_calling_ae_rejected_and_logged(server):
    r = _echo(server, "INTRUDER")
    assert r.returncode != 0 and "Calling AE Title Not Recognized" in r.stderr
    line = poll(
        lambda: next((ln for ln in server.output().splitlines() if "INTRUDER" in ln), None),
        what="rejection log line",
    )
    assert "127.0.0.1" in line and "not in the AE table" in line


def test_wrong_called_ae_rejected(server):
    r = _echo(server, "STORESCU", "NOTPACSBOX")
    assert r.returncode != 0 and "Called AE Title Not Recognized" in r.stderr


def test_disabled_ae_rejected(server, ini):
    cli(ini, "ae", "add", "BLOCKED", "--deny")
    r = _echo(server, "BLOCKED")
    assert r.returncode != 0 and "Calling AE Title Not Recognized" in r.stderr
    assert poll(lambda: "BLOCKED" in server.output() and "not allowed" in server.output())
    # Changes to the AE table apply to the running daemon at once.
    cli(ini, "ae", "add", "BLOCKED", "--allow")
    assert _echo(server, "BLOCKED").returncode == 0


def test_ae_bound_to_another_address_rejected(server, ini):
    cli(ini, "ae", "add", "PINNED", "--ip", "10.9.9.9")
    r = _echo(server, "PINNED")
    assert r.returncode != 0
    assert poll(lambda: "does not match" in server.output())


def test_ae_cli_round_trip(ini):
    cli(ini, "ae", "add", "CT1", "--host", "ct1.local", "--port", "104", "--archivedir", "/tmp/x")
    listing = cli(ini, "ae", "list").stdout
    assert "CT1" in listing and "ct1.local" in listing and "104" in listing and "/tmp/x" in listing
    cli(ini, "ae", "remove", "CT1")
    assert "CT1" not in cli(ini, "ae", "list").stdout
    r = cli(ini, "ae", "remove", "CT1", check=False)
    assert r.returncode == 3 and "not in the AE table" in r.stderr
    r = cli(ini, "ae", "add", "WAY_TOO_LONG_AE_TITLE", check=False)
    assert r.returncode == 2 and r.stderr.startswith("pacsbox: AE title") and "16" in r.stderr
