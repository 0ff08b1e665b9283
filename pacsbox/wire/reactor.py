"""Wake pynetdicom's polling loops when there is work, instead of after a fixed 1 ms.

pynetdicom 3.0 runs two polling loops per association that sleep 1 ms
whenever they find nothing to do, and a C-STORE crosses both loops three
times. Their loops stay exactly as they are; only what their ``time.sleep``
does changes, and only in the two threads of an attached association:

- the DUL thread sleeps in ``select()`` on its socket and a wake-up pipe, so
  it returns the moment a PDU arrives or a primitive is queued for sending;
- the association thread waits on an Event set when a complete DIMSE
  message (or an ACSE primitive) is queued for it.

Since every piece of work wakes them, their idle polling is stretched to
``IDLE_POLL``: what is only polled (the ARTIM and idle timers, a dead DUL
thread) runs on second-scale timeouts. Any other thread gets the real
``time.sleep``.
"""

from __future__ import annotations

import os
import queue
import select
import threading
import time as _time
import weakref
from collections.abc import Callable
from typing import Any

import pynetdicom.association
import pynetdicom.dul

from pacsbox.wire import compat, tap

_installed = False
_lock = threading.Lock()
IDLE_POLL = 0.02  # seconds an attached, idle association thread sleeps between polls


class _Waker:
    """One association's wake-up means: a pipe for the DUL, an Event for the reactor."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe()
        os.set_blocking(self.r, False)
        os.set_blocking(self.w, False)
        self.event = threading.Event()
        self.closed = False
        self.tap: tap.Tap | None = None  # the DUL's Tap, once it has one
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


class _WakingQueue(queue.Queue):
    """A Queue that calls ``wake()`` after every put; its ``waker`` finds the association's."""

    def __init__(self, waker: _Waker, wake: Callable[[], None]) -> None:
        super().__init__()
        self.waker = waker
        self._wake = wake

    def put(self, item, block=True, timeout=None):  # noqa: ANN001 - Queue's signature
        super().put(item, block, timeout)
        self._wake()


def _close_fds(*fds: int) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def waker_of(owner: object) -> _Waker | None:
    """The waker of a DUL or an association (each runs in its own thread), if attached."""
    q = getattr(owner, "to_provider_queue", None)
    if q is None:
        q = getattr(getattr(owner, "dimse", None), "msg_queue", None)
    return getattr(q, "waker", None)


_here = threading.local()  # per thread: (its waker or None, the thread), looked up once


def _this_thread() -> tuple[_Waker | None, threading.Thread]:
    state: tuple[_Waker | None, threading.Thread]
    try:
        state = _here.state
    except AttributeError:
        thread = threading.current_thread()
        # Attached before the association's threads start, so never found late.
        state = _here.state = (waker_of(thread), thread)
    return state


class _SleepShim:
    """Stands in for the ``time`` module inside pynetdicom.dul / pynetdicom.association."""

    def __init__(self, kind: str) -> None:
        self._kind = kind

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)

    def sleep(self, seconds: float) -> None:
        waker, thread = _this_thread()
        if waker is None or waker.closed:
            _time.sleep(seconds)
            return
        seconds = max(seconds, IDLE_POLL)
        if self._kind == "dul":
            sock = getattr(getattr(thread, "socket", None), "socket", None)
            tap = waker.tap
            if tap is not None and tap.held:
                sock = None  # wire.send reads it now: don't spin on its data
            elif tap is not None and tap.inbox:
                return  # wire.receive read ahead: the next PDU is already here
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


def install() -> bool:
    """Route pynetdicom's loop sleeps through the shim (process-wide, idempotent);
    False when compat found pynetdicom's internals changed."""
    global _installed
    with _lock:
        if not _installed and compat.fast():
            # A stand-in, not a module: sleep() is its own, the rest is time's.
            pynetdicom.dul.time = _SleepShim("dul")  # type: ignore[assignment]
            pynetdicom.association.time = _SleepShim("assoc")  # type: ignore[assignment]
            _installed = True
        return _installed


def attach(assoc: pynetdicom.association.Association) -> None:
    """Give one association its wake-ups; call before its threads start (EVT_CONN_OPEN).
    Does nothing unless ``install()`` succeeded."""
    if not _installed or waker_of(assoc) is not None:
        return
    waker = _Waker()
    dul = assoc.dul
    waker.tap = tap.existing(dul)
    # Work for the DUL thread: primitives to send. Work for the association
    # thread: decoded DIMSE messages and ACSE primitives from the DUL.
    dul.to_provider_queue = _WakingQueue(waker, waker.wake_dul)
    dul.to_user_queue = _WakingQueue(waker, waker.wake_assoc)
    assoc.dimse.msg_queue = _WakingQueue(waker, waker.wake_assoc)
