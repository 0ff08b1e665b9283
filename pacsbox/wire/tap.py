"""Who reads an association's socket: pynetdicom's DUL thread, or wire.

pynetdicom's DUL thread asks ``_is_transport_event()`` on every turn whether
a PDU came in. A ``Tap`` answers instead, so ``wire.receive`` can take
C-STORE requests off the socket in that thread and ``wire.send`` can read
C-STORE responses in another while the DUL thread keeps out. The tap is
found again through the method it replaced: wire hangs nothing of its own on
pynetdicom's objects, and nothing outlives the association.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pynetdicom.dul import DULServiceProvider

_lock = threading.Lock()


class Tap:
    """Stands in for the DUL's ``_is_transport_event``.

    While ``held`` it answers "no" (another thread owns the socket's input:
    ``wire.send`` reading C-STORE responses); otherwise it lets ``claim``
    take a PDU (``wire.receive``), and failing that asks pynetdicom's own
    method. The lock makes ``hold()`` wait out a PDU the DUL thread is reading.
    """

    def __init__(self, dul: DULServiceProvider) -> None:
        self.lock = threading.Lock()
        self.held = False
        self.claim: Callable[[], bool | None] | None = None
        # Bytes ``claim`` read past what it handled: the DUL thread must not
        # wait on the socket for what is already here.
        self.inbox = bytearray()
        self._library: Callable[[], bool] = dul._is_transport_event  # the library's bound method
        vars(dul)["_is_transport_event"] = self._transport_event

    @classmethod
    def of(cls, dul: DULServiceProvider) -> Tap:
        """This DUL's tap, installed on first use (and made known to its reactor waker)."""
        with _lock:
            tap = existing(dul)
            if tap is not None:
                return tap
            tap = cls(dul)
            waker = getattr(dul.to_provider_queue, "waker", None)  # wire.reactor's, if attached
            if waker is not None:
                waker.tap = tap
            return tap

    def _transport_event(self) -> bool:
        with self.lock:
            if self.held:
                return False
            if self.claim is not None:
                taken = self.claim()
                if taken is not None:
                    return taken
            return self._library()

    def hold(self) -> None:
        with self.lock:
            self.held = True

    def release(self) -> None:
        with self.lock:
            self.held = False


def existing(dul: DULServiceProvider) -> Tap | None:
    """The tap installed on ``dul``, if any."""
    tap = getattr(vars(dul).get("_is_transport_event"), "__self__", None)
    return tap if isinstance(tap, Tap) else None
