"""Wake pynetdicom's polling loops when there is work, instead of after a fixed 1 ms.

pynetdicom 3.0 runs two polling loops per association: the DUL reactor
sleeps ``_run_loop_delay`` (1 ms) whenever it finds nothing to do, and the
association reactor sleeps 1 ms on every turn. A C-STORE crosses both loops
three times (PDU in, DIMSE message to the handler, response out), so about
2.5 ms of every message is spent asleep: the ceiling on small-image rates.

This module keeps pynetdicom's loops exactly as they are and only changes
what their ``time.sleep`` does in the two threads that own an association:

- the DUL thread sleeps in ``select()`` on its socket and a wake-up pipe, so
  it returns the moment a PDU arrives or a primitive is queued for sending;
- the association thread waits on an Event that is set when a complete DIMSE
  message (or an ACSE primitive) is queued for it.

Because every piece of work now wakes them, the library's 1 ms polling
interval is stretched to ``IDLE_POLL`` (20 ms): an idle association's two
threads otherwise wake 2,000 times a second, which with four modalities
sending was a tenth of a core spent polling. What is still only polled
(the ARTIM and idle timers, a DUL thread that died) runs on second-scale
timeouts, so 20 ms changes nothing a peer can see. Any other thread gets
the real ``time.sleep``. ``install()`` is
idempotent and is called by the listener; ``attach(assoc)`` wires one
association and runs from EVT_CONN_OPEN, before its threads start.
"""

from __future__ import annotations

import os
import queue
import select
import threading
import time as _time
import weakref

import pynetdicom.association
import pynetdicom.dul

_installed = False
_lock = threading.Lock()
IDLE_POLL = 0.02  # seconds an attached, idle association thread sleeps between polls


class _WakingQueue(queue.Queue):
    """A Queue that calls ``wake()`` after every put."""

    def __init__(self, wake) -> None:
        super().__init__()
        self._wake = wake

    def put(self, item, block=True, timeout=None):  # noqa: ANN001 - Queue's signature
        super().put(item, block, timeout)
        self._wake()


class _Waker:
    """One association's wake-up means: a pipe for the DUL, an Event for the reactor."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe()
        os.set_blocking(self.r, False)
        os.set_blocking(self.w, False)
        self.event = threading.Event()
        self.closed = False
        # Closed when the last thread holding the association lets go of it,
        # never while a DUL thread could still be selecting on the pipe.
        weakref.finalize(self, _close_fds, self.r, self.w)

    def wake_dul(self) -> None:
        if self.closed:
            return
        try:
            os.write(self.w, b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (already woken) or closed

    def wake_assoc(self) -> None:
        self.event.set()

    def drain(self) -> None:
        try:
            while os.read(self.r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass


def _close_fds(*fds: int) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class _SleepShim:
    """Stands in for the ``time`` module inside pynetdicom.dul / pynetdicom.association."""

    def __init__(self, kind: str) -> None:
        self._kind = kind

    def __getattr__(self, name: str):
        return getattr(_time, name)

    def sleep(self, seconds: float) -> None:
        thread = threading.current_thread()
        waker: _Waker | None = getattr(thread, "_pacsbox_waker", None)
        if waker is None or waker.closed:
            _time.sleep(seconds)
            return
        seconds = max(seconds, IDLE_POLL)
        if self._kind == "dul":
            sock = getattr(getattr(thread, "socket", None), "socket", None)
            tap = getattr(thread, "_pacsbox_tap", None)
            if tap is not None and tap.held:
                sock = None  # scu.RawStoreWriter reads it now: don't spin on its data
            elif tap is not None and tap.inbox:
                return  # fast_store read ahead: the next PDU is already here
            fds = [waker.r] + ([sock] if sock is not None else [])
            try:
                ready, _, _ = select.select(fds, [], [], seconds)
            except (OSError, ValueError):
                _time.sleep(seconds)
                return
            if waker.r in ready:
                waker.drain()
        else:
            if waker.event.wait(seconds):
                waker.event.clear()


def install() -> None:
    """Route pynetdicom's loop sleeps through the shim (process-wide, idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        pynetdicom.dul.time = _SleepShim("dul")
        pynetdicom.association.time = _SleepShim("assoc")
        _installed = True


def attach(assoc) -> None:
    """Give one association its wake-ups; call before its threads start (EVT_CONN_OPEN)."""
    if getattr(assoc, "_pacsbox_waker", None) is not None:
        return
    waker = _Waker()
    dul = assoc.dul
    assoc._pacsbox_waker = waker
    dul._pacsbox_waker = waker
    # Work for the DUL thread: primitives to send. Work for the association
    # thread: decoded DIMSE messages and ACSE primitives from the DUL.
    dul.to_provider_queue = _WakingQueue(waker.wake_dul)
    dul.to_user_queue = _WakingQueue(waker.wake_assoc)
    assoc.dimse.msg_queue = _WakingQueue(waker.wake_assoc)
