"""Which code runs each kind of queue job; a kind with no entry yet fails with a reason."""

from __future__ import annotations

from pacsbox.outbound import edits, forward, media
from pacsbox.outbound.runner import Handler

HANDLERS: dict[str, Handler] = {
    "forward": forward.handle,
    "export": media.handle_export,
    "burn": media.handle_burn,
    "edit": edits.handle,
}
