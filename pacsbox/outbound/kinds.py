"""Which code runs each kind of queue job; a kind with no entry yet fails with a reason."""

from __future__ import annotations

from pacsbox.outbound import (
    commitment,
    edits,
    forward,
    ian,
    media,
    printing,
    retrieve,
    sync,
    worklist_poll,
)
from pacsbox.outbound.runner import Handler

# A route job is a forward of one round of a study (outbound/routing.py makes them).
HANDLERS: dict[str, Handler] = {
    "forward": forward.handle,
    "route": forward.handle,
    "ian": ian.handle,
    "commit": commitment.handle,
    "export": media.handle_export,
    "burn": media.handle_burn,
    "edit": edits.handle,
    "retrieve": retrieve.handle,
    "sync": sync.handle,
    "print": printing.handle,
    "worklist": worklist_poll.handle,
    "worklist-query": worklist_poll.handle_study_scheduled,
}
