"""C-ECHO to a remote AE (SCU-1), and the AE every outgoing association starts from."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # pynetdicom makes its SOP class names at import

from pacsbox import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from pacsbox.scu.associate import PROBE_VERSION_NAME, Peer, open_association

__all__ = ["EchoResult", "Peer", "echo", "make_ae"]

log = logging.getLogger("pacsbox.scu")


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


def echo(calling_ae: str, peer: Peer, timeout: float = 10.0, *, probe: bool = False) -> EchoResult:
    """C-ECHO a remote AE (SCU-1). Never raises: the result says what happened.

    ``probe``: `pacsbox ae diagnose` testing our own listener's way in, which
    that listener then leaves out of its association log.
    """
    t0 = time.monotonic()
    ae = make_ae(calling_ae, timeout)
    if probe:
        ae.implementation_version_name = PROBE_VERSION_NAME
    ae.add_requested_context(Verification)
    try:
        assoc, outcome = open_association(ae, calling_ae, peer, "echo")
    except (OSError, ValueError, RuntimeError) as exc:
        return EchoResult(False, None, f"cannot connect: {exc}", (time.monotonic() - t0) * 1000)
    if not assoc.is_established or not outcome.ok:
        if assoc.is_established:
            assoc.release()
        return EchoResult(False, None, outcome.words(), (time.monotonic() - t0) * 1000)
    try:
        rsp = assoc.send_c_echo()
    finally:
        assoc.release()
    status = int(rsp.Status) if "Status" in rsp else None
    ms = (time.monotonic() - t0) * 1000
    ok = status == 0
    log.info("C-ECHO to %s (%s:%d): status %s", peer.title, peer.host, peer.port, status)
    return EchoResult(ok, status, "success" if ok else "no valid response", ms)
