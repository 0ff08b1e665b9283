"""C-MOVE and C-GET whose handler owns the whole exchange.

pynetdicom's retrieve loop wants the handler to yield decoded data sets,
opens the destination association itself and stops at 65,535 instances. With
``install`` the C-MOVE/C-GET SOP classes get a service class that only
triggers the event: the handler answers (``respond``) and sends the
sub-operations itself, and an exception in it answers C000.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, cast

import pynetdicom.association
import pynetdicom.service_class
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_GET, C_MOVE
from pynetdicom.presentation import PresentationContext
from pynetdicom.service_class import QueryRetrieveServiceClass

from pacsbox.wire import compat


class _HandlerOwnedRetrieve(QueryRetrieveServiceClass):
    def _move_scp(self, req: C_MOVE, context: PresentationContext) -> None:
        self._delegate(evt.EVT_C_MOVE, C_MOVE(), req, context)

    def _get_scp(self, req: C_GET, context: PresentationContext) -> None:
        self._delegate(evt.EVT_C_GET, C_GET(), req, context)

    def _delegate(
        self,
        event: evt.InterventionEvent,
        rsp: C_MOVE | C_GET,
        req: C_MOVE | C_GET,
        context: PresentationContext,
    ) -> None:
        rsp.MessageIDBeingRespondedTo = req.MessageID
        rsp.AffectedSOPClassUID = req.AffectedSOPClassUID
        attempt = pynetdicom.service_class.attempt
        cx_id = cast(int, context.context_id)  # as pynetdicom's own SCPs: an accepted context
        with attempt(rsp, self.dimse, cx_id, self.assoc) as ctx:
            ctx.error_msg = f"exception in the {event.name} handler"
            ctx.error_status = 0xC000
            evt.trigger(
                self.assoc,
                event,
                {"request": req, "context": context.as_tuple, "_is_cancelled": self.is_cancelled},
            )


_owned: frozenset[str] = frozenset()
_library: Callable[[str], Any] | None = None  # pynetdicom's uid_to_service_class, once replaced
_lock = threading.Lock()


def _uid_to_service_class(uid):
    if str(uid) in _owned:
        return _HandlerOwnedRetrieve
    assert _library is not None  # set before this replaces pynetdicom's
    return _library(uid)


def install(uids: Iterable[str]) -> bool:
    """Route C-MOVE/C-GET requests on these SOP classes to their handlers alone
    (idempotent). False when compat found pynetdicom changed: its own retrieve
    loop then runs, and the handlers must follow its protocol (yield)."""
    global _owned, _library
    if not compat.fast():
        return False
    with _lock:
        _owned = _owned | {str(u) for u in uids}
        if _library is None:
            _library = pynetdicom.association.uid_to_service_class
            pynetdicom.association.uid_to_service_class = _uid_to_service_class
    return True


def respond(assoc: Association, context_id: int, primitive: C_MOVE | C_GET) -> None:
    """Send a C-MOVE/C-GET response from a handler that owns the exchange."""
    assoc.dimse.send_msg(primitive, context_id)
