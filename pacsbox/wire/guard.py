"""Protocol errors pynetdicom's state machine raises in its own thread, turned into an abort.

A peer that pipelines (sends its first request before our A-ASSOCIATE-AC)
or breaks the protocol can make the state machine meet an event its table
has no row for; pynetdicom then raises InvalidEventError in the DUL thread,
which dies with a traceback and drops the connection without a word. Here
that event becomes what PS3.8 asks for an unexpected PDU, an A-ABORT
(Evt19), or nothing when the association is already closing (Sta13). A
message pynetdicom cannot decode (a command set without its Command Field)
fails inside an action the same way and is aborted the same way.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pacsbox.wire import compat

if TYPE_CHECKING:
    from pynetdicom.association import Association

log = logging.getLogger("pacsbox.scp")

CLOSING = "Sta13"  # awaiting transport close: a late local primitive is moot


class _NotTheGuardsLine(logging.Filter):
    """pynetdicom logs the failed event at ERROR, with a traceback, before raising;
    the guard says it once, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        return not (
            record.exc_info
            or text.startswith("Invalid event ")
            or text.startswith("State Machine received an exception")
        )


_installed = False


def protect(assoc: Association) -> None:
    """Wrap this association's state machine; call at EVT_CONN_OPEN."""
    global _installed
    if not compat.fast():
        return
    from pynetdicom.fsm import TRANSITION_TABLE, InvalidEventError  # noqa: PLC0415

    if not _installed:
        logging.getLogger("pynetdicom.fsm").addFilter(_NotTheGuardsLine())
        _installed = True
    machine = assoc.dul.state_machine
    act = machine.do_action

    def do_action(event: str) -> None:
        try:
            act(event)
        except Exception as exc:  # noqa: BLE001 - the peer's bytes broke a decoder or the table
            state = machine.current_state
            if isinstance(exc, InvalidEventError) and state == CLOSING:
                return
            what = "protocol error" if isinstance(exc, InvalidEventError) else "undecodable message"
            log.warning(
                "association from %s: %s (%s in %s: %s): aborting",
                assoc.requestor.address or "an unknown address",
                what,
                event,
                state,
                exc.__class__.__name__,
            )
            # pynetdicom stopped its reactor on a failed action; abort instead,
            # so the peer hears A-ABORT and the association ends as aborted.
            assoc.dul._kill_thread = False
            try:
                if ("Evt19", state) in TRANSITION_TABLE:
                    act("Evt19")
            except Exception:  # noqa: BLE001 - the transport is gone too: just stop
                assoc.dul._kill_thread = True

    vars(machine)["do_action"] = do_action  # this machine's method, replaced on the instance
