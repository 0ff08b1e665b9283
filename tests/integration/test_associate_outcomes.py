"""Each way an association out can fail, told apart and logged: a closed port
(refused), a peer that takes the connection and says nothing (timeout), one that
closes it at once (aborted). Accepted and rejected ones: tests/interop/test_diagnose.py."""

from __future__ import annotations

import socket
import threading

import pytest

from pacsbox import scu
from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db import assocbuffer, assoclog
from tests.helpers import free_port, write_config


@pytest.fixture
def archive(tmp_path):
    a = Archive(load(write_config(tmp_path / "box", SyncWrites="no")))
    yield a
    a.close()


@pytest.fixture
def tcp_peer():
    """A loopback TCP listener that does ``behaviour`` with each connection it takes."""
    made = []

    def start(behaviour: str) -> int:
        srv = socket.create_server(("127.0.0.1", 0))
        held: list[socket.socket] = []

        def serve():
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                if behaviour == "close":
                    conn.close()
                else:
                    held.append(conn)  # silent: keeps it open, answers nothing

        threading.Thread(target=serve, daemon=True).start()
        made.append((srv, held))
        return srv.getsockname()[1]

    yield start
    for srv, held in made:
        srv.close()
        for c in held:
            c.close()


def _logged(title: str) -> dict:
    assert assocbuffer.recorder.flush()
    (row,) = assoclog.recent(title, "out", 1)
    return row


def test_refused_timeout_and_aborted_are_told_apart(archive, tcp_peer):
    closed = free_port()
    res = scu.echo("PACSBOX", scu.Peer("CLOSED", "127.0.0.1", closed), timeout=2)
    assert not res.ok and res.message.startswith("refused: connection refused")
    row = _logged("CLOSED")
    assert (row["result"], row["service"], row["address"]) == (
        "refused", "echo", f"127.0.0.1:{closed}",
    )  # fmt: skip

    silent = tcp_peer("silent")
    res = scu.echo("PACSBOX", scu.Peer("SILENT", "127.0.0.1", silent), timeout=1)
    assert not res.ok and res.message == "timeout: no answer to the association request in 1 s"
    assert _logged("SILENT")["result"] == "timeout"

    hangup = tcp_peer("close")
    res = scu.echo("PACSBOX", scu.Peer("HANGUP", "127.0.0.1", hangup), timeout=5)
    assert not res.ok and res.message.startswith("aborted: the peer closed the connection")
    assert _logged("HANGUP")["result"] == "aborted"
