"""Pending C-FIND responses (FF00 + identifier) written straight to the socket.

The command set is the same for every match, so it is encoded once and only
the identifier is encoded per match; pynetdicom's own route costs message
objects, a queue hop to its DUL thread and a pydicom-encoded command set per
response, and ``wire.identifier`` writes the identifier itself when it can.
The final response still goes through pynetdicom, after these in order (a
C-FIND handler runs in the association's own thread).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.dsutils import encode

from pacsbox.wire import compat, pdu
from pacsbox.wire.identifier import encode as identifier_bytes


def pending_sender(event: evt.Event) -> Callable[[Dataset], bool] | None:
    """A writer of this C-FIND's pending responses, or None (pynetdicom sends them).

    The writer returns False when an identifier cannot be encoded; that one is
    then left to pynetdicom.
    """
    if not compat.fast():
        return None
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if sock is None:
        return None
    cx = event.context
    ts = cx.transfer_syntax
    req = event.request
    msg_id = cast(int, req.MessageID)  # a received C-FIND-RQ carries one
    command = pdu.find_response(str(req.AffectedSOPClassUID), int(msg_id), 0xFF00)
    max_pdu = int(event.assoc.requestor.maximum_length or 0)
    fragment = max_pdu - 12 if max_pdu > 12 else 1 << 20

    direct = ts.is_little_endian and not ts.is_deflated

    def send(identifier: Dataset) -> bool:
        data = identifier_bytes(identifier, ts.is_implicit_VR) if direct else None
        if data is None:
            data = encode(identifier, ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated)
        if data is None:
            return False
        pdu.send_message(sock, cx.context_id, command, data, fragment)
        return True

    return send
