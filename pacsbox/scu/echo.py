"""C-ECHO to a remote AE (SCU-1), and the AE every outgoing association starts from."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # pynetdicom makes its SOP class names at import

from pacsbox import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

log = logging.getLogger("pacsbox.scu")


@dataclass(frozen=True)
class Peer:
    title: str
    host: str
    port: int


@dataclass
class EchoResult:
    ok: bool
    status: int | None
    message: str
    elapsed_ms: float


def make_ae(calling_ae: str, timeout: float = 30.0) -> AE:
    """An AE with our implementation identity and ``timeout`` for ACSE, DIMSE and network."""
    ae = AE(ae_title=calling_ae)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    return ae


def echo(calling_ae: str, peer: Peer, timeout: float = 10.0) -> EchoResult:
    """C-ECHO a remote AE (SCU-1). Never raises: the result says what happened."""
    t0 = time.monotonic()
    ae = make_ae(calling_ae, timeout)
    ae.add_requested_context(Verification)
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.title)
    if not assoc.is_established:
        why = "rejected" if assoc.is_rejected else "no answer"
        log.info("C-ECHO to %s (%s:%d): association %s", peer.title, peer.host, peer.port, why)
        return EchoResult(False, None, f"association {why}", (time.monotonic() - t0) * 1000)
    try:
        rsp = assoc.send_c_echo()
    finally:
        assoc.release()
    status = int(rsp.Status) if "Status" in rsp else None
    ms = (time.monotonic() - t0) * 1000
    ok = status == 0
    log.info("C-ECHO to %s (%s:%d): status %s", peer.title, peer.host, peer.port, status)
    return EchoResult(ok, status, "success" if ok else "no valid response", ms)
