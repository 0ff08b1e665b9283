"""The start-up check that pynetdicom's internals are where and what wire expects.

wire reaches below pynetdicom's public API. ``check()`` looks at every
private name it uses before any of them is touched: present, callable where
called, parameters as called, the types wire relies on. If anything differs
(another pynetdicom than the pinned one) it logs one line and turns every
fast path off, so pynetdicom's own code carries every message: slower,
never wrong.
"""

from __future__ import annotations

import inspect
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

import pynetdicom
import pynetdicom.association
import pynetdicom.dimse
import pynetdicom.dul
import pynetdicom.events
import pynetdicom.fsm
import pynetdicom.service_class
import pynetdicom.sop_class
from pynetdicom import _config, evt

log = logging.getLogger("pacsbox.wire")


@dataclass(frozen=True)
class Report:
    version: str
    missing: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.missing


class _Samples:
    """An AE and an association that are built but never started: instances to look at."""

    def __init__(self) -> None:
        self.ae = pynetdicom.AE()
        self.assoc = pynetdicom.association.Association(self.ae, "requestor")
        self.dul = self.assoc.dul


def _params(func: Callable) -> list[str]:
    return list(inspect.signature(func).parameters)


def _event_like(obj: object) -> bool:
    return all(callable(getattr(obj, m, None)) for m in ("set", "clear", "is_set", "wait"))


def _cancel_reaches_event(s: _Samples) -> bool:
    """Event.is_cancelled asks the ``_is_cancelled`` callable it was triggered with."""
    from pynetdicom.dimse_primitives import C_MOVE  # noqa: PLC0415 - only here

    req = C_MOVE()
    req.MessageID = 7
    asked = []

    def is_cancelled(msg_id: int) -> bool:
        asked.append(msg_id)
        return True

    event = pynetdicom.events.Event(
        s.assoc, evt.EVT_C_MOVE, {"request": req, "_is_cancelled": is_cancelled}
    )
    return event.is_cancelled is True and asked == [7]


D = pynetdicom.dul.DULServiceProvider
QR = pynetdicom.service_class.QueryRetrieveServiceClass

# (name as reported, test on the samples): every private name wire relies on.
NEEDS: list[tuple[str, Callable[[_Samples], bool]]] = [
    ("pynetdicom.dul.time.sleep", lambda s: callable(pynetdicom.dul.time.sleep)),
    ("pynetdicom.association.time.sleep", lambda s: callable(pynetdicom.association.time.sleep)),
    (
        "pynetdicom.association.uid_to_service_class(uid)",
        lambda s: _params(pynetdicom.association.uid_to_service_class) == ["uid"],
    ),
    (
        "pynetdicom.sop_class._STORAGE_CLASSES (dict)",
        lambda s: (
            isinstance(pynetdicom.sop_class._STORAGE_CLASSES, dict)
            and all(isinstance(v, str) for v in pynetdicom.sop_class._STORAGE_CLASSES.values())
        ),
    ),
    *(
        (
            f"pynetdicom._config.{name} (bool)",
            lambda s, n=name: isinstance(getattr(_config, n), bool),
        )
        for name in (
            "STORE_SEND_CHUNKED_DATASET",
            "LOG_REQUEST_IDENTIFIERS",
            "LOG_RESPONSE_IDENTIFIERS",
        )
    ),
    (
        "pynetdicom.service_class.attempt(rsp, dimse, cx_id, assoc)",
        lambda s: _params(pynetdicom.service_class.attempt) == ["rsp", "dimse", "cx_id", "assoc"],
    ),
    (
        "QueryRetrieveServiceClass._move_scp(req, context)",
        lambda s: _params(QR._move_scp) == ["self", "req", "context"],
    ),
    (
        "QueryRetrieveServiceClass._get_scp(req, context)",
        lambda s: _params(QR._get_scp) == ["self", "req", "context"],
    ),
    (
        "QueryRetrieveServiceClass.is_cancelled(msg_id)",
        lambda s: _params(QR.is_cancelled) == ["self", "msg_id"],
    ),
    ("Event(_is_cancelled=...).is_cancelled", _cancel_reaches_event),
    (
        "DULServiceProvider._decode_pdu(bytestream)",
        lambda s: _params(D._decode_pdu) == ["self", "bytestream"],
    ),
    (
        "DULServiceProvider._is_transport_event()",
        lambda s: _params(D._is_transport_event) == ["self"],
    ),
    ("DULServiceProvider._recv_pdu (Queue)", lambda s: isinstance(s.dul._recv_pdu, queue.Queue)),
    (
        "DULServiceProvider.event_queue (Queue)",
        lambda s: isinstance(s.dul.event_queue, queue.Queue),
    ),
    (
        "DULServiceProvider.to_provider_queue (Queue)",
        lambda s: type(s.dul.to_provider_queue) is queue.Queue,
    ),
    (
        "DULServiceProvider.to_user_queue (Queue)",
        lambda s: type(s.dul.to_user_queue) is queue.Queue,
    ),
    (
        "DULServiceProvider._run_loop_delay (float)",
        lambda s: isinstance(s.dul._run_loop_delay, float),
    ),
    (
        "DULServiceProvider._idle_timer.restart()",
        lambda s: _params(s.dul._idle_timer.restart) == [],
    ),
    (
        "DULServiceProvider.state_machine.current_state (str)",
        lambda s: s.dul.state_machine.current_state == "Sta1",
    ),
    ("DULServiceProvider.socket", lambda s: hasattr(s.dul, "socket")),
    ("Association._reactor_checkpoint (Event)", lambda s: _event_like(s.assoc._reactor_checkpoint)),
    ("Association._is_paused (bool)", lambda s: isinstance(s.assoc._is_paused, bool)),
    ("DIMSEServiceProvider.get_msg(block)", lambda s: _params(s.assoc.dimse.get_msg) == ["block"]),
    (
        "DIMSEServiceProvider.msg_queue (Queue)",
        lambda s: type(s.assoc.dimse.msg_queue) is queue.Queue,
    ),
    ("DIMSEServiceProvider.message", lambda s: s.assoc.dimse.message is None),
    (
        "DIMSEServiceProvider.cancel_req (dict)",
        lambda s: isinstance(s.assoc.dimse.cancel_req, dict),
    ),
    ("ApplicationEntity._servers (list)", lambda s: isinstance(s.ae._servers, list)),
    (
        "fsm.TRANSITION_TABLE[(event, state)] and fsm.InvalidEventError",
        lambda s: (
            ("Evt19", "Sta3") in pynetdicom.fsm.TRANSITION_TABLE
            and issubclass(pynetdicom.fsm.InvalidEventError, Exception)
        ),
    ),
    (
        "DULServiceProvider._kill_thread (bool)",
        lambda s: isinstance(s.dul._kill_thread, bool),
    ),
    (
        "StateMachine.do_action(event) on the instance",
        lambda s: _params(s.dul.state_machine.do_action) == ["event"],
    ),
]


def probe() -> list[str]:
    """What differs from what wire expects, looked at afresh (empty when all is as expected)."""
    try:
        samples = _Samples()
    except Exception as exc:  # noqa: BLE001 - any failure means "not the pynetdicom we know"
        return [f"Association(AE(), 'requestor'): {exc}"]
    missing = []
    for name, test in NEEDS:
        try:
            good = test(samples)
        except Exception:  # noqa: BLE001 - missing, renamed or reshaped
            good = False
        if not good:
            missing.append(name)
    return missing


_report: Report | None = None
_lock = threading.Lock()


def check(*, announce: bool = True) -> Report:
    """Probe once per process (later calls return the same report) and set pynetdicom's
    switches wire depends on. A mismatch is logged in one line unless ``announce`` is
    False (a worker process, whose daemon has said it already)."""
    global _report
    with _lock:
        if _report is None:
            _report = Report(pynetdicom.__version__, tuple(probe()))
            _configure()
            if _report.missing and announce:
                log.warning(
                    "pynetdicom %s differs from what pacsbox was built for (%s): "
                    "fast paths off, pynetdicom carries every message",
                    _report.version,
                    ", ".join(_report.missing),
                )
        return _report


def fast() -> bool:
    """True when every private name checked out: the fast paths may be used."""
    report = _report if _report is not None else check()
    return report.ok


def _configure() -> None:
    """pynetdicom's module switches: stored files are sent from disk in chunks (flat
    memory, the stored bytes), and no identifier is pretty-printed for a debug log
    (patient names stay out of logs, and it costs time per response)."""
    for name, value in (
        ("STORE_SEND_CHUNKED_DATASET", True),
        ("LOG_REQUEST_IDENTIFIERS", False),
        ("LOG_RESPONSE_IDENTIFIERS", False),
    ):
        if isinstance(getattr(_config, name, None), bool):
            setattr(_config, name, value)
