"""The status snapshot: atomic round trip, freshness, addresses and the text people read."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import stat
import subprocess
import sys
import threading

import pytest

from pacsbox import config, status


def realistic(**changes):
    snap = status.make_snapshot(
        ae_title="PACSBOX",
        port=11112,
        web_url="http://192.0.2.10:8080/",
        addresses=["192.0.2.10", "2001:db8::10"],
        state="ok",
        studies_total=1234,
        instances_total=56789,
        studies_today=3,
        associations_active=2,
        last_study={
            "received": status.now_iso(),
            "study_uid": "1.2.826.0.1.3680043.8.498.1",
            "calling_ae": "CT_SCANNER",
            "modality": "CT",
            "description": "THORAX W/O CONTRAST",
        },
        disk=[
            {
                "path": "/var/lib/pacsbox/archive",
                "percent": 45.2,
                "free_bytes": 12_300_000_000,
                "total_bytes": 30_000_000_000,
            }
        ],
        jobs=[
            {
                "kind": "import",
                "label": "USB KINGSTON",
                "done": 45,
                "total": 120,
                "state": "running",
            }
        ],
        last_error={"time": status.now_iso(), "message": "forward to ORTHANC failed: A801"},
    )
    snap.update(changes)
    return snap


# -- the file ---------------------------------------------------------------


def test_round_trip(tmp_path):
    path = tmp_path / "run" / "status.json"
    snap = realistic()
    status.write_snapshot(path, snap)
    assert status.read_snapshot(path) == snap
    # readable by another user (the front panel), no temp files left behind
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["status.json"]


def test_unknown_key_is_refused():
    with pytest.raises(KeyError, match="studies_totl"):
        status.make_snapshot(studies_totl=3)


def test_no_tls_port_until_tls_lands():
    """DICOM TLS (NET-10) is not built yet: the snapshot, the text and the
    display never show a TLS port the box does not listen on."""
    with pytest.raises(KeyError, match="tls_port"):
        status.make_snapshot(tls_port=5678)
    snap = realistic()
    assert "tls_port" not in snap
    assert "TLS" not in status.format_text(snap)
    for width, rows in ((16, 2), (20, 4), (40, 2)):
        for page in status.screens(snap, width, rows):
            assert not any("TLS" in line for line in page)


def test_readers_never_see_half_a_file(tmp_path):
    path = tmp_path / "status.json"
    status.write_snapshot(path, realistic())
    stop = threading.Event()
    big = realistic(
        jobs=[
            {"kind": "export", "label": "x" * 5000, "done": i, "total": 900, "state": "running"}
            for i in range(50)
        ]
    )

    def writer():
        n = 0
        while not stop.is_set():
            n += 1
            status.write_snapshot(path, big if n % 2 else realistic())

    t = threading.Thread(target=writer)
    t.start()
    try:
        reasons = {status.check_snapshot(path)[1] for _ in range(500)}
    finally:
        stop.set()
        t.join()
    assert reasons == {""}
    assert len(list(tmp_path.iterdir())) == 1


def test_failed_write_keeps_the_old_snapshot(tmp_path, monkeypatch):
    path = tmp_path / "status.json"
    status.write_snapshot(path, realistic(studies_total=1))

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(status.os, "replace", broken_replace)
    with pytest.raises(OSError):
        status.write_snapshot(path, realistic(studies_total=2))
    monkeypatch.undo()
    assert status.read_snapshot(path)["studies_total"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_missing_garbage_stale_stopped_or_dead_means_not_running(tmp_path):
    path = tmp_path / "status.json"
    assert status.check_snapshot(path) == (None, f"no status file {path}")

    path.write_text('{"version": 1, "upd')
    snap, why = status.check_snapshot(path)
    assert snap is None and "unreadable" in why

    status.write_snapshot(path, realistic())
    later = dt.datetime.now().astimezone() + dt.timedelta(seconds=60)
    snap, why = status.check_snapshot(path, max_age=15, now=later)
    assert snap is None and why.startswith("no update since")
    assert status.read_snapshot(path, max_age=120, now=later) is not None

    status.write_snapshot(path, realistic(state="stopped"))
    assert status.read_snapshot(path) is None

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    status.write_snapshot(path, realistic(pid=child.pid))
    snap, why = status.check_snapshot(path)
    assert snap is None and why == f"process {child.pid} has exited"


# -- addresses ----------------------------------------------------------------


def _is_loopback(a):
    return ipaddress.ip_address(a).is_loopback


def test_local_addresses_are_real_and_not_loopback():
    found = status.local_addresses()
    assert found
    for a in found:
        ipaddress.ip_address(a)  # raises on garbage
    assert found == ["127.0.0.1"] or not any(_is_loopback(a) for a in found)
    # IPv4 first
    versions = [ipaddress.ip_address(a).version for a in found]
    assert versions == sorted(versions)


def test_addresses_without_the_ip_tool_agree(monkeypatch):
    with_ip = status.local_addresses()
    monkeypatch.setenv("PATH", "/nonexistent")
    without_ip = status.local_addresses()
    v4 = [a for a in with_ip if ":" not in a]
    assert [a for a in without_ip if ":" not in a] == v4


# -- text ---------------------------------------------------------------------


def test_long_text_has_what_an_operator_checks():
    text = status.format_text(realistic())
    for needle in (
        "PACSBOX",
        "192.0.2.10",
        "port 11112",
        "http://192.0.2.10:8080/",
        "45.2% used",
        "12.3G free",
        "3 today",
        "1234 total",
        "CT from CT_SCANNER",
        "THORAX W/O CONTRAST",
        '"USB KINGSTON" 45/120 37% running',
        "forward to ORTHANC failed: A801",
    ):
        assert needle in text, needle
    assert "!!!" not in text


def test_long_text_is_loud_about_trouble():
    text = status.format_text(realistic(storage_full=True, state="degraded"))
    assert text.splitlines()[0].startswith("!!! STORAGE FULL")
    text = status.format_text(realistic(data_disk_problem="data disk missing: /var/lib/pacsbox"))
    assert text.splitlines()[0] == "!!! DATA DISK PROBLEM: data disk missing: /var/lib/pacsbox"
    text = status.format_text(status.not_running("no status file x", ae_title="PACSBOX", port=104))
    assert text.splitlines()[0] == "!!! PACSBOX IS NOT RUNNING: no status file x"
    assert "port 104" in text


@pytest.mark.parametrize("width,rows", [(16, 2), (20, 4), (21, 5), (40, 2)])
def test_screens_fit_the_display(width, rows):
    for snap in (realistic(), realistic(storage_full=True), status.not_running("gone")):
        pages = status.screens(snap, width, rows)
        assert pages
        for page in pages:
            assert 1 <= len(page) <= rows
            assert all(len(line) <= width for line in page), page


def test_short_lines_carry_the_essentials():
    lines = status.format_lines(realistic(), width=20, rows=4)
    joined = "\n".join(lines)
    for needle in (
        "PACSBOX OK",
        "192.0.2.10",
        "DICOM 11112",
        "Disk 45% 12.3G free",
        "Today 3 All 1234",
        "Last ",
        "CT_SCANNER THORAX",
        "45/120 37%",
        "forward to ORTHANC",
    ):
        assert needle in joined, needle
    assert all(len(line) <= 20 for line in lines)


def test_first_screen_of_a_20x4_is_identity():
    assert status.screens(realistic(), 20, 4)[0] == [
        "PACSBOX OK",
        "192.0.2.10",
        "DICOM 11112",
        "Web 192.0.2.10:8080",
    ]


def test_alert_is_pinned_or_repeated():
    pages = status.screens(realistic(storage_full=True, state="degraded"), 20, 4)
    assert len(pages) > 2 and all(p[0] == "STORAGE FULL" for p in pages)
    pages = status.screens(realistic(storage_full=True), 16, 2)
    assert pages[::2] == [["STORAGE FULL", "no new images"]] * (len(pages) // 2)
    pages = status.screens(status.not_running("no status file", ae_title="PACSBOX"), 20, 4)
    assert all(p[0] == "PACSBOX NOT RUNNING" for p in pages)


def test_non_ascii_is_made_displayable():
    snap = realistic()
    snap["last_study"]["description"] = "Schädel – nativ"
    lines = status.format_lines(snap, width=40)
    assert any("Schadel ? nativ" in line for line in lines)
    assert all(line.isascii() for line in lines)


def test_exit_codes():
    assert status.exit_code(realistic()) == 0
    assert status.exit_code(realistic(storage_full=True)) == 1
    assert status.exit_code(status.not_running("x")) == 3


# -- what readers show for a config ---------------------------------------------


def _cfg(tmp_path):
    return config.Config(config.defaults(), None, tmp_path)


def test_current_reads_the_live_snapshot(tmp_path):
    cfg = _cfg(tmp_path)
    status.write_snapshot(cfg.status_path, realistic(pid=os.getpid()))
    assert status.current(cfg)["studies_total"] == 1234


def test_current_without_daemon_names_the_box(tmp_path):
    snap = status.current(_cfg(tmp_path))
    assert snap["state"] == "not-running" and snap["ae_title"] == "PACSBOX"
    assert snap["port"] == 11112 and snap["addresses"]
    assert "no status file" in snap["reason"]


def test_current_says_the_data_disk_is_missing(tmp_path):
    cfg = _cfg(tmp_path).replace(DataDirectory=str(tmp_path / "data"))
    snap = status.current(cfg)
    text = status.format_text(snap)
    assert "DATA DISK PROBLEM: data disk missing" in text
    assert json.loads(json.dumps(snap)) == snap  # plain JSON for the web page
