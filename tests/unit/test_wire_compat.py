"""wire.compat's look at pynetdicom's internals, on the pynetdicom this venv runs.

On the pinned version nothing differs; a name taken away, a parameter
renamed or a table of another type is reported by the name wire uses it by.
"""

from __future__ import annotations

import re
from pathlib import Path

import pynetdicom
import pynetdicom.dul
import pynetdicom.sop_class

from pacsbox.wire import compat

ROOT = Path(__file__).resolve().parents[2]


def _lock_pin(name: str) -> str:
    text = (ROOT / "image-build" / "requirements.lock").read_text()
    return re.search(rf"^{name}==(\S+)$", text, re.M).group(1)


def test_nothing_differs_on_the_pinned_pynetdicom():
    report = compat.check()
    assert report.version == pynetdicom.__version__ == _lock_pin("pynetdicom")
    assert report.missing == ()
    assert report.ok and compat.fast()
    assert compat.probe() == []


def test_a_method_taken_away_is_reported(monkeypatch):
    monkeypatch.delattr(pynetdicom.dul.DULServiceProvider, "_decode_pdu")
    assert compat.probe() == ["DULServiceProvider._decode_pdu(bytestream)"]


def test_a_renamed_parameter_is_reported(monkeypatch):
    def get_scp(self, request, context):  # what a later release might call it
        return None

    monkeypatch.setattr(pynetdicom.service_class.QueryRetrieveServiceClass, "_get_scp", get_scp)
    assert compat.probe() == ["QueryRetrieveServiceClass._get_scp(req, context)"]


def test_a_table_of_another_shape_is_reported(monkeypatch):
    listed = list(pynetdicom.sop_class._STORAGE_CLASSES.values())
    monkeypatch.setattr(pynetdicom.sop_class, "_STORAGE_CLASSES", listed)
    assert compat.probe() == ["pynetdicom.sop_class._STORAGE_CLASSES (dict)"]


def test_an_instance_attribute_gone_is_reported(monkeypatch):
    init = pynetdicom.dul.DULServiceProvider.__init__

    def without_pdu_queue(self, assoc):
        init(self, assoc)
        del self._recv_pdu

    monkeypatch.setattr(pynetdicom.dul.DULServiceProvider, "__init__", without_pdu_queue)
    assert compat.probe() == ["DULServiceProvider._recv_pdu (Queue)"]
