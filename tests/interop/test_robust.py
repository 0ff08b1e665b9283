"""NET-11: many modalities at once, and no idle, slow or broken client can stop a real one."""

from __future__ import annotations

import select
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from pacsbox.db import close_database, open_database
from pacsbox.db.models import Instance
from tests.helpers import DCMTK_ENV, Server, add_aes, cli, dcmtk, poll, write_config
from tests.synth import make_instance, write_files


def _store(server, files, aet="STORESCU"):
    return dcmtk(
        "storescu",
        "-aet",
        aet,
        "-aec",
        server.ae_title,
        "127.0.0.1",
        str(server.port),
        *[str(f) for f in files],
        timeout=120,
    )


@pytest.fixture
def fast_timeouts(tmp_path):
    ini = write_config(tmp_path / "box", AcseTimeout=2, NetworkTimeout=3, MaxAssociations=30)
    add_aes(ini, *[f"MOD{i:02d}" for i in range(20)], "STORESCU")
    srv = Server(ini).start()
    yield srv
    srv.stop()


def _count(server) -> int:
    open_database(server.cfg.database_url, run_migrations=False)
    try:
        return Instance.select().count()
    finally:
        close_database()


def test_twenty_modalities_at_once(fast_timeouts, tmp_path):
    server = fast_timeouts
    procs = []
    for i in range(20):
        files = write_files(
            tmp_path / f"m{i}",
            [
                make_instance(patient_id=f"M{i}", rows=16, columns=16, instance_number=n + 1)
                for n in range(10)
            ],
        )
        procs.append(
            subprocess.Popen(
                [
                    "storescu",
                    "-aet",
                    f"MOD{i:02d}",
                    "-aec",
                    server.ae_title,
                    "127.0.0.1",
                    str(server.port),
                    *map(str, files),
                ],
                env=DCMTK_ENV,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for p in procs:
        assert p.wait(120) == 0, p.stderr.read()
    assert _count(server) == 200


def test_idle_slow_and_burst_connections_do_not_block_a_modality(fast_timeouts, tmp_path):
    server = fast_timeouts
    files = write_files(tmp_path / "real", [make_instance(rows=16, columns=16)])
    # 50 connections that never speak, more than MaxAssociations (30).
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
    # A slow client: half a PDU header, then silence.
    slow = socket.create_connection(("127.0.0.1", server.port))
    slow.sendall(b"\x01\x00\x00\x00")
    try:
        t0 = time.monotonic()
        r = _store(server, files)
        assert r.returncode == 0, r.stderr
        assert time.monotonic() - t0 < 10
        # The idle ones are closed by the server after AcseTimeout/NetworkTimeout.
        open_socks = set(idle + [slow])

        def all_closed():
            readable, _, _ = select.select(list(open_socks), [], [], 0.2)
            for s in readable:
                try:
                    if s.recv(1) == b"":
                        open_socks.discard(s)
                except OSError:
                    open_socks.discard(s)
            return not open_socks

        poll(all_closed, timeout=20, what="idle connections to be closed")
    finally:
        for s in idle + [slow]:
            s.close()
    assert _count(server) == 1


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff" * 64,  # unknown PDU type
        struct.pack(">BBL", 0x01, 0, 0xFFFFFFF0) + b"\x00" * 32,  # A-ASSOCIATE-RQ claiming ~4 GB
        struct.pack(">BBL", 0x04, 0, 100) + b"\x00" * 100,  # P-DATA before any association
    ],
)
def test_malformed_pdu_drops_only_that_connection(fast_timeouts, tmp_path, garbage):
    server = fast_timeouts
    bad = socket.create_connection(("127.0.0.1", server.port))
    bad.sendall(garbage)
    files = write_files(tmp_path / "ok", [make_instance(rows=16, columns=16)])
    r = _store(server, files)
    assert r.returncode == 0, r.stderr
    bad.settimeout(10)
    try:
        while bad.recv(4096):
            pass
    except OSError:
        pass
    bad.close()
    assert (
        dcmtk(
            "echoscu", "-aet", "STORESCU", "-aec", server.ae_title, "127.0.0.1", str(server.port)
        ).returncode
        == 0
    )
    assert server.proc.poll() is None


def test_workers_run_the_daemons_own_code_whatever_the_working_directory(tmp_path):
    """Started from a folder that holds another ``pacsbox`` (an old copy, a
    checkout), the worker processes still run the daemon's code and serve."""
    ini = write_config(tmp_path / "box", WorkerProcesses=2)
    cli(ini, "ae", "add", "STORESCU")
    other = tmp_path / "elsewhere" / "pacsbox"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text('raise SystemExit("another pacsbox was imported")\n')
    server = Server(ini, cwd=other.parent).start()
    try:
        files = write_files(tmp_path / "s", [make_instance(rows=16, columns=16)])
        assert (
            dcmtk(
                "storescu",
                "-aet",
                "STORESCU",
                "-aec",
                server.ae_title,
                "127.0.0.1",
                str(server.port),
                *map(str, files),
            ).returncode
            == 0
        )
        assert _count(server) == 1
    finally:
        server.stop()


def test_worker_processes_share_the_port_and_die_with_the_daemon(tmp_path):
    import psutil

    ini = write_config(tmp_path / "box", WorkerProcesses=2)
    cli(ini, "ae", "add", "STORESCU")
    server = Server(ini).start()
    try:
        kids = psutil.Process(server.proc.pid).children()
        assert len(kids) == 1 and "scp-worker" in " ".join(kids[0].cmdline())
        procs = []
        for i in range(4):
            files = write_files(
                tmp_path / f"s{i}",
                [
                    make_instance(patient_id=f"W{i}", rows=16, columns=16, instance_number=n + 1)
                    for n in range(25)
                ],
            )
            procs.append(
                subprocess.Popen(
                    [
                        "storescu",
                        "-aet",
                        "STORESCU",
                        "-aec",
                        server.ae_title,
                        "127.0.0.1",
                        str(server.port),
                        *map(str, files),
                    ],
                    env=DCMTK_ENV,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        assert all(p.wait(120) == 0 for p in procs)
        assert _count(server) == 100
        # A lone modality stays with the daemon (its records commit in place);
        # of four, the daemon takes one and the worker three.
        daemon = psutil.Process(server.proc.pid)

        def held(total):
            n = [
                sum(
                    c.status == psutil.CONN_ESTABLISHED and c.laddr.port == server.port
                    for c in p.net_connections("tcp")
                )
                for p in (daemon, kids[0])
            ]
            return n if sum(n) == total else None

        socks = [socket.create_connection(("127.0.0.1", server.port))]
        try:
            assert poll(lambda: held(1), timeout=10, what="1 accepted connection") == [1, 0]
            socks += [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
            assert poll(lambda: held(4), timeout=10, what="4 accepted connections") == [1, 3]
        finally:
            for s in socks:
                s.close()
        server.kill9()
        poll(
            lambda: not kids[0].is_running() or kids[0].status() == psutil.STATUS_ZOMBIE,
            timeout=10,
            what="the worker to die with the daemon",
        )
    finally:
        server.stop()


def test_ten_storescu_send_the_same_instance_at_once(fast_timeouts, tmp_path):
    server = fast_timeouts
    (path,) = write_files(tmp_path / "same", [make_instance(patient_id="SAME")])
    procs = [
        subprocess.Popen(
            [
                "storescu",
                "-aet",
                f"MOD{i:02d}",
                "-aec",
                server.ae_title,
                "127.0.0.1",
                str(server.port),
                str(path),
            ],
            env=DCMTK_ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(10)
    ]
    for p in procs:
        assert p.wait(60) == 0, p.stderr.read()
    assert _count(server) == 1
    files = [p for p in Path(server.cfg.ArchiveDirectory).rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].read_bytes().endswith(path.read_bytes()[-2000:])
