"""Which code runs each kind of queue job; a kind with no entry yet fails with a reason."""

from __future__ import annotations

from pacsbox.outbound import forward, ian
from pacsbox.outbound.runner import Handler

# A route job is a forward of one round of a study (outbound/routing.py makes them).
HANDLERS: dict[str, Handler] = {
    "forward": forward.handle,
    "route": forward.handle,
    "ian": ian.handle,
}
