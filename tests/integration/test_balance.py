"""Each connection leaves the counts once, whatever its end.

The processes that share the DICOM port give way to the least loaded one
(scp/balance.py), and MaxAssociations is checked against the listener's own
count; a count that drops twice for one close makes a busy process look idle.
"""

from __future__ import annotations

import logging
import socket

from pynetdicom import AE
from pynetdicom.sop_class import Verification

from pacsbox.assembly import assemble
from pacsbox.config import load
from pacsbox.workers import balance
from tests.helpers import cli, poll, write_config


def _associate(calling: str, port: int, called: str):
    ae = AE(calling)
    ae.add_requested_context(Verification)
    return ae.associate("127.0.0.1", port, ae_title=called)


def test_each_connection_leaves_the_counts_once(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pacsbox")
    ini = write_config(tmp_path / "box", BindAddress="127.0.0.1")
    cli(ini, "ae", "add", "ECHOSCU", "--host", "127.0.0.1")
    cfg = load(ini)
    parts = assemble(cfg)
    share = balance(cfg, 0, 2)
    assert share is not None
    listener = parts.listener
    listener.start(port=0, balance=share)

    def counts() -> tuple[int, int]:
        return share._counts[share.slot], listener.active_associations

    def ends(text: str) -> int:
        return sum(text in r.getMessage() for r in caplog.records)

    try:
        held = _associate("ECHOSCU", listener.port, cfg.ApplicationEntityTitle)
        assert held.is_established
        poll(lambda: counts() == (1, 1), 10, what="the held association counted")

        # Connections that end in every other way while the first one stays open.
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", listener.port)):
                pass  # closed before any association request
        assert not _associate("STRANGER", listener.port, cfg.ApplicationEntityTitle).is_established
        for _ in range(2):
            a = _associate("ECHOSCU", listener.port, cfg.ApplicationEntityTitle)
            assert a.send_c_echo().Status == 0
            a.abort()
        poll(lambda: ends("closed before an association was agreed") == 3, 10, what="3 closes")
        poll(lambda: ends("association rejected") == 1, 10, what="the rejection")
        poll(lambda: ends(") aborted") == 2, 10, what="2 aborts")
        poll(lambda: share._counts[share.slot] <= 1, 10, what="the others off the table")
        assert counts() == (1, 1)

        assert held.send_c_echo().Status == 0
        held.release()
        poll(lambda: counts() == (0, 0), 10, what="no connection left")
    finally:
        listener.stop(2.0)
