"""Which code runs each kind of queue job; a kind with no entry yet fails with a reason."""

from __future__ import annotations

from pacsbox.outbound import forward, retrieve, sync
from pacsbox.outbound.runner import Handler

HANDLERS: dict[str, Handler] = {
    "forward": forward.handle,
    "retrieve": retrieve.handle,
    "sync": sync.handle,
}
