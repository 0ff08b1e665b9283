"""Every association pacsbox opens, with its outcome told in words and logged.

pynetdicom reports a failed association request as "not established";
the operator needs to know which of the usual causes it was: nothing
listens on the port (refused), no answer (timeout), no route or unknown
host (unreachable), the peer closed the connection (aborted), or an
A-ASSOCIATE-RJ with its result, source and reason (PS3.8 9.3.4). Each
outcome is one entry of the association log ("out"), queued, not written here.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.association import Association

from pacsbox.db import assocbuffer, assoclog

log = logging.getLogger("pacsbox.scu")

# Our implementation version name when `pacsbox ae diagnose` tests the way
# in: the listener leaves such loopback associations out of its log.
PROBE_VERSION_NAME = "PACSBOX_PROBE"

# PS3.8 Table 9-21: A-ASSOCIATE-RJ source and reason.
_SOURCE = {1: "the service user", 2: "the service provider (ACSE)", 3: "the service provider"}
_REASON = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognised",
    (1, 7): "called AE title not recognised",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}


@dataclass(frozen=True)
class Peer:
    title: str
    host: str
    port: int


@dataclass(frozen=True)
class Outcome:
    """How an association request ended: an ``assoclog.RESULTS`` word and why."""

    result: str
    reason: str = ""  # for a rejection: "result/source/diagnostic", as in the RJ PDU
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.result == assoclog.ACCEPTED

    def words(self) -> str:
        return self.result + (f": {self.detail}" if self.detail else "")


def rejection_words(result: int, source: int, diagnostic: int) -> str:
    """An A-ASSOCIATE-RJ in words, e.g. "permanent, by the service user: calling AE
    title not recognised"."""
    kind = {1: "permanent", 2: "transient"}.get(result, f"result {result}")
    by = _SOURCE.get(source, f"source {source}")
    why = _REASON.get((source, diagnostic), f"reason {diagnostic}")
    return f"{kind}, by {by}: {why}"


def _no_connection(host: str, port: int, timeout: float) -> Outcome:
    """Why the TCP connection failed. pynetdicom only logs its socket error, so
    the connection is tried once more here (only ever on this failure path)."""
    try:
        with socket.create_connection((host, port), timeout=min(timeout, 5.0)):
            return Outcome("aborted", "", "the connection failed, then opened on a second try")
    except ConnectionRefusedError:
        return Outcome("refused", "", f"connection refused: nothing listens on {host}:{port}")
    except TimeoutError:
        return Outcome("timeout", "", f"no answer from {host}:{port} (TCP connect timed out)")
    except OSError as exc:
        return Outcome("unreachable", "", f"{host}:{port}: {exc.strerror or exc}")


def outcome_of(assoc: Association, opened: bool, elapsed: float, timeout: float,
               host: str, port: int) -> Outcome:  # fmt: skip
    """Classify what ``AE.associate`` returned."""
    if assoc.is_established:
        if not assoc.accepted_contexts:
            return Outcome("rejected", "no-context", "no presentation context accepted")
        return Outcome(assoclog.ACCEPTED)
    rj = assoc.acceptor.primitive
    if assoc.is_rejected and rj is not None:
        codes = (int(rj.result or 0), int(rj.result_source or 0), int(rj.diagnostic or 0))
        return Outcome("rejected", "/".join(map(str, codes)), rejection_words(*codes))
    if not opened:
        return _no_connection(host, port, timeout)
    if elapsed >= timeout * 0.9:
        return Outcome("timeout", "", f"no answer to the association request in {timeout:.0f} s")
    return Outcome("aborted", "", "the peer closed the connection during the association request")


def open_association(
    ae: AE, calling_ae: str, peer: Peer, service: str, **kw: Any
) -> tuple[Association, Outcome]:
    """``ae.associate`` to ``peer`` (keyword arguments passed on), its outcome, and
    one association log entry for it. Raises what ``AE.associate`` raises."""
    opened: list[bool] = []
    handlers: list = [(evt.EVT_CONN_OPEN, lambda _event: opened.append(True))]
    t0 = time.monotonic()
    try:
        assoc = ae.associate(peer.host, peer.port, ae_title=peer.title, evt_handlers=handlers, **kw)
    except Exception as exc:
        _record(calling_ae, peer, service, Outcome("unreachable", "", str(exc)[:200]))
        raise
    timeout = float(ae.acse_timeout or 30.0)
    outcome = outcome_of(assoc, bool(opened), time.monotonic() - t0, timeout, peer.host, peer.port)
    _record(calling_ae, peer, service, outcome)
    if not outcome.ok:
        log.info(
            "association %s to %s (%s:%d): %s",
            service,
            peer.title,
            peer.host,
            peer.port,
            outcome.words(),
        )
    return assoc, outcome


def _record(calling_ae: str, peer: Peer, service: str, outcome: Outcome) -> None:
    assocbuffer.record(
        assoclog.Entry(
            "out",
            peer.title,
            calling_ae,
            peer.title,
            f"{peer.host}:{peer.port}",
            service,
            outcome.result,
            outcome.reason,
            outcome.detail,
        )
    )
