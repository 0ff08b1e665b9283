"""Which code runs each kind of queue job; a kind with no entry yet fails with a reason."""

from __future__ import annotations

from pacsbox.outbound import commitment, forward
from pacsbox.outbound.runner import Handler

HANDLERS: dict[str, Handler] = {"forward": forward.handle, "commit": commitment.handle}
