"""C-ECHO for the AE table's "Ping" button (SCU-1), until ``pacsbox.scu`` provides ``echo``.

The Q/R engineer's ``pacsbox.scu.echo`` replaces this when it exists
(``aes.py`` prefers it); this stand-in is the only pynetdicom use in web/.
"""

from __future__ import annotations

import logging

from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

log = logging.getLogger("pacsbox.web")


def echo(ae, *, calling_ae: str = "PACSBOX", timeout: float = 10.0) -> tuple[bool, str]:
    """(success, one-line result) of a C-ECHO to the AE table row ``ae``."""
    host = ae.ipaddr or ae.hostname
    if not host or not ae.port:
        return False, "no host or port in the AE table"
    local = AE(ae_title=calling_ae)
    local.acse_timeout = timeout
    local.dimse_timeout = timeout
    local.network_timeout = timeout
    local.add_requested_context(Verification)
    try:
        assoc = local.associate(host, int(ae.port), ae_title=ae.title)
    except (OSError, ValueError) as exc:
        return False, f"cannot connect: {exc}"
    if not assoc.is_established:
        if assoc.is_rejected:
            return False, "association rejected"
        return False, f"no association with {ae.title} at {host}:{ae.port}"
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if status and getattr(status, "Status", None) == 0x0000:
        return True, f"C-ECHO to {ae.title} at {host}:{ae.port} succeeded"
    code = getattr(status, "Status", None)
    return False, "no C-ECHO response" if code is None else f"C-ECHO status 0x{code:04X}"
