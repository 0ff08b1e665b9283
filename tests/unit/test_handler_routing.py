"""pynetdicom binds one handler per intervention event: the listener routes an event that
several services handle (archive and worklist C-FIND, commitment and Detached Study
N-EVENT-REPORT) to the one whose contexts hold the request's SOP class."""

from __future__ import annotations

from types import SimpleNamespace

from pynetdicom import evt
from pynetdicom.presentation import build_context

from pacsbox.scp.server import Service, route_handlers

QR, MWL, OTHER = "1.2.840.10008.5.1.4.1.2.2.1", "1.2.840.10008.5.1.4.31", "1.2.3.4"


def _event(uid: str) -> SimpleNamespace:
    return SimpleNamespace(context=SimpleNamespace(abstract_syntax=uid))


def test_shared_intervention_events_go_by_sop_class():
    notified = []
    qr = Service(contexts=[build_context(QR)], handlers=[(evt.EVT_C_FIND, lambda e: "qr")])
    mwl = Service(
        contexts=[build_context(MWL)],
        handlers=[(evt.EVT_C_FIND, lambda e: "mwl"), (evt.EVT_CONN_OPEN, notified.append)],
    )
    handlers = route_handlers([qr, mwl])
    finds = [h for ev, h in handlers if ev == evt.EVT_C_FIND]
    assert len(finds) == 1  # one binding, as pynetdicom keeps
    (find,) = finds
    assert (find(_event(QR)), find(_event(MWL)), find(_event(OTHER))) == ("qr", "mwl", "qr")
    assert [ev for ev, _ in handlers].count(evt.EVT_CONN_OPEN) == 1  # notifications pass as-is


def test_an_event_one_service_binds_is_bound_as_it_is():
    def only(e):
        return "only"

    svc = Service(contexts=[build_context(QR)], handlers=[(evt.EVT_C_FIND, only)])
    assert route_handlers([svc]) == [(evt.EVT_C_FIND, only)]
